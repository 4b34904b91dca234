//! What `#[advisory_locked]` rejects, and how the rejection reads: trybuild
//! compiles each case in `fail/`. What it accepts is the cases in `pass/`, each a
//! test target of this package (see its `Cargo.toml`).

/// Each mistake gives one error, worded and placed as the reviewed `.stderr` says.
///
/// The `.stderr` files hold rustc's own wording and layout too, which change between
/// releases, so they are pinned to one toolchain (as in thiserror and async-trait):
/// on any other this test is ignored, and says why. To update them, run on the
/// pinned toolchain with `TRYBUILD=overwrite` and review the diff.
#[rustversion::attr(
    not(stable(1.95)),
    ignore = "ui .stderr files are pinned to rustc 1.95 stable; run `cargo +1.95 test -p pglock-ui`"
)]
#[test]
fn ui_fail() {
    trybuild::TestCases::new().compile_fail("fail/*.rs");
}

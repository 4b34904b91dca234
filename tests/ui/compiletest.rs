//! What `#[advisory_locked]` accepts and what it rejects, and how the rejection
//! reads: trybuild compiles each case in `pass/` and `fail/`.

/// Every shape the attribute supports compiles, without warnings. Through trybuild,
/// in a project of its own, and not as test targets of this package: `cargo test
/// --workspace` would build those with the features that other packages'
/// dev-dependencies turn on (`testdb`, `metrics`), which a user's crate does not
/// have, so a case could compile only thanks to one of them.
#[test]
fn ui_pass() {
    trybuild::TestCases::new().pass("pass/*.rs");
}

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

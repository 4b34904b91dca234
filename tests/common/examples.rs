//! Example binaries of this package, built before a test runs them.

/// The path of an example binary of this package, built first: `cargo test` builds
/// the examples too, but running one test alone (`cargo test --test x`) does not, and
/// a stale example would test old code.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = profile_dir.ends_with("release");
    let status = std::process::Command::new(cargo)
        // `--workspace`: the features `cargo test --workspace` resolved, so the
        // example it already built is fresh; without it cargo resolves the root
        // package's features alone and rebuilds the runtime (then `cargo test`
        // rebuilds it back), about a minute each way.
        .args(["build", "--quiet", "--workspace", "--example", name])
        .args(release.then_some("--release"))
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    assert!(
        path.exists(),
        "{} is missing after building it",
        path.display()
    );
    path
}

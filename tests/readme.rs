//! The README's Leadership example is the doctest in `docs/leadership_example.md`
//! (compiled and run by `cargo test --doc`), minus its hidden set-up lines: checked
//! here so that the two cannot drift apart.

#[test]
fn the_readme_shows_the_leadership_doctest() {
    let example = include_str!("../docs/leadership_example.md");
    let visible: String = example
        .lines()
        .filter(|line| !(line.starts_with("# ") || *line == "#"))
        .map(|line| format!("{line}\n"))
        .collect();
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&visible),
        "README.md does not show docs/leadership_example.md as it is:\n{visible}"
    );
}

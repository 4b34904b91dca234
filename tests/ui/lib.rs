//! Nothing to use: this package only runs the attribute's compile tests
//! (`compiletest.rs`, the cases in `pass/` and `fail/`).

//! Server settings passed through at start, and names checked before anything starts.

use pglock_runtime::testdb::{Cluster, TestDbError};

use crate::support::{block_on, query_text};

#[test]
fn passed_through_settings_are_visible_in_show() {
    let cluster = Cluster::builder()
        .setting("max_prepared_transactions", "10")
        .setting("idle_session_timeout", "2min")
        .setting("deadlock_timeout", "250ms")
        .setting("pglock.test_marker", "it's set")
        .setting("application_name", "passed through")
        .start()
        .unwrap();
    let show = |name: &str| block_on(query_text(cluster.db(), &format!("SHOW {name}")));
    assert_eq!(show("max_prepared_transactions"), "10");
    assert_eq!(show("idle_session_timeout"), "2min");
    assert_eq!(show("deadlock_timeout"), "250ms");
    assert_eq!(show("pglock.test_marker"), "it's set");
    assert_eq!(show("application_name"), "passed through");
}

#[test]
fn an_unknown_setting_name_is_refused_by_name() {
    let err = Cluster::builder()
        .setting("deadlock_timeout", "1s")
        .setting("dedlock_timeout", "1s")
        .start()
        .unwrap_err();
    let TestDbError::UnknownSetting { name, .. } = &err else {
        panic!("expected UnknownSetting, got {err:?}");
    };
    assert_eq!(name, "dedlock_timeout");
    assert!(
        err.to_string().contains("postgres -C dedlock_timeout"),
        "{err}"
    );
    let TestDbError::UnknownSetting { bin_dir, .. } = &err else {
        unreachable!()
    };
    assert!(bin_dir.join("postgres").exists(), "{err}");
}

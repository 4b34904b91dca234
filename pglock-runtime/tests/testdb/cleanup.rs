//! No process and no directory outlives a cluster, however its process ends.

use pglock_runtime::testdb::Cluster;

use crate::child::{run_child, Death};
use crate::support::{assert_cleaned_up, is_alive};

#[test]
fn dropping_a_cluster_stops_it_and_removes_its_directory_at_once() {
    let cluster = Cluster::start().unwrap();
    let pid = cluster.postmaster_pid();
    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    assert!(is_alive(pid) && root.exists());
    drop(cluster);
    assert!(
        !root.exists(),
        "{} still exists right after drop",
        root.display()
    );
    assert_cleaned_up(&root, pid);
}

#[test]
fn everything_is_cleaned_up_after_a_test_process_panics() {
    let (shared, owned) = run_child(Death::Panic);
    assert_cleaned_up(&shared.root, shared.pid);
    assert_cleaned_up(&owned.root, owned.pid);
}

#[test]
fn everything_is_cleaned_up_after_a_test_process_aborts() {
    let (shared, owned) = run_child(Death::Abort);
    assert_cleaned_up(&shared.root, shared.pid);
    assert_cleaned_up(&owned.root, owned.pid);
}

#[test]
fn everything_is_cleaned_up_after_a_test_process_group_is_sigkilled() {
    let (shared, owned) = run_child(Death::KillGroup);
    assert_cleaned_up(&shared.root, shared.pid);
    assert_cleaned_up(&owned.root, owned.pid);
}

#[test]
fn a_stalled_server_is_cleaned_up_too() {
    let (shared, owned) = run_child(Death::StallThenKillGroup);
    assert_cleaned_up(&shared.root, shared.pid);
    assert_cleaned_up(&owned.root, owned.pid);
}

//! Unit tests of the replacement's phases over a scripted first server: the lock taken before
//! the node list is read, a held lock refusing with its holder named, a Ready node refused with
//! the lock given back, a dead node deleted and the lock handed on (not released).

use std::sync::Arc;

use crate::engine::Engine;
use crate::engine::scripted::{Journal, Reply};
use crate::inventory::Inventory;
use crate::phases::tests::{
    DELETE_NODE as DELETE, LOCK, NODE_LIST as NODES, UNLOCK, first_server, quiet_log, script_of,
};

use super::*;

fn inventory() -> Inventory {
    crate::k3s::test_inventory::lab_inventory(1, 2)
}

fn node_list(a1_ready: &str) -> String {
    let node = |name: &str, ready: &str| {
        format!(
            r#"{{"metadata":{{"name":"{name}","labels":{{}}}},"spec":{{}},"status":{{"conditions":[{{"type":"Ready","status":"{ready}"}}],"nodeInfo":{{"kubeletVersion":"v1.31.4+k3s1","architecture":"arm64"}}}}}}"#
        )
    };
    format!(
        r#"{{"kind":"List","items":[{},{}]}}"#,
        node("s1", "True"),
        node("a1", a1_ready)
    )
}

fn engine(journal: &Arc<Journal>, rules: Vec<(&str, Reply)>) -> Engine {
    first_server(journal, rules, quiet_log())
}

/// Which script each call ran, in order.
fn sequence(journal: &Journal) -> Vec<&'static str> {
    let markers = [
        (LOCK, "lock"),
        (UNLOCK, "unlock"),
        (NODES, "nodes"),
        (DELETE, "delete"),
    ];
    journal
        .calls()
        .iter()
        .map(|c| script_of(c, &markers))
        .collect()
}

#[tokio::test]
async fn a_dead_node_is_deleted_under_the_lock_which_is_handed_on_to_up() {
    let journal = Journal::new();
    let engine = engine(
        &journal,
        vec![
            (LOCK, Reply::ok("acquired\n")),
            (NODES, Reply::ok(node_list("Unknown"))),
            (DELETE, Reply::ok("deleted=a1\n")),
        ],
    );
    let replace = Replace::start(engine, &inventory(), "a1".into())
        .await
        .unwrap();
    assert!(matches!(
        replace.decision(),
        Ok(OldNode::Dead { member: false, .. })
    ));
    assert!(replace.delete().await.is_ok());
    // No release: the `up` that follows takes the lock on and releases it.
    assert_eq!(sequence(&journal), ["lock", "nodes", "delete"]);
}

#[tokio::test]
async fn a_held_lock_refuses_naming_its_holder_and_reads_nothing() {
    let journal = Journal::new();
    let engine = engine(
        &journal,
        vec![(
            LOCK,
            Reply::ok("held 30 bob@ws pid 7 run x1 (edgeops up)\n"),
        )],
    );
    let refused = Replace::start(engine, &inventory(), "a1".into())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("locked by another edgeops run: bob@ws pid 7 run x1 (edgeops up)"),
        "{refused}"
    );
    assert_eq!(sequence(&journal), ["lock"]);
}

#[tokio::test]
async fn a_ready_node_is_refused_and_the_lock_given_back() {
    let journal = Journal::new();
    let engine = engine(
        &journal,
        vec![
            (LOCK, Reply::ok("acquired\n")),
            (NODES, Reply::ok(node_list("True"))),
        ],
    );
    let replace = Replace::start(engine, &inventory(), "a1".into())
        .await
        .unwrap();
    assert!(replace.decision().unwrap_err().contains("node a1 is Ready"));
    replace.abort().await;
    assert_eq!(sequence(&journal), ["lock", "nodes", "unlock"]);
}

#[tokio::test]
async fn a_failed_deletion_stops_before_up_and_gives_the_lock_back() {
    let journal = Journal::new();
    let engine = engine(
        &journal,
        vec![
            (LOCK, Reply::ok("acquired\n")),
            (NODES, Reply::ok(node_list("False"))),
            (DELETE, Reply::fail(1, "Error from server (Forbidden)")),
        ],
    );
    let replace = Replace::start(engine, &inventory(), "a1".into())
        .await
        .unwrap();
    let why = replace.delete().await.err().unwrap();
    assert!(
        why.contains("could not delete node a1") && why.contains("Forbidden"),
        "{why}"
    );
    assert_eq!(sequence(&journal), ["lock", "nodes", "delete", "unlock"]);
}

#[test]
fn the_phase_lists_are_named() {
    assert_eq!(survey_phases().titles(), SURVEY);
    assert_eq!(replace_phases().titles(), REPLACE);
}

//! Tests of [`super`].
use super::*;

fn machine(name: &str, node: Option<&str>) -> Machine {
    Machine {
        name: name.into(),
        node: node.map(String::from),
        ..Machine::default()
    }
}

fn marked(mut m: Machine, by: &str) -> Machine {
    m.mark = Some(by.into());
    m
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ours() -> String {
    mark_value("batch", "n", chrono::DateTime::UNIX_EPOCH)
}

#[test]
fn only_machines_whose_nodes_are_empty_are_marked_in_the_order_nodes_go() {
    // n-b runs a pod (not empty), m-c has no node yet.
    let machines = [
        machine("m-a", Some("n-a")),
        machine("m-b", Some("n-b")),
        machine("m-c", None),
        machine("m-d", Some("n-d")),
    ];
    let m = choose(&machines, &names(&["n-d", "n-a"]), 2);
    assert_eq!(
        m.mark,
        vec![("m-d".into(), "n-d".into()), ("m-a".into(), "n-a".into())]
    );
    assert_eq!((m.scale_by, m.short), (2, None));
    // One asked for: the first node to go.
    let m = choose(&machines, &names(&["n-d", "n-a"]), 1);
    assert_eq!(
        (m.mark, m.scale_by),
        (vec![("m-d".into(), "n-d".into())], 1)
    );
}

#[test]
fn with_fewer_empty_nodes_than_replicas_to_go_the_scale_down_is_only_by_those_marked() {
    let machines = [
        machine("m-a", Some("n-a")),
        machine("m-b", Some("n-b")),
        machine("m-c", None),
    ];
    let m = choose(&machines, &names(&["n-a"]), 3);
    assert_eq!(m.mark, vec![("m-a".into(), "n-a".into())]);
    assert_eq!(m.scale_by, 1);
    assert_eq!(
        m.short.as_deref(),
        Some("only 1 of the 3 machine(s) to go have a node found empty")
    );
    // No empty node at all: nothing goes.
    let m = choose(&machines, &[], 2);
    assert_eq!((m.mark.len(), m.scale_by), (0, 0));
}

#[test]
fn a_machine_marked_already_is_chosen_first_and_not_marked_again() {
    let machines = [
        machine("m-a", Some("n-a")),
        marked(machine("m-b", Some("n-b")), &ours()),
    ];
    let m = choose(&machines, &names(&["n-a", "n-b"]), 1);
    assert_eq!((m.mark, m.unmark, m.scale_by), (vec![], vec![], 1));
}

#[test]
fn datajobs_marks_on_machines_that_do_not_go_now_are_taken_off() {
    // A scale-down that did not finish marked m-b; its node has a pod now. m-c's mark
    // is ours too, on an empty node, but only one machine goes.
    let machines = [
        machine("m-a", Some("n-a")),
        marked(machine("m-b", Some("n-b")), &ours()),
        marked(machine("m-c", Some("n-c")), &ours()),
    ];
    let m = choose(&machines, &names(&["n-c", "n-a"]), 1);
    assert_eq!(m.mark, vec![]);
    assert_eq!(m.unmark, names(&["m-b"]));
    assert_eq!(m.scale_by, 1);
    let m = choose(&machines, &names(&["n-a"]), 1);
    assert_eq!(m.mark, vec![("m-a".into(), "n-a".into())]);
    assert_eq!(m.unmark, names(&["m-b", "m-c"]));
}

#[test]
fn someone_elses_mark_on_a_machine_not_known_empty_holds_every_scale_down() {
    let machines = [
        machine("m-a", Some("n-a")),
        marked(machine("m-b", Some("n-b")), "yes"),
        marked(machine("m-c", Some("n-c")), &ours()),
    ];
    let m = choose(&machines, &names(&["n-a"]), 1);
    assert_eq!((m.mark, m.scale_by), (vec![], 0));
    assert_eq!(m.unmark, names(&["m-c"]), "ours still comes off");
    assert!(m.short.is_some_and(|s| s.contains("m-b")));
    // On an empty node it is one that may go: chosen, left as it is.
    let m = choose(&machines, &names(&["n-a", "n-b"]), 1);
    assert_eq!((m.mark, m.scale_by), (vec![], 1));
    assert_eq!(m.unmark, names(&["m-c"]));
}

#[test]
fn machines_being_deleted_are_neither_marked_nor_counted() {
    let mut going = marked(machine("m-a", Some("n-a")), "yes");
    going.deleting = true;
    let machines = [going, machine("m-b", Some("n-b"))];
    let m = choose(&machines, &names(&["n-a", "n-b"]), 2);
    assert_eq!(m.mark, vec![("m-b".into(), "n-b".into())]);
    assert_eq!(m.scale_by, 1);
}

#[test]
fn candidates_are_the_machines_on_removable_nodes_marked_ones_first() {
    let machines = [
        machine("m-a", Some("n-a")),
        machine("m-b", Some("n-b")),
        marked(machine("m-c", Some("n-c")), &ours()),
        machine("m-d", None),
    ];
    let got: Vec<&str> = candidates(&machines, &names(&["n-b", "n-c", "n-a"]))
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(got, ["m-c", "m-b", "m-a"]);
}

#[test]
fn machines_are_found_by_the_label_cluster_api_gives_them() {
    assert_eq!(
        machines_selector("MachineDeployment", "workers").as_deref(),
        Some("cluster.x-k8s.io/deployment-name=workers")
    );
    assert_eq!(
        machines_selector("MachinePool", "workers").as_deref(),
        Some("cluster.x-k8s.io/pool-name=workers")
    );
    assert_eq!(machines_selector("Something", "workers"), None);
    let m = machine("m", None);
    assert!(!m.marked_by_datajob());
    assert!(marked(m.clone(), &ours()).marked_by_datajob());
    assert!(!marked(m, "yes").marked_by_datajob());
    assert_eq!(
        ours(),
        "datajob.dev: node group batch found node n empty at 1970-01-01T00:00:00Z"
    );
}

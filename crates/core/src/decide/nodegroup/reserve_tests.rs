//! Tests of [`super`].
use super::*;
use crate::decide::nodegroup::fixtures::req;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn waiting(cpu: u64, since: i64) -> Waiting {
    Waiting {
        request: req(cpu, cpu * 2, 0),
        since: at(since),
        holds: false,
    }
}

#[test]
fn a_node_is_for_the_pods_that_waited_longest() {
    let shape = req(4, 16, 0);
    // The run that waited first (index 1) gets the node, not the one that came
    // later (index 0), though both are the same size.
    let w = [waiting(4, 180), waiting(4, 0)];
    assert_eq!(reserve(&shape, &w, 1), vec![vec![1]]);
    assert_eq!(reserve(&shape, &w, 2), vec![vec![1], vec![0]]);
}

#[test]
fn a_smaller_pod_fills_the_room_a_larger_one_does_not_fit() {
    let shape = req(4, 16, 0);
    let w = [waiting(3, 0), waiting(2, 10), waiting(1, 20)];
    assert_eq!(reserve(&shape, &w, 1), vec![vec![0, 2]]);
}

#[test]
fn nodes_made_together_are_packed_not_filled_in_arrival_order() {
    // Arrival order 1, 1, 3, 3 filled node by node would put both 1s on one node
    // and leave a 3 without one; packed, each node takes a 3 and a 1.
    let shape = req(4, 16, 0);
    let w = [waiting(1, 0), waiting(1, 1), waiting(3, 2), waiting(3, 3)];
    let r = reserve(&shape, &w, 2);
    assert_eq!(r, vec![vec![2, 0], vec![3, 1]]);
}

#[test]
fn pods_that_hold_a_reservation_or_fit_no_node_are_left_out() {
    let shape = req(4, 16, 0);
    let mut held = waiting(2, 0);
    held.holds = true;
    let w = [held, waiting(8, 1), waiting(2, 2)];
    assert_eq!(reserve(&shape, &w, 1), vec![vec![2]]);
    assert_eq!(reserve(&shape, &[], 1), vec![Vec::<usize>::new()]);
    assert!(reserve(&shape, &w, 0).is_empty());
}

#[test]
fn a_reservation_lapses_once_its_pods_are_placed_or_it_has_lasted_the_hold() {
    let hold = RESERVATION_HOLD.as_secs() as i64;
    assert!(!lapsed(true, Some(at(0)), at(hold - 1)));
    assert!(lapsed(true, Some(at(0)), at(hold)));
    assert!(lapsed(false, Some(at(0)), at(1)));
    assert!(lapsed(true, None, at(0)));
}

#[test]
fn taints_and_tolerations_match_by_node() {
    let mut pod = Pod::default();
    pod.spec.get_or_insert_default().tolerations = Some(vec![
        Toleration {
            key: Some("other".into()),
            ..Default::default()
        },
        toleration("batch-1"),
    ]);
    assert_eq!(held_by(&pod).collect::<Vec<_>>(), vec!["batch-1"]);
    let theirs = Taint {
        key: "dedicated".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let taints = vec![theirs.clone(), taint("batch-1")];
    assert!(is_reserved(&taints));
    assert_eq!(without_reservation(&taints), Some(vec![theirs.clone()]));
    assert_eq!(without_reservation(&[theirs]), None);
}

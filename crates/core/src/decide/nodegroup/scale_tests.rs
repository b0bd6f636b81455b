//! Tests of [`super`].
use super::*;
use crate::decide::nodegroup::fixtures::*;
use crate::resources::Request;

#[test]
fn the_scale_down_taint_is_added_and_removed_and_nothing_else_changes() {
    use k8s_openapi::api::core::v1::Taint;
    let theirs = Taint {
        key: "node.kubernetes.io/not-ready".into(),
        effect: "NoExecute".into(),
        ..Default::default()
    };
    let on = with_scale_down_taint(std::slice::from_ref(&theirs), true).unwrap();
    assert_eq!(on.len(), 2);
    assert_eq!(on[0], theirs);
    assert_eq!(
        (on[1].key.as_str(), on[1].effect.as_str()),
        (SCALE_DOWN_TAINT, "NoSchedule")
    );
    assert_eq!(with_scale_down_taint(&on, true), None, "already on");
    assert_eq!(
        with_scale_down_taint(&on, false),
        Some(vec![theirs.clone()])
    );
    assert_eq!(with_scale_down_taint(&[theirs], false), None, "already off");
}

#[test]
fn new_nodes_take_the_lowest_free_names() {
    assert_eq!(new_node_names("g", &[], 2), vec!["g-0", "g-1"]);
    assert_eq!(
        new_node_names("g", &["g-0", "g-2", "other-1"], 3),
        vec!["g-1", "g-3", "g-4"]
    );
    // The same cache gives the same names: a second pass collides, never doubles.
    let existing = ["g-0"];
    assert_eq!(
        new_node_names("g", &existing, 1),
        new_node_names("g", &existing, 1)
    );
    assert!(new_node_names("g", &["g-0"], 0).is_empty());
}

#[test]
fn first_fit_decreasing_packs_mixed_sizes() {
    let shape = req(4, 16, 0);
    // 3 + 1 + 2 + 2 CPUs: two nodes, not three.
    let pending = vec![req(1, 1, 0), req(3, 1, 0), req(2, 1, 0), req(2, 1, 0)];
    assert_eq!(nodes_needed(&shape, &[], 0, &pending), 2);
    // Room on an existing node and a booting node absorbs work.
    assert_eq!(nodes_needed(&shape, &[req(3, 8, 0)], 1, &pending), 1);
    assert_eq!(nodes_needed(&shape, &[], 2, &pending), 0);
    // Too big for the shape: never counted.
    assert_eq!(nodes_needed(&shape, &[], 0, &[req(8, 1, 0)]), 0);
    // GPUs are a dimension like any other.
    assert_eq!(
        nodes_needed(&req(8, 64, 1), &[], 0, &[req(1, 1, 1), req(1, 1, 1)]),
        2
    );
}

#[test]
fn scale_up_is_capped_at_max_size() {
    let g = group("small", req(4, 16, 0), 0.2, 3);
    let state = GroupState {
        desired: 0,
        nodes: vec![],
        pending: vec![req(4, 1, 0); 5],
        active: 5,
        due: vec![],
        idle_since: None,
        last_scale: None,
    };
    let d = decide(&g, &state, now());
    assert_eq!(d.desired, 3);
    assert!(d.reason.unwrap().contains("capped at maxSize 3"));
    // Asked again while nodes boot: no second increase.
    let again = decide(
        &g,
        &GroupState {
            desired: 3,
            ..state
        },
        now(),
    );
    assert_eq!((again.desired, again.reason), (3, None));
}

#[test]
fn a_group_is_raised_to_min_size_with_a_reason_and_kept_there_when_idle() {
    let g = Group {
        min_size: 1,
        ..group("small", req(4, 16, 0), 0.2, 3)
    };
    let new = GroupState::default();
    let d = decide(&g, &new, now());
    assert_eq!(d.desired, 1);
    assert_eq!(d.reason.as_deref(), Some("minSize is 1"));
    // Once there, idle for long: it stays, and says nothing.
    let idle = GroupState {
        desired: 1,
        nodes: vec![NodeView {
            name: "a".into(),
            ready: true,
            free: req(4, 16, 0),
            datajob_pods: 0,
            foreign_pods: 0,
            frees_at: None,
        }],
        idle_since: Some(now()),
        ..new
    };
    let d = decide(&g, &idle, now() + chrono::Duration::hours(1));
    assert_eq!((d.desired, d.reason), (1, None));
}

#[test]
fn scale_down_after_idle_never_with_work_or_foreign_pods() {
    let g = group("small", req(4, 16, 0), 0.2, 3);
    let node = |name: &str, dj: usize, foreign: usize| NodeView {
        name: name.into(),
        ready: true,
        free: req(4, 16, 0),
        datajob_pods: dj,
        foreign_pods: foreign,
        frees_at: None,
    };
    let idle = GroupState {
        desired: 2,
        nodes: vec![node("a", 0, 0), node("b", 0, 0)],
        pending: vec![],
        active: 0,
        due: vec![],
        idle_since: None,
        last_scale: None,
    };
    let first = decide(&g, &idle, now());
    assert_eq!(
        (first.desired, first.idle_since),
        (2, Some(now())),
        "idle clock starts"
    );
    let later = now() + chrono::Duration::seconds(121);
    let d = decide(
        &g,
        &GroupState {
            idle_since: first.idle_since,
            ..idle.clone()
        },
        later,
    );
    assert_eq!(d.desired, 0);
    assert_eq!(d.removable, vec!["a", "b"]);
    // Active work: never.
    let busy = GroupState {
        active: 1,
        nodes: vec![node("a", 1, 0), node("b", 0, 0)],
        idle_since: Some(now()),
        ..idle.clone()
    };
    assert_eq!(decide(&g, &busy, later).desired, 2);
    // A node with someone else's pod stays.
    let foreign = GroupState {
        nodes: vec![node("a", 0, 1), node("b", 0, 0)],
        idle_since: Some(now()),
        ..idle
    };
    let d = decide(&g, &foreign, later);
    assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
}

#[test]
fn an_empty_node_goes_at_once_when_no_run_is_due() {
    let g = scheduled_group();
    let state = GroupState {
        desired: 2,
        nodes: vec![
            node("a", true, req(1, 8, 0), 1),
            node("b", true, req(4, 16, 0), 0),
        ],
        active: 1,
        ..GroupState::default()
    };
    let d = decide(&g, &state, now());
    assert_eq!((d.desired, d.removable.clone()), (1, vec!["b".to_string()]));
    assert!(d.reason.unwrap().contains("1 node(s) not needed"));
    assert!(d.kept_for.is_empty());
    // The run on `a` is what is left; its room is published, b's is not.
    assert_eq!(
        d.room,
        vec![Room {
            node: Some("a".into()),
            ready: true,
            free: req(1, 8, 0)
        }]
    );
    // The last empty node goes too, without waiting for scaleDownAfter.
    let idle = GroupState {
        desired: 1,
        nodes: vec![node("a", true, req(4, 16, 0), 0)],
        ..GroupState::default()
    };
    let d = decide(&g, &idle, now());
    assert_eq!((d.desired, d.idle_since), (0, Some(now())));
    // The Idle policy waits instead.
    let idle_policy = Group {
        scale_down_policy: ScaleDownPolicy::Idle,
        ..g
    };
    let d = decide(&idle_policy, &idle, now());
    assert_eq!(d.desired, 1);
    assert_eq!(d.recheck_at, Some(now() + secs(600)), "when the wait ends");
}

#[test]
fn an_empty_node_stays_for_a_run_due_soon_that_fits_it_and_that_run_reuses_it() {
    let g = scheduled_group();
    let idle = |due_in: i64, request: Request| GroupState {
        desired: 1,
        nodes: vec![node("a", true, req(4, 16, 0), 0)],
        due: vec![due("analytics/hourly", request, now() + secs(due_in))],
        ..GroupState::default()
    };
    // Due in 2 minutes: idling 120 s costs less than 90 s of boot and 90 s late.
    let d = decide(&g, &idle(120, req(3, 8, 0)), now());
    assert_eq!(d.desired, 1);
    assert_eq!(d.reason, None);
    assert_eq!(
        d.kept_for,
        vec![
            "analytics/hourly due in 2m: keeping a costs 0.0113, booting another 0.0170 and 1m30s late"
        ]
    );
    assert_eq!(
        d.recheck_at,
        Some(now() + secs(120 + 60)),
        "when the run is overdue"
    );
    // The room the run will take is not offered to others.
    assert_eq!(
        d.room,
        vec![Room {
            node: Some("a".into()),
            ready: true,
            free: req(1, 8, 0)
        }]
    );
    // Its pod comes and binds there: nothing changes, no node is made.
    let bound = GroupState {
        desired: 1,
        nodes: vec![node("a", true, req(1, 8, 0), 1)],
        active: 1,
        ..GroupState::default()
    };
    assert_eq!(decide(&g, &bound, now() + secs(121)).desired, 1);
    // Pending before it binds: the kept node takes it, none is added.
    let pending = GroupState {
        pending: vec![req(3, 8, 0)],
        active: 1,
        due: vec![],
        ..idle(0, req(3, 8, 0))
    };
    let d = decide(&g, &pending, now());
    assert_eq!((d.desired, d.reason), (1, None));
    // Due in 4 minutes: booting again is cheaper; the node goes now.
    let d = decide(&g, &idle(240, req(3, 8, 0)), now());
    assert_eq!(d.desired, 0);
    assert!(d.kept_for.is_empty());
    // A run too big for the node's room keeps nothing.
    assert_eq!(decide(&g, &idle(60, req(8, 8, 0)), now()).desired, 0);
    // scaleDownAfter is the longest wait.
    let short = Group {
        scale_down_after: Duration::from_secs(60),
        ..g.clone()
    };
    assert_eq!(decide(&short, &idle(120, req(3, 8, 0)), now()).desired, 0);
    assert_eq!(decide(&short, &idle(30, req(3, 8, 0)), now()).desired, 1);
    // scaleDownAfter 0s: every empty node goes at once (Karpenter's WhenEmpty).
    let at_once = Group {
        scale_down_after: Duration::ZERO,
        ..g
    };
    assert_eq!(decide(&at_once, &idle(5, req(3, 8, 0)), now()).desired, 0);
}

#[test]
fn a_due_run_that_fits_beside_running_work_keeps_no_empty_node() {
    let g = scheduled_group();
    let state = GroupState {
        desired: 2,
        nodes: vec![
            node("a", true, req(2, 8, 0), 1),
            node("b", true, req(4, 16, 0), 0),
        ],
        active: 1,
        due: vec![due("analytics/small", req(2, 4, 0), now() + secs(60))],
        ..GroupState::default()
    };
    let d = decide(&g, &state, now());
    assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
    assert!(d.kept_for.is_empty(), "a has the room");
    // Two runs due: one beside the work, one on the empty node.
    let two = GroupState {
        due: vec![
            due("analytics/small", req(2, 4, 0), now() + secs(60)),
            due("analytics/big", req(4, 4, 0), now() + secs(90)),
        ],
        ..state
    };
    let d = decide(&g, &two, now());
    assert_eq!(d.desired, 2);
    assert_eq!(d.kept_for.len(), 1);
    assert!(
        d.kept_for[0].starts_with("analytics/big due in 1m30s: keeping b"),
        "{:?}",
        d.kept_for
    );
}

#[test]
fn pending_work_keeps_the_empty_nodes_it_needs_ready_ones_first() {
    let g = scheduled_group();
    let state = GroupState {
        desired: 3,
        nodes: vec![
            node("a", false, req(4, 16, 0), 0),
            node("b", true, req(4, 16, 0), 0),
            node("c", true, req(4, 16, 0), 0),
        ],
        pending: vec![req(3, 8, 0)],
        active: 1,
        ..GroupState::default()
    };
    let d = decide(&g, &state, now());
    assert_eq!(d.desired, 1);
    assert_eq!(
        d.removable,
        vec!["a", "c"],
        "not Ready first; b takes the pod"
    );
    // Nodes on their way that no work needs any more are not made.
    let booting = GroupState {
        desired: 3,
        nodes: vec![node("b", true, req(4, 16, 0), 0)],
        pending: vec![req(3, 8, 0)],
        active: 1,
        ..GroupState::default()
    };
    assert_eq!(decide(&g, &booting, now()).desired, 1);
}

#[test]
fn the_schedule_policy_keeps_min_size_and_nodes_with_others_pods() {
    let g = Group {
        min_size: 1,
        ..scheduled_group()
    };
    let mut foreign = node("c", true, req(4, 16, 0), 0);
    foreign.foreign_pods = 1;
    let state = GroupState {
        desired: 3,
        nodes: vec![
            node("a", false, req(4, 16, 0), 0),
            node("b", true, req(4, 16, 0), 0),
            foreign,
        ],
        ..GroupState::default()
    };
    let d = decide(&g, &state, now());
    // c stays (someone else's pod) and counts towards minSize; a and b go.
    assert_eq!(
        (d.desired, d.removable),
        (1, vec!["a".to_string(), "b".to_string()])
    );
    let two = Group { min_size: 2, ..g };
    let d = decide(&two, &state, now());
    assert_eq!(
        (d.desired, d.removable[0].as_str()),
        (2, "a"),
        "Ready b stays for minSize"
    );
}

#[test]
fn a_cluster_api_group_shrinks_only_while_no_node_has_pods() {
    let g = Group {
        provider: ProviderKind::ClusterApi {
            api_version: "cluster.x-k8s.io/v1beta1".into(),
            kind: "MachineDeployment".into(),
            namespace: "capi".into(),
            name: "workers".into(),
        },
        ..scheduled_group()
    };
    let busy = GroupState {
        desired: 2,
        nodes: vec![
            node("a", true, req(1, 8, 0), 1),
            node("b", true, req(4, 16, 0), 0),
        ],
        active: 1,
        ..GroupState::default()
    };
    assert_eq!(
        decide(&g, &busy, now()).desired,
        2,
        "Cluster API picks the machine: it could pick a"
    );
    let idle = GroupState {
        nodes: vec![
            node("a", true, req(4, 16, 0), 0),
            node("b", true, req(4, 16, 0), 0),
        ],
        active: 0,
        ..busy
    };
    assert_eq!(decide(&g, &idle, now()).desired, 0);
}

#[test]
fn a_node_whose_runs_end_before_a_run_is_due_takes_it_and_no_node_is_booted() {
    // Warm-up 4 minutes; ingest (2 CPUs) runs on `a` and has always taken 8 minutes,
    // so it ends in 2; transform (4 CPUs) is due in 3.
    let g = Group {
        warm_up_before: Some(Duration::from_secs(240)),
        ..scheduled_group()
    };
    let busy = |frees_in: Option<i64>| GroupState {
        desired: 1,
        nodes: vec![NodeView {
            frees_at: frees_in.map(|s| now() + secs(s)),
            ..node("a", true, req(2, 8, 0), 1)
        }],
        active: 1,
        due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(180))],
        ..GroupState::default()
    };
    let d = decide(&g, &busy(Some(120)), now());
    assert_eq!((d.desired, d.reason), (1, None), "a takes it when due");
    // The room left now is not promised to anyone else.
    assert_eq!(d.room, vec![]);
    // Ending after the run is due: a node is booted for it.
    assert_eq!(decide(&g, &busy(Some(200)), now()).desired, 2);
    // Not known (ingest has no history): `a` may free up in time, so no node is
    // booted ahead; the run waits for `a`.
    let d = decide(&g, &busy(None), now());
    assert_eq!((d.desired, d.reason), (1, None), "waits for a");
    // Until its time, when the scaler looks again: `a` still busy then, the node the
    // run needs boots at once, before its pod even waits.
    assert_eq!(d.recheck_at, Some(now() + secs(180)));
    let d = decide(&g, &busy(None), now() + secs(180));
    assert_eq!(
        (d.desired, d.reason.as_deref()),
        (
            2,
            Some("warm-up: 1 scheduled run(s) due soon need 1 more node(s)")
        )
    );
    // Someone else's pod on `a`: it never frees for the run, a node is booted.
    let mut foreign = busy(None);
    foreign.nodes[0].foreign_pods = 1;
    assert_eq!(decide(&g, &foreign, now()).desired, 2);
    // Two runs due that would both need all of `a`: one waits for it, one boots.
    let mut two = busy(None);
    two.due
        .push(due("analytics/report", req(4, 12, 0), now() + secs(180)));
    assert_eq!(decide(&g, &two, now()).desired, 2);
    // A pod already waits for a node, whose node is not up a quarter of a boot (90 s
    // here) before the run is due in 100 s: the run does not wait for `a` (once due,
    // it could take the node booting for that pod); a node is booted for it too.
    let waiting = GroupState {
        desired: 2,
        pending: vec![req(4, 12, 0)],
        active: 2,
        last_scale: Some(now()),
        due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(100))],
        ..busy(None)
    };
    assert_eq!(decide(&g, &waiting, now()).desired, 3);
    // When the last scale-up is not known, it counts as made now.
    let unknown = GroupState {
        last_scale: None,
        ..waiting.clone()
    };
    assert_eq!(decide(&g, &unknown, now()).desired, 3);
    // Asked for a minute ago: up in 30 s, its pod bound by 53 s; the run waits for `a`.
    let served = GroupState {
        last_scale: Some(now() - secs(60)),
        ..waiting.clone()
    };
    let d = decide(&g, &served, now());
    assert_eq!((d.desired, d.reason), (2, None), "waits for a");
    // Its node not asked for yet: asked for now, it serves its pod by 113 s, in time
    // for a run due in 180 s (the run waits for `a`), not for the one due in 100 s.
    let not_asked = GroupState {
        desired: 1,
        ..waiting.clone()
    };
    assert_eq!(decide(&g, &not_asked, now()).desired, 3);
    let later = GroupState {
        due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(180))],
        ..not_asked
    };
    assert_eq!(decide(&g, &later, now()).desired, 2);
    // The node booting for a one-off's pod is, once up, busy with a run of unknown
    // length: a run due after it serves that pod waits for it, no node is booted
    // ahead (the one-off may end first; if not, the run's pod boots one then).
    let one_off = GroupState {
        desired: 1,
        pending: vec![req(2, 4, 0)],
        active: 1,
        last_scale: Some(now() - secs(60)),
        due: vec![due("analytics/train", req(4, 14, 0), now() + secs(180))],
        ..GroupState::default()
    };
    let d = decide(&g, &one_off, now());
    assert_eq!(
        (d.desired, d.reason),
        (1, None),
        "train waits for the one-off's node"
    );
    // At its time, `a` still busy: the run's pod is pending and boots a node then.
    let late = GroupState {
        pending: vec![req(4, 12, 0)],
        active: 2,
        due: vec![],
        ..busy(None)
    };
    let d = decide(&g, &late, now() + secs(180));
    assert_eq!(
        (d.desired, d.reason.as_deref()),
        (2, Some("1 pending run pod(s) need 1 more node(s)"))
    );
    // The same for a run due later: an empty node is not kept for it when a busy
    // node will have room by then.
    let g = scheduled_group();
    let state = GroupState {
        desired: 2,
        nodes: vec![
            NodeView {
                frees_at: Some(now() + secs(60)),
                ..node("a", true, req(0, 4, 0), 1)
            },
            node("b", true, req(4, 16, 0), 0),
        ],
        active: 1,
        due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(120))],
        ..GroupState::default()
    };
    let d = decide(&g, &state, now());
    assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
    assert!(d.kept_for.is_empty());
}

#[test]
fn a_pending_run_waits_for_a_node_whose_runs_end_before_a_boot_would_be_up() {
    // Boot 90 s. `a` is full with a run known to end in `frees_in`; a 4-CPU run waits.
    let g = scheduled_group();
    let state = |frees_in: Option<i64>| GroupState {
        desired: 1,
        nodes: vec![NodeView {
            frees_at: frees_in.map(|s| now() + secs(s)),
            ..node("a", true, req(0, 4, 0), 1)
        }],
        pending: vec![req(4, 12, 0)],
        active: 2,
        ..GroupState::default()
    };
    // Ends in 60 s: the run takes `a` then, sooner than a boot and without paying
    // one; the scaler looks again at that moment.
    let d = decide(&g, &state(Some(60)), now());
    assert_eq!((d.desired, d.reason), (1, None));
    assert_eq!(d.recheck_at, Some(now() + secs(60)));
    // Still busy when it was expected to end: a node boots now.
    let d = decide(&g, &state(Some(60)), now() + secs(60));
    assert_eq!(
        (d.desired, d.reason.as_deref()),
        (2, Some("1 pending run pod(s) need 1 more node(s)"))
    );
    // Ends after a boot would be up, or its end is not known: a node boots now.
    assert_eq!(decide(&g, &state(Some(120)), now()).desired, 2);
    assert_eq!(decide(&g, &state(None), now()).desired, 2);
    // Two runs wait and only one fits `a` once it ends: one node boots, for the other.
    let mut two = state(Some(60));
    two.pending.push(req(4, 12, 0));
    assert_eq!(decide(&g, &two, now()).desired, 2);
}

#[test]
fn a_run_is_expected_to_end_after_its_longest_recent_success() {
    let runs = [Duration::from_secs(300), Duration::from_secs(420)];
    assert_eq!(expected_end(now(), runs), Some(now() + secs(420)));
    assert_eq!(expected_end(now(), []), None);
}

#[test]
fn each_kwok_node_boots_on_its_own_clock() {
    let delay = Duration::from_secs(20);
    let mut q = Vec::new();
    // One node wanted at 0 s, a second at 5 s: they boot at 20 s and 25 s.
    assert_eq!(
        boots(&mut q, 1, now(), delay, now()),
        (0, Some(now() + secs(20)))
    );
    assert_eq!(
        boots(&mut q, 2, now() + secs(5), delay, now() + secs(5)),
        (0, Some(now() + secs(20))),
        "a second node does not delay the first"
    );
    assert_eq!(
        boots(&mut q, 2, now() + secs(21), delay, now() + secs(21)),
        (1, Some(now() + secs(25)))
    );
    q.remove(0); // made
    // The second is no longer wanted: its clock goes; wanted again, it starts over.
    assert_eq!(
        boots(&mut q, 0, now() + secs(22), delay, now() + secs(22)),
        (0, None)
    );
    assert_eq!(
        boots(&mut q, 1, now() + secs(23), delay, now() + secs(23)),
        (0, Some(now() + secs(43)))
    );
}

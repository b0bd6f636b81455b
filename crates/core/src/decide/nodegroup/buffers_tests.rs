//! Tests of [`super`].
use std::time::Duration;

use super::*;
use crate::decide::nodegroup::fixtures::*;

fn karpenter_group() -> Group {
    let mut g = Group {
        provider: ProviderKind::Karpenter {
            node_pool: "batch".into(),
        },
        warm_up_before: Some(Duration::from_secs(120)),
        ..scheduled_group()
    };
    g.labels = [(
        crate::group::NODEPOOL_LABEL.to_string(),
        "batch".to_string(),
    )]
    .into();
    g
}

fn state(nodes: usize, due: Vec<DueRun>) -> GroupState {
    GroupState {
        desired: nodes as i32,
        nodes: (0..nodes)
            .map(|i| node(&format!("n{i}"), true, req(4, 16, 0), 0))
            .collect(),
        pending: vec![],
        active: 0,
        due,
        idle_since: None,
        last_scale: None,
    }
}

#[test]
fn a_run_due_within_warm_up_gets_a_buffer_shaped_like_it_and_a_later_one_waits() {
    let g = karpenter_group();
    let due = vec![
        due("team/soon", req(3, 4, 0), now() + secs(90)),
        due("team/later", req(2, 4, 0), now() + secs(3600)),
    ];
    let (buffers, next) = wanted(&g, &state(0, due), now());
    assert_eq!(buffers.len(), 1, "{buffers:?}");
    let b = &buffers[0];
    assert_eq!(
        (b.datajob.as_str(), b.replicas, b.request),
        ("team/soon", 1, req(3, 4, 0))
    );
    assert!(
        b.why.starts_with("warm-up: due at 2026-11-25T10:01:30Z"),
        "{}",
        b.why
    );
    assert_eq!(
        (b.owner(), b.name().as_str()),
        (("team", "soon"), "soon-warm")
    );
    // The later run's warm-up begins warmUpBefore ahead of it.
    assert_eq!(next, Some(now() + secs(3600 - 120)));
}

#[test]
fn with_a_node_a_run_due_soon_enough_keeps_it_and_one_due_too_late_does_not() {
    // No warm-up: keep for a run due within twice the 90 s boot.
    let g = Group {
        warm_up_before: None,
        ..karpenter_group()
    };
    let due = vec![
        due("team/next", req(3, 4, 0), now() + secs(150)),
        due("team/far", req(3, 4, 0), now() + secs(400)),
    ];
    let (buffers, _) = wanted(&g, &state(1, due.clone()), now());
    assert_eq!(buffers.len(), 1, "{buffers:?}");
    assert_eq!(buffers[0].datajob, "team/next");
    assert!(
        buffers[0].why.starts_with("keep: due in 2m30s"),
        "{}",
        buffers[0].why
    );
    // Without a node there is nothing to keep; with the Idle policy nothing is kept.
    assert!(wanted(&g, &state(0, due.clone()), now()).0.is_empty());
    let idle = Group {
        scale_down_policy: ScaleDownPolicy::Idle,
        ..g.clone()
    };
    assert!(wanted(&idle, &state(1, due), now()).0.is_empty());
}

#[test]
fn at_most_one_keep_buffer_per_node_and_none_for_other_providers() {
    let g = Group {
        warm_up_before: None,
        ..karpenter_group()
    };
    let due = vec![
        due("a/one", req(1, 1, 0), now() + secs(100)),
        due("a/two", req(1, 1, 0), now() + secs(110)),
    ];
    assert_eq!(wanted(&g, &state(1, due.clone()), now()).0.len(), 1);
    assert_eq!(wanted(&g, &state(2, due.clone()), now()).0.len(), 2);
    let kwok = scheduled_group();
    assert!(wanted(&kwok, &state(1, due), now()).0.is_empty());
}

#[test]
fn the_objects_point_at_each_other_select_the_pool_and_are_owned_by_the_datajob() {
    let mut g = karpenter_group();
    g.taints = vec![datajob_api::nodegroup::NodeTaint {
        key: "batch".into(),
        value: Some("true".into()),
        effect: "NoSchedule".into(),
    }];
    let b = Buffer {
        datajob: "team/soon".into(),
        request: req(3, 4, 1),
        replicas: 1,
        why: "warm-up".into(),
    };
    let owner = serde_json::json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "name": "soon", "uid": "u", "controller": true});
    let t = pod_template(&b, &g, &owner);
    let c = capacity_buffer(&b, &g, &owner);
    assert_eq!(t["metadata"]["namespace"], "team");
    assert_eq!(c["spec"]["podTemplateRef"]["name"], t["metadata"]["name"]);
    assert_eq!(c["spec"]["provisioningStrategy"], ACTIVE_CAPACITY);
    assert_eq!(c["metadata"]["ownerReferences"][0]["uid"], "u");
    assert_eq!(c["metadata"]["labels"][GROUP_LABEL], "general");
    let spec = &t["template"]["spec"];
    assert_eq!(spec["nodeSelector"][crate::group::NODEPOOL_LABEL], "batch");
    assert_eq!(spec["tolerations"][0]["key"], "batch");
    let requests = &spec["containers"][0]["resources"]["requests"];
    assert_eq!(requests["cpu"], "3");
    assert_eq!(requests["memory"], (4u64 << 30).to_string());
    assert_eq!(requests["nvidia.com/gpu"], "1");
}

/// A group with one node, full with DataJob runs expected to end at `frees_at` (`None`:
/// runs of unknown length), and `due` runs.
fn one_full_node(due: Vec<DueRun>, frees_at: Option<DateTime<Utc>>) -> GroupState {
    let mut s = state(1, due);
    s.nodes[0].free = req(0, 0, 0);
    s.nodes[0].datajob_pods = 1;
    s.nodes[0].frees_at = frees_at;
    s
}

#[test]
fn a_run_that_a_busy_node_frees_up_for_in_time_waits_for_it_instead_of_a_new_node() {
    let g = karpenter_group();
    let at = now() + secs(90);
    let runs = vec![due("team/soon", req(4, 12, 0), at)];
    // One node, full, its runs expected to end 30 s before the run is due.
    let mut s = one_full_node(runs.clone(), Some(at - secs(30)));
    let (buffers, next) = wanted(&g, &s, now());
    assert!(buffers.is_empty(), "{buffers:?}");
    assert_eq!(next, Some(at - secs(30)), "looked at again when it frees");
    // Once it has freed, the buffer comes and holds that node.
    let mut freed = state(1, runs.clone());
    freed.nodes[0].frees_at = None;
    let (buffers, _) = wanted(&g, &freed, at - secs(29));
    assert_eq!(buffers.len(), 1, "{buffers:?}");
    // A node expected to end after the run is due does not free up in time: the buffer
    // comes now.
    s.nodes[0].frees_at = Some(at + secs(30));
    assert_eq!(wanted(&g, &s, now()).0.len(), 1);
    // Expected to have ended already but still busy: the estimate was wrong, no wait.
    s.nodes[0].frees_at = Some(now() - secs(1));
    assert_eq!(wanted(&g, &s, now()).0.len(), 1);
}

#[test]
fn room_a_node_has_now_takes_a_buffer_and_a_freeing_node_takes_one_run_of_its_shape() {
    let g = karpenter_group();
    let at = now() + secs(90);
    let runs = vec![
        due("team/small", req(1, 2, 0), at),
        due("team/big", req(4, 12, 0), at),
        due("team/other", req(4, 12, 0), at + secs(5)),
    ];
    let mut s = state(2, runs);
    // n0: 1 CPU free now, busy past the due time; n1: full, frees before.
    s.nodes[0].free = req(1, 4, 0);
    s.nodes[0].datajob_pods = 1;
    s.nodes[0].frees_at = Some(at + secs(600));
    s.nodes[1].free = req(0, 0, 0);
    s.nodes[1].datajob_pods = 1;
    s.nodes[1].frees_at = Some(at - secs(10));
    let (buffers, _) = wanted(&g, &s, now());
    let names: Vec<&str> = buffers.iter().map(|b| b.datajob.as_str()).collect();
    // small: in n0's room now; big: waits for n1; other: n1 is taken, a new node.
    assert_eq!(names, ["team/small", "team/other"]);
}

#[test]
fn a_run_a_node_busy_with_runs_of_unknown_length_may_free_up_for_gets_no_buffer() {
    let g = karpenter_group();
    let at = now() + secs(90);
    let runs = vec![due("team/soon", req(4, 12, 0), at)];
    // One full node, busy with DataJob runs that have no history: they may end any time.
    let s = one_full_node(runs, None);
    let (buffers, next) = wanted(&g, &s, now());
    assert!(buffers.is_empty(), "{buffers:?}");
    assert_eq!(
        next, None,
        "nothing to look at again for: the node's pods wake the group"
    );
    // Still busy once due: still no buffer (the run's pod asks the autoscaler itself).
    assert!(wanted(&g, &s, at + secs(1)).0.is_empty());
    // Someone else's pod on it: its end is nobody's guess, the buffer comes now.
    let mut foreign = s.clone();
    foreign.nodes[0].foreign_pods = 1;
    assert_eq!(wanted(&g, &foreign, now()).0.len(), 1);
    // A pod of the group waits for a node: the run would compete with it, so its buffer
    // comes now.
    let mut waiting = s.clone();
    waiting.pending = vec![req(1, 1, 0)];
    assert_eq!(wanted(&g, &waiting, now()).0.len(), 1);
    // Two such runs and one node: the second needs a node of its own, and gets a buffer.
    let two = vec![
        due("team/soon", req(4, 12, 0), at),
        due("team/also", req(4, 12, 0), at),
    ];
    let mut s2 = state(1, two);
    s2.nodes[0] = s.nodes[0].clone();
    let names: Vec<String> = wanted(&g, &s2, now())
        .0
        .into_iter()
        .map(|b| b.datajob)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

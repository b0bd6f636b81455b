//! Tests of [`super`].
use super::super::{GroupState, NodeView, Room, decide, place};
use super::*;
use std::time::Duration;

fn req(cpu: u64, mem_gi: u64) -> Request {
    Request {
        cpu_millis: cpu * 1000,
        memory: mem_gi << 30,
        ephemeral: 0,
        gpu: 0,
    }
}
fn group(name: &str, cpu: u64, mem_gi: u64, price: f64) -> Group {
    Group {
        name: name.into(),
        shape: req(cpu, mem_gi),
        max_size: 10,
        price_per_hour: price,
        scale_down_after: Duration::from_secs(120),
        boot_time: Duration::from_secs(90),
        ..Group::default()
    }
}
fn room(ready: bool, cpu: u64, mem_gi: u64) -> Room {
    Room {
        node: ready.then(|| "n-0".to_string()),
        ready,
        free: req(cpu, mem_gi),
    }
}

#[test]
fn room_on_a_node_that_is_up_beats_a_cheaper_group() {
    let mut g = vec![group("general", 8, 32, 0.34), group("highmem", 8, 64, 0.50)];
    let run = req(4, 8);
    assert_eq!(
        place_packed(&run, &g).unwrap().name,
        "general",
        "no room: cheapest"
    );
    g[1].room = vec![room(false, 4, 24)];
    assert_eq!(
        place_packed(&run, &g).unwrap().name,
        "highmem",
        "a booting node's room"
    );
    g[0].room = vec![room(true, 4, 8)];
    assert_eq!(
        place_packed(&run, &g).unwrap().name,
        "general",
        "a Ready node's room before a booting one's"
    );
    g[0].room = vec![room(true, 2, 8)];
    assert_eq!(
        place_packed(&run, &g).unwrap().name,
        "highmem",
        "too little room is no room"
    );
    // Room on a GPU node does not draw CPU work there.
    let mut gpu = group("gpu", 8, 64, 0.10);
    gpu.shape.gpu = 1;
    gpu.room = vec![room(true, 8, 64)];
    g.push(gpu);
    assert_eq!(place_packed(&run, &g).unwrap().name, "highmem");
}

/// What the NodeGroup controller would write as the group's room after `runs` were
/// placed on it and are pending (nodes booting for them).
fn room_after(g: &Group, runs: &[Request]) -> (i32, Vec<Room>) {
    let state = GroupState {
        pending: runs.to_vec(),
        active: runs.len(),
        ..GroupState::default()
    };
    let d = decide(g, &state, chrono::Utc::now());
    (d.desired, d.room)
}

/// The trace of the issue: a 40Gi run that only the high-memory group fits, then a
/// small run a few seconds later. Cheapest-per-node placement boots a general node
/// for the small run: two nodes, each with half its CPUs idle, 0.84 an hour. With
/// the room in the status, the small run joins the high-memory node being booted:
/// one full node, 0.50 an hour.
#[test]
fn a_trace_where_cheapest_per_node_leaves_two_half_empty_nodes() {
    let general = group("general", 8, 32, 0.34);
    let highmem = group("highmem", 8, 64, 0.50);
    let big = req(4, 40);
    let small = req(4, 8);

    let trace = |packed: bool| -> Vec<(String, i32, f64)> {
        let mut groups = vec![general.clone(), highmem.clone()];
        let mut placed: Vec<(usize, Request)> = Vec::new();
        for run in [big, small] {
            let choice = if packed {
                place_packed(&run, &groups)
            } else {
                place(&run, &groups)
            };
            let i = groups
                .iter()
                .position(|g| Some(&g.name) == choice.map(|c| &c.name))
                .unwrap();
            placed.push((i, run));
            // The controller sees the pending pods and writes each group's room.
            for (j, g) in groups.iter_mut().enumerate() {
                let mine: Vec<Request> = placed
                    .iter()
                    .filter(|(k, _)| *k == j)
                    .map(|(_, r)| *r)
                    .collect();
                g.room = room_after(g, &mine).1;
            }
        }
        groups
            .iter()
            .enumerate()
            .map(|(j, g)| {
                let mine: Vec<Request> = placed
                    .iter()
                    .filter(|(k, _)| *k == j)
                    .map(|(_, r)| *r)
                    .collect();
                let nodes = room_after(g, &mine).0;
                let used: u64 = mine.iter().map(|r| r.cpu_millis).sum();
                let cpu_share = if nodes == 0 {
                    0.0
                } else {
                    used as f64 / (nodes as f64 * g.shape.cpu_millis as f64)
                };
                (g.name.clone(), nodes, cpu_share)
            })
            .collect()
    };
    assert_eq!(
        trace(false),
        vec![("general".into(), 1, 0.5), ("highmem".into(), 1, 0.5)],
        "today: two half-empty nodes"
    );
    assert_eq!(
        trace(true),
        vec![("general".into(), 0, 0.0), ("highmem".into(), 1, 1.0)],
        "packed: one full node"
    );
}

#[test]
fn a_node_view_with_room_is_published_as_ready_room() {
    let g = group("general", 8, 32, 0.34);
    let state = GroupState {
        desired: 1,
        nodes: vec![NodeView {
            name: "general-0".into(),
            ready: true,
            free: req(5, 24),
            datajob_pods: 1,
            foreign_pods: 0,
            frees_at: None,
        }],
        active: 1,
        ..GroupState::default()
    };
    let d = decide(&g, &state, chrono::Utc::now());
    assert_eq!(
        d.room,
        vec![Room {
            node: Some("general-0".into()),
            ready: true,
            free: req(5, 24)
        }]
    );
}

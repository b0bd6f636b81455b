//! How many nodes a group needs and which may go: scale up for pending work (capped at
//! `maxSize`, raised to `minSize`), scale down when idle (`Idle`) or when no run due soon
//! makes keeping a node cheaper (`Schedule`, [`super::keep`]), the scale-down taint and
//! the names of new nodes.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::bins::*;
use super::due::{DueRun, WARM_GRACE, split_due};
use super::keep;
use super::state::{GroupState, NodeView};
use crate::group::{Group, ProviderKind, Room, ScaleDownPolicy};
use crate::units;

/// When a run that started at `started` is expected to end: after the longest of its
/// DataJob's recent successful runs (`None` without any).
pub fn expected_end(
    started: DateTime<Utc>,
    recent: impl IntoIterator<Item = Duration>,
) -> Option<DateTime<Utc>> {
    let longest = recent.into_iter().max()?;
    Some(started + chrono::Duration::from_std(longest).ok()?)
}

/// The taint the scaler puts on a node it is about to remove, so that no pod is bound
/// to it meanwhile.
pub const SCALE_DOWN_TAINT: &str = "datajob.dev/scale-down";

/// `taints` with the scale-down taint added (`on`) or removed; `None` when they already
/// are so.
pub fn with_scale_down_taint(
    taints: &[k8s_openapi::api::core::v1::Taint],
    on: bool,
) -> Option<Vec<k8s_openapi::api::core::v1::Taint>> {
    let has = taints.iter().any(|t| t.key == SCALE_DOWN_TAINT);
    match (on, has) {
        (true, false) => {
            let mut t = taints.to_vec();
            t.push(k8s_openapi::api::core::v1::Taint {
                key: SCALE_DOWN_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
            Some(t)
        }
        (false, true) => Some(
            taints
                .iter()
                .filter(|t| t.key != SCALE_DOWN_TAINT)
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

/// Names for `n` new nodes of `group`: `<group>-<i>` with the lowest `i` that no node
/// in `existing` has. Deterministic, so a scaler acting on a cache that has not seen its
/// last nodes yet collides on a name instead of making a node twice.
pub fn new_node_names(group: &str, existing: &[&str], n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{group}-{i}"))
        .filter(|name| !existing.contains(&name.as_str()))
        .take(n)
        .collect()
}

/// The scaler's decision.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScaleDecision {
    pub desired: i32,
    /// Why the size changes; `None` when it does not.
    pub reason: Option<String>,
    pub idle_since: Option<DateTime<Utc>>,
    /// Nodes that may go when the group shrinks, in the order they go (not Ready first).
    pub removable: Vec<String>,
    /// Free room on the nodes that stay, once pending and warm-up work is packed in.
    pub room: Vec<Room>,
    /// The scheduled runs empty nodes are kept for, in words (`Schedule` policy).
    pub kept_for: Vec<String>,
    /// When to decide again though nothing else changes: a warm-up begins, a run a
    /// node is kept for is overdue, the idle wait ends.
    pub recheck_at: Option<DateTime<Utc>>,
}

/// Scale up for pending work and for scheduled runs due within `warmUpBefore`, never
/// below `minSize`, and down by the group's policy: `Schedule`, every empty node goes at
/// once unless a run due soon will use it and [`keep::keep_or_boot`] says keeping it
/// costs no more than booting another (at most `scaleDownAfter`); `Idle`, the group
/// shrinks to `minSize` after `scaleDownAfter` without DataJob pods. Every change of
/// size carries a reason (the kwok provider's boot clock starts with it).
pub fn decide(group: &Group, state: &GroupState, now: DateTime<Utc>) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let desired = state.desired.max(group.min_size);
    let raised_to_min = (desired > state.desired).then(|| format!("minSize is {}", group.min_size));
    let booting = (desired - current).max(0) as usize;
    let (warm, later, next_warm_up) = split_due(group, &state.due, now);
    let mut bins = bins_of(state, &group.shape, booting);
    let before = bins.len();
    let window = chrono::Duration::from_std(group.boot_time)
        .ok()
        .map(|boot| BootWindow {
            now,
            up: now + boot,
        });
    let pending_wait = pack(&mut bins, &group.shape, &state.pending, window);
    let served_by = waiting_served_by(group, state, booting, bins.len() > before, now);
    let first_wait = pack_due(&mut bins, &group.shape, &warm, served_by, now);
    let next_warm_up = [next_warm_up, first_wait, pending_wait]
        .into_iter()
        .flatten()
        .min();
    let needed = bins.len() - before;
    let idle_since =
        (state.active == 0 && warm.is_empty()).then(|| state.idle_since.unwrap_or(now));
    if needed > 0 {
        let want = current.max(desired) + needed as i32;
        let capped = want.min(group.max_size);
        let reason = if capped > desired {
            let what = match (state.pending.len(), warm.len()) {
                (p, 0) => format!("{p} pending run pod(s)"),
                (0, w) => format!("warm-up: {w} scheduled run(s) due soon"),
                (p, w) => format!("{p} pending run pod(s) and {w} scheduled run(s) due soon"),
            };
            let mut reason = format!("{what} need {needed} more node(s)");
            if capped < want {
                reason.push_str(&format!("; capped at maxSize {}", group.max_size));
            }
            Some(reason)
        } else {
            raised_to_min
        };
        let desired = capped.max(desired);
        return ScaleDecision {
            desired,
            reason,
            idle_since: None,
            removable: removal_order(&state.nodes),
            room: room_left(bins.iter().take(desired.max(current) as usize)),
            kept_for: Vec::new(),
            recheck_at: next_warm_up,
        };
    }
    match group.scale_down_policy {
        ScaleDownPolicy::Idle => {
            decide_idle(group, state, desired, raised_to_min, idle_since, &bins, now)
                .with_recheck(next_warm_up)
        }
        ScaleDownPolicy::Schedule => {
            let mut d = decide_schedule(group, state, desired, bins, &later, now);
            d.reason = d.reason.or(raised_to_min);
            d.idle_since = idle_since;
            d.with_recheck(next_warm_up)
        }
    }
}

impl ScaleDecision {
    fn with_recheck(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.recheck_at = match (self.recheck_at, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

/// Empty nodes, not Ready first: the order nodes go in.
fn removal_order(nodes: &[NodeView]) -> Vec<String> {
    let mut r: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.datajob_pods == 0 && n.foreign_pods == 0)
        .collect();
    r.sort_by_key(|n| (n.ready, n.name.clone()));
    r.into_iter().map(|n| n.name.clone()).collect()
}

/// The `Idle` policy: down to `minSize` (and the nodes with others' pods) once the group
/// has had no DataJob pod and no warm-up for `scaleDownAfter`.
fn decide_idle(
    group: &Group,
    state: &GroupState,
    desired: i32,
    raised_to_min: Option<String>,
    idle_since: Option<DateTime<Utc>>,
    bins: &[Bin],
    now: DateTime<Utc>,
) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let removable = removal_order(&state.nodes);
    let stay = |d: ScaleDecision| ScaleDecision {
        room: room_left(bins.iter().take(desired.max(current) as usize)),
        ..d
    };
    let Some(since) = idle_since else {
        return stay(ScaleDecision {
            desired,
            reason: raised_to_min,
            removable,
            ..ScaleDecision::default()
        });
    };
    let idle_for = (now - since).to_std().unwrap_or_default();
    let keep = state.nodes.iter().filter(|n| n.foreign_pods > 0).count() as i32;
    let floor = group.min_size.max(keep);
    if idle_for >= group.scale_down_after && desired > floor {
        let gone: Vec<&String> = removable
            .iter()
            .take((current - floor).max(0) as usize)
            .collect();
        let staying = bins.iter().filter(|b| match &b.node {
            Some(n) => !gone.contains(&n),
            None => true,
        });
        return ScaleDecision {
            desired: floor,
            reason: Some(format!(
                "no DataJob work for {}",
                units::format_duration(group.scale_down_after)
            )),
            idle_since: Some(since),
            room: room_left(staying.take(floor.max(0) as usize)),
            removable,
            ..ScaleDecision::default()
        };
    }
    let wait_ends = chrono::Duration::from_std(group.scale_down_after)
        .ok()
        .map(|d| since + d)
        .filter(|_| desired > floor);
    stay(ScaleDecision {
        desired,
        reason: raised_to_min,
        idle_since: Some(since),
        removable,
        recheck_at: wait_ends,
        ..ScaleDecision::default()
    })
}

/// The `Schedule` policy's keep rule for the runs due later: each due run that keeping
/// a node pays for ([`keep::keep_or_boot`]) is counted on a node that stays anyway, or
/// else on an empty one, which then stays. Returns why each empty node stays and when
/// the first of those reasons lapses.
fn keep_for_due_runs(
    group: &Group,
    bins: &mut [Bin],
    later: &[&DueRun],
    now: DateTime<Utc>,
) -> (Vec<String>, Option<DateTime<Utc>>) {
    let mut kept_for = Vec::new();
    let mut recheck_at: Option<DateTime<Utc>> = None;
    let grace = chrono::Duration::from_std(WARM_GRACE).unwrap_or_default();
    for d in later {
        let until = (d.due - now).to_std().unwrap_or_default();
        if until >= group.scale_down_after {
            continue;
        }
        let c = keep::keep_or_boot(
            group.price_per_hour,
            until,
            group.boot_time,
            group.warm_up_before,
        );
        if !c.keep() {
            continue;
        }
        // Room on a node that stays anyway first (by the time the run is due); an empty
        // node only if none has it.
        let fits = |b: &Bin| d.request.fits(&b.room_at(&group.shape, d.due));
        let slot = bins
            .iter()
            .position(|b| b.kept() && fits(b))
            .or_else(|| bins.iter().position(fits));
        let Some(i) = slot else {
            continue;
        };
        if !bins[i].kept() {
            kept_for.push(format!(
                "{} due in {}: keeping {} costs {:.4}, booting another {:.4}{}",
                d.datajob,
                units::format_duration(until),
                bins[i].node.as_deref().unwrap_or("a node on its way"),
                c.keep_cost,
                c.boot_cost,
                if c.lateness.is_zero() {
                    String::new()
                } else {
                    format!(" and {} late", units::format_duration(c.lateness))
                },
            ));
            let lapses = d.due + grace;
            recheck_at = Some(recheck_at.map_or(lapses, |t| t.min(lapses)));
        }
        bins[i].later = bins[i].later.plus(&d.request);
        bins[i].used = true;
    }
    (kept_for, recheck_at)
}

/// The `Schedule` policy: the nodes with pods stay, and so do the empty ones pending and
/// warm-up work was packed into (`bins`); an empty node stays for a later scheduled run
/// only when it is due within `scaleDownAfter` and [`keep::keep_or_boot`] says keeping
/// the node until then costs no more than booting another. Every other empty node goes
/// now. A Cluster API group shrinks only while none of its nodes has pods: Cluster API
/// picks the machines that go, and the marks on the Machines of empty nodes
/// ([`super::machines`]) are a second guard, not the only one.
fn decide_schedule(
    group: &Group,
    state: &GroupState,
    desired: i32,
    mut bins: Vec<Bin>,
    later: &[&DueRun],
    now: DateTime<Utc>,
) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let (kept_for, recheck_at) = keep_for_due_runs(group, &mut bins, later, now);
    // minSize: empty nodes stay too, Ready ones first (the bins' order).
    let mut short = group.min_size - bins.iter().filter(|b| b.kept()).count() as i32;
    for b in bins.iter_mut().filter(|b| !b.kept()) {
        if short <= 0 {
            break;
        }
        b.used = true;
        short -= 1;
    }
    let busy = bins.iter().any(|b| b.busy);
    let mut wanted = (bins.iter().filter(|b| b.kept()).count() as i32).min(desired);
    if busy && matches!(group.provider, ProviderKind::ClusterApi { .. }) {
        wanted = wanted.max(current.min(desired));
    }
    let kept: Vec<&String> = bins
        .iter()
        .filter(|b| b.kept())
        .filter_map(|b| b.node.as_ref())
        .collect();
    let removable: Vec<String> = removal_order(&state.nodes)
        .into_iter()
        .filter(|n| !kept.contains(&n))
        .collect();
    let reason = (wanted < desired).then(|| {
        format!(
            "{} node(s) not needed: no pending run, and no scheduled run due soon that keeping them would pay for",
            desired - wanted
        )
    });
    ScaleDecision {
        desired: wanted,
        reason,
        idle_since: None,
        removable,
        room: room_left(bins.iter().filter(|b| b.kept())),
        kept_for,
        recheck_at,
    }
}

/// The kwok provider's boot clocks: `queue` holds when each node on its way started to
/// boot, oldest first. It is made to hold `wanted` clocks (new ones start at `start`;
/// nodes no longer wanted are the newest, and their clocks go). Returns how many nodes
/// have booted (`delay` passed; the caller makes them and drops their clocks) and when
/// the next one will.
pub fn boots(
    queue: &mut Vec<DateTime<Utc>>,
    wanted: usize,
    start: DateTime<Utc>,
    delay: Duration,
    now: DateTime<Utc>,
) -> (usize, Option<DateTime<Utc>>) {
    queue.truncate(wanted);
    while queue.len() < wanted {
        queue.push(start);
    }
    let delay = chrono::Duration::from_std(delay).unwrap_or_default();
    let booted = queue.iter().take_while(|t| **t + delay <= now).count();
    (booted, queue.get(booted).map(|t| *t + delay))
}

#[cfg(test)]
#[path = "scale_tests.rs"]
mod tests;

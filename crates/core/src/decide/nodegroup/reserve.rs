//! Reservations: a node the scaler makes for runs that wait is theirs first.
//!
//! Which pending pod a node that comes up takes is the scheduler's choice, and it is not
//! first come, first served: a run that has waited for a boot can lose the node to one
//! that arrived minutes later and then wait for the next boot. So a node made while runs
//! wait comes up with the taint `datajob.dev/reserved-for=<node>:NoSchedule`, and the
//! pods it is for get the matching toleration just before it is made: those that have
//! waited longest, as many as fit ([`reserve`]). Everyone else keeps off the node until
//! each of those pods is bound (there or anywhere) or gone, or [`RESERVATION_HOLD`] has
//! passed; then the taint is lifted ([`lapsed`]). A pod that holds a reservation may still
//! take any other node with room: the toleration only opens the reserved one.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::resources::Request;

/// The taint that keeps a node for the pods it was made for; its value is the node's name.
pub const RESERVED_TAINT: &str = "datajob.dev/reserved-for";

/// The longest a node is kept for its pods: a pod that has not been bound by then (say,
/// one that does not fit there after all) loses its claim, and the node takes anyone.
pub const RESERVATION_HOLD: Duration = Duration::from_secs(30);

/// The taint that reserves `node`.
pub fn taint(node: &str) -> Taint {
    Taint {
        key: RESERVED_TAINT.into(),
        value: Some(node.into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }
}

/// The toleration that lets a pod onto the reserved `node`.
pub fn toleration(node: &str) -> Toleration {
    Toleration {
        key: Some(RESERVED_TAINT.into()),
        operator: Some("Equal".into()),
        value: Some(node.into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }
}

/// The nodes `pod` holds a reservation for (tolerations are only ever added to a pod, so
/// it keeps those of reservations that have ended).
pub fn held_by(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .filter(|t| t.key.as_deref() == Some(RESERVED_TAINT))
        .filter_map(|t| t.value.as_deref())
}

/// Whether `taints` reserve their node.
pub fn is_reserved(taints: &[Taint]) -> bool {
    taints.iter().any(|t| t.key == RESERVED_TAINT)
}

/// `taints` without the reservation; `None` when they have none.
pub fn without_reservation(taints: &[Taint]) -> Option<Vec<Taint>> {
    is_reserved(taints).then(|| {
        taints
            .iter()
            .filter(|t| t.key != RESERVED_TAINT)
            .cloned()
            .collect()
    })
}

/// A pod of the group that waits for a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub request: Request,
    /// When it began to wait (its creation).
    pub since: DateTime<Utc>,
    /// It holds the reservation of a node that is still reserved: that node is its.
    pub holds: bool,
}

/// Which waiting pods `new_nodes` nodes of `shape`, made now, are for: for each node,
/// indexes into `waiting`. Pods that hold a reservation already are left out; the others
/// are taken longest waiting first, each as long as everything taken still packs into
/// the new nodes (first fit decreasing), so that nodes made together are packed as the
/// scaler planned and a pod too large for the room left does not stop smaller ones.
pub fn reserve(shape: &Request, waiting: &[Waiting], new_nodes: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..waiting.len())
        .filter(|&i| !waiting[i].holds && waiting[i].request.fits(shape))
        .collect();
    order.sort_by_key(|&i| waiting[i].since);
    let mut taken: Vec<usize> = Vec::new();
    let mut packed = vec![Vec::new(); new_nodes];
    for i in order {
        taken.push(i);
        match pack_into(shape, waiting, &taken, new_nodes) {
            Some(p) => packed = p,
            None => {
                taken.pop();
            }
        }
    }
    packed
}

/// `taken` packed first fit decreasing into `nodes` nodes of `shape`; `None` when they
/// do not fit.
fn pack_into(
    shape: &Request,
    waiting: &[Waiting],
    taken: &[usize],
    nodes: usize,
) -> Option<Vec<Vec<usize>>> {
    let mut sorted = taken.to_vec();
    sorted.sort_by(|&a, &b| {
        let share = |i: usize| waiting[i].request.share_of(shape);
        share(b)
            .total_cmp(&share(a))
            .then(waiting[a].since.cmp(&waiting[b].since))
    });
    let mut free = vec![*shape; nodes];
    let mut packed = vec![Vec::new(); nodes];
    for i in sorted {
        let n = free.iter().position(|f| waiting[i].request.fits(f))?;
        free[n] = free[n].minus(&waiting[i].request);
        packed[n].push(i);
    }
    Some(packed)
}

/// Whether a reservation made at `made` ends now: no pod that waits holds it any more
/// (`held` false: they are bound or gone), or it has lasted [`RESERVATION_HOLD`]. A
/// reservation made at a time not known ends.
pub fn lapsed(held: bool, made: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let hold = chrono::Duration::from_std(RESERVATION_HOLD).unwrap_or_default();
    !held || made.is_none_or(|t| now - t >= hold)
}

#[cfg(test)]
#[path = "reserve_tests.rs"]
mod tests;

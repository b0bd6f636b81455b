//! Warm-up and keep on a group whose nodes Karpenter makes: CapacityBuffers
//! (`autoscaling.x-k8s.io/v1beta1`), the upstream API for capacity made ahead of demand,
//! which Karpenter (feature gate `CapacityBuffer`), Cluster Autoscaler, GKE and AKS
//! read. A buffer asks the autoscaler for room for `replicas` pods shaped like a
//! PodTemplate; an empty node that holds a buffer is not consolidated away.
//!
//! The rules are the kwok and Cluster API groups' ([`super::scale::decide`]):
//!
//! * **warm-up**: a scheduled run due within the group's `warmUpBefore` gets a buffer
//!   shaped like its pod, so that its node is made before it is due;
//! * **keep** (`Schedule` policy): while the group has nodes, a run due later, within
//!   `scaleDownAfter`, for which [`super::keep::keep_or_boot`] says keeping a node costs
//!   no more than booting another, gets a buffer too: it holds a node Karpenter would
//!   otherwise consolidate. At most one such buffer per node the group has.
//!
//! A run that a busy node will have room for by the time it is due (its runs expected
//! to end before) gets no warm-up buffer while that node is busy: the buffer comes when
//! the node frees, and holds it. Nor does a run that a node busy with DataJob runs of
//! unknown length (no history yet) would have room for once they end, while no pod of
//! the group waits: the kwok and Cluster API groups boot no node ahead for it either.
//!
//! A buffer goes once its run has a pod (the run is no longer due: its pod takes the
//! room) and at the latest [`super::WARM_GRACE`] after the run was due. One buffer per
//! DataJob, owned by it.
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::bins::bins_of;
use super::due::{DueRun, split_due};
use super::keep;
use super::state::GroupState;
use crate::group::{GROUP_LABEL, Group, ProviderKind, ScaleDownPolicy};
use crate::labels::{MANAGED_BY, MANAGED_BY_VALUE, NAME};
use crate::resources::Request;
use crate::units;

/// The API group and version of CapacityBuffers.
pub const API_VERSION: &str = "autoscaling.x-k8s.io/v1beta1";
/// The annotation on a buffer and its PodTemplate that says why the operator keeps it.
pub const WHY: &str = "datajob.dev/why";
/// Karpenter's (and Cluster Autoscaler's) strategy: make the capacity now.
pub const ACTIVE_CAPACITY: &str = "buffer.x-k8s.io/active-capacity";

/// One buffer the group wants: room for the next run of `datajob`.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// `namespace/name` of the DataJob the run is of.
    pub datajob: String,
    pub request: Request,
    pub replicas: i32,
    /// Why, in words (`kubectl datajob describe` shows it).
    pub why: String,
}

impl Buffer {
    /// The DataJob's namespace and name.
    pub fn owner(&self) -> (&str, &str) {
        self.datajob.split_once('/').unwrap_or(("", &self.datajob))
    }

    /// The name of the buffer and of its PodTemplate: `<datajob>-warm`.
    pub fn name(&self) -> String {
        format!("{}-warm", self.owner().1)
    }
}

/// The buffers `group` wants now, and when to look again (a warm-up begins).
pub fn wanted(
    group: &Group,
    state: &GroupState,
    now: DateTime<Utc>,
) -> (Vec<Buffer>, Option<DateTime<Utc>>) {
    if !matches!(group.provider, ProviderKind::Karpenter { .. }) {
        return (Vec::new(), None);
    }
    let (warm, later, mut next) = split_due(group, &state.due, now);
    let (warm, frees) = not_freed_by_due(group, state, &warm, now);
    if let Some(t) = frees {
        next = Some(next.map_or(t, |n| n.min(t)));
    }
    let mut out: Vec<Buffer> = warm
        .iter()
        .map(|d| Buffer {
            datajob: d.datajob.clone(),
            request: d.request,
            replicas: 1,
            why: format!(
                "warm-up: due at {}, within warmUpBefore",
                crate::labels::rfc3339(d.due)
            ),
        })
        .collect();
    if group.scale_down_policy == ScaleDownPolicy::Schedule {
        out.extend(keep_for(group, state.nodes.len(), &later, now));
    }
    (out, next)
}

/// The runs due within the warm-up that need a buffer now, and when to look again for
/// those that do not. A run that fits in the room a node has now gets its buffer (the
/// autoscaler places it there, and the node is held for it). A run that does not, but
/// fits once a busy node's runs are expected to have ended (before it is due), waits
/// for that node: a buffer now would make the autoscaler boot another while the busy
/// one frees up in time. Its buffer comes when that node frees (the returned time, or
/// sooner, when the node's pods end), which then holds the node for it. A run that a
/// node busy with runs of unknown length could take once they end gets no buffer while
/// that node is busy ([`super::bins::pack_due`]'s rule). First fit, the largest runs
/// first, as [`super::scale`] packs them.
fn not_freed_by_due<'a>(
    group: &Group,
    state: &GroupState,
    warm: &[&'a DueRun],
    now: DateTime<Utc>,
) -> (Vec<&'a DueRun>, Option<DateTime<Utc>>) {
    let shape = &group.shape;
    let mut bins = bins_of(state, shape, 0);
    let mut sorted: Vec<&'a DueRun> = warm.to_vec();
    sorted.sort_by(|a, b| {
        b.request
            .share_of(shape)
            .total_cmp(&a.request.share_of(shape))
    });
    let (mut out, mut frees) = (Vec::new(), None::<DateTime<Utc>>);
    for d in sorted {
        if let Some(b) = bins.iter_mut().find(|b| d.request.fits(&b.room_now())) {
            b.free = b.free.minus(&d.request);
            out.push(d);
        } else if let Some(b) = bins.iter_mut().find(|b| {
            b.frees_at.is_some_and(|t| now <= t && t <= d.due)
                && d.request.fits(&b.room_at(shape, d.due))
        }) {
            b.later = b.later.plus(&d.request);
            frees = b.frees_at.map(|t| frees.map_or(t, |f| f.min(t)));
        } else if let Some(b) = bins
            .iter_mut()
            .find(|b| state.pending.is_empty() && b.may_free_for(shape, &d.request))
        {
            // Busy with DataJob runs of unknown length (no history yet) that leave room
            // for it once they end: no buffer, as the `Schedule` policy boots no node
            // ahead for such a run. If the node is still busy when the run is due, its
            // pod waits and the autoscaler makes its node then (at most a boot late).
            b.later = b.later.plus(&d.request);
        } else {
            out.push(d);
        }
    }
    // In the order they are due, as the caller had them.
    out.sort_by_key(|d| warm.iter().position(|w| std::ptr::eq(*w, *d)));
    (out, frees)
}

/// The `Schedule` policy's keep rule for runs due later, one per node the group has.
fn keep_for(group: &Group, nodes: usize, later: &[&DueRun], now: DateTime<Utc>) -> Vec<Buffer> {
    later
        .iter()
        .filter_map(|d| {
            let until_due = (d.due - now).to_std().ok()?;
            if until_due > group.scale_down_after {
                return None;
            }
            let c = keep::keep_or_boot(
                group.price_per_hour,
                until_due,
                group.boot_time,
                group.warm_up_before,
            );
            c.keep().then(|| Buffer {
                datajob: d.datajob.clone(),
                request: d.request,
                replicas: 1,
                why: format!(
                    "keep: due in {}: keeping a node costs {:.4}, booting another {:.4}",
                    units::format_duration(until_due),
                    c.keep_cost,
                    c.boot_cost
                ),
            })
        })
        .take(nodes)
        .collect()
}

/// The labels of a buffer and its PodTemplate: managed by DataJob, of one DataJob and
/// one group (how the group finds its buffers again).
pub fn labels(buffer: &Buffer, group: &Group) -> Value {
    json!({
        MANAGED_BY: MANAGED_BY_VALUE,
        NAME: buffer.owner().1,
        GROUP_LABEL: group.name,
    })
}

/// The PodTemplate a buffer points at: the run's requests, node selector and
/// tolerations. Its pods are Karpenter's virtual pods: they never run.
pub fn pod_template(buffer: &Buffer, group: &Group, owner: &Value) -> Value {
    let (ns, _) = buffer.owner();
    let r = &buffer.request;
    let mut requests = json!({
        "cpu": units::format_cpu(r.cpu_millis),
        "memory": r.memory.to_string(),
    });
    if r.gpu > 0 {
        requests["nvidia.com/gpu"] = json!(r.gpu.to_string());
    }
    let tolerations: Vec<Value> = group
        .taints
        .iter()
        .map(|t| match &t.value {
            Some(v) => json!({"key": t.key, "operator": "Equal", "value": v, "effect": t.effect}),
            None => json!({"key": t.key, "operator": "Exists", "effect": t.effect}),
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "PodTemplate",
        "metadata": {"name": buffer.name(), "namespace": ns, "labels": labels(buffer, group),
            "annotations": {WHY: buffer.why}, "ownerReferences": [owner]},
        "template": {
            "metadata": {"labels": labels(buffer, group)},
            "spec": {
                "nodeSelector": group.labels,
                "tolerations": tolerations,
                "containers": [{"name": "run", "image": "pause",
                    "resources": {"requests": requests.clone(), "limits": requests}}],
            },
        },
    })
}

/// The CapacityBuffer itself.
pub fn capacity_buffer(buffer: &Buffer, group: &Group, owner: &Value) -> Value {
    let (ns, _) = buffer.owner();
    json!({
        "apiVersion": API_VERSION, "kind": "CapacityBuffer",
        "metadata": {"name": buffer.name(), "namespace": ns, "labels": labels(buffer, group),
            "annotations": {WHY: buffer.why}, "ownerReferences": [owner]},
        "spec": {
            "provisioningStrategy": ACTIVE_CAPACITY,
            "podTemplateRef": {"name": buffer.name()},
            "replicas": buffer.replicas,
        },
    })
}

#[cfg(test)]
#[path = "buffers_tests.rs"]
mod tests;

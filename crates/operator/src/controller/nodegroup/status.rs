//! What a NodeGroup's status says after a reconcile (pure: [`of`], [`invalid`]), writing
//! it, and counting its node-seconds and idle cost.
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use super::NodeGroupContext;
use super::observe::Observed;
use crate::metrics::GroupLabels;
use crate::{Error, Result};
use datajob_api::{NodeGroup, NodeGroupStatus};
use datajob_core::decide::nodegroup::{self, Group, ScaleDecision};
use datajob_core::labels::{self, FIELD_MANAGER};

/// The status of a valid group that `seen` shows and `decision` sizes, after `previous`.
pub(super) fn of(
    previous: &NodeGroupStatus,
    decision: &ScaleDecision,
    seen: &Observed,
    now: DateTime<Utc>,
) -> NodeGroupStatus {
    let nodes = &seen.state.nodes;
    let mut status = NodeGroupStatus {
        desired: decision.desired,
        current: nodes.len() as i32,
        ready: nodes.iter().filter(|v| v.ready).count() as i32,
        pending_pods: seen.state.pending.len() as i32,
        active_pods: seen.pods.len() as i32,
        idle_since: decision.idle_since.map(labels::rfc3339),
        last_scale_time: previous.last_scale_time.clone(),
        last_scale_reason: previous.last_scale_reason.clone(),
        room: nodegroup::room_status(&decision.room),
        kept_for: decision.kept_for.clone(),
        conditions: vec![condition(
            previous,
            true,
            "Reconciled",
            "the node group is valid and its provider answers",
            now,
        )],
    };
    if let Some(reason) = &decision.reason {
        status.last_scale_time = Some(labels::rfc3339(now));
        status.last_scale_reason = Some(format!(
            "{} -> {}: {reason}",
            previous.desired, decision.desired
        ));
    }
    status
}

/// The conditions of a group whose provider cannot make its nodes (say, a Karpenter
/// NodePool that does not exist): not Ready, `reason`, with the `problem`.
pub(super) fn unready(
    previous: &NodeGroupStatus,
    reason: &str,
    problem: &str,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    vec![condition(previous, false, reason, problem, now)]
}

/// The status of a group whose spec is not valid: not Ready, with the `problem`.
pub(super) fn invalid(
    previous: &NodeGroupStatus,
    problem: &str,
    now: DateTime<Utc>,
) -> NodeGroupStatus {
    let mut status = previous.clone();
    status.conditions = vec![condition(previous, false, "Invalid", problem, now)];
    status
}

pub(super) fn count_node_seconds(
    ctx: &NodeGroupContext,
    group: &Group,
    status: &NodeGroupStatus,
    now: DateTime<Utc>,
) {
    let labels = GroupLabels {
        nodegroup: group.name.clone(),
    };
    let m = &ctx.base.metrics;
    let Ok(mut counted) = ctx.counted_at.lock() else {
        warn!(nodegroup = %group.name, "node-seconds not counted: their clock's lock is poisoned");
        return;
    };
    let last = counted.insert(group.name.clone(), now).unwrap_or(now);
    let secs = (now - last).num_milliseconds().max(0) as f64 / 1000.0 * f64::from(status.current);
    m.node_seconds.get_or_create(&labels).inc_by(secs);
    // Every series exists from the group's first reconcile (at 0 while busy), so the
    // first idle seconds show as an increase.
    let idle = if status.active_pods == 0 { secs } else { 0.0 };
    m.idle_node_seconds.get_or_create(&labels).inc_by(idle);
    m.idle_cost
        .get_or_create(&labels)
        .inc_by(idle / 3600.0 * group.price_per_hour);
}

/// The `WarmUp` condition of a karpenter group: whether its warm-up and keep work
/// (CapacityBuffers), and which buffers it has.
pub(super) fn warm_up(
    prev: &NodeGroupStatus,
    synced: &super::karpenter::Buffers,
    wanted: &[datajob_core::decide::nodegroup::buffers::Buffer],
    now: DateTime<Utc>,
) -> Condition {
    let (ok, reason, message) = match synced {
        super::karpenter::Buffers::NoApi => (
            false,
            "NoCapacityBufferAPI",
            "no CapacityBuffer API (autoscaling.x-k8s.io) on this cluster: runs get nodes when their pods wait, with no warm-up ahead of a schedule and no node kept for a run due soon; install Karpenter's CapacityBuffer CRD and turn on its CapacityBuffer feature gate".to_string(),
        ),
        super::karpenter::Buffers::Synced(n) if wanted.is_empty() || *n == 0 => {
            (true, "CapacityBuffers", "no buffer needed now".to_string())
        }
        super::karpenter::Buffers::Synced(_) => (
            true,
            "CapacityBuffers",
            wanted
                .iter()
                .map(|b| format!("{} ({}): {}", b.name(), b.datajob, b.why))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    named_condition(prev, "WarmUp", ok, reason, &message, now)
}

fn condition(
    prev: &NodeGroupStatus,
    ok: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Condition {
    named_condition(prev, "Ready", ok, reason, message, now)
}

fn named_condition(
    prev: &NodeGroupStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Condition {
    datajob_core::decide::runs::condition(
        &prev.conditions,
        type_,
        ok,
        reason,
        message.to_string(),
        None,
        now,
    )
}

pub(super) async fn write(
    ctx: &NodeGroupContext,
    name: &str,
    previous: &NodeGroupStatus,
    status: NodeGroupStatus,
) -> Result<()> {
    if *previous == status {
        return Ok(());
    }
    let api: Api<NodeGroup> = Api::all(ctx.base.client.clone());
    let patch =
        json!({"apiVersion": NodeGroup::api_version(&()), "kind": "NodeGroup", "status": status});
    match api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            info!(nodegroup = %name, error = %e, "status not written: the NodeGroup is gone");
            Ok(())
        }
        Err(e) => Err(Error::api("update status of", "NodeGroup", "", name)(e)),
    }
}

//! Test fixtures of the node group decisions: requests, groups, nodes and due runs.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::resources::Request;
use datajob_api::NodeGroup;

pub(crate) fn req(cpu: u64, mem_gi: u64, gpu: u64) -> Request {
    Request {
        cpu_millis: cpu * 1000,
        memory: mem_gi << 30,
        ephemeral: 0,
        gpu,
    }
}

/// A group with the `Idle` policy (the behaviour before `Schedule`), which the
/// older tests describe.
pub(crate) fn group(name: &str, shape: Request, price: f64, max: i32) -> Group {
    Group {
        name: name.into(),
        shape,
        labels: BTreeMap::from([(GROUP_LABEL.to_string(), name.to_string())]),
        taints: vec![],
        min_size: 0,
        max_size: max,
        price_per_hour: price,
        scale_down_after: Duration::from_secs(120),
        provisioning_timeout: Duration::from_secs(600),
        warm_up_before: None,
        provider: ProviderKind::Kwok {
            boot_delay: Duration::from_secs(1),
        },
        scale_down_policy: ScaleDownPolicy::Idle,
        boot_time: Duration::from_secs(1),
        namespaces: vec![],
        room: vec![],
    }
}

pub(crate) fn groups() -> Vec<Group> {
    vec![
        group("small", req(4, 16, 0), 0.2, 10),
        group("large", req(32, 248, 0), 2.0, 10),
        group("gpu", req(8, 64, 1), 3.0, 4),
        group("cheap-gpu", req(8, 64, 2), 0.1, 4),
    ]
}

pub(crate) fn now() -> DateTime<Utc> {
    crate::labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
}

pub(crate) fn node_group(spec: serde_json::Value, status: serde_json::Value) -> NodeGroup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
        "metadata": {"name": "g"}, "spec": spec, "status": status,
    }))
    .unwrap()
}

pub(crate) fn due(who: &str, request: Request, at: DateTime<Utc>) -> DueRun {
    DueRun {
        datajob: who.into(),
        request,
        due: at,
    }
}

/// A group with the `Schedule` policy: nodes of 4 CPUs at 0.34 an hour that take
/// 90 s to boot, no warm-up, and at most 10 minutes of waiting.
pub(crate) fn scheduled_group() -> Group {
    Group {
        scale_down_policy: ScaleDownPolicy::Schedule,
        boot_time: Duration::from_secs(90),
        scale_down_after: Duration::from_secs(600),
        ..group("general", req(4, 16, 0), 0.34, 5)
    }
}

pub(crate) fn node(name: &str, ready: bool, free: Request, pods: usize) -> NodeView {
    NodeView {
        name: name.into(),
        ready,
        free,
        datajob_pods: pods,
        foreign_pods: 0,
        frees_at: None,
    }
}

pub(crate) fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

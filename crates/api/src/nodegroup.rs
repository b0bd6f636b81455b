//! `NodeGroup`: a pool of identical nodes that DataJob places runs on and scales from
//! zero on demand and back to zero when idle. Written by platform engineers.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bounds;
use super::quantity::Quantity;

/// A pool of identical nodes: their shape, labels, taints, size bounds and price.
// The derive takes one printcolumn(...) per column; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "datajob.dev",
    version = "v1alpha1",
    kind = "NodeGroup",
    plural = "nodegroups",
    shortname = "ng",
    category = "datajob-all",
    status = "NodeGroupStatus",
    doc = "A pool of identical nodes that DataJob places runs on, scales up from zero when work is pending and back down when idle.",
    printcolumn(name = "CPU", type_ = "string", json_path = ".spec.node.cpu"),
    printcolumn(name = "Memory", type_ = "string", json_path = ".spec.node.memory"),
    printcolumn(name = "GPU", type_ = "integer", json_path = ".spec.node.gpu"),
    printcolumn(name = "Price/h", type_ = "string", json_path = ".spec.pricePerHour"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desired"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxSize"),
    printcolumn(
        name = "Last Scale",
        type_ = "string",
        json_path = ".status.lastScaleReason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroupSpec {
    /// What one node offers to pods (its allocatable resources).
    pub node: NodeShape,
    /// Labels every node of the group carries; runs placed here select them. The operator
    /// always adds `datajob.dev/node-group: <name>`. At most 64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = bounds::MAX_NODE_LABELS))]
    pub labels: BTreeMap<String, String>,
    /// Taints every node of the group carries; runs placed here tolerate them. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_TAINTS))]
    pub taints: Vec<NodeTaint>,
    /// The fewest nodes the group keeps, even when idle. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_size: Option<i32>,
    /// The most nodes the group may have.
    #[schemars(range(min = 0))]
    pub max_size: i32,
    /// What one node costs per hour, in your currency, e.g. `"2.016"`. Used to pick the
    /// cheapest group that fits and to estimate cost. Default: `"0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_WORD_LEN))]
    pub price_per_hour: Option<String>,
    /// The longest an idle node waits, e.g. `2m`. With the `Schedule` policy: the longest
    /// an empty node is kept for a scheduled run due soon (`0s`: never kept, every empty
    /// node goes at once). With the `Idle` policy: how long the group must have no
    /// DataJob pods before it shrinks to `minSize`. Default: `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub scale_down_after: Option<String>,
    /// When nodes go. `Schedule` (default): an empty node goes at once, unless a
    /// scheduled run placed on this group is due soon, will fit on it, and keeping the
    /// node until then costs less than booting another for the run (price × idle time
    /// against price × boot time plus the lateness a boot would cause); then it stays
    /// for that run, at most `scaleDownAfter`. `Idle`: the whole group shrinks to
    /// `minSize` once it has had no DataJob pod for `scaleDownAfter` (the behaviour
    /// before `Schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_policy: Option<ScaleDownPolicy>,
    /// How long a new node takes from the decision to make it until it is Ready, e.g.
    /// `90s`: what the `Schedule` policy weighs keeping an idle node against. Default:
    /// the kwok provider's `bootDelay`; otherwise `warmUpBefore`; otherwise `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub boot_time: Option<String>,
    /// Only DataJobs in these namespaces are placed on this group (a team's own nodes).
    /// Default: DataJobs in every namespace. At most 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_NAMESPACES), inner(length(max = bounds::MAX_NAMESPACE_LEN)))]
    pub namespaces: Vec<String>,
    /// How long new nodes may take to become Ready; a run waiting on them is not ended as
    /// Unschedulable before this passes. Default: `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub provisioning_timeout: Option<String>,
    /// Start nodes this long before a scheduled DataJob placed on this group is due, so
    /// its run finds a node that has already booted, e.g. `3m` (about the nodes' boot
    /// time). The nodes stay until the run has started, then the scale-down policy
    /// applies. Default: none (nodes start when a run is pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub warm_up_before: Option<String>,
    /// Who makes the nodes.
    pub provider: Provider,
}

/// When nodes go. `Schedule` (default): an empty node goes at once, unless a scheduled
/// run placed on this group is due soon, will fit on it, and keeping the node until then
/// costs less than booting another for the run (price × idle time against price × boot
/// time plus the lateness a boot would cause); then it stays for that run, at most
/// `scaleDownAfter`. `Idle`: the whole group shrinks to `minSize` once it has had no
/// DataJob pod for `scaleDownAfter` (the behaviour before `Schedule`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ScaleDownPolicy {
    /// An empty node goes at once unless a scheduled run due soon makes keeping it
    /// cheaper than booting again; `scaleDownAfter` is the longest it waits.
    #[default]
    Schedule,
    /// The group shrinks to `minSize` after `scaleDownAfter` without DataJob pods.
    Idle,
}

/// What one node offers to pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeShape {
    /// Allocatable CPU cores, e.g. `32` or `31500m`.
    pub cpu: Quantity,
    /// Allocatable memory, e.g. `248Gi`.
    pub memory: Quantity,
    /// GPUs (`nvidia.com/gpu`). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub gpu: Option<i32>,
    /// Allocatable ephemeral storage, e.g. `200Gi`. Default: `100Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Quantity>,
}

/// A node taint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct NodeTaint {
    #[schemars(length(max = bounds::MAX_KEY_LEN))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_LABEL_VALUE_LEN))]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[schemars(length(max = bounds::MAX_WORD_LEN))]
    pub effect: String,
}

/// Who makes the nodes. Exactly one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// A Cluster API MachineDeployment or MachinePool, scaled through its `scale` subresource.
    #[serde(
        default,
        rename = "clusterAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_api: Option<ClusterApiProvider>,
    /// Nodes someone else manages: used for placement and admission only, never scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#static: Option<StaticProvider>,
    /// Simulated kwok nodes (demo and tests): the operator creates and deletes Node objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwok: Option<KwokProvider>,
    /// A Karpenter NodePool: Karpenter makes and removes the nodes; runs placed here
    /// select the pool's nodes, and scheduled runs get capacity ahead of time through
    /// CapacityBuffers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub karpenter: Option<KarpenterProvider>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KarpenterProvider {
    /// The NodePool (`karpenter.sh/v1`) whose nodes this group is.
    #[schemars(length(max = bounds::MAX_OBJECT_NAME_LEN))]
    pub node_pool: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterApiProvider {
    /// `MachineDeployment` (default) or `MachinePool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_WORD_LEN))]
    pub kind: Option<String>,
    /// API version. Default: `cluster.x-k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_OBJECT_NAME_LEN))]
    pub api_version: Option<String>,
    #[schemars(length(max = bounds::MAX_NAMESPACE_LEN))]
    pub namespace: String,
    #[schemars(length(max = bounds::MAX_OBJECT_NAME_LEN))]
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct StaticProvider {}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KwokProvider {
    /// How long a simulated node takes to appear, e.g. `5s`. Default: `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub boot_delay: Option<String>,
}

/// What the operator observed and decided about the group.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroupStatus {
    /// How many nodes the group should have.
    #[serde(default)]
    pub desired: i32,
    /// How many nodes exist.
    #[serde(default)]
    pub current: i32,
    /// How many nodes are Ready.
    #[serde(default)]
    pub ready: i32,
    /// DataJob pods placed on this group that wait for a node.
    #[serde(default)]
    pub pending_pods: i32,
    /// DataJob pods placed on this group, running or pending.
    #[serde(default)]
    pub active_pods: i32,
    /// Since when the group has had no DataJob pods (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<String>,
    /// When the size last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Why the size last changed, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// Room left for more runs on the nodes that stay, once the pending pods are placed:
    /// per node, up (`ready`) or on its way, what is still free. Placement reads it to
    /// put a one-off run where a node is already paid for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room: Vec<NodeRoom>,
    /// Why empty nodes are kept (`Schedule` policy): each scheduled run due soon that
    /// will use one, with what keeping the node costs against booting another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_for: Vec<String>,
    /// `Ready` (the spec is valid and the provider answers) with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Free room on one node of a group.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRoom {
    /// The node; none for a node still on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether the node is up and Ready (else: booting).
    #[serde(default)]
    pub ready: bool,
    /// Free CPU, e.g. `1500m`.
    pub cpu: Quantity,
    /// Free memory, e.g. `6Gi`.
    pub memory: Quantity,
    /// Free ephemeral storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Quantity>,
    /// Free GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<i64>,
}

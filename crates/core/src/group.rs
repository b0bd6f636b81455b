//! A NodeGroup as the core reads it: [`Group`], its spec's strings parsed and checked
//! ([`resolve_group`]), the groups that take new work ([`usable_groups`]) and the free
//! room its status records ([`Room`]). Validation, placement and scaling all read it.
use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use crate::resources::Request;
use crate::units::{self, format_bytes, format_cpu};
use datajob_api::NodeGroup;
pub use datajob_api::nodegroup::ScaleDownPolicy;

/// The label every node of a group carries, and runs placed there select (a Karpenter
/// group's nodes carry [`NODEPOOL_LABEL`] instead).
pub const GROUP_LABEL: &str = "datajob.dev/node-group";

/// The label Karpenter puts on every node of a NodePool.
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";

const DEFAULT_SCALE_DOWN_AFTER: Duration = Duration::from_secs(120);

const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(120);

const DEFAULT_PROVISIONING_TIMEOUT: Duration = Duration::from_secs(600);

const DEFAULT_EPHEMERAL: u64 = 100 << 30;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum ProviderKind {
    ClusterApi {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    #[default]
    Static,
    Kwok {
        boot_delay: Duration,
    },
    /// Karpenter makes and removes the nodes of the NodePool `node_pool`.
    Karpenter {
        node_pool: String,
    },
}

/// A NodeGroup with its strings parsed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Group {
    pub name: String,
    pub shape: Request,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<datajob_api::nodegroup::NodeTaint>,
    pub min_size: i32,
    pub max_size: i32,
    pub price_per_hour: f64,
    pub scale_down_after: Duration,
    pub provisioning_timeout: Duration,
    /// Lead time for scheduled runs (`spec.warmUpBefore`); `None`: no warm-up.
    pub warm_up_before: Option<Duration>,
    pub provider: ProviderKind,
    /// When nodes go (`spec.scaleDownPolicy`).
    pub scale_down_policy: ScaleDownPolicy,
    /// How long a new node takes to be Ready (`spec.bootTime`, or its default).
    pub boot_time: Duration,
    /// The namespaces whose DataJobs it takes; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Free room on the nodes that stay, as the NodeGroup controller last wrote it
    /// (`status.room`): what [`crate::decide::nodegroup::packing::place_packed`] reads.
    pub room: Vec<Room>,
}

/// Free room on one node of a group (`status.room`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Room {
    /// The node; `None` for one still on its way.
    pub node: Option<String>,
    pub ready: bool,
    pub free: Request,
}

impl Group {
    /// The label that marks the group's nodes, and that the runs placed here select:
    /// `datajob.dev/node-group: NAME`, or a Karpenter group's `karpenter.sh/nodepool: POOL`.
    pub fn member_label(&self) -> (&str, &str) {
        match &self.provider {
            ProviderKind::Karpenter { node_pool } => (NODEPOOL_LABEL, node_pool),
            _ => (GROUP_LABEL, &self.name),
        }
    }

    /// Whether `labels` (a node's labels, or a pod's node selector) mark the group.
    pub fn marks(&self, labels: &BTreeMap<String, String>) -> bool {
        let (key, value) = self.member_label();
        labels.get(key).map(String::as_str) == Some(value)
    }

    /// Whether DataJob makes and removes this group's nodes itself (kwok), rather than
    /// asking a provider (Cluster API), leaving them (static) or leaving them to an
    /// autoscaler (Karpenter).
    pub fn autoscaled_elsewhere(&self) -> bool {
        matches!(self.provider, ProviderKind::Karpenter { .. })
    }

    /// Whether DataJobs of `namespace` may be placed here.
    pub fn serves(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}

/// Parses a NodeGroup; the error says what is wrong in words for its status. The
/// checks run in the spec's order, so the first problem is the one named.
pub fn resolve_group(ng: &NodeGroup) -> Result<Group, String> {
    let name = ng.name_any();
    let s = &ng.spec;
    within_bounds(s)?;
    let shape = node_shape(&s.node)?;
    let price_per_hour = price(s.price_per_hour.as_deref())?;
    let min_size = s.min_size.unwrap_or(0);
    if min_size < 0 || s.max_size < min_size {
        return Err(format!(
            "spec.minSize {min_size} and spec.maxSize {} must satisfy 0 <= minSize <= maxSize",
            s.max_size
        ));
    }
    let provider = provider(&s.provider)?;
    check_taints(&s.taints)?;
    let mut labels = s.labels.clone();
    match &provider {
        ProviderKind::Karpenter { node_pool } => {
            labels.insert(NODEPOOL_LABEL.into(), node_pool.clone())
        }
        _ => labels.insert(GROUP_LABEL.into(), name.clone()),
    };
    let warm_up_before = match &s.warm_up_before {
        Some(d) => {
            Some(units::parse_duration(d).map_err(|e| format!("spec.warmUpBefore {d:?} {e}"))?)
        }
        None => None,
    };
    let boot_default = match &provider {
        ProviderKind::Kwok { boot_delay } => *boot_delay,
        _ => warm_up_before.unwrap_or(DEFAULT_BOOT_TIME),
    };
    Ok(Group {
        shape,
        labels,
        taints: s.taints.clone(),
        min_size,
        max_size: s.max_size,
        price_per_hour,
        // `0s` is a wait too: none (every empty node goes at once).
        scale_down_after: match s.scale_down_after.as_deref().map(str::trim) {
            Some(z) if is_zero(z) => Duration::ZERO,
            _ => duration(
                "spec.scaleDownAfter",
                &s.scale_down_after,
                DEFAULT_SCALE_DOWN_AFTER,
            )?,
        },
        provisioning_timeout: duration(
            "spec.provisioningTimeout",
            &s.provisioning_timeout,
            DEFAULT_PROVISIONING_TIMEOUT,
        )?,
        warm_up_before,
        scale_down_policy: s.scale_down_policy.unwrap_or_default(),
        boot_time: duration("spec.bootTime", &s.boot_time, boot_default)?,
        namespaces: s.namespaces.clone(),
        room: ng
            .status
            .as_ref()
            .map(|st| st.room.iter().filter_map(room_of).collect())
            .unwrap_or_default(),
        provider,
        name,
    })
}

/// The bounds the CRD schema states for a NodeGroup ([`datajob_api::bounds`]), checked
/// again here so that an object the schema did not judge (an older CRD, a mocked API,
/// `kubectl datajob plan`) is refused with the field, not read item by item.
fn within_bounds(s: &datajob_api::nodegroup::NodeGroupSpec) -> Result<(), String> {
    use datajob_api::bounds;
    let counts = [
        (
            "spec.labels",
            s.labels.len(),
            bounds::MAX_NODE_LABELS,
            "keep the labels runs select nodes by",
        ),
        (
            "spec.taints",
            s.taints.len(),
            bounds::MAX_TAINTS,
            "keep the taints that keep other work off the nodes",
        ),
        (
            "spec.namespaces",
            s.namespaces.len(),
            bounds::MAX_NAMESPACES,
            "leave it empty to serve every namespace, or split the group",
        ),
    ];
    for (field, count, max, fix) in counts {
        if count > max {
            return Err(format!(
                "{field} has {count} items, more than the {max} allowed; {fix}"
            ));
        }
    }
    let long = |field: String, v: &str, max: usize| {
        (v.chars().count() > max).then(|| {
            format!(
                "{field} is {} characters long, more than the {max} allowed",
                v.chars().count()
            )
        })
    };
    let labels = s.labels.iter().flat_map(|(k, v)| {
        [
            long(
                format!("spec.labels key {:?}", cut(k)),
                k,
                bounds::MAX_KEY_LEN,
            ),
            long(
                format!("spec.labels[{k:?}]"),
                v,
                bounds::MAX_LABEL_VALUE_LEN,
            ),
        ]
    });
    let namespaces = s.namespaces.iter().enumerate().map(|(i, n)| {
        long(
            format!("spec.namespaces[{i}]"),
            n,
            bounds::MAX_NAMESPACE_LEN,
        )
    });
    let taints = s.taints.iter().enumerate().flat_map(|(i, t)| {
        [
            long(format!("spec.taints[{i}].key"), &t.key, bounds::MAX_KEY_LEN),
            t.value.as_deref().and_then(|v| {
                long(
                    format!("spec.taints[{i}].value"),
                    v,
                    bounds::MAX_LABEL_VALUE_LEN,
                )
            }),
        ]
    });
    match labels.chain(namespaces).chain(taints).flatten().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// The first 40 characters of a key, for a message about a key that is too long.
fn cut(k: &str) -> String {
    k.chars().take(40).collect()
}

/// `spec.node`: the shape of one node.
fn node_shape(node: &datajob_api::nodegroup::NodeShape) -> Result<Request, String> {
    let cpu_millis = units::parse_cpu_millis(node.cpu.as_str())
        .map_err(|e| format!("spec.node.cpu {:?} {e}", node.cpu.as_str()))?;
    let memory = units::parse_bytes(node.memory.as_str())
        .map_err(|e| format!("spec.node.memory {:?} {e}", node.memory.as_str()))?;
    let ephemeral = match &node.ephemeral_storage {
        Some(q) => units::parse_bytes(q.as_str())
            .map_err(|e| format!("spec.node.ephemeralStorage {:?} {e}", q.as_str()))?,
        None => DEFAULT_EPHEMERAL,
    };
    let gpu = u64::try_from(node.gpu.unwrap_or(0))
        .map_err(|_| "spec.node.gpu is negative".to_string())?;
    Ok(Request {
        cpu_millis,
        memory,
        ephemeral,
        gpu,
    })
}

/// `spec.pricePerHour`; none is free.
fn price(p: Option<&str>) -> Result<f64, String> {
    match p {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| format!("spec.pricePerHour {p:?} is not a non-negative number")),
        None => Ok(0.0),
    }
}

/// A duration field, or its default when unset.
fn duration(field: &str, v: &Option<String>, default: Duration) -> Result<Duration, String> {
    v.as_deref().map_or(Ok(default), |d| {
        units::parse_duration(d).map_err(|e| format!("{field} {d:?} {e}"))
    })
}

/// `spec.provider`: exactly one of them.
fn provider(p: &datajob_api::nodegroup::Provider) -> Result<ProviderKind, String> {
    let set = [
        p.cluster_api.is_some(),
        p.r#static.is_some(),
        p.kwok.is_some(),
        p.karpenter.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(
            "spec.provider must set exactly one of clusterAPI, static, kwok, karpenter".into(),
        );
    }
    if let Some(k) = &p.karpenter {
        let pool = k.node_pool.trim();
        if pool.is_empty() || !is_object_name(pool) {
            return Err(format!(
                "spec.provider.karpenter.nodePool {:?} is not a NodePool name (lowercase letters, digits, '-' and '.'); write the name of a NodePool, e.g. `kubectl get nodepools`",
                k.node_pool
            ));
        }
        return Ok(ProviderKind::Karpenter {
            node_pool: pool.to_string(),
        });
    }
    Ok(match (&p.cluster_api, &p.r#static, &p.kwok) {
        (Some(c), None, None) => ProviderKind::ClusterApi {
            api_version: c
                .api_version
                .clone()
                .unwrap_or_else(|| "cluster.x-k8s.io/v1beta1".into()),
            kind: c.kind.clone().unwrap_or_else(|| "MachineDeployment".into()),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
        },
        (None, Some(_), None) => ProviderKind::Static,
        (None, None, Some(k)) => ProviderKind::Kwok {
            boot_delay: duration(
                "spec.provider.kwok.bootDelay",
                &k.boot_delay,
                Duration::from_secs(5),
            )?,
        },
        _ => {
            return Err(
                "spec.provider must set exactly one of clusterAPI, static, kwok, karpenter".into(),
            );
        }
    })
}

/// Whether `s` is a Kubernetes object name (a DNS subdomain: at most 253 lowercase
/// letters, digits, '-' and '.', starting and ending with a letter or digit).
fn is_object_name(s: &str) -> bool {
    s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Runs placed here tolerate these taints: an effect Kubernetes does not know would make
/// it refuse every one of their Jobs (found by crates/e2e/tests/e2e/shared/generated_specs.rs).
fn check_taints(taints: &[datajob_api::nodegroup::NodeTaint]) -> Result<(), String> {
    match taints.iter().find(|t| {
        !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        )
    }) {
        Some(t) => Err(format!(
            "spec.taints effect {:?} of {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
            t.effect, t.key
        )),
        None => Ok(()),
    }
}

/// `0`, `0s`, `0m`, …: no time at all.
fn is_zero(d: &str) -> bool {
    let digits = d.trim_end_matches(['s', 'm', 'h', 'd']);
    d.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b == b'0')
}

/// A `status.room` entry read back; `None` when it does not parse (then it is no room).
fn room_of(r: &datajob_api::nodegroup::NodeRoom) -> Option<Room> {
    Some(Room {
        node: r.node.clone(),
        ready: r.ready,
        free: Request {
            cpu_millis: units::parse_cpu_millis(r.cpu.as_str()).ok()?,
            memory: units::parse_bytes(r.memory.as_str()).ok()?,
            ephemeral: match &r.ephemeral_storage {
                Some(q) => units::parse_bytes(q.as_str()).ok()?,
                None => 0,
            },
            gpu: u64::try_from(r.gpu.unwrap_or(0)).ok()?,
        },
    })
}

/// `status.room` of the rooms a decision leaves.
pub fn room_status(room: &[Room]) -> Vec<datajob_api::nodegroup::NodeRoom> {
    room.iter()
        .map(|r| datajob_api::nodegroup::NodeRoom {
            node: r.node.clone(),
            ready: r.ready,
            cpu: format_cpu(r.free.cpu_millis).as_str().into(),
            memory: format_bytes(r.free.memory).as_str().into(),
            ephemeral_storage: (r.free.ephemeral > 0)
                .then(|| format_bytes(r.free.ephemeral).as_str().into()),
            gpu: (r.free.gpu > 0).then(|| i64::try_from(r.free.gpu).unwrap_or(i64::MAX)),
        })
        .collect()
}

/// The groups of `NodeGroup`s that parse; the others are reported on their own status.
pub fn usable_groups<'a>(groups: impl IntoIterator<Item = &'a NodeGroup>) -> Vec<Group> {
    groups.into_iter().filter_map(usable).collect()
}

/// A group that can take work: its spec parses and it is not being deleted (a group
/// being deleted takes no new work; its nodes go with it). A Karpenter group whose
/// NodePool cannot make its nodes (its status says `Ready` False) takes none either.
pub fn usable(ng: &NodeGroup) -> Option<Group> {
    if ng.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let group = resolve_group(ng).ok()?;
    let not_ready = ng.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False")
    });
    (!(group.autoscaled_elsewhere() && not_ready)).then_some(group)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;

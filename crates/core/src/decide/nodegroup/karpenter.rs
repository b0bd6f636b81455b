//! A NodeGroup on a Karpenter NodePool: whether the pool can make the nodes the group
//! declares. The group's declared shape and price are what placement, refusal at apply
//! and cost read; a pool that contradicts them would leave runs placed here waiting
//! forever, so the group is not Ready and says why ([`check_node_pool`]).
use serde_json::Value;

use crate::group::{Group, NODEPOOL_LABEL};
use crate::units;

/// Why the NodePool `pool` (as the API serves it; `None`: there is none) cannot make the
/// nodes `group` declares, in words for the group's status; `Ok` when it can, as far as
/// DataJob can tell. Checked: the pool exists and is not being deleted, Karpenter does
/// not say it is not Ready (a missing node class: no NodeClaim could launch), its `limits`
/// leave room for one node of the declared shape, it labels its nodes as the group's
/// `spec.labels` say, and every taint it puts on its nodes is one the group declares
/// (runs placed here tolerate the group's taints only). Not checked: which instance
/// types its requirements allow (the catalog is the cloud provider's); Karpenter's
/// own words on a run that waits say that.
pub fn check_node_pool(group: &Group, pool: Option<&Value>) -> Result<(), String> {
    let name = match &group.provider {
        crate::group::ProviderKind::Karpenter { node_pool } => node_pool.as_str(),
        _ => return Ok(()),
    };
    let Some(pool) = pool else {
        return Err(format!(
            "NodePool {name} does not exist: create it, or name an existing one in spec.provider.karpenter.nodePool (`kubectl get nodepools`)"
        ));
    };
    if pool.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(format!(
            "NodePool {name} is being deleted: new runs are not placed on this group"
        ));
    }
    not_ready(name, pool)?;
    limits(name, group, pool.pointer("/spec/limits"))?;
    let template = pool.pointer("/spec/template");
    labels(name, group, template)?;
    taints(name, group, template)
}

/// Karpenter itself says the pool cannot launch nodes: its `Ready` condition is
/// `False` (e.g. `NodeClassReady`: its `nodeClassRef` names a node class that does not
/// exist, so every NodeClaim would fail to launch). No condition yet, or `Unknown`, is
/// not a verdict: a pool just made has none.
fn not_ready(name: &str, pool: &Value) -> Result<(), String> {
    let conditions = pool
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let field = |c: &Value, f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let failing = |c: &&Value| field(c, "status") == "False";
    let Some(ready) = conditions
        .iter()
        .filter(failing)
        .find(|c| field(c, "type") == "Ready")
    else {
        return Ok(());
    };
    // The condition that made it not Ready says more than Ready's summary.
    let cause = conditions
        .iter()
        .filter(failing)
        .find(|c| field(c, "type") != "Ready")
        .unwrap_or(ready);
    let words = [
        field(cause, "type"),
        field(cause, "reason"),
        field(cause, "message"),
    ]
    .into_iter()
    .filter(|w| !w.is_empty())
    .collect::<Vec<_>>()
    .join(": ");
    Err(format!(
        "Karpenter says NodePool {name} is not Ready ({words}), so it launches no node for this group: fix the NodePool (`kubectl describe nodepool {name}`; a missing node class: create the one its spec.template.spec.nodeClassRef names)"
    ))
}

/// The pool's `limits` leave room for one node of the declared shape.
fn limits(name: &str, group: &Group, limits: Option<&Value>) -> Result<(), String> {
    let Some(limits) = limits.and_then(Value::as_object) else {
        return Ok(());
    };
    let s = &group.shape;
    let wanted: [(&str, u128, String); 3] = [
        (
            "cpu",
            u128::from(s.cpu_millis),
            units::format_cpu(s.cpu_millis),
        ),
        (
            "memory",
            u128::from(s.memory),
            units::format_bytes(s.memory),
        ),
        (
            "nvidia.com/gpu",
            u128::from(s.gpu) * 1000,
            s.gpu.to_string(),
        ),
    ];
    for (resource, need, said) in wanted {
        let Some(limit) = limits.get(resource) else {
            continue;
        };
        let text = match limit {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        // cpu and gpu in millis, memory in bytes.
        let have = match resource {
            "memory" => units::parse_bytes(&text).map(u128::from),
            _ => units::parse_cpu_millis(&text).map(u128::from),
        };
        let Ok(have) = have else {
            continue;
        };
        if have < need {
            return Err(format!(
                "NodePool {name} limits {resource} to {text}, less than one node of this group's shape ({resource} {said}): raise the NodePool's spec.limits.{resource}, or declare a smaller spec.node"
            ));
        }
    }
    Ok(())
}

/// The pool labels its nodes as the group's `spec.labels` say (runs placed here select
/// them): a template label of that value, or a requirement that allows it.
fn labels(name: &str, group: &Group, template: Option<&Value>) -> Result<(), String> {
    for (key, value) in group.labels.iter().filter(|(k, _)| *k != NODEPOOL_LABEL) {
        let labelled = template
            .and_then(|t| t.pointer("/metadata/labels"))
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            == Some(value.as_str());
        let required = template
            .and_then(|t| t.pointer("/spec/requirements"))
            .and_then(Value::as_array)
            .is_some_and(|rs| {
                rs.iter().any(|r| {
                    r.get("key").and_then(Value::as_str) == Some(key.as_str())
                        && r.get("operator").and_then(Value::as_str) == Some("In")
                        && r.get("values")
                            .and_then(Value::as_array)
                            .is_some_and(|vs| vs.iter().any(|v| v.as_str() == Some(value)))
                })
            });
        if !labelled && !required {
            return Err(format!(
                "NodePool {name} does not label its nodes {key}={value}, which spec.labels says they carry: add it to the NodePool's spec.template.metadata.labels, or remove it from spec.labels"
            ));
        }
    }
    Ok(())
}

/// Every taint the pool puts on its nodes is one the group declares.
fn taints(name: &str, group: &Group, template: Option<&Value>) -> Result<(), String> {
    let Some(taints) = template
        .and_then(|t| t.pointer("/spec/taints"))
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    for t in taints {
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
        let value = t.get("value").and_then(Value::as_str).unwrap_or_default();
        let declared = group.taints.iter().any(|d| {
            d.key == key && d.effect == effect && d.value.as_deref().unwrap_or_default() == value
        });
        if !declared {
            return Err(format!(
                "NodePool {name} taints its nodes {key}={value}:{effect}, which spec.taints does not declare, so no run placed here would tolerate them: add the taint to spec.taints"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "karpenter_tests.rs"]
mod tests;

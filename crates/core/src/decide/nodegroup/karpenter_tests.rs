use super::*;
use crate::group::resolve_group;
use datajob_api::NodeGroup;
use serde_json::json;

fn group(extra: Value) -> Group {
    let mut spec = json!({"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 5,
        "provider": {"karpenter": {"nodePool": "batch"}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let ng: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
        "metadata": {"name": "karp"}, "spec": spec,
    }))
    .unwrap();
    resolve_group(&ng).unwrap()
}

fn pool(spec: Value) -> Value {
    json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "batch"}, "spec": spec})
}

#[test]
fn a_karpenter_group_selects_its_pools_nodes_not_a_datajob_label() {
    let g = group(json!({}));
    assert_eq!(g.member_label(), (NODEPOOL_LABEL, "batch"));
    assert_eq!(
        g.labels.get(NODEPOOL_LABEL).map(String::as_str),
        Some("batch")
    );
    assert!(!g.labels.contains_key(crate::group::GROUP_LABEL));
    assert!(g.autoscaled_elsewhere());
}

#[test]
fn a_missing_or_departing_pool_is_named_with_the_fix() {
    let g = group(json!({}));
    let e = check_node_pool(&g, None).unwrap_err();
    assert!(
        e.contains("NodePool batch does not exist") && e.contains("kubectl get nodepools"),
        "{e}"
    );
    let mut p = pool(json!({}));
    p["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    assert!(
        check_node_pool(&g, Some(&p))
            .unwrap_err()
            .contains("being deleted")
    );
    assert_eq!(
        check_node_pool(&g, Some(&pool(json!({"template": {"spec": {}}})))),
        Ok(())
    );
}

#[test]
fn limits_below_one_node_of_the_shape_contradict_it() {
    let g = group(json!({}));
    let e = check_node_pool(&g, Some(&pool(json!({"limits": {"cpu": "2"}})))).unwrap_err();
    assert!(
        e.contains("limits cpu to 2") && e.contains("cpu 4") && e.contains("spec.limits.cpu"),
        "{e}"
    );
    let e = check_node_pool(&g, Some(&pool(json!({"limits": {"memory": "8Gi"}})))).unwrap_err();
    assert!(e.contains("memory 16Gi"), "{e}");
    // Room for at least one node: fine, as is a limit on something else.
    assert_eq!(
        check_node_pool(
            &g,
            Some(&pool(json!({"limits": {"cpu": 64, "memory": "256Gi"}})))
        ),
        Ok(())
    );
    assert_eq!(
        check_node_pool(&g, Some(&pool(json!({"limits": {"nvidia.com/gpu": "0"}})))),
        Ok(())
    );
    let gpu = group(json!({"node": {"cpu": "8", "memory": "32Gi", "gpu": 1}}));
    assert!(
        check_node_pool(
            &gpu,
            Some(&pool(json!({"limits": {"nvidia.com/gpu": "0"}})))
        )
        .is_err()
    );
}

#[test]
fn labels_the_group_promises_must_be_the_pools() {
    let g = group(json!({"labels": {"team": "data"}}));
    let e = check_node_pool(&g, Some(&pool(json!({"template": {"spec": {}}})))).unwrap_err();
    assert!(
        e.contains("team=data") && e.contains("spec.template.metadata.labels"),
        "{e}"
    );
    let labelled =
        pool(json!({"template": {"metadata": {"labels": {"team": "data"}}, "spec": {}}}));
    assert_eq!(check_node_pool(&g, Some(&labelled)), Ok(()));
    let required = pool(json!({"template": {"spec": {"requirements": [
        {"key": "team", "operator": "In", "values": ["ml", "data"]}]}}}));
    assert_eq!(check_node_pool(&g, Some(&required)), Ok(()));
}

#[test]
fn a_taint_the_group_does_not_declare_would_keep_every_run_off() {
    let tainted = pool(json!({"template": {"spec": {"taints": [
        {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]}}}));
    let e = check_node_pool(&group(json!({})), Some(&tainted)).unwrap_err();
    assert!(
        e.contains("dedicated=batch:NoSchedule") && e.contains("spec.taints"),
        "{e}"
    );
    let declared =
        group(json!({"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]}));
    assert_eq!(check_node_pool(&declared, Some(&tainted)), Ok(()));
}

#[test]
fn a_pool_name_that_is_not_a_name_is_refused_with_the_field() {
    let ng: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": "k"},
        "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 1,
            "provider": {"karpenter": {"nodePool": "Batch Pool"}}},
    }))
    .unwrap();
    let e = resolve_group(&ng).unwrap_err();
    assert!(
        e.contains("spec.provider.karpenter.nodePool") && e.contains("Batch Pool"),
        "{e}"
    );
    let both: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": "k"},
        "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 1,
            "provider": {"karpenter": {"nodePool": "batch"}, "kwok": {}}},
    }))
    .unwrap();
    assert!(
        resolve_group(&both)
            .unwrap_err()
            .contains("exactly one of clusterAPI, static, kwok, karpenter")
    );
}

#[test]
fn a_pool_karpenter_says_is_not_ready_names_karpenters_cause() {
    let g = group(json!({}));
    let mut p = pool(json!({}));
    // A pool just made has no conditions, then Unknown ones: not a verdict.
    assert_eq!(check_node_pool(&g, Some(&p)), Ok(()));
    p["status"] = json!({"conditions": [
        {"type": "Ready", "status": "Unknown", "reason": "AwaitingReconciliation"},
    ]});
    assert_eq!(check_node_pool(&g, Some(&p)), Ok(()));
    p["status"] = json!({"conditions": [
        {"type": "ValidationSucceeded", "status": "True", "reason": "ValidationSucceeded"},
        {"type": "NodeClassReady", "status": "False", "reason": "NodeClassNotFound", "message": "NodeClass not found on cluster"},
        {"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "NodeClassReady=False"},
    ]});
    let e = check_node_pool(&g, Some(&p)).unwrap_err();
    assert!(
        e.contains("NodePool batch is not Ready (NodeClassReady: NodeClassNotFound: NodeClass not found on cluster)")
            && e.contains("nodeClassRef"),
        "{e}"
    );
    p["status"]["conditions"][1]["status"] = json!("True");
    p["status"]["conditions"][2]["status"] = json!("True");
    assert_eq!(check_node_pool(&g, Some(&p)), Ok(()));
}

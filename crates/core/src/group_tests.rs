//! Tests of [`super`].
use super::*;
use crate::decide::nodegroup::fixtures::*;

#[test]
fn a_group_being_deleted_takes_no_new_work() {
    let ng = |name: &str, deleting: bool| {
        let mut g: NodeGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
            "metadata": {"name": name},
            "spec": {"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3, "pricePerHour": "0.2",
                     "provider": {"static": {}}},
        }))
        .unwrap();
        if deleting {
            g.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        g
    };
    let all = [ng("going", true), ng("staying", false)];
    let names: Vec<String> = usable_groups(&all).into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["staying"]);
}

#[test]
fn the_scale_down_settings_parse_with_their_defaults() {
    let base = serde_json::json!({"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3,
        "provider": {"kwok": {"bootDelay": "20s"}}});
    let g = resolve_group(&node_group(base.clone(), serde_json::json!({}))).unwrap();
    assert_eq!(
        g.scale_down_policy,
        ScaleDownPolicy::Schedule,
        "the default"
    );
    assert_eq!(g.boot_time, Duration::from_secs(20), "kwok: its bootDelay");
    assert_eq!(g.scale_down_after, Duration::from_secs(120));
    assert!(g.serves("anywhere"));
    let mut spec = base.clone();
    spec["provider"] = serde_json::json!({"static": {}});
    spec["warmUpBefore"] = serde_json::json!("3m");
    spec["scaleDownAfter"] = serde_json::json!("0s");
    spec["scaleDownPolicy"] = serde_json::json!("Idle");
    spec["namespaces"] = serde_json::json!(["team-a"]);
    let g = resolve_group(&node_group(spec.clone(), serde_json::json!({}))).unwrap();
    assert_eq!(g.scale_down_policy, ScaleDownPolicy::Idle);
    assert_eq!(g.boot_time, Duration::from_secs(180), "else warmUpBefore");
    assert_eq!(g.scale_down_after, Duration::ZERO, "0s is no wait");
    assert!(g.serves("team-a") && !g.serves("team-b"));
    spec["bootTime"] = serde_json::json!("90s");
    assert_eq!(
        resolve_group(&node_group(spec.clone(), serde_json::json!({})))
            .unwrap()
            .boot_time,
        Duration::from_secs(90)
    );
    spec["bootTime"] = serde_json::json!("soon");
    assert!(
        resolve_group(&node_group(spec, serde_json::json!({})))
            .unwrap_err()
            .starts_with("spec.bootTime \"soon\"")
    );
    // The room in the status is read back; an entry that does not parse is none.
    let room = serde_json::json!({"room": [
        {"node": "g-0", "ready": true, "cpu": "1500m", "memory": "6Gi"},
        {"ready": false, "cpu": "4", "memory": "16Gi", "gpu": 1},
        {"ready": true, "cpu": "lots", "memory": "1Gi"},
    ]});
    let g = resolve_group(&node_group(base, room)).unwrap();
    assert_eq!(
        g.room,
        vec![
            Room {
                node: Some("g-0".into()),
                ready: true,
                free: Request {
                    cpu_millis: 1500,
                    memory: 6 << 30,
                    ephemeral: 0,
                    gpu: 0
                }
            },
            Room {
                node: None,
                ready: false,
                free: Request {
                    cpu_millis: 4000,
                    memory: 16 << 30,
                    ephemeral: 0,
                    gpu: 1
                }
            },
        ]
    );
    // And written as it is read.
    let again: Vec<Room> = room_status(&g.room).iter().filter_map(room_of).collect();
    assert_eq!(again, g.room);
}

/// Issue 25 item 5: a NodeGroup past the schema's bounds is refused with the field,
/// before its lists are read item by item.
#[test]
fn a_group_past_its_bounds_is_refused_naming_the_field() {
    let base = serde_json::json!({"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3,
        "provider": {"static": {}}});
    let with = |field: &str, v: serde_json::Value| {
        let mut spec = base.clone();
        spec[field] = v;
        resolve_group(&node_group(spec, serde_json::json!({}))).unwrap_err()
    };
    let namespaces: Vec<String> = (0..300).map(|i| format!("ns-{i}")).collect();
    let e = with("namespaces", serde_json::json!(namespaces));
    assert!(
        e.starts_with("spec.namespaces has 300 items, more than the 256 allowed"),
        "{e}"
    );
    let labels: serde_json::Map<String, serde_json::Value> = (0..65)
        .map(|i| (format!("l{i}"), serde_json::json!("v")))
        .collect();
    let e = with("labels", serde_json::Value::Object(labels));
    assert!(e.starts_with("spec.labels has 65 items"), "{e}");
    let e = with("labels", serde_json::json!({"pool": "x".repeat(64)}));
    assert!(
        e.contains("spec.labels[\"pool\"] is 64 characters long, more than the 63 allowed"),
        "{e}"
    );
    let e = with(
        "taints",
        serde_json::json!([{"key": "k".repeat(400), "effect": "NoSchedule"}]),
    );
    assert!(
        e.starts_with("spec.taints[0].key is 400 characters long"),
        "{e}"
    );
    assert!(resolve_group(&node_group(base, serde_json::json!({}))).is_ok());
}

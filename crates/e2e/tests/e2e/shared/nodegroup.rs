//! End-to-end: resources, not VMs. NodeGroups scale from zero when runs are pending and
//! back to zero when idle (kwok and Cluster API providers), keep an empty node for a
//! scheduled run due soon and remove it at once when nothing is due, place a run where a
//! node already has room, GPU work lands on GPU nodes, and what no group can fit is
//! refused at apply. NodeGroups are cluster-wide and move every DataJob, so these tests
//! run one at a time.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::operator::wait_for_sample;
use common::plugin::plugin;
use common::{
    Result, client, datajob, kwok, node_group, succeeded, test_namespace, wait_for, wait_for_object,
};
use datajob_api::{DataJob, NodeGroup, RunState};
use datajob_core::decide::nodegroup::{GROUP_LABEL, SCALE_DOWN_TAINT, reserve};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn kwok_group(cpu: u32, memory: &str, gpu: u32, price: &str, max: i32) -> serde_json::Value {
    json!({
        "node": {"cpu": cpu, "memory": memory, "gpu": gpu},
        "maxSize": max, "pricePerHour": price, "scaleDownAfter": "5s", "provisioningTimeout": "60s",
        // Other workloads stay off (DataJob runs placed here tolerate it).
        "taints": [{"key": "datajob.dev/dedicated", "value": "batch", "effect": "NoSchedule"}],
        "provider": {"kwok": {"bootDelay": "2s"}},
    })
}

/// A whole minute at most `secs` (and more than `secs` - 60) seconds from now, and a
/// daily schedule (UTC) that fires at it.
fn daily_within(secs: i64) -> (chrono::DateTime<chrono::Utc>, String) {
    use chrono::Timelike;
    let due = (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    (due, format!("{} {} * * *", due.minute(), due.hour()))
}

async fn group_nodes(client: &Client, group: &str) -> Vec<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={group}")))
        .await
        .expect("list nodes")
        .items
}

async fn node_of_run(client: &Client, ns: &str, datajob: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("datajob.dev/name={datajob}")))
        .await
        .unwrap()
        .items;
    list.first()
        .and_then(|p| p.spec.as_ref()?.node_name.clone())
        .unwrap_or_default()
}

async fn group_size(
    client: &Client,
    group: &str,
    desired: i32,
    timeout: Duration,
) -> Result<NodeGroup> {
    let api: Api<NodeGroup> = Api::all(client.clone());
    wait_for_object(
        &api,
        group,
        &format!("{group} at {desired} ready nodes"),
        timeout,
        |g: &NodeGroup| {
            g.status
                .as_ref()
                .is_some_and(|s| s.desired == desired && s.ready == desired && s.current == desired)
        },
    )
    .await
}

#[tokio::test]
async fn a_burst_scales_a_kwok_group_up_from_zero_and_back_to_zero() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "burst").await;
    let (group, _g) = node_group(&client, "burst", kwok_group(4, "16Gi", 0, "0.50", 5)).await;
    // Three runs of 3 CPUs each: one per 4-CPU node, so three nodes.
    let mut apis = Vec::new();
    for i in 0..3 {
        // part-0 runs longer: its logs are read while it runs, so its node is still
        // there (an idle node goes after scaleDownAfter, 5 s here).
        let seconds = if i == 0 { "25s" } else { "8s" };
        let spec = json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: seconds}});
        apis.push((
            format!("part-{i}"),
            datajob(&client, ns.name(), &format!("part-{i}"), spec).await,
        ));
    }
    let grown = wait_for_object(
        &Api::<NodeGroup>::all(client.clone()),
        &group,
        "scale-up decided",
        Duration::from_secs(30),
        |g: &NodeGroup| g.status.as_ref().is_some_and(|s| s.desired == 3),
    )
    .await
    .unwrap();
    assert!(
        grown
            .status
            .unwrap()
            .last_scale_reason
            .unwrap_or_default()
            .contains("pending"),
        "says why"
    );
    wait_for_object(
        &apis[0].1,
        "part-0",
        "part-0 Running",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Running),
    )
    .await
    .unwrap();
    // The plugin finds the run's pod on the group's node; that kwok node serves no logs.
    let out = plugin(ns.name(), &["logs", "part-0"]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stderr.contains(&format!("runs on {group}-"))
            && out
                .stderr
                .contains(", a simulated (kwok) node, which keeps no container logs"),
        "{out}"
    );
    // A removal cut short (the operator stopped between tainting a node and deleting
    // it) leaves the scale-down taint behind: on a node with work, it is lifted.
    let nodes: Api<Node> = Api::all(client.clone());
    let busy = node_of_run(&client, ns.name(), "part-0").await;
    let taints = json!({"spec": {"taints": [
        {"key": "datajob.dev/dedicated", "value": "batch", "effect": "NoSchedule"},
        {"key": SCALE_DOWN_TAINT, "effect": "NoSchedule"},
    ]}});
    nodes
        .patch(&busy, &PatchParams::default(), &Patch::Merge(&taints))
        .await
        .unwrap();
    wait_for_object(
        &nodes,
        &busy,
        "the scale-down taint lifted",
        Duration::from_secs(20),
        |n: &Node| {
            let taints = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            !taints.iter().any(|t| t.key == SCALE_DOWN_TAINT)
                && taints.iter().any(|t| t.key == "datajob.dev/dedicated")
        },
    )
    .await
    .unwrap();
    for (name, api) in &apis {
        let dj = succeeded(api, name, Duration::from_secs(60)).await.unwrap();
        let status = dj.status.unwrap();
        assert_eq!(status.node_group.as_deref(), Some(group.as_str()));
        let cost = status
            .last_run
            .and_then(|r| r.estimated_cost)
            .expect("a cost estimate");
        assert!(cost.parse::<f64>().unwrap() > 0.0, "{cost}");
        assert!(
            node_of_run(&client, ns.name(), name)
                .await
                .starts_with(&group),
            "ran on the group's node"
        );
    }
    // Cost and node time are exposed per group and per DataJob.
    let group_label = [("nodegroup", group.as_str())];
    let wait = Duration::from_secs(10);
    let positive = |v: f64| v > 0.0;
    wait_for_sample(
        "datajob_nodegroup_node_seconds_total",
        &group_label,
        positive,
        wait,
    )
    .await;
    let cost_labels = [("namespace", ns.name()), ("nodegroup", group.as_str())];
    wait_for_sample(
        "datajob_run_cost_currency_total",
        &cost_labels,
        positive,
        wait,
    )
    .await;
    // Idle for scaleDownAfter (5 s): back to zero, nodes gone.
    group_size(&client, &group, 0, Duration::from_secs(40))
        .await
        .unwrap();
    wait_for_sample(
        "datajob_nodegroup_desired_nodes",
        &group_label,
        |v| v == 0.0,
        wait,
    )
    .await;
    wait_for("group nodes deleted", Duration::from_secs(20), || {
        let client = client.clone();
        let group = group.clone();
        async move { Ok(group_nodes(&client, &group).await.is_empty().then_some(())) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deleting_a_node_group_moves_its_datajobs_off_it() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "regroup").await;
    let (group, _g) = node_group(&client, "going", kwok_group(4, "16Gi", 0, "0.20", 2)).await;
    // Scheduled once a year: placed, but no run needed.
    let spec = json!({"image": "busybox", "schedule": "0 3 1 1 *", "resources": {"cpu": 1, "memory": "1Gi"}});
    let api = datajob(&client, ns.name(), "yearly", spec).await;
    let on = |g: Option<String>| {
        move |d: &DataJob| d.status.as_ref().and_then(|s| s.node_group.clone()) == g
    };
    wait_for_object(
        &api,
        "yearly",
        "placed on the group",
        Duration::from_secs(20),
        on(Some(group.clone())),
    )
    .await
    .unwrap();
    Api::<NodeGroup>::all(client.clone())
        .delete(&group, &DeleteParams::default())
        .await
        .unwrap();
    // With no group left the DataJob runs wherever it fits; its CronJob follows.
    wait_for_object(
        &api,
        "yearly",
        "placement cleared",
        Duration::from_secs(20),
        on(None),
    )
    .await
    .unwrap();
    let cronjobs: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(client.clone(), ns.name());
    let selector = cronjobs
        .get("yearly")
        .await
        .unwrap()
        .spec
        .job_template
        .spec
        .and_then(|j| j.template.spec)
        .and_then(|p| p.node_selector)
        .unwrap_or_default();
    assert!(!selector.contains_key(GROUP_LABEL), "{selector:?}");
}

#[tokio::test]
async fn a_scheduled_run_finds_its_node_warm() {
    use chrono::Utc;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "warm").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.30", 2);
    spec["warmUpBefore"] = json!("30s");
    // The scaler before the Schedule policy, still on offer: it warms up the same way.
    spec["scaleDownPolicy"] = json!("Idle");
    let (group, _g) = node_group(&client, "warm", spec).await;
    // Due at a whole minute 40 to 100 s away, so the 30 s warm-up window is ahead.
    let (due, schedule) = daily_within(100);
    let spec = json!({"image": "busybox", "schedule": schedule, "timeZone": "UTC",
        "resources": {"cpu": 2, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: "2s"}});
    let api = datajob(&client, ns.name(), "daily", spec).await;
    let groups = Api::<NodeGroup>::all(client.clone());
    let until_due = (due - Utc::now()).to_std().unwrap_or_default();
    // Before the run is due, the group has a ready node, and says why.
    let warmed = wait_for_object(
        &groups,
        &group,
        "a warm node before the run",
        until_due,
        |g: &NodeGroup| g.status.as_ref().is_some_and(|s| s.ready == 1),
    )
    .await
    .unwrap();
    let status = warmed.status.unwrap();
    assert!(
        status
            .last_scale_reason
            .unwrap_or_default()
            .contains("warm-up: 1 scheduled run(s) due soon"),
        "says why"
    );
    assert!(Utc::now() < due, "warm before the run is due");
    // The run then lands on that node, and the group goes back to zero afterwards.
    let node = group_nodes(&client, &group).await[0].name_any();
    succeeded(&api, "daily", Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(node_of_run(&client, ns.name(), "daily").await, node);
    group_size(&client, &group, 0, Duration::from_secs(40))
        .await
        .unwrap();
}

/// The `Schedule` policy: an empty node stays for a scheduled run due soon that will fit
/// on it (keeping it until then costs less than booting another and making the run wait
/// for it), the run lands on that very node, and once nothing is due the node goes at
/// once, not after `scaleDownAfter`.
#[tokio::test]
async fn an_empty_node_is_kept_for_a_run_due_soon_and_removed_at_once_when_nothing_is_due() {
    use chrono::Utc;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "keep").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.30", 2);
    spec["scaleDownPolicy"] = json!("Schedule");
    // No warm-up: an empty node is worth keeping for a run due within twice the boot
    // time (3 minutes), at most scaleDownAfter (5 minutes).
    spec["bootTime"] = json!("90s");
    spec["scaleDownAfter"] = json!("5m");
    // Only this test's DataJobs: other suites' runs do not land on its node.
    spec["namespaces"] = json!([ns.name()]);
    let (group, _g) = node_group(&client, "keep", spec).await;
    let groups: Api<NodeGroup> = Api::all(client.clone());
    // A daily run due at a whole minute 60 to 120 s away.
    let (due, schedule) = daily_within(120);
    let daily = datajob(
        &client,
        ns.name(),
        "daily",
        json!({"image": "busybox", "schedule": schedule, "timeZone": "UTC",
            "resources": {"cpu": 2, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: "8s"}}),
    )
    .await;
    wait_for_object(
        &daily,
        "daily",
        "placed on the group",
        Duration::from_secs(20),
        |d: &DataJob| {
            d.status.as_ref().and_then(|s| s.node_group.as_deref()) == Some(group.as_str())
        },
    )
    .await
    .unwrap();
    // A one-off run now makes a node, and ends long before the daily run is due.
    let now = datajob(
        &client,
        ns.name(),
        "now",
        json!({"image": "busybox", "resources": {"cpu": 2, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: "3s"}}),
    )
    .await;
    succeeded(&now, "now", Duration::from_secs(60))
        .await
        .unwrap();
    let nodes = group_nodes(&client, &group).await;
    assert_eq!(nodes.len(), 1, "one node for the one-off run");
    let (node, uid) = (nodes[0].name_any(), nodes[0].uid().unwrap());
    assert_eq!(node_of_run(&client, ns.name(), "now").await, node);
    // Empty now, and kept: the group says for which run and what each choice costs.
    let kept = wait_for_object(
        &groups,
        &group,
        "the empty node kept for the daily run",
        Duration::from_secs(20),
        |g: &NodeGroup| {
            g.status.as_ref().is_some_and(|s| {
                s.active_pods == 0
                    && s.desired == 1
                    && s.kept_for.iter().any(|k| k.contains("/daily due in"))
            })
        },
    )
    .await
    .unwrap();
    let kept = kept.status.unwrap();
    let why = kept.kept_for.join("; ");
    assert!(
        why.contains(&format!("{}/daily due in", ns.name()))
            && why.contains(&format!("keeping {node} costs"))
            && why.contains("booting another"),
        "{why}"
    );
    assert!(Utc::now() < due, "kept before the run is due");
    // It did not go while idle (a fixed wait is not what holds it: 5 minutes is longer
    // than this whole test).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = group_nodes(&client, &group).await;
    assert_eq!(still.len(), 1);
    assert_eq!(
        still[0].uid().as_deref(),
        Some(uid.as_str()),
        "the same node"
    );
    // The run takes that very node: no node was booted for it.
    let until_due = (due - Utc::now()).to_std().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let on = wait_for(
        "the daily run's pod on a node",
        until_due + Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("datajob.dev/name=daily"))
                    .await?;
                Ok(list
                    .items
                    .iter()
                    .find_map(|p| p.spec.as_ref()?.node_name.clone()))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(on, node);
    let found = Api::<Node>::all(client.clone()).get(&node).await.unwrap();
    assert_eq!(
        found.uid().as_deref(),
        Some(uid.as_str()),
        "the node the run found is the one kept"
    );
    let ran = succeeded(&daily, "daily", Duration::from_secs(60))
        .await
        .unwrap();
    let since = groups.get(&group).await.unwrap().status.unwrap();
    assert!(
        since.last_scale_time == kept.last_scale_time
            || since
                .last_scale_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("1 -> 0")),
        "no scale-up for the run: {:?}",
        since.last_scale_reason
    );
    assert_eq!(
        ran.status.and_then(|s| s.last_run).map(|r| r.logical_time),
        Some(datajob_core::labels::rfc3339(due))
    );
    // Nothing is due now (the next run is tomorrow): the node goes at once, far sooner
    // than scaleDownAfter.
    let done = std::time::Instant::now();
    let empty = group_size(&client, &group, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let status = empty.status.unwrap();
    assert!(status.kept_for.is_empty(), "{:?}", status.kept_for);
    assert!(
        status
            .last_scale_reason
            .unwrap_or_default()
            .contains("1 -> 0: 1 node(s) not needed"),
        "says why"
    );
    wait_for("the node deleted", Duration::from_secs(20), || {
        let client = client.clone();
        let group = group.clone();
        async move { Ok(group_nodes(&client, &group).await.is_empty().then_some(())) }
    })
    .await
    .unwrap();
    eprintln!(
        "removed {:.1} s after the last run succeeded",
        done.elapsed().as_secs_f64()
    );
}

/// The warm-up boots no node ahead for a run that a node busy with a run of unknown
/// length (a one-off: no history) may take: the group stays at one node through the
/// warm-up window, the one-off ends inside it, and the scheduled run lands on its node.
#[tokio::test]
async fn a_warm_up_waits_for_a_node_busy_with_a_run_of_unknown_length() {
    use chrono::Utc;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "unknown").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.30", 2);
    spec["scaleDownPolicy"] = json!("Schedule");
    spec["warmUpBefore"] = json!("45s");
    spec["namespaces"] = json!([ns.name()]);
    let (group, _g) = node_group(&client, "unknown", spec).await;
    // A daily run due at a whole minute 60 to 120 s away, asking for 2 CPUs.
    let (due, schedule) = daily_within(120);
    let daily = datajob(
        &client,
        ns.name(),
        "daily",
        json!({"image": "busybox", "schedule": schedule, "timeZone": "UTC",
            "resources": {"cpu": 2, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: "3s"}}),
    )
    .await;
    // A one-off run of 3 CPUs (the daily run does not fit beside it) that ends about
    // 25 s before the daily run is due: inside the 45 s warm-up window.
    let runs_for = (due - Utc::now()).num_seconds() - 25 - 5;
    let adhoc = datajob(
        &client,
        ns.name(),
        "adhoc",
        json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
            "podAnnotations": {kwok::DURATION: format!("{runs_for}s")}}),
    )
    .await;
    // Through the warm-up window until the daily run succeeded: never a second node.
    let within = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(60);
    let most = most_nodes_until_succeeded(&client, &group, &daily, "daily", within).await;
    succeeded(&adhoc, "adhoc", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(most, 1, "no node was booted ahead for the daily run");
    assert_eq!(
        node_of_run(&client, ns.name(), "daily").await,
        node_of_run(&client, ns.name(), "adhoc").await,
        "the daily run took the one-off's node"
    );
}

/// The reservations the pod of `datajob`'s run holds (the nodes whose reservation
/// toleration it carries).
async fn reservations_of(client: &Client, ns: &str, datajob: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("datajob.dev/name={datajob}")))
        .await
        .unwrap()
        .items;
    list.iter()
        .flat_map(|p| reserve::held_by(p).map(String::from).collect::<Vec<_>>())
        .collect()
}

/// A node made while runs wait is theirs first, whatever order the scheduler would take
/// them in: the run that waited longest holds the first node's reservation and runs
/// there, the run that came later holds the next node's, and each node's reservation is
/// lifted once its run is bound.
#[tokio::test]
async fn a_node_made_for_waiting_runs_goes_to_the_run_that_waited_longest() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "reserve").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.30", 2);
    spec["namespaces"] = json!([ns.name()]);
    spec["provider"] = json!({"kwok": {"bootDelay": "8s"}});
    let (group, _g) = node_group(&client, "reserve", spec).await;
    // Each run takes a whole node.
    let run = |secs: u32| {
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "8Gi"},
            "podAnnotations": {kwok::DURATION: format!("{secs}s")}})
    };
    let first = datajob(&client, ns.name(), "first", run(12)).await;
    group_size_at_least(&client, &group, 1).await;
    // The second run comes while the first one's node boots: the group asks for another.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = datajob(&client, ns.name(), "second", run(6)).await;
    let (node0, node1) = (format!("{group}-0"), format!("{group}-1"));
    wait_for_object(
        &first,
        "first",
        "first Running",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Running),
    )
    .await
    .unwrap();
    assert_eq!(
        node_of_run(&client, ns.name(), "first").await,
        node0,
        "the run that waited longest runs on the first node up"
    );
    assert_eq!(
        reservations_of(&client, ns.name(), "first").await,
        std::slice::from_ref(&node0)
    );
    // Bound: its node takes anyone again.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        &format!("{node0}'s reservation lifted"),
        Duration::from_secs(15),
        || {
            let (nodes, node0) = (nodes.clone(), node0.clone());
            async move {
                let n = nodes.get(&node0).await?;
                let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
                Ok((!reserve::is_reserved(&taints)).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    succeeded(&second, "second", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        node_of_run(&client, ns.name(), "second").await,
        node1,
        "the later run runs on the node made for it"
    );
    assert_eq!(reservations_of(&client, ns.name(), "second").await, [node1]);
    succeeded(&first, "first", Duration::from_secs(30))
        .await
        .unwrap();
}

/// A run that finds no room waits for a node whose runs are expected to end before a
/// boot would be up, instead of booting one: with the group's one warm node busy with a
/// run of known length (its DataJob ran before), a one-off that needs a whole node takes
/// that node when the run ends, and the group never asks for a second node.
#[tokio::test]
async fn a_pending_run_waits_for_a_node_about_to_free_up_instead_of_booting_one() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "ending").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.30", 2);
    spec["namespaces"] = json!([ns.name()]);
    spec["minSize"] = json!(1);
    // A boot takes longer than the busy node's run.
    spec["provider"] = json!({"kwok": {"bootDelay": "30s"}});
    let (group, _g) = node_group(&client, "ending", spec).await;
    group_size(&client, &group, 1, Duration::from_secs(60))
        .await
        .unwrap();
    // A scheduled DataJob (due once a year) that takes the whole node for about 6 s, run
    // twice by hand: the first run gives it a history, the second fills the node.
    let steady = datajob(
        &client,
        ns.name(),
        "steady",
        json!({"image": "busybox", "schedule": "0 0 1 1 *", "timeZone": "UTC",
            "resources": {"cpu": 4, "memory": "8Gi"}, "podAnnotations": {kwok::DURATION: "6s"}}),
    )
    .await;
    let trigger = |at: &'static str| {
        let steady = steady.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"datajob.dev/trigger": at}}});
            steady
                .patch("steady", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("trigger steady");
        }
    };
    trigger("2026-01-01T00:00:00Z").await;
    succeeded(&steady, "steady", Duration::from_secs(60))
        .await
        .unwrap();
    trigger("2026-01-01T00:01:00Z").await;
    wait_for_object(
        &steady,
        "steady",
        "steady's second run Running",
        Duration::from_secs(30),
        |d: &DataJob| {
            d.status.as_ref().is_some_and(|s| {
                s.state == Some(RunState::Running)
                    && s.last_run.as_ref().map(|r| r.logical_time.as_str())
                        == Some("2026-01-01T00:01:00Z")
            })
        },
    )
    .await
    .unwrap();
    let adhoc = datajob(
        &client,
        ns.name(),
        "adhoc",
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "8Gi"},
            "podAnnotations": {kwok::DURATION: "2s"}}),
    )
    .await;
    let most =
        most_nodes_until_succeeded(&client, &group, &adhoc, "adhoc", Duration::from_secs(40)).await;
    assert_eq!(most, 1, "no node was booted for the one-off");
    assert_eq!(
        node_of_run(&client, ns.name(), "adhoc").await,
        node_of_run(&client, ns.name(), "steady").await,
        "the one-off took the node when steady's run ended"
    );
}

/// The most nodes `group` asked for until the run of the DataJob `name` succeeded (which
/// must happen `within`).
async fn most_nodes_until_succeeded(
    client: &Client,
    group: &str,
    datajobs: &Api<DataJob>,
    name: &str,
    within: Duration,
) -> i32 {
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let deadline = std::time::Instant::now() + within;
    let mut most = 0;
    loop {
        let g = groups.get(group).await.unwrap();
        most = most.max(g.status.as_ref().map_or(0, |s| s.desired));
        let state = datajobs
            .get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.state);
        if state == Some(RunState::Succeeded) {
            return most;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}'s run did not succeed in time"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until `group` has asked for at least `n` nodes.
async fn group_size_at_least(client: &Client, group: &str, n: i32) {
    wait_for_object(
        &Api::<NodeGroup>::all(client.clone()),
        group,
        &format!("{group} asks for {n} node(s)"),
        Duration::from_secs(20),
        |g: &NodeGroup| g.status.as_ref().is_some_and(|s| s.desired >= n),
    )
    .await
    .unwrap();
}

/// Placement reads the groups' room: a run that fits beside a long run on a
/// high-memory node goes there, instead of booting a node of the cheaper group (the
/// trace where the cheapest group per node leaves two half-empty nodes).
#[tokio::test]
async fn a_run_goes_where_a_node_already_has_room_before_a_cheaper_group() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "pack").await;
    // Only this test's DataJobs: other suites' runs take none of the room.
    let mine = |mut spec: serde_json::Value| {
        spec["namespaces"] = json!([ns.name()]);
        spec
    };
    let (general, _a) = node_group(
        &client,
        "general",
        mine(kwok_group(8, "32Gi", 0, "0.34", 2)),
    )
    .await;
    let (highmem, _b) = node_group(
        &client,
        "highmem",
        mine(kwok_group(8, "64Gi", 0, "0.50", 2)),
    )
    .await;
    // Only the high-memory group fits it; it runs for a while.
    let big = datajob(
        &client,
        ns.name(),
        "big",
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "40Gi"}, "podAnnotations": {kwok::DURATION: "40s"}}),
    )
    .await;
    wait_for_object(
        &big,
        "big",
        "big Running",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Running),
    )
    .await
    .unwrap();
    // The group publishes the room left beside it.
    wait_for_object(
        &Api::<NodeGroup>::all(client.clone()),
        &highmem,
        "room on the high-memory node",
        Duration::from_secs(20),
        |g: &NodeGroup| {
            g.status
                .as_ref()
                .is_some_and(|s| s.room.iter().any(|r| r.ready && r.cpu.as_str() == "4"))
        },
    )
    .await
    .unwrap();
    // The cheapest group per node would be general; the room says highmem.
    let small = datajob(
        &client,
        ns.name(),
        "small",
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "8Gi"}, "podAnnotations": {kwok::DURATION: "3s"}}),
    )
    .await;
    let placed = succeeded(&small, "small", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        placed.status.unwrap().node_group.as_deref(),
        Some(highmem.as_str())
    );
    assert_eq!(
        node_of_run(&client, ns.name(), "small").await,
        node_of_run(&client, ns.name(), "big").await,
        "beside the big run"
    );
    assert!(
        group_nodes(&client, &general).await.is_empty(),
        "no general node booted"
    );
    // A scheduled DataJob of the same size still goes to the cheapest group per node:
    // its runs start later, when that room may be gone.
    let nightly = datajob(
        &client,
        ns.name(),
        "nightly",
        json!({"image": "busybox", "schedule": "0 3 1 1 *", "resources": {"cpu": 4, "memory": "8Gi"}}),
    )
    .await;
    wait_for_object(
        &nightly,
        "nightly",
        "placed by price",
        Duration::from_secs(20),
        |d: &DataJob| {
            d.status.as_ref().and_then(|s| s.node_group.as_deref()) == Some(general.as_str())
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn gpu_work_lands_only_on_the_gpu_group() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "gpu").await;
    let (cpu_group, _a) = node_group(&client, "cpu", kwok_group(8, "32Gi", 0, "0.40", 3)).await;
    let (gpu_group, _b) = node_group(&client, "gpu", kwok_group(8, "64Gi", 1, "3.00", 3)).await;
    let gpu = datajob(
        &client,
        ns.name(),
        "train",
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "16Gi", "gpu": 1}}),
    )
    .await;
    let cpu = datajob(
        &client,
        ns.name(),
        "features",
        json!({"image": "busybox", "resources": {"cpu": 4, "memory": "16Gi"}}),
    )
    .await;
    let trained = succeeded(&gpu, "train", Duration::from_secs(60))
        .await
        .unwrap();
    let featured = succeeded(&cpu, "features", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        trained.status.unwrap().node_group.as_deref(),
        Some(gpu_group.as_str())
    );
    assert_eq!(
        featured.status.unwrap().node_group.as_deref(),
        Some(cpu_group.as_str()),
        "CPU work stays off GPU nodes"
    );
    assert!(
        node_of_run(&client, ns.name(), "train")
            .await
            .starts_with(&gpu_group)
    );
    assert!(
        node_of_run(&client, ns.name(), "features")
            .await
            .starts_with(&cpu_group)
    );
}

#[tokio::test]
async fn a_group_with_min_size_has_a_warm_node_and_keeps_it_when_idle() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "warm").await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.50", 3);
    spec["minSize"] = json!(1);
    let (group, _g) = node_group(&client, "warm", spec).await;
    // Made at once, with no work at all, and it says why.
    let ng = group_size(&client, &group, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let reason = ng.status.unwrap().last_scale_reason.unwrap_or_default();
    assert!(reason.contains("minSize is 1"), "{reason}");
    // A run that fits runs on the warm node; no scale-up.
    let api = datajob(
        &client,
        ns.name(),
        "fits",
        json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"}}),
    )
    .await;
    succeeded(&api, "fits", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        node_of_run(&client, ns.name(), "fits").await,
        format!("{group}-0")
    );
    // Idle for longer than scaleDownAfter (5 s): still one node.
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let idle = wait_for_object(
        &groups,
        &group,
        "idle for 8 s",
        Duration::from_secs(60),
        |g: &NodeGroup| {
            g.status
                .as_ref()
                .and_then(|s| s.idle_since.as_deref())
                .and_then(datajob_core::labels::parse_rfc3339)
                .is_some_and(|t| chrono::Utc::now() - t > chrono::Duration::seconds(8))
        },
    )
    .await
    .unwrap();
    let status = idle.status.unwrap();
    assert_eq!((status.desired, status.current), (1, 1));
    assert_eq!(group_nodes(&client, &group).await.len(), 1);
}

#[tokio::test]
async fn a_datajob_too_big_for_every_group_is_refused_at_apply() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "too-big").await;
    let (small, _a) = node_group(&client, "small", kwok_group(4, "16Gi", 0, "0.20", 3)).await;
    let (large, _b) = node_group(&client, "large", kwok_group(16, "64Gi", 0, "1.00", 3)).await;
    let _ = small;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let dj: DataJob = common::from_json(
        json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "huge"},
        "spec": {"image": "busybox", "resources": {"memory": "500Gi"}}}),
    );
    // The webhook's NodeGroup cache may need a moment to see the new groups.
    let message = common::refusal_naming(&api, &dj, &large).await;
    assert!(
        message.contains(&format!("spec.resources.memory \"500Gi\" is more than any node group offers (largest: {large}, 64Gi allocatable)")),
        "{message}"
    );
}

#[tokio::test]
async fn a_cluster_api_machine_deployment_is_scaled_through_its_scale_subresource() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "capi").await;
    install_machine_deployment_crd(&client).await;
    install_machine_crd(&client).await;
    let gvk = GroupVersionKind::gvk("cluster.x-k8s.io", "v1beta1", "MachineDeployment");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "machinedeployments");
    let mds: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
    let md: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineDeployment",
        "metadata": {"name": "workers"}, "spec": {"replicas": 0, "clusterName": "e2e"}}),
    )
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();
    let (group, _g) = node_group(&client, "capi", json!({
        "node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3, "pricePerHour": "0.3", "scaleDownAfter": "5s",
        "taints": [{"key": "datajob.dev/dedicated", "value": "batch", "effect": "NoSchedule"}],
        "provider": {"clusterAPI": {"namespace": ns.name(), "name": "workers"}},
    }))
    .await;
    // Stand-in for Cluster API's controllers: turn replicas into Machines on kwok nodes.
    let removed = Arc::new(Mutex::new(Vec::new()));
    let machines = tokio::spawn(machine_controller(
        client.clone(),
        mds.clone(),
        group.clone(),
        removed.clone(),
    ));

    let api = datajob(&client, ns.name(), "nightly", json!({"image": "busybox", "resources": {"cpu": 2, "memory": "4Gi"}, "podAnnotations": {kwok::DURATION: "3s"}})).await;
    wait_for(
        "MachineDeployment scaled to 1",
        Duration::from_secs(30),
        || {
            let mds = mds.clone();
            async move { Ok((replicas(&mds).await? == 1).then_some(())) }
        },
    )
    .await
    .unwrap();
    succeeded(&api, "nightly", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        node_of_run(&client, ns.name(), "nightly")
            .await
            .starts_with(&group)
    );
    wait_for(
        "MachineDeployment scaled back to 0",
        Duration::from_secs(40),
        || {
            let mds = mds.clone();
            async move { Ok((replicas(&mds).await? == 0).then_some(())) }
        },
    )
    .await
    .unwrap();
    machines.abort();
    // The machine that went was the one the operator marked (its node was empty).
    let removed = removed.lock().unwrap().clone();
    assert!(!removed.is_empty(), "a machine was removed");
    for (machine, mark) in &removed {
        assert!(
            mark.as_deref()
                .is_some_and(|m| m.starts_with("datajob.dev: node group ")),
            "{machine} was removed without DataJob's delete-machine mark: {mark:?}"
        );
    }
}

/// The MachineDeployment's replicas as its scale subresource says (0 is omitted there).
async fn replicas(mds: &Api<DynamicObject>) -> Result<i32> {
    Ok(mds
        .get_scale("workers")
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0))
}

/// The Machines removed by [`machine_controller`], each with the delete-machine mark it
/// carried.
type Removed = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Makes the Machines (each on a kwok node) a MachineDeployment's replicas ask for, like
/// Cluster API would: on a scale-down the machines marked
/// `cluster.x-k8s.io/delete-machine` go first, then the newest; each one removed is
/// recorded in `removed`.
async fn machine_controller(
    client: Client,
    mds: Api<DynamicObject>,
    group: String,
    removed: Removed,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let gvk = GroupVersionKind::gvk("cluster.x-k8s.io", "v1beta1", "Machine");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "machines");
    let ns = mds.namespace().unwrap_or_default().to_string();
    let machines: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let owned = ListParams::default().labels("cluster.x-k8s.io/deployment-name=workers");
    let mut made = 0;
    loop {
        let want = replicas(&mds).await.unwrap_or(0).max(0) as usize;
        let mut have = machines
            .list(&owned)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        while have.len() < want {
            let name = format!("{group}-m{made}");
            made += 1;
            let node: Node = common::from_json(
                json!({"metadata": {"name": name, "annotations": {kwok::NODE_ANNOTATION: "fake"},
                "labels": {GROUP_LABEL: group, "type": "kwok", "kubernetes.io/hostname": name}},
                "spec": {"taints": [{"key": "datajob.dev/dedicated", "value": "batch", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}),
            );
            let _ = nodes.create(&PostParams::default(), &node).await;
            let machine: DynamicObject = common::from_json(json!({
                "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
                "metadata": {"name": name, "namespace": ns,
                    "labels": {"cluster.x-k8s.io/deployment-name": "workers"}},
                "spec": {"clusterName": "e2e"},
                "status": {"nodeRef": {"kind": "Node", "name": name}},
            }));
            match machines.create(&PostParams::default(), &machine).await {
                Ok(m) => have.push(m),
                Err(_) => break,
            }
        }
        if have.len() > want {
            let mark = |m: &DynamicObject| {
                m.annotations()
                    .get("cluster.x-k8s.io/delete-machine")
                    .cloned()
            };
            // Marked first, then the newest (the highest index).
            have.sort_by_key(|m| {
                let index: u64 = m
                    .name_any()
                    .rsplit_once("-m")
                    .and_then(|(_, i)| i.parse().ok())
                    .unwrap_or(0);
                (mark(m).is_none(), std::cmp::Reverse(index))
            });
            for m in have.drain(..have.len() - want) {
                let name = m.name_any();
                removed.lock().unwrap().push((name.clone(), mark(&m)));
                let _ = machines.delete(&name, &DeleteParams::default()).await;
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
            }
        }
        let patch = json!({"status": {"replicas": have.len()}});
        let _ = mds
            .patch_status("workers", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A trimmed Cluster API MachineDeployment CRD: enough for the scale subresource.
async fn install_machine_deployment_crd(client: &Client) {
    install_crd(client, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "machinedeployments.cluster.x-k8s.io"},
        "spec": {"group": "cluster.x-k8s.io", "scope": "Namespaced",
            "names": {"kind": "MachineDeployment", "plural": "machinedeployments", "singular": "machinedeployment", "listKind": "MachineDeploymentList"},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"replicas": {"type": "integer"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"replicas": {"type": "integer"}}}}}}}]}
    }))
    .await;
}

/// A trimmed Cluster API Machine CRD: labels, annotations and `status.nodeRef` (no
/// status subresource: the stand-in controller writes the status with the Machine).
async fn install_machine_crd(client: &Client) {
    install_crd(client, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "machines.cluster.x-k8s.io"},
        "spec": {"group": "cluster.x-k8s.io", "scope": "Namespaced",
            "names": {"kind": "Machine", "plural": "machines", "singular": "machine", "listKind": "MachineList"},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    }))
    .await;
}

/// Applies the CRD `crd` and waits until it is established.
async fn install_crd(client: &Client, crd: serde_json::Value) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = common::from_json(crd);
    let name = crd.name_any();
    let _ = crds
        .patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await;
    wait_for_object(
        &crds,
        &name,
        &format!("{name} CRD established"),
        Duration::from_secs(20),
        |c: &CustomResourceDefinition| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await
    .unwrap();
}

/// Users type the singular (`kubectl get datajob NAME`); that must name DataJobs only,
/// while both kinds stay listable together under their category. A NodeGroup exists
/// during the test, so a category that swallowed the singular would show it.
#[tokio::test]
async fn kubectl_names_datajobs_as_users_type_them() {
    use common::kubectl::kubectl;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "kubectl-names").await;
    let (group, _guard) = node_group(
        &client,
        "kubectl-names",
        json!({"node": {"cpu": 64, "memory": "256Gi"}, "maxSize": 1, "pricePerHour": "1", "provider": {"static": {}}}),
    )
    .await;
    let manifest = format!(
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata:\n  name: nightly\n  namespace: {ns}\nspec:\n  image: busybox\n  schedule: \"0 3 * * *\"\n"
    );
    let applied = kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(applied.ok, "{applied}");
    for args in [
        vec!["get", "datajob", "nightly"],
        vec!["get", "datajobs", "nightly"],
        vec!["get", "dj", "nightly"],
        vec!["get", "datajob.datajob.dev", "nightly"],
    ] {
        let mut a = args.clone();
        a.extend(["-n", ns.name()]);
        let out = kubectl(&a, None);
        assert!(out.ok, "kubectl {}: {out}", a.join(" "));
        assert!(
            out.stdout.contains("nightly") && out.stdout.contains("0 3 * * *"),
            "{out}"
        );
    }
    let described = kubectl(&["describe", "datajob", "nightly", "-n", ns.name()], None);
    assert!(described.ok, "{described}");
    assert!(
        described.stdout.contains("Kind:         DataJob"),
        "{described}"
    );

    // `get datajob` lists DataJobs only; the category lists both kinds.
    let listed = kubectl(&["get", "datajob", "-A", "-o", "name"], None);
    assert!(listed.ok, "{listed}");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l == "datajob.datajob.dev/nightly"),
        "{listed}"
    );
    assert!(
        listed
            .stdout
            .lines()
            .all(|l| l.starts_with("datajob.datajob.dev/")),
        "only DataJobs: {listed}"
    );
    let both = kubectl(&["get", "datajob-all", "-A", "-o", "name"], None);
    assert!(both.ok, "{both}");
    assert!(
        both.stdout.contains("datajob.datajob.dev/nightly"),
        "{both}"
    );
    assert!(
        both.stdout
            .contains(&format!("nodegroup.datajob.dev/{group}")),
        "{both}"
    );

    let deleted = kubectl(&["delete", "datajob", "nightly", "-n", ns.name()], None);
    assert!(deleted.ok, "{deleted}");
    assert!(deleted.stdout.contains("deleted"), "{deleted}");
    let gone = kubectl(&["get", "datajob", "nightly", "-n", ns.name()], None);
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone}");
}

/// A pod that says it is DataJob's (the managed-by label, a group's node selector and
/// its toleration) but that no DataJob's Job owns: in a namespace the group serves and in
/// one it does not.
fn forged_pod(group: &str, name: &str) -> Pod {
    use datajob_core::labels::{MANAGED_BY, MANAGED_BY_VALUE, NAME};
    common::from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {MANAGED_BY: MANAGED_BY_VALUE, NAME: name}},
        "spec": {
            "nodeSelector": {GROUP_LABEL: group},
            "tolerations": [{"key": "datajob.dev/dedicated", "operator": "Exists"}],
            "containers": [{"name": "main", "image": "busybox",
                "resources": {"requests": {"cpu": "3", "memory": "4Gi"}}}],
        },
    }))
}

#[tokio::test]
async fn a_pod_no_datajob_owns_makes_no_node_and_is_never_patched() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let why = "the test's forged pods are bare pods, not DataJob runs";
    let served = common::unrestricted_namespace(&client, "forged", why).await;
    let other = common::unrestricted_namespace(&client, "forged-other", why).await;
    let mut spec = kwok_group(4, "16Gi", 0, "0.50", 3);
    spec["namespaces"] = json!([served.name()]);
    let (group, _g) = node_group(&client, "forged", spec).await;
    for ns in [served.name(), other.name()] {
        Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &forged_pod(&group, "forged"))
            .await
            .expect("create the forged pod");
    }
    // The group reconciles every 2 s while it has work: 15 s is several passes.
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        let g = groups.get(&group).await.expect("get the group");
        let s = g.status.unwrap_or_default();
        assert_eq!(
            (s.desired, s.pending_pods),
            (0, 0),
            "forged pods count: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        group_nodes(&client, &group).await.is_empty(),
        "no node made"
    );
    for ns in [served.name(), other.name()] {
        let pod = Api::<Pod>::namespaced(client.clone(), ns)
            .get("forged")
            .await
            .expect("get the forged pod");
        let tolerations = pod.spec.and_then(|s| s.tolerations).unwrap_or_default();
        assert!(
            tolerations
                .iter()
                .all(|t| t.key.as_deref() != Some(reserve::RESERVED_TAINT)),
            "patched: {tolerations:?}"
        );
    }
    // The control: a DataJob of the same shape in the served namespace makes its node.
    let run = json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
        "podAnnotations": {kwok::DURATION: "3s"}});
    let api = datajob(&client, served.name(), "real", run).await;
    group_size(&client, &group, 1, Duration::from_secs(60))
        .await
        .expect("the DataJob's run makes a node");
    succeeded(&api, "real", Duration::from_secs(60))
        .await
        .expect("the run succeeds");
}

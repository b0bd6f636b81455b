//! End-to-end on real Karpenter (core v1.15 with its kwok provider, started by
//! `e2e/run-e2e.sh` through `DATAJOB_KARPENTER=1`; see docs/testing.md#real-karpenter):
//! a NodeGroup backed by a NodePool takes a burst from zero on nodes Karpenter makes,
//! which Karpenter consolidates away once the runs are done and never under a running
//! run; a group whose NodePool is
//! missing or cannot make its nodes is not Ready, says why and takes no runs; a NodePool
//! deleted under a running run loses no run; a run that waits on a NodePool at its
//! limits says so in Karpenter's words; a scheduled run's CapacityBuffer makes its node
//! Ready before it is due, so it starts sooner than a boot; and what
//! no such group can fit is refused at apply. NodeGroups move every DataJob, so these
//! tests run one at a time.

use crate::common;

use std::time::Duration;

use common::{
    Result, client, datajob, kwok, node_group, succeeded, test_namespace, unique_name, wait_for,
    wait_for_object,
};
use datajob_api::{DataJob, NodeGroup, RunState};
use datajob_core::decide::nodegroup::NODEPOOL_LABEL;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node_pools(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "nodepools"),
    )
}

/// Deletes a NodePool when dropped (Karpenter then removes its nodes).
struct PoolGuard(String);

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        common::clean_up_now(move |c| async move {
            let _ = node_pools(&c).delete(&name, &DeleteParams::default()).await;
        });
    }
}

fn node_classes(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.kwok.sh", "v1alpha1", "KWOKNodeClass");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "kwoknodeclasses"),
    )
}

/// Deletes a KWOKNodeClass when dropped.
struct ClassGuard(String);

impl Drop for ClassGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        common::clean_up_now(move |c| async move {
            let _ = node_classes(&c)
                .delete(&name, &DeleteParams::default())
                .await;
        });
    }
}

/// A NodePool of 4-CPU/16Gi on-demand kwok machines, at most `cpu_limit` CPUs in all,
/// whose empty nodes Karpenter consolidates after 5 s.
async fn node_pool(client: &Client, prefix: &str, cpu_limit: u32) -> (String, PoolGuard) {
    node_pool_of(client, prefix, cpu_limit, "default").await
}

/// [`node_pool`] of machines of the KWOKNodeClass `class` (e2e/karpenter/nodeclass.yaml:
/// `default` boots in 5 s, `slow` in 20 s).
async fn node_pool_of(
    client: &Client,
    prefix: &str,
    cpu_limit: u32,
    class: &str,
) -> (String, PoolGuard) {
    let name = unique_name(prefix);
    let pool: DynamicObject = common::from_json(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": class},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m-4x-amd64-linux"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                ],
                "expireAfter": "Never",
            }},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "5s"},
            "limits": {"cpu": cpu_limit.to_string()},
        },
    }));
    node_pools(client)
        .create(&PostParams::default(), &pool)
        .await
        .expect("create NodePool (is Karpenter installed? DATAJOB_KARPENTER=1)");
    (name.clone(), PoolGuard(name))
}

/// A NodeGroup on the NodePool `pool` that declares its 4-CPU/16Gi machines at $0.20 an
/// hour and serves `ns` only.
fn karpenter_group(pool: &str, ns: &str) -> serde_json::Value {
    json!({
        "node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 5, "pricePerHour": "0.20",
        "namespaces": [ns], "provider": {"karpenter": {"nodePool": pool}},
    })
}

async fn pool_nodes(client: &Client, pool: &str) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{NODEPOOL_LABEL}={pool}")))
        .await
        .expect("list nodes")
        .items
}

/// The group's Ready condition: (status, reason, message).
async fn ready_condition(client: &Client, group: &str) -> Result<Option<(String, String, String)>> {
    let ng = Api::<NodeGroup>::all(client.clone()).get(group).await?;
    Ok(ng.status.and_then(|s| {
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status, c.reason, c.message))
    }))
}

/// Waits until the group's Ready condition is `status`: (status, reason, message).
async fn ready_is(
    client: &Client,
    group: &str,
    status: &str,
    what: &str,
    timeout: Duration,
) -> (String, String, String) {
    wait_for(what, timeout, || {
        let (client, group) = (client.clone(), group.to_string());
        async move {
            Ok(ready_condition(&client, &group)
                .await?
                .filter(|(s, _, _)| s == status))
        }
    })
    .await
    .unwrap()
}

/// Waits until the DataJob `name` runs.
async fn running(api: &Api<DataJob>, name: &str, what: &str) {
    wait_for_object(api, name, what, Duration::from_secs(90), |d: &DataJob| {
        d.status.as_ref().and_then(|s| s.state) == Some(RunState::Running)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_burst_from_zero_runs_on_karpenters_nodes_never_disrupted_and_consolidated_away_after() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-burst").await;
    let (pool, _p) = node_pool(&client, "karp-burst", 64).await;
    let (group, _g) = node_group(&client, "karp-burst", karpenter_group(&pool, ns.name())).await;
    assert!(pool_nodes(&client, &pool).await.is_empty(), "from zero");
    ready_is(
        &client,
        &group,
        "True",
        "the group Ready on its NodePool",
        Duration::from_secs(30),
    )
    .await;
    // Three runs of 3 CPUs: one per 4-CPU machine; part-0 runs long enough to see the
    // others' nodes consolidated away under it.
    let mut runs = Vec::new();
    for i in 0..3 {
        let name = format!("part-{i}");
        let length = if i == 0 { "75s" } else { "10s" };
        let spec = json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
            "podAnnotations": {kwok::DURATION: length}});
        runs.push((name.clone(), datajob(&client, ns.name(), &name, spec).await));
    }
    for (name, api) in &runs[1..] {
        let dj = succeeded(api, name, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(
            dj.status.and_then(|s| s.node_group).as_deref(),
            Some(group.as_str()),
            "{name} placed on the Karpenter group"
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let long_pod = || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(
                    &ListParams::default()
                        .labels(&format!("{}=part-0", datajob_core::labels::NAME)),
                )
                .await
                .unwrap()
                .items;
            assert_eq!(
                list.len(),
                1,
                "part-0 has one pod: never evicted and retried"
            );
            list.into_iter().next().unwrap()
        }
    };
    let first = long_pod().await;
    let long_node = first
        .spec
        .clone()
        .unwrap_or_default()
        .node_name
        .unwrap_or_default();
    // The short runs' nodes go while part-0 still runs; part-0's node stays under it
    // (DataJob's pods say karpenter.sh/do-not-disrupt).
    wait_for(
        "the short runs' nodes consolidated while part-0 runs",
        Duration::from_secs(60),
        || {
            let (client, pool) = (client.clone(), pool.clone());
            async move { Ok((pool_nodes(&client, &pool).await.len() == 1).then_some(())) }
        },
    )
    .await
    .unwrap();
    let now = long_pod().await;
    assert_eq!(
        now.uid(),
        first.uid(),
        "part-0's pod is the one that started"
    );
    assert_eq!(
        now.status.and_then(|s| s.phase).as_deref(),
        Some("Running"),
        "part-0 still runs"
    );
    assert_eq!(
        pool_nodes(&client, &pool).await[0].name_any(),
        long_node,
        "the node under the running run stayed"
    );
    let dj = succeeded(&runs[0].1, "part-0", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        dj.status.and_then(|s| s.node_group).as_deref(),
        Some(group.as_str())
    );
    // Every run ran on a node of the pool, which Karpenter made (a NodeClaim's node).
    let mut used = std::collections::BTreeSet::new();
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let spec = p.spec.unwrap_or_default();
        assert_eq!(
            spec.node_selector.unwrap_or_default().get(NODEPOOL_LABEL),
            Some(&pool),
            "{} selects the pool's nodes",
            p.metadata.name.unwrap_or_default()
        );
        used.insert(spec.node_name.unwrap_or_default());
    }
    assert_eq!(used.len(), 3, "one machine per run: {used:?}");
    let nodes = Api::<Node>::all(client.clone());
    for n in &used {
        // The short runs' nodes are gone by now: check the one that is left.
        let Ok(node) = nodes.get(n).await else {
            continue;
        };
        assert_eq!(node.labels().get(NODEPOOL_LABEL), Some(&pool), "{n}");
        assert!(
            node.labels().contains_key("karpenter.sh/registered")
                || node
                    .spec
                    .and_then(|s| s.provider_id)
                    .is_some_and(|id| id.starts_with("kwok://")),
            "{n} is Karpenter's"
        );
    }
    // Empty, the nodes go: Karpenter's consolidation, not DataJob's.
    wait_for(
        "the pool's nodes consolidated away",
        Duration::from_secs(120),
        || {
            let (client, pool) = (client.clone(), pool.clone());
            async move { Ok(pool_nodes(&client, &pool).await.is_empty().then_some(())) }
        },
    )
    .await
    .unwrap();
    let status = wait_for_object(
        &Api::<NodeGroup>::all(client.clone()),
        &group,
        "the group's status at zero nodes",
        Duration::from_secs(60),
        |g: &NodeGroup| g.status.as_ref().is_some_and(|s| s.current == 0),
    )
    .await
    .unwrap()
    .status
    .unwrap_or_default();
    assert_eq!(status.desired, 0, "{status:?}");
}

#[tokio::test]
async fn a_group_whose_node_pool_is_missing_or_too_small_is_not_ready_and_takes_no_runs() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-missing").await;
    let missing = unique_name("no-such-pool");
    let (group, _g) = node_group(
        &client,
        "karp-missing",
        karpenter_group(&missing, ns.name()),
    )
    .await;
    let (_, reason, message) = ready_is(
        &client,
        &group,
        "False",
        "the group not Ready, saying why",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(reason, "NodePoolUnusable");
    assert!(
        message.contains(&format!("NodePool {missing} does not exist"))
            && message.contains("spec.provider.karpenter.nodePool"),
        "{message}"
    );
    // It places nothing: a run that only it would take goes nowhere.
    let api = datajob(
        &client,
        ns.name(),
        "small",
        json!({"image": "busybox", "resources": {"cpu": 1, "memory": "1Gi"},
            "podAnnotations": {kwok::DURATION: "1s"}}),
    )
    .await;
    let dj = wait_for_object(
        &api,
        "small",
        "a status",
        Duration::from_secs(30),
        |d: &DataJob| d.status.is_some(),
    )
    .await
    .unwrap();
    assert_ne!(
        dj.status.and_then(|s| s.node_group).as_deref(),
        Some(group.as_str()),
        "not placed on a group whose NodePool is missing"
    );
    // A pool whose limits leave no room for one node of the declared shape.
    let (tiny, _p) = node_pool(&client, "karp-tiny", 2).await;
    let (small_group, _h) =
        node_group(&client, "karp-tiny", karpenter_group(&tiny, ns.name())).await;
    let (_, _, message) = ready_is(
        &client,
        &small_group,
        "False",
        "the group on a too-small pool not Ready",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.contains(&format!("NodePool {tiny} limits cpu to 2")) && message.contains("cpu 4"),
        "{message}"
    );
    // A pool whose node class does not exist: Karpenter says the pool is not Ready (every
    // NodeClaim would fail to launch), and the group carries its cause. Once the class
    // is there, the group is Ready again.
    let class = unique_name("karp-class");
    let (classless, _q) = node_pool_of(&client, "karp-classless", 64, &class).await;
    let (classless_group, _i) = node_group(
        &client,
        "karp-classless",
        karpenter_group(&classless, ns.name()),
    )
    .await;
    let (_, reason, message) = ready_is(
        &client,
        &classless_group,
        "False",
        "the group on a pool without its node class not Ready",
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(reason, "NodePoolUnusable");
    assert!(
        message.contains(&format!("Karpenter says NodePool {classless} is not Ready"))
            && message.contains("NodeClassNotFound")
            && message.contains("nodeClassRef"),
        "{message}"
    );
    node_classes(&client)
        .create(
            &PostParams::default(),
            &common::from_json(json!({
                "apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
                "metadata": {"name": class}, "spec": {"nodeRegistrationDelay": "5s"},
            })),
        )
        .await
        .unwrap();
    let _c = ClassGuard(class);
    ready_is(
        &client,
        &classless_group,
        "True",
        "the group Ready once the node class exists",
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test]
async fn a_request_larger_than_every_node_pool_group_is_refused_at_apply() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-big").await;
    let (pool, _p) = node_pool(&client, "karp-big", 64).await;
    let (group, _g) = node_group(&client, "karp-big", karpenter_group(&pool, ns.name())).await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "huge"},
        "spec": {"image": "busybox", "resources": {"cpu": 64, "memory": "8Gi"}},
    }));
    let message = common::refusal_naming(&api, &dj, &group).await;
    assert!(
        message.contains("spec.resources.cpu")
            && message.contains("more than any node group offers"),
        "{message}"
    );
    assert!(
        pool_nodes(&client, &pool).await.is_empty(),
        "nothing was made for it"
    );
}

#[tokio::test]
async fn deleting_the_node_pool_under_a_running_run_loses_no_run() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-gone").await;
    let (pool, _p) = node_pool(&client, "karp-gone", 64).await;
    let (group, _g) = node_group(&client, "karp-gone", karpenter_group(&pool, ns.name())).await;
    let api = datajob(
        &client,
        ns.name(),
        "long",
        json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
            "podAnnotations": {kwok::DURATION: "40s"}}),
    )
    .await;
    running(&api, "long", "long Running on the pool's node").await;
    node_pools(&client)
        .delete(&pool, &DeleteParams::default())
        .await
        .unwrap();
    // The group stops taking runs and says why ...
    let (_, reason, message) = ready_is(
        &client,
        &group,
        "False",
        "the group not Ready once its NodePool goes",
        Duration::from_secs(45),
    )
    .await;
    assert_eq!(reason, "NodePoolUnusable", "{message}");
    assert!(message.contains(&pool), "{message}");
    // ... and the run that was running is not lost: Karpenter drains the node only
    // once the run is done (its pod says karpenter.sh/do-not-disrupt).
    let dj = wait_for_object(
        &api,
        "long",
        "long finished",
        Duration::from_secs(120),
        |d: &DataJob| {
            matches!(
                d.status.as_ref().and_then(|s| s.state),
                Some(RunState::Succeeded | RunState::Failed)
            )
        },
    )
    .await
    .unwrap();
    let status = dj.status.unwrap_or_default();
    assert_eq!(status.state, Some(RunState::Succeeded), "{status:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "one pod: never evicted and retried"
    );
}

#[tokio::test]
async fn a_run_that_waits_on_a_node_pool_at_its_limit_says_so_in_karpenters_words() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-limit").await;
    // Room for one 4-CPU machine, and no more.
    let (pool, _p) = node_pool(&client, "karp-limit", 4).await;
    let (group, _g) = node_group(&client, "karp-limit", karpenter_group(&pool, ns.name())).await;
    let first = datajob(
        &client,
        ns.name(),
        "first",
        json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
            "podAnnotations": {kwok::DURATION: "90s"}}),
    )
    .await;
    running(&first, "first", "first Running on the pool's one node").await;
    let second = datajob(
        &client,
        ns.name(),
        "second",
        json!({"image": "busybox", "resources": {"cpu": 3, "memory": "4Gi"},
            "pendingTimeout": "30s", "podAnnotations": {kwok::DURATION: "1s"}}),
    )
    .await;
    let dj = wait_for_object(
        &second,
        "second",
        "second ended, waiting on the pool at its limit",
        Duration::from_secs(120),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Failed),
    )
    .await
    .unwrap();
    let status = dj.status.unwrap_or_default();
    assert_eq!(status.node_group.as_deref(), Some(group.as_str()));
    assert_eq!(
        status.reason.as_deref(),
        Some("Unschedulable"),
        "{status:?}"
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("Karpenter made no node for it")
            && message.contains("exceed limits for nodepool")
            && message.contains(&pool),
        "{message}"
    );
    assert_eq!(pool_nodes(&client, &pool).await.len(), 1, "the limit held");
}

fn capacity_buffers(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("autoscaling.x-k8s.io", "v1beta1", "CapacityBuffer");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "capacitybuffers"),
    )
}

fn k8s_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.0.as_second(), 0).unwrap()
}

/// When a node became Ready.
fn ready_at(node: &Node) -> Option<chrono::DateTime<chrono::Utc>> {
    let ready = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(k8s_time(ready.last_transition_time.as_ref()?))
}

#[tokio::test]
async fn a_scheduled_run_finds_the_node_its_capacity_buffer_made_ready_and_starts_sooner_than_a_boot()
 {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-warm").await;
    // Machines that take 20 s to boot; warm-up 40 s ahead of a run (the run after the
    // first one is warmed up for 20 s after the first, once this test has looked).
    let (pool, _p) = node_pool_of(&client, "karp-warm", 64, "slow").await;
    let mut spec = karpenter_group(&pool, ns.name());
    spec["warmUpBefore"] = json!("40s");
    spec["bootTime"] = json!("20s");
    let (group, _g) = node_group(&client, "karp-warm", spec).await;
    // Made early in a minute, the DataJob's first run (at the next minute) is at least
    // 30 s away: time for the warm-up to make a node.
    loop {
        let second = chrono::Utc::now().timestamp() % 60;
        if second < 25 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let due = {
        let now = chrono::Utc::now().timestamp();
        chrono::DateTime::from_timestamp(now - now % 60 + 60, 0).unwrap()
    };
    let api = datajob(
        &client,
        ns.name(),
        "nightly",
        json!({"image": "busybox", "schedule": "* * * * *",
            "resources": {"cpu": 3, "memory": "4Gi"},
            "podAnnotations": {kwok::DURATION: "5s"}}),
    )
    .await;
    // Before the run is due: a buffer owned by the DataJob, shaped like its pod, and
    // the group saying so.
    // The warm-up begins 40 s before the run is due: up to 20 s from now when the
    // DataJob was made early in the minute; then a reconcile or two.
    let warm_up_from = (due - chrono::Duration::seconds(40) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let buffers = capacity_buffers(&client, ns.name());
    let buffer = wait_for(
        "the run's CapacityBuffer",
        warm_up_from + Duration::from_secs(15),
        || {
            let buffers = buffers.clone();
            async move { Ok(buffers.get_opt("nightly-warm").await?) }
        },
    )
    .await
    .unwrap();
    assert!(
        chrono::Utc::now() < due,
        "the buffer came before the run was due"
    );
    let owner = &buffer.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("DataJob", "nightly")
    );
    assert_eq!(buffer.data["spec"]["replicas"], 1);
    let warm_up = Api::<NodeGroup>::all(client.clone())
        .get(&group)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "WarmUp");
    assert!(
        warm_up
            .as_ref()
            .is_some_and(|c| c.status == "True" && c.message.contains("nightly-warm")),
        "{warm_up:?}"
    );
    // Karpenter makes a node for the buffer, Ready before the run is due.
    let node = wait_for(
        "a node Ready for the buffer",
        Duration::from_secs(60),
        || {
            let (client, pool) = (client.clone(), pool.clone());
            async move {
                Ok(pool_nodes(&client, &pool)
                    .await
                    .into_iter()
                    .find(|n| ready_at(n).is_some()))
            }
        },
    )
    .await
    .unwrap();
    // A boot: from the demand (the buffer) to a Ready node, which a run without a
    // buffer would wait for after it was due.
    let ready = ready_at(&node).unwrap();
    let boot = ready - k8s_time(buffer.metadata.creation_timestamp.as_ref().unwrap());
    assert!(
        ready <= due,
        "the node was Ready at {ready}, before the run at {due}"
    );
    assert!(boot >= chrono::Duration::seconds(15), "a slow boot: {boot}");
    // The run starts on it, sooner after it is due than a boot takes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pod = wait_for("the run's pod bound", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            Ok(pods
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some())))
        }
    })
    .await
    .unwrap();
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name_any().as_str()),
        "the run runs on the buffer's node"
    );
    // Its pod bound, the buffer goes (before the next run's warm-up, 20 s after this
    // one was due).
    wait_for(
        "the buffer gone once the run had its pod",
        Duration::from_secs(10),
        || {
            let buffers = buffers.clone();
            async move {
                Ok(buffers
                    .get_opt("nightly-warm")
                    .await?
                    .is_none()
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    succeeded(&api, "nightly", Duration::from_secs(120))
        .await
        .unwrap();
    let pod = pods.get(&pod.name_any()).await.unwrap();
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(k8s_time)
        .unwrap();
    let delay = scheduled - due;
    eprintln!("karpenter warm-up: boot {boot}, start delay {delay}");
    assert!(
        delay < boot,
        "start delay {delay} is less than a boot ({boot})"
    );
}

#[tokio::test]
async fn a_capacity_buffer_someone_else_edits_or_deletes_is_put_back_once_not_fought_over() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-fight").await;
    let (pool, _p) = node_pool(&client, "karp-fight", 64).await;
    let mut spec = karpenter_group(&pool, ns.name());
    spec["warmUpBefore"] = json!("1h");
    let (_group, _g) = node_group(&client, "karp-fight", spec).await;
    // Due in about 30 minutes, within the hour of warm-up: its buffer stays all test long.
    let minute = (chrono::Utc::now() + chrono::Duration::minutes(30)).format("%M");
    let _api = datajob(
        &client,
        ns.name(),
        "hourly",
        json!({"image": "busybox", "schedule": format!("{minute} * * * *"),
            "resources": {"cpu": 2, "memory": "4Gi"}}),
    )
    .await;
    let buffers = capacity_buffers(&client, ns.name());
    let generation = |b: &DynamicObject| b.metadata.generation.unwrap_or_default();
    let first = wait_for("the run's CapacityBuffer", Duration::from_secs(30), || {
        let buffers = buffers.clone();
        async move { Ok(buffers.get_opt("hourly-warm").await?) }
    })
    .await
    .unwrap();
    // Someone else edits it: it is put back, with one write.
    let edit = json!({"spec": {"replicas": 3}});
    let edited = buffers
        .patch(
            "hourly-warm",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&edit),
        )
        .await
        .unwrap();
    assert_eq!(edited.data["spec"]["replicas"], 3);
    let put_back = wait_for("the edit undone", Duration::from_secs(15), || {
        let buffers = buffers.clone();
        async move {
            Ok(buffers
                .get_opt("hourly-warm")
                .await?
                .filter(|b| b.data["spec"]["replicas"] == 1))
        }
    })
    .await
    .unwrap();
    assert_eq!(
        generation(&put_back),
        generation(&edited) + 1,
        "one write put it back"
    );
    // Then left alone: the group reconciles every few seconds, and writes nothing to a
    // buffer that is as it wants it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = buffers.get("hourly-warm").await.unwrap();
    assert_eq!(
        generation(&later),
        generation(&put_back),
        "no writes to an unchanged buffer"
    );
    // Someone else deletes it: it comes back, owned by the DataJob.
    buffers
        .delete("hourly-warm", &DeleteParams::default())
        .await
        .unwrap();
    let back = wait_for("the buffer back", Duration::from_secs(15), || {
        let buffers = buffers.clone();
        let gone = first.uid();
        async move {
            Ok(buffers
                .get_opt("hourly-warm")
                .await?
                .filter(|b| b.uid() != gone))
        }
    })
    .await
    .unwrap();
    assert_eq!(back.data["spec"]["replicas"], 1);
    assert_eq!(back.owner_references()[0].name, "hourly");
}

/// The node a run's pod is bound to, once it is: (the pod's uid, the node).
async fn bound_node(pods: &Api<Pod>, datajob: &str) -> (String, String) {
    let selector = format!("{}={datajob}", datajob_core::labels::NAME);
    wait_for(&format!("{datajob} bound"), Duration::from_secs(60), || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            Ok(pods
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .find_map(|p| {
                    let node = p.spec.as_ref()?.node_name.clone()?;
                    Some((p.uid()?, node))
                }))
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn two_half_empty_nodes_under_running_runs_are_held_by_do_not_disrupt() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "karp-merge").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let (pool, _p) = node_pool(&client, "karp-merge", 64).await;
    let (group, _g) = node_group(&client, "karp-merge", karpenter_group(&pool, ns.name())).await;
    ready_is(
        &client,
        &group,
        "True",
        "the group Ready",
        Duration::from_secs(30),
    )
    .await;
    let run = |name: &'static str, cpu: &'static str, length: &'static str| {
        let client = client.clone();
        let ns = ns.name().to_string();
        async move {
            let spec = json!({"image": "busybox", "resources": {"cpu": cpu, "memory": "2Gi"},
                "podAnnotations": {kwok::DURATION: length}});
            datajob(&client, &ns, name, spec).await
        }
    };
    // A 1.5-CPU run on a first machine, a 2-CPU filler beside it (the machines have 3.9
    // CPUs), then a second 1.5-CPU run, which needs a second machine. Once the filler
    // is done, one machine could hold both runs: Karpenter's underused-node
    // consolidation (5 s after a change) would move one of them.
    // Long enough to outlast Karpenter's event dedupe (below).
    let _a = run("long-a", "1500m", "300s").await;
    let (a_uid, a_node) = bound_node(&pods, "long-a").await;
    let _filler = run("filler", "2", "10s").await;
    let (_, filler_node) = bound_node(&pods, "filler").await;
    assert_eq!(filler_node, a_node, "the filler shares long-a's machine");
    let _c = run("long-c", "1500m", "300s").await;
    let (c_uid, c_node) = bound_node(&pods, "long-c").await;
    assert_ne!(c_node, a_node, "long-c on a second machine");
    // Karpenter looks at both machines for consolidation, and says what stops it: the
    // run's pod's karpenter.sh/do-not-disrupt. Its recorder drops a DisruptionBlocked
    // event for a node that had one in the last 2 minutes, whatever the message
    // (sigs.k8s.io/karpenter pkg/events: the key is the reason and the node's UID), so a
    // node that was first "not initialized", or held for the filler while it ran, says
    // that the long run holds it up to 2 minutes later.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    for (node, run) in [(&a_node, "long-a"), (&c_node, "long-c")] {
        let pod = format!("(Pod={}/{run}-", ns.name());
        wait_for(
            &format!("Karpenter holding {node} for {run}'s do-not-disrupt"),
            Duration::from_secs(180),
            || {
                let (events, pod) = (events.clone(), pod.clone());
                let selector = format!("involvedObject.name={node},reason=DisruptionBlocked");
                async move {
                    Ok(events
                        .list(&ListParams::default().fields(&selector))
                        .await?
                        .items
                        .into_iter()
                        .filter_map(|e| e.message)
                        .find(|m| m.contains("karpenter.sh/do-not-disrupt") && m.contains(&pod)))
                }
            },
        )
        .await
        .unwrap();
    }
    // Both machines stayed, and each run kept the pod it started with.
    let mut names: Vec<String> = pool_nodes(&client, &pool)
        .await
        .iter()
        .map(|n| n.name_any())
        .collect();
    names.sort();
    let mut expected = vec![a_node, c_node];
    expected.sort();
    assert_eq!(names, expected, "both machines under running runs stayed");
    for (name, uid) in [("long-a", a_uid), ("long-c", c_uid)] {
        let list = pods
            .list(&ListParams::default().labels(&format!("{}={name}", datajob_core::labels::NAME)))
            .await
            .unwrap()
            .items;
        assert_eq!(
            list.len(),
            1,
            "{name} has one pod: never evicted and retried"
        );
        assert_eq!(list[0].uid().as_deref(), Some(uid.as_str()), "{name}");
        assert_eq!(
            list[0].status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running"),
            "{name} still runs"
        );
    }
}

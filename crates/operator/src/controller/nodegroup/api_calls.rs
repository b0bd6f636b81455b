//! The exact calls one NodeGroup reconcile makes, against kube's mocked client: no
//! cluster, every request recorded and answered as the apiserver would.
use super::*;
use crate::controller::mock::{self, Call};
use crate::metrics::Metrics;
use datajob_core::decide::nodegroup::reserve;
use datajob_core::labels::{self, MANAGED_BY, MANAGED_BY_VALUE, NAME};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const STATUS: &str = "/apis/datajob.dev/v1alpha1/nodegroups/batch/status";
const PODS: &str = "/api/v1/pods";
const NODE: &str = "/api/v1/nodes/batch-0";
/// The query of the list of the pods on batch-0, read before the node goes (kube
/// starts its queries with `&`).
const ON_NODE: &str = "&fieldSelector=spec.nodeName%3Dbatch-0";
/// The run pod of [`run_pod`].
const RUN_POD: &str = "/api/v1/namespaces/data/pods/nightly-29934840-abcde";
const NOT_NEEDED: &str =
    "no pending run, and no scheduled run due soon that keeping them would pay for";

/// A kwok group `batch` of 4-CPU, 16Gi nodes, at most 3, whose nodes boot 5 s after
/// the decision to make them (the default); the default `Schedule` policy, `minSize` 0.
fn group(status: serde_json::Value) -> NodeGroup {
    serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": "batch", "uid": "uid-batch"},
        "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 3,
            "provider": {"kwok": {}}},
        "status": status,
    }))
    .expect("a NodeGroup")
}

/// The group's Ready node `batch-0`, with `taints`.
fn node(taints: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "batch-0", "labels": {GROUP_LABEL: "batch"}},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// `pod` as the API serves it.
fn pod_object(pod: Pod) -> serde_json::Value {
    let mut o = serde_json::to_value(pod).unwrap_or_default();
    o["apiVersion"] = json!("v1");
    o["kind"] = json!("Pod");
    o
}

/// `batch-0` reserved for the run (it also carries `theirs`), made `made_secs_ago`.
fn reserved_node(made_secs_ago: i64) -> serde_json::Value {
    let mut n = node(json!([{"key": "dedicated", "effect": "NoSchedule"},
        {"key": reserve::RESERVED_TAINT, "value": "batch-0", "effect": "NoSchedule"}]));
    n["metadata"]["creationTimestamp"] = json!(labels::rfc3339(
        Utc::now() - chrono::Duration::seconds(made_secs_ago)
    ));
    n
}

/// The run pod of [`run_pod`], holding `batch-0`'s reservation.
fn holding(mut pod: Pod) -> Pod {
    if let Some(s) = pod.spec.as_mut() {
        s.tolerations = Some(vec![reserve::toleration("batch-0")]);
    }
    pod
}

/// What the group's status says while `batch-0` is reserved for the run that waits
/// (the node is full with it, on paper).
fn reserved_and_waiting() -> serde_json::Value {
    let mut status = at_rest();
    status["pendingPods"] = json!(1);
    status["room"] =
        json!([{"ready": true, "cpu": "0", "memory": "0", "ephemeralStorage": "100Gi"}]);
    status
}

/// Whether the reconcile patched `batch-0` (its taints: the only node patch).
fn patches_node(calls: &[Call]) -> bool {
    calls.iter().any(|c| c.call == format!("PATCH {NODE}"))
}

fn as_node(node: serde_json::Value) -> Node {
    serde_json::from_value(node).expect("a Node")
}

/// A DataJob run's pod placed on the group, asking for `cpu` and `memory`: running on
/// `node`, or pending.
fn run_pod(node: Option<&str>, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "nightly-29934840-abcde", "namespace": "data",
            "labels": {NAME: "nightly", MANAGED_BY: MANAGED_BY_VALUE},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                "name": "nightly-29934840", "uid": "uid-run", "controller": true}]},
        "spec": {"nodeSelector": {GROUP_LABEL: "batch"}, "nodeName": node,
            "containers": [{"name": "main", "image": "registry.example/acme/etl:1.0",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }},
    }))
    .expect("a Pod")
}

/// The DataJob `nightly` of [`run_pod`], and the Job its CronJob made for that run:
/// what makes the pod a DataJob's run.
fn run_owners() -> (Vec<DataJob>, Vec<Job>) {
    let dj = json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "nightly", "namespace": "data", "uid": "uid-nightly"},
        "spec": {"image": "registry.example/acme/etl:1.0"}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-29934840", "namespace": "data", "uid": "uid-run",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                "name": "nightly", "uid": "uid-cronjob", "controller": true}]}});
    (
        vec![serde_json::from_value(dj).expect("a DataJob")],
        vec![serde_json::from_value(job).expect("a Job")],
    )
}

/// What the reconcile writes for the group with one Ready node that a run fills.
fn at_rest() -> serde_json::Value {
    json!({
        "desired": 1, "current": 1, "ready": 1, "pendingPods": 0, "activePods": 1,
        "lastScaleTime": "2026-12-01T02:00:00Z",
        "lastScaleReason": "0 -> 1: 1 pending run pod(s) need 1 more node(s)",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
            "message": "the node group is valid and its provider answers",
            "lastTransitionTime": "2026-12-01T02:00:00Z"}],
    })
}

/// Every call one reconcile of `ng` makes, with `nodes` and `pods` in the caches,
/// against a cluster that holds `held` (path, object).
async fn calls_of_one_reconcile(
    ng: NodeGroup,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    held: Vec<(&str, serde_json::Value)>,
) -> Vec<Call> {
    calls_of_one_reconcile_by(ng, nodes, pods, held, HashMap::new()).await
}

/// As [`calls_of_one_reconcile`], by a replica that made the nodes of `reserved_for`
/// reserved for those pods.
async fn calls_of_one_reconcile_by(
    ng: NodeGroup,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    held: Vec<(&str, serde_json::Value)>,
    reserved_for: HashMap<String, Vec<(String, String)>>,
) -> Vec<Call> {
    let (client, calls) = mock::client_holding(
        serde_json::to_value(&ng).unwrap_or_default(),
        held.into_iter().map(|(p, o)| (p.to_string(), o)).collect(),
    );
    let (datajobs, jobs) = run_owners();
    let ctx = context_of(
        client,
        Stores {
            pods: mock::store_of(pods),
            jobs: mock::store_of(jobs),
            nodes: mock::store_of(nodes),
            datajobs: mock::store_of(datajobs),
        },
        reserved_for,
    );
    let action = reconcile(Arc::new(ng), ctx).await;
    assert!(action.is_ok(), "the reconcile failed: {:?}", action.err());
    calls.lock().map(|c| c.clone()).unwrap_or_default()
}

/// The caches a reconcile reads.
struct Stores {
    pods: Store<Pod>,
    jobs: Store<Job>,
    nodes: Store<Node>,
    datajobs: Store<DataJob>,
}

/// The reconciler's context over `stores`, as [`run`] makes it.
fn context_of(
    client: kube::Client,
    stores: Stores,
    reserved_for: HashMap<String, Vec<(String, String)>>,
) -> Arc<NodeGroupContext> {
    let Stores {
        pods,
        jobs,
        nodes,
        datajobs,
    } = stores;
    // The gate as `run` polls it: done at once when every store has synced.
    let (synced, gate) = synced::gate(&pods, &jobs, &nodes, &datajobs);
    let _ = futures::FutureExt::now_or_never(gate);
    Arc::new(NodeGroupContext {
        base: Context::new(
            client,
            Metrics::new(true),
            datajob_core::validation::Limits::default(),
            datajob_core::decide::children::Guards::default(),
        ),
        pods,
        jobs,
        nodes,
        datajobs,
        counted_at: Mutex::new(HashMap::new()),
        boots: Mutex::new(HashMap::new()),
        reserved_for: Mutex::new(reserved_for),
        synced,
    })
}

/// A store that has taken `objects` but not finished its first list: what a cache
/// holds while its watch starts, as on a leader start.
fn unsynced_store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = kube::runtime::reflector::store();
    for o in objects {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
    }
    store
}

fn methods_and_paths(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.call.as_str()).collect()
}

/// The status the reconcile wrote (its one status patch).
fn written_status(calls: &[Call]) -> &serde_json::Value {
    let patch = format!("PATCH {STATUS}");
    let writes: Vec<&Call> = calls.iter().filter(|c| c.call == patch).collect();
    assert_eq!(writes.len(), 1, "one status patch: {calls:#?}");
    assert_eq!(writes[0].body["apiVersion"], "datajob.dev/v1alpha1");
    assert_eq!(writes[0].body["kind"], "NodeGroup");
    &writes[0].body["status"]
}

/// What the reconcile writes for the group when a run waits for its first node,
/// decided at 02:00.
fn scaled_up() -> serde_json::Value {
    json!({
        "desired": 1, "current": 0, "ready": 0, "pendingPods": 1, "activePods": 1,
        "lastScaleTime": "2026-12-01T02:00:00Z",
        "lastScaleReason": "0 -> 1: 1 pending run pod(s) need 1 more node(s)",
        // The node on its way, less the run it takes.
        "room": [{"ready": false, "cpu": "3", "memory": "15Gi", "ephemeralStorage": "100Gi"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
            "message": "the node group is valid and its provider answers",
            "lastTransitionTime": "2026-12-01T02:00:00Z"}],
    })
}

/// The shared error policy on a NodeGroup: the error metric, a Warning event on the
/// group (published in the background) and a requeue in 10 s.
#[tokio::test]
async fn a_failed_reconcile_is_told_on_the_node_group_as_a_warning_event() {
    let (client, calls) = mock::client_holding(json!({}), Vec::new());
    let ctx = Arc::new(NodeGroupContext {
        base: Context::new(
            client,
            Metrics::new(true),
            datajob_core::validation::Limits::default(),
            datajob_core::decide::children::Guards::default(),
        ),
        pods: mock::store_of(Vec::new()),
        jobs: mock::store_of(Vec::new()),
        nodes: mock::store_of(Vec::new()),
        datajobs: mock::store_of(Vec::new()),
        counted_at: Mutex::new(HashMap::new()),
        boots: Mutex::new(HashMap::new()),
        reserved_for: Mutex::new(HashMap::new()),
        synced: Default::default(),
    });
    let error = Error::MissingNamespace("batch".into());
    let action = error_policy(Arc::new(group(json!(null))), &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    let mut event = None;
    for _ in 0..100 {
        event = calls.lock().ok().and_then(|c| {
            c.iter()
                .find(|c| c.call.starts_with("POST /apis/events.k8s.io/v1/"))
                .cloned()
        });
        if event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = event.expect("a Warning event is posted");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "ReconcileFailed");
    assert_eq!(event.body["regarding"]["kind"], "NodeGroup");
    assert_eq!(event.body["regarding"]["name"], "batch");
    let note = event.body["note"].as_str().unwrap_or_default();
    assert!(note.contains("retrying in 10s"), "{note}");
    let metrics = ctx.base.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("datajob_reconcile_errors_total{")
                && l.contains("controller=\"nodegroup\"")
                && l.contains("error=\"missing_namespace\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_pod_that_only_looks_like_a_run_raises_nothing_and_is_not_patched() {
    // DataJob's labels and the group's node selector, but no DataJob's Job owns it.
    let mut bare = run_pod(None, "1", "1Gi");
    bare.metadata.owner_references = None;
    let mut elsewhere = run_pod(None, "1", "1Gi");
    elsewhere.metadata.namespace = Some("other".into());
    for pod in [bare, elsewhere] {
        let calls =
            calls_of_one_reconcile(group(json!(null)), Vec::new(), vec![pod], Vec::new()).await;
        assert_eq!(methods_and_paths(&calls), [format!("PATCH {STATUS}")]);
        let status = written_status(&calls);
        assert_eq!(
            (
                &status["desired"],
                &status["pendingPods"],
                &status["activePods"]
            ),
            (&json!(0), &json!(0), &json!(0)),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_pending_run_raises_the_size_and_no_node_is_made_before_it_boots() {
    let calls = calls_of_one_reconcile(
        group(json!(null)),
        Vec::new(),
        vec![run_pod(None, "1", "1Gi")],
        Vec::new(),
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        ["PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status"]
    );
    let status = written_status(&calls);
    assert_eq!(
        status["lastScaleReason"],
        "0 -> 1: 1 pending run pod(s) need 1 more node(s)"
    );
    // Decided now; everything else as [`scaled_up`] says.
    let decided = &status["lastScaleTime"];
    assert!(
        decided
            .as_str()
            .is_some_and(|t| t != "2026-12-01T02:00:00Z"),
        "{status}"
    );
    let mut expected = scaled_up();
    expected["lastScaleTime"] = decided.clone();
    expected["conditions"][0]["lastTransitionTime"] =
        status["conditions"][0]["lastTransitionTime"].clone();
    assert_eq!(*status, expected);
}

#[tokio::test]
async fn a_kwok_node_whose_boot_delay_has_passed_is_made_reserved_for_the_waiting_run_and_nothing_else_written()
 {
    // Sized up at 02:00 (the status the test above writes): with no boot clock in
    // memory (as after a restart) the node's starts then, so it has booted.
    let calls = calls_of_one_reconcile(
        group(scaled_up()),
        Vec::new(),
        vec![run_pod(None, "1", "1Gi")],
        vec![(RUN_POD, pod_object(run_pod(None, "1", "1Gi")))],
    )
    .await;
    // The status already says all this: it is not written again.
    assert_eq!(
        methods_and_paths(&calls),
        [&format!("PATCH {RUN_POD}"), "POST /api/v1/nodes"]
    );
    // The run that waits gets the node's toleration first (appended: nothing of
    // the pod is overwritten), then the node comes with the matching taint.
    let toleration = json!({"key": reserve::RESERVED_TAINT, "operator": "Equal",
        "value": "batch-0", "effect": "NoSchedule"});
    assert_eq!(
        calls[0].body,
        json!([{"op": "add", "path": "/spec/tolerations/-", "value": toleration}])
    );
    let made = &calls[1].body;
    assert_eq!(
        made["spec"]["taints"],
        json!([{"key": reserve::RESERVED_TAINT, "value": "batch-0", "effect": "NoSchedule"}])
    );
    assert_eq!(
        made["metadata"]["name"], "batch-0",
        "named <group>-<lowest free i>"
    );
    assert_eq!(
        made["metadata"]["labels"],
        json!({GROUP_LABEL: "batch", "type": "kwok", "kubernetes.io/hostname": "batch-0",
            MANAGED_BY: MANAGED_BY_VALUE})
    );
    assert_eq!(
        made["metadata"]["ownerReferences"],
        json!([{"apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
            "name": "batch", "uid": "uid-batch", "controller": true}])
    );
    assert_eq!(
        made["status"]["allocatable"],
        json!({"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi",
            "nvidia.com/gpu": "0", "pods": "110"})
    );
}

#[tokio::test]
async fn a_group_at_rest_costs_no_call() {
    let calls = calls_of_one_reconcile(
        group(at_rest()),
        vec![as_node(node(json!(null)))],
        vec![run_pod(Some("batch-0"), "4", "16Gi")],
        Vec::new(),
    )
    .await;
    assert_eq!(calls, Vec::<Call>::new());
}

#[tokio::test]
async fn a_group_at_rest_whose_status_is_behind_gets_one_status_patch_and_nothing_else() {
    // The status was written while the node booted.
    let mut booting = at_rest();
    booting["ready"] = json!(0);
    let calls = calls_of_one_reconcile(
        group(booting),
        vec![as_node(node(json!(null)))],
        vec![run_pod(Some("batch-0"), "4", "16Gi")],
        Vec::new(),
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        ["PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status"]
    );
    // No new size: the last scale stays as it was.
    assert_eq!(*written_status(&calls), at_rest());
}

#[tokio::test]
async fn an_empty_node_is_tainted_its_pods_counted_again_and_it_is_deleted() {
    let mut was = at_rest();
    was["activePods"] = json!(0);
    was["idleSince"] = json!("2026-12-01T02:05:00Z");
    let calls = calls_of_one_reconcile(
        group(was),
        vec![as_node(node(json!(null)))],
        Vec::new(),
        vec![
            (NODE, node(json!(null))),
            (PODS, crate::controller::mock::no_pods()),
        ],
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        [
            // Shrinking: the pods on the node, from the API rather than the cache.
            "GET /api/v1/pods",
            // The scale-down taint, on the node as read.
            "GET /api/v1/nodes/batch-0",
            "PATCH /api/v1/nodes/batch-0",
            // Still empty once tainted: it goes.
            "GET /api/v1/pods",
            "DELETE /api/v1/nodes/batch-0",
            "PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status",
        ]
    );
    assert_eq!(calls[0].query.as_deref(), Some(ON_NODE));
    assert_eq!(calls[3].query.as_deref(), Some(ON_NODE));
    assert_eq!(
        calls[2].body,
        json!([{"op": "add", "path": "/spec/taints",
            "value": [{"key": nodegroup::SCALE_DOWN_TAINT, "effect": "NoSchedule"}]}])
    );
    let status = written_status(&calls);
    assert_eq!(
        (&status["desired"], &status["current"], &status["ready"]),
        (&json!(0), &json!(1), &json!(1))
    );
    assert_eq!(status["idleSince"], "2026-12-01T02:05:00Z");
    assert_eq!(
        status["lastScaleReason"],
        format!("1 -> 0: 1 node(s) not needed: {NOT_NEEDED}")
    );
    assert_ne!(
        status["lastScaleTime"], "2026-12-01T02:00:00Z",
        "scaled now"
    );
}

#[tokio::test]
async fn an_empty_node_gone_before_its_removal_is_neither_tainted_nor_deleted() {
    let calls = calls_of_one_reconcile(
        group(at_rest()),
        vec![as_node(node(json!(null)))],
        Vec::new(),
        vec![(PODS, crate::controller::mock::no_pods())],
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        [
            "GET /api/v1/pods",
            // 404: nothing to taint or delete.
            "GET /api/v1/nodes/batch-0",
            "PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status",
        ]
    );
    assert_eq!(written_status(&calls)["desired"], 0);
}

#[tokio::test]
async fn a_scale_down_taint_left_on_a_busy_node_is_lifted_and_nothing_else_written() {
    let taint = json!([{"key": nodegroup::SCALE_DOWN_TAINT, "effect": "NoSchedule"}]);
    let calls = calls_of_one_reconcile(
        group(at_rest()),
        vec![as_node(node(taint.clone()))],
        vec![run_pod(Some("batch-0"), "4", "16Gi")],
        vec![(NODE, node(taint.clone()))],
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        ["GET /api/v1/nodes/batch-0", "PATCH /api/v1/nodes/batch-0"]
    );
    // Only if the taints are still those read.
    assert_eq!(
        calls[1].body,
        json!([{"op": "test", "path": "/spec/taints", "value": taint},
            {"op": "replace", "path": "/spec/taints", "value": []}])
    );
}

#[tokio::test]
async fn a_reservation_is_lifted_once_its_run_is_bound_and_nothing_else_written() {
    let calls = calls_of_one_reconcile(
        group(at_rest()),
        vec![as_node(reserved_node(1))],
        vec![holding(run_pod(Some("batch-0"), "4", "16Gi"))],
        vec![(NODE, reserved_node(1))],
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        ["GET /api/v1/nodes/batch-0", "PATCH /api/v1/nodes/batch-0"]
    );
    // Only the reservation goes, and only if the taints are still those read.
    let read = reserved_node(1)["spec"]["taints"].clone();
    assert_eq!(
        calls[1].body,
        json!([{"op": "test", "path": "/spec/taints", "value": read},
            {"op": "replace", "path": "/spec/taints",
                "value": [{"key": "dedicated", "effect": "NoSchedule"}]}])
    );
}

#[tokio::test]
async fn a_reservation_whose_run_still_waits_holds_until_the_hold_ends() {
    let waiting = || holding(run_pod(None, "4", "16Gi"));
    let status = reserved_and_waiting();
    let calls = calls_of_one_reconcile(
        group(status.clone()),
        vec![as_node(reserved_node(1))],
        vec![waiting()],
        vec![(NODE, reserved_node(1))],
    )
    .await;
    assert!(!patches_node(&calls), "{calls:#?}");
    // Held for the hold: anyone may have the node now.
    let hold = reserve::RESERVATION_HOLD.as_secs() as i64;
    let calls = calls_of_one_reconcile(
        group(status),
        vec![as_node(reserved_node(hold + 1))],
        vec![waiting()],
        vec![(NODE, reserved_node(hold + 1))],
    )
    .await;
    assert!(patches_node(&calls), "{calls:#?}");
}

#[tokio::test]
async fn a_reservation_this_replica_made_holds_before_the_pod_cache_shows_its_toleration() {
    // The node was just made for the waiting run; the pod cache has not seen the
    // run's new toleration yet.
    let waiting = || run_pod(None, "4", "16Gi");
    let status = reserved_and_waiting();
    let made_here = HashMap::from([(
        "batch-0".to_string(),
        vec![("data".to_string(), "nightly-29934840-abcde".to_string())],
    )]);
    let calls = calls_of_one_reconcile_by(
        group(status.clone()),
        vec![as_node(reserved_node(0))],
        vec![waiting()],
        vec![(NODE, reserved_node(0))],
        made_here,
    )
    .await;
    assert!(!patches_node(&calls), "{calls:#?}");
    // Made by another replica, or before a restart: the cache alone says who holds
    // it, and here no one does.
    let calls = calls_of_one_reconcile(
        group(status),
        vec![as_node(reserved_node(0))],
        vec![waiting()],
        vec![(NODE, reserved_node(0))],
    )
    .await;
    assert!(patches_node(&calls), "{calls:#?}");
}

/// A karpenter group on a cluster with no CapacityBuffer CRD (the list answers 404):
/// the reconcile goes on, writes no buffer or PodTemplate, and its status says that
/// the group works without warm-up; the group stays Ready on its NodePool.
#[tokio::test]
async fn a_karpenter_group_without_the_capacity_buffer_api_works_without_warm_up() {
    let ng: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
        "metadata": {"name": "batch", "uid": "uid-batch"},
        "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 3, "warmUpBefore": "5m",
            "provider": {"karpenter": {"nodePool": "batch"}}},
    }))
    .expect("a NodeGroup");
    let pool = json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "batch"}, "spec": {"template": {"spec": {}}}});
    let calls = calls_of_one_reconcile(
        ng,
        Vec::new(),
        Vec::new(),
        vec![("/apis/karpenter.sh/v1/nodepools/batch", pool)],
    )
    .await;
    let paths = methods_and_paths(&calls);
    assert!(
        paths.contains(&"GET /apis/autoscaling.x-k8s.io/v1beta1/capacitybuffers"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("PATCH")
            && (p.contains("capacitybuffers") || p.contains("podtemplates"))),
        "no buffer written: {paths:?}"
    );
    let conditions = written_status(&calls)["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |t: &str| conditions.iter().find(|c| c["type"] == t).cloned();
    let warm = of("WarmUp").expect("a WarmUp condition");
    assert_eq!(
        (&warm["status"], &warm["reason"]),
        (&json!("False"), &json!("NoCapacityBufferAPI")),
        "{warm}"
    );
    assert!(
        warm["message"]
            .as_str()
            .is_some_and(|m| m.contains("no warm-up") && m.contains("CapacityBuffer CRD")),
        "{warm}"
    );
    assert_eq!(
        of("Ready").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
}

/// The Cluster API MachineDeployment `capi/workers` a group scales.
const SCALE: &str =
    "/apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machinedeployments/workers/scale";

/// A Cluster API group `batch` on the MachineDeployment `capi/workers`, at most 3
/// nodes, with `policy` and `status`.
fn cluster_api_group(policy: &str, status: serde_json::Value) -> NodeGroup {
    serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": "batch", "uid": "uid-batch"},
        "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 3,
            "scaleDownPolicy": policy, "scaleDownAfter": "2m",
            "provider": {"clusterAPI": {"namespace": "capi", "name": "workers"}}},
        "status": status,
    }))
    .expect("a NodeGroup")
}

/// The MachineDeployment's `scale` subresource at `replicas`.
fn scale_of(replicas: i32) -> serde_json::Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "workers", "namespace": "capi"},
        "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}

/// A leader start: the controllers run before the pod, Node and Job caches have listed
/// anything, so the group looks as if it had no node and no work. Nothing may be decided
/// from that: no scale call, no status written (its conditions stay as they were), a
/// requeue soon.
#[tokio::test]
async fn a_reconcile_before_the_caches_synced_scales_nothing_and_writes_nothing() {
    let mut was = at_rest();
    was["desired"] = json!(2);
    was["current"] = json!(2);
    was["ready"] = json!(2);
    let ng = cluster_api_group("Schedule", was);
    let (client, calls) = mock::client_holding(
        serde_json::to_value(&ng).unwrap_or_default(),
        vec![(SCALE.to_string(), scale_of(2))],
    );
    let (datajobs, _) = run_owners();
    let ctx = context_of(
        client,
        Stores {
            pods: unsynced_store_of(Vec::new()),
            jobs: unsynced_store_of(Vec::new()),
            nodes: unsynced_store_of(Vec::new()),
            datajobs: mock::store_of(datajobs),
        },
        HashMap::new(),
    );
    let action = reconcile(Arc::new(ng), ctx).await;
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert!(
        !calls.iter().any(|c| c.call.starts_with("PATCH")),
        "nothing is written before the caches synced: {calls:#?}"
    );
    assert_eq!(
        action.ok(),
        Some(Action::requeue(Duration::from_secs(1))),
        "looked at again soon"
    );
}

/// The Machines of `capi/workers`, listed by their MachineDeployment's label.
const MACHINES: &str = "/apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machines";

/// The Machine `name` of `capi/workers`, on `node` (none yet: `None`), with `mark`.
fn machine(name: &str, node: Option<&str>, mark: Option<&str>) -> serde_json::Value {
    let mut m = json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
        "metadata": {"name": name, "namespace": "capi",
            "labels": {"cluster.x-k8s.io/deployment-name": "workers"}},
        "spec": {"clusterName": "c"}, "status": {}});
    if let Some(n) = node {
        m["status"]["nodeRef"] = json!({"kind": "Node", "name": n});
    }
    if let Some(v) = mark {
        m["metadata"]["annotations"] = json!({"cluster.x-k8s.io/delete-machine": v});
    }
    m
}

/// The group's Ready node `name`, of a Cluster API machine.
fn capi_node(name: &str) -> Node {
    let mut n = node(json!(null));
    n["metadata"]["name"] = json!(name);
    as_node(n)
}

/// The pods on `node`, as the API lists them: `pods`.
fn pods_on(node: &str, pods: Vec<serde_json::Value>) -> (String, serde_json::Value) {
    (
        format!("{PODS}?&fieldSelector=spec.nodeName%3D{node}"),
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}),
    )
}

/// An idle Cluster API group of 3 machines: `m-a` on the empty node `capi-a`, `m-b` on
/// `capi-b`, where someone else's pod runs, and `m-c` with no node yet, which carries a
/// mark DataJob left. The `Idle` policy lets the group shrink to the one node with a
/// pod: two replicas should go, but only `m-a`'s node is empty. So: DataJob's stale mark
/// comes off `m-c`, `m-a` is marked, and only then the replicas go down, by one.
#[tokio::test]
async fn a_cluster_api_scale_down_marks_the_empty_machine_first_and_goes_down_only_by_those_marked()
{
    let mut was = at_rest();
    was["desired"] = json!(3);
    was["current"] = json!(2);
    was["ready"] = json!(2);
    was["activePods"] = json!(0);
    was["idleSince"] = json!("2020-01-01T00:00:00Z");
    let theirs = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "theirs", "namespace": "web"},
        "spec": {"nodeName": "capi-b", "containers": [{"name": "c", "image": "web:1"}]},
        "status": {"phase": "Running"}});
    let stale = "datajob.dev: node group batch found node capi-c empty at 2020-01-01T00:00:00Z";
    let machines = [
        machine("m-a", Some("capi-a"), None),
        machine("m-b", Some("capi-b"), None),
        machine("m-c", None, Some(stale)),
    ];
    let mut held: Vec<(String, serde_json::Value)> = vec![
        (SCALE.to_string(), scale_of(3)),
        (
            MACHINES.to_string(),
            json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineList",
                "metadata": {}, "items": machines}),
        ),
        pods_on("capi-a", Vec::new()),
        pods_on("capi-b", vec![theirs]),
    ];
    for m in &machines {
        held.push((
            format!(
                "{MACHINES}/{}",
                m["metadata"]["name"].as_str().unwrap_or_default()
            ),
            m.clone(),
        ));
    }
    let ng = cluster_api_group("Idle", was);
    let calls = calls_of_one_reconcile(
        ng,
        vec![capi_node("capi-a"), capi_node("capi-b")],
        Vec::new(),
        held.iter().map(|(p, o)| (p.as_str(), o.clone())).collect(),
    )
    .await;
    let writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.call.starts_with("PATCH") && !c.call.ends_with("/status"))
        .collect();
    let writes_to: Vec<&str> = writes.iter().map(|c| c.call.as_str()).collect();
    assert_eq!(
        writes_to,
        [
            format!("PATCH {MACHINES}/m-c"),
            format!("PATCH {MACHINES}/m-a"),
            format!("PATCH {SCALE}"),
        ],
        "the marks first, then the scale: {calls:#?}"
    );
    assert_eq!(
        writes[0].body,
        json!({"metadata": {"annotations": {"cluster.x-k8s.io/delete-machine": null}}})
    );
    let mark = &writes[1].body["metadata"]["annotations"]["cluster.x-k8s.io/delete-machine"];
    assert!(
        mark.as_str().is_some_and(
            |m| m.starts_with("datajob.dev: node group batch found node capi-a empty at ")
        ),
        "{mark}"
    );
    assert_eq!(
        writes[2].body,
        json!({"spec": {"replicas": 2}}),
        "down by the one marked"
    );
    // The Machines are found by their MachineDeployment's label, and the marked
    // machine's node was counted empty from the API just before.
    let list = calls
        .iter()
        .find(|c| c.call == format!("GET {MACHINES}"))
        .expect("the machines are listed");
    assert_eq!(
        list.query.as_deref(),
        Some("&labelSelector=cluster.x-k8s.io%2Fdeployment-name%3Dworkers")
    );
    let counted_last = calls
        .iter()
        .take_while(|c| c.call != format!("PATCH {MACHINES}/m-a"))
        .filter(|c| c.call == format!("GET {PODS}"))
        .last()
        .and_then(|c| c.query.clone());
    assert_eq!(
        counted_last.as_deref(),
        Some("&fieldSelector=spec.nodeName%3Dcapi-a")
    );
}

#[tokio::test]
async fn a_cluster_api_scale_up_sets_the_replicas_and_marks_nothing() {
    let calls = calls_of_one_reconcile(
        cluster_api_group("Schedule", json!(null)),
        Vec::new(),
        vec![run_pod(None, "1", "1Gi")],
        vec![(SCALE, scale_of(0))],
    )
    .await;
    assert_eq!(
        methods_and_paths(&calls),
        [
            format!("GET {SCALE}"),
            format!("PATCH {SCALE}"),
            format!("PATCH {STATUS}"),
        ]
    );
    assert_eq!(calls[1].body, json!({"spec": {"replicas": 1}}));
}

//! Shared helpers for the end-to-end tests (`crates/e2e/tests/e2e/`, feature `e2e`).
//!
//! They talk to the local control plane started by `e2e/cluster.sh up`
//! (the caller exports `KUBECONFIG`; `e2e/run-e2e.sh` does all of it).
//! Use from a test file with `mod common;`.
//!
//! * [`client`] – a `kube::Client` from `KUBECONFIG`.
//! * [`test_namespace`] – a fresh namespace per test (deleted again when the
//!   guard is dropped), ready for pods (its `default` ServiceAccount exists).
//! * [`wait_for`] / [`wait_for_object`] – poll until a condition holds, with a timeout.
//! * [`events_for`] / [`wait_for_event`] – the events about one object.
//! * small readers for pod/job status and the kwok annotation names
//!   (see docs/testing.md for the conventions).
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datajob_api::{DataJob, NodeGroup, RunState};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

pub mod alerting;
pub mod daemon;
pub mod kubectl;
pub mod netcut;
pub mod operator;
pub mod plugin;
pub mod realnode;

/// The repository's root: its scripts, chart and CRDs.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The Kubernetes version `helm template` and `helm lint` render for: the local control
/// plane's (`K8S_VERSION` in `e2e/versions.env`). Without a cluster Helm assumes v1.20,
/// which the chart's `kubeVersion` refuses, as it would on a cluster that old.
pub fn kube_version() -> String {
    let pins =
        std::fs::read_to_string(format!("{ROOT}/e2e/versions.env")).expect("e2e/versions.env");
    pins.lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .expect("K8S_VERSION in e2e/versions.env")
        .trim()
        .to_string()
}

/// A binary of the workspace (`datajob-operator`, `kubectl-datajob`), from the target
/// directory this test binary was built in. `make e2e` and the `e2e/` scripts build
/// them first (`cargo build --bins`); a test that finds one missing says so.
pub fn bin(name: &str) -> std::path::PathBuf {
    // This test binary is <target>/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(std::path::Path::to_path_buf);
    let path = profile.unwrap_or_default().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` first (make e2e does)",
        path.display()
    );
    path
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Pod annotations understood by the kwok stages in `e2e/kwok/stages.yaml`.
pub mod kwok {
    /// How long the containers "run" (Go duration, e.g. `"5s"`; default `1s`).
    pub const DURATION: &str = "kwok.datajob.dev/duration";
    /// Exit code when they end (integer, default `0`).
    pub const EXIT_CODE: &str = "kwok.datajob.dev/exit-code";
    /// `"true"`: they end `OOMKilled` with exit code 137.
    pub const OOM: &str = "kwok.datajob.dev/oom";
    /// Termination message of the terminated state.
    pub const MESSAGE: &str = "kwok.datajob.dev/message";
    /// Stay Pending this long before Running (Go duration, default 0).
    pub const START_DELAY: &str = "kwok.datajob.dev/start-delay";
    /// CrashLoopBackOff length before a restart (Go duration, default `2s`).
    pub const RESTART_DELAY: &str = "kwok.datajob.dev/restart-delay";
    /// An image whose name contains this never pulls (ErrImagePull, then ImagePullBackOff).
    pub const BAD_IMAGE_MARKER: &str = "does-not-exist";
    /// A Secret/ConfigMap referenced from env/envFrom whose name contains this is
    /// treated as missing (CreateContainerConfigError).
    pub const MISSING_REF_MARKER: &str = "missing";
    /// Annotation that makes kwok manage a node.
    pub const NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
    /// Label carried by every fake node.
    pub const NODE_LABEL_KEY: &str = "type";
    pub const NODE_LABEL_VALUE: &str = "kwok";
}

/// Default poll interval of [`wait_for`].
pub const POLL: Duration = Duration::from_millis(200);

/// A client for the cluster in `KUBECONFIG`.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("no usable KUBECONFIG: start the cluster with `bash e2e/cluster.sh up` and `eval $(bash e2e/cluster.sh env)`")
}

/// Build any Kubernetes object from a `serde_json::json!` value.
pub fn from_json<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("test object does not deserialize")
}

/// Poll `f` every [`POLL`] until it returns `Ok(Some(value))`, and return that value.
/// `Ok(None)` and `Err(_)` mean "not yet" (errors are treated as transient and the
/// last one is reported on timeout).
pub async fn wait_for<T, F, Fut>(desc: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err: Option<String> = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
        if start.elapsed() >= timeout {
            let mut msg = format!("timed out after {:?} waiting for {desc}", timeout);
            if let Some(e) = last_err {
                msg.push_str(&format!(" (last error: {e})"));
            }
            return Err(msg.into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The events in `ns` about the object called `name`.
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect())
}

/// Wait until an event with `reason` about object `name` in `ns` is visible, and
/// return all the events about it. The operator publishes events after it writes
/// status, so a test that has just seen the status must wait for them.
pub async fn wait_for_event(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Vec<Event>> {
    wait_for(&format!("a {reason} event on {name}"), timeout, || async {
        let evs = events_for(client, ns, name).await?;
        Ok(evs
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason))
            .then_some(evs))
    })
    .await
}

/// Poll object `name` until `pred` holds; returns the object. On timeout the error
/// includes the object's last observed status.
pub async fn wait_for_object<K, P>(
    api: &Api<K>,
    name: &str,
    desc: &str,
    timeout: Duration,
    pred: P,
) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    P: Fn(&K) -> bool,
{
    let last: std::cell::RefCell<Option<K>> = std::cell::RefCell::new(None);
    let (last_ref, pred_ref) = (&last, &pred);
    let res = wait_for(desc, timeout, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let obj = api.get(&name).await?;
            let ok = pred_ref(&obj);
            *last_ref.borrow_mut() = Some(obj.clone());
            Ok(ok.then_some(obj))
        }
    })
    .await;
    let last = last.into_inner();
    res.map_err(|e| {
        let status = last
            .as_ref()
            .and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v.get("status").cloned())
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
            .unwrap_or_else(|| "<never read>".into());
        format!("{e}; last status of {name}: {status}").into()
    })
}

/// A namespace that lives as long as this guard. Dropping it deletes the
/// namespace (set `DATAJOB_E2E_KEEP_NAMESPACES=1` to keep failed tests' namespaces).
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("DATAJOB_E2E_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping namespace {} of the failed test", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime may be single-threaded and
        // busy right here: delete from a private runtime with a fresh client.
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(c) = Client::try_default().await {
                        let api: Api<Namespace> = Api::all(c);
                        let _ = tokio::time::timeout(
                            Duration::from_secs(10),
                            api.delete(&name, &DeleteParams::background()),
                        )
                        .await;
                    }
                });
            }
        });
        let _ = handle.join();
    }
}

/// The Pod Security Admission label every test namespace carries: the apiserver refuses
/// any pod in it that does not meet the `restricted` profile (PodSecurity is a default
/// admission plugin of kube-apiserver 1.36), so every pod DataJob creates in a test is
/// proven to meet it.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// The profile the test namespaces enforce.
pub const POD_SECURITY_LEVEL: &str = "restricted";

/// The container security context the `restricted` Pod Security profile asks for: for a
/// test's own pods in a test namespace.
pub fn restricted_container_security() -> serde_json::Value {
    serde_json::json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// The labels of a test namespace: `datajob.dev/e2e=true` and, unless `enforce` is
/// `None`, `pod-security.kubernetes.io/enforce: <enforce>`.
pub fn namespace_labels(enforce: Option<&str>) -> serde_json::Value {
    let mut labels = serde_json::json!({ "datajob.dev/e2e": "true" });
    if let Some(level) = enforce {
        labels[POD_SECURITY_ENFORCE] = level.into();
    }
    labels
}

/// Create a namespace named `<prefix>-<unique suffix>` for one test, labelled
/// `datajob.dev/e2e=true` and `pod-security.kubernetes.io/enforce: restricted`, and wait
/// until its `default` ServiceAccount exists (the ServiceAccount admission plugin rejects
/// pods before that).
pub async fn test_namespace(client: &Client, prefix: &str) -> TestNamespace {
    namespace_enforcing(client, prefix, Some(POD_SECURITY_LEVEL)).await
}

/// Like [`test_namespace`], without the Pod Security label, for a test whose own pods
/// (not DataJob's) cannot meet `restricted`; `why` says why, for the reader of the
/// test (e.g. "the harness checks kwok with bare pods").
pub async fn unrestricted_namespace(client: &Client, prefix: &str, why: &str) -> TestNamespace {
    let _ = why;
    namespace_enforcing(client, prefix, None).await
}

async fn namespace_enforcing(
    client: &Client,
    prefix: &str,
    enforce: Option<&str>,
) -> TestNamespace {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = from_json(serde_json::json!({
        "metadata": {
            "generateName": format!("{}-", sanitize(prefix)),
            "labels": namespace_labels(enforce),
        }
    }));
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
    let name = created.metadata.name.expect("namespace has a name");
    let guard = TestNamespace { name: name.clone() };
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for("default service account", Duration::from_secs(30), || {
        let sas = sas.clone();
        async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
    })
    .await
    .expect("default ServiceAccount of the test namespace");
    guard
}

fn sanitize(prefix: &str) -> String {
    let mut s: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(40);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "e2e".into() } else { s }
}

/// A name unlikely to collide with other tests (for cluster-scoped objects such as nodes).
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:x}{:x}",
        sanitize(prefix),
        std::process::id() & 0xfff,
        nanos & 0xfffff
    )
}

// ---- status readers ---------------------------------------------------------------

/// Status of condition `type_` of a pod: (status, reason, message).
pub fn pod_condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Status of the pod's (regular) container `name`, or of its first container when `None`.
pub fn container_status<'a>(pod: &'a Pod, name: Option<&str>) -> Option<&'a ContainerStatus> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    match name {
        Some(n) => statuses.iter().find(|s| s.name == n),
        None => statuses.first(),
    }
}

/// (reason, message) of the first container's Waiting state.
pub fn waiting_reason(pod: &Pod) -> Option<(String, String)> {
    let w = container_status(pod, None)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

/// (exit code, reason) of the first container's Terminated state.
pub fn terminated(pod: &Pod) -> Option<(i32, String)> {
    let t = container_status(pod, None)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// True when the Job has condition `type_` (e.g. "Complete", "Failed") with status True.
pub fn job_has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Creates the NodeGroup `<prefix>-<unique>` of `spec`; deleted (with its kwok nodes) when
/// the guard drops.
pub async fn node_group(
    client: &Client,
    prefix: &str,
    spec: serde_json::Value,
) -> (String, GroupGuard) {
    let name = unique_name(prefix);
    let ng: NodeGroup = from_json(
        json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": name}, "spec": spec}),
    );
    Api::<NodeGroup>::all(client.clone())
        .create(&PostParams::default(), &ng)
        .await
        .expect("create NodeGroup");
    (name.clone(), GroupGuard(name))
}

/// Creates a DataJob. Right after a NodeGroup is created the webhook's cache may not have
/// it yet (and refuses what only that group fits): retry such refusals for a few seconds.
pub async fn datajob(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Api<DataJob> {
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let dj: DataJob = from_json(
        json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": name}, "spec": spec}),
    );
    wait_for(
        &format!("DataJob {name} admitted"),
        Duration::from_secs(30),
        || {
            let (api, dj) = (api.clone(), dj.clone());
            async move {
                match api.create(&PostParams::default(), &dj).await {
                    Ok(_) => Ok(Some(())),
                    Err(kube::Error::Api(e)) if e.message.contains("node group") => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        },
    )
    .await
    .expect("create DataJob");
    api
}

/// Waits until the DataJob `name` says Succeeded.
pub async fn succeeded(api: &Api<DataJob>, name: &str, timeout: Duration) -> Result<DataJob> {
    wait_for_object(
        api,
        name,
        &format!("{name} Succeeded"),
        timeout,
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
}

/// Deletes a NodeGroup (and so its kwok nodes) when dropped.
pub struct GroupGuard(pub String);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        clean_up_now(move |c| async move {
            let _ = Api::<datajob_api::NodeGroup>::all(c.clone())
                .delete(&name, &DeleteParams::foreground())
                .await;
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c);
            if let Ok(list) = nodes
                .list(&ListParams::default().labels(&format!(
                    "{}={name}",
                    datajob_core::decide::nodegroup::GROUP_LABEL
                )))
                .await
            {
                for n in list.items {
                    let _ = nodes
                        .delete(&kube::ResourceExt::name_any(&n), &DeleteParams::default())
                        .await;
                }
            }
        });
    }
}

/// Runs the clean-up `f` with a fresh client to the end, from a `Drop` (on a thread of
/// its own with its own runtime: a test's runtime may be shutting down). Failures are
/// ignored: a clean-up is best effort.
pub fn clean_up_now<F, Fut>(f: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(c) = Client::try_default().await {
                f(c).await;
            }
        });
    })
    .join();
}

/// Creates `dj` until the API refuses it with a message that contains `needle` (the
/// webhook's NodeGroup cache may need a moment to see a new group), and returns that
/// message. A DataJob it took meanwhile is deleted again.
pub async fn refusal_naming(api: &Api<DataJob>, dj: &DataJob, needle: &str) -> String {
    let name = kube::ResourceExt::name_any(dj);
    wait_for(
        "a refusal naming the group",
        Duration::from_secs(20),
        || {
            let (api, dj, name) = (api.clone(), dj.clone(), name.clone());
            async move {
                match api.create(&PostParams::default(), &dj).await {
                    Err(kube::Error::Api(e)) if e.message.contains(needle) => Ok(Some(e.message)),
                    Ok(_) => {
                        api.delete(&name, &DeleteParams::default()).await?;
                        Ok(None)
                    }
                    Err(_) => Ok(None),
                }
            }
        },
    )
    .await
    .unwrap()
}

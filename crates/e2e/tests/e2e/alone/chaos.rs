//! End-to-end chaos: operator kills, apiserver and etcd restarts and an unreachable
//! webhook, in the middle of a burst of work; afterwards nothing is lost or doubled.
//!
//! `e2e/suites.sh` runs this suite on its own (phase 2, no shared operator) with the
//! short run, about 2½ minutes; `make chaos` runs the long one (about 10 minutes) with
//! `DATAJOB_CHAOS_SECONDS=480`. The run prints its seed (`DATAJOB_CHAOS_SEED` repeats
//! it) and its counts; docs/reliability.md records them.
//!
//! The burst, in a namespace that enforces the `restricted` Pod Security profile, all of
//! it placed on a kwok NodeGroup that scales from zero and back:
//! * one-off DataJobs, one every 2 s, each running 2–12 s;
//! * every-minute DataJobs;
//! * stuck runs: an image that does not exist, a Secret that does not exist, a run that
//!   outlives its deadline (see docs/testing.md, "Fake kubelets").
//!
//! What happens to the operator:
//! 1. two replicas with leader election (a 6 s Lease, so that a failover fits in the kill
//!    period) and a kill -9 every 10–20 s, of the leader when there is one; the killed one
//!    is started again at once, as its Deployment would;
//! 2. two fresh replicas with the default Lease (15 s, renew deadline 10 s); the apiserver
//!    is killed and started again, then etcd: the leader must keep leading in the same
//!    process and see a DataJob created just after the restart within 35 s.
//!
//! Then: 0 duplicate Jobs, 0 missed logical times, every stuck run ended with its reason,
//! every status agreeing with its Jobs, no node of the group removed under a running pod,
//! no pod refused by Pod Security.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::operator::{free_port, http_get, sample};
use common::{client, test_namespace, wait_for, wait_for_object};
use datajob_api::{DataJob, NodeGroup, RunState};
use datajob_core::decide::nodegroup::GROUP_LABEL;
use datajob_core::labels::{END_REASON, LOGICAL_TIME, NAME, parse_rfc3339};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};

/// The operator's namespace, where the Lease lives.
const LEASE_NS: &str = "datajob-system";
/// How many every-minute DataJobs run through it all.
const EVERY_MINUTE: usize = 8;
/// The bound the issue sets: watches back within this after a control-plane restart.
const WATCHES_BACK_WITHIN: Duration = Duration::from_secs(35);

/// The two tests of this file never run at once (each starts operators that act on
/// every namespace).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- settings and randomness --------------------------------------------------------

struct Settings {
    /// How long the operator is killed every 10–20 s.
    kill_seconds: u64,
    seed: u64,
    /// The long run (`make chaos`) also restarts the apiserver and etcd gracefully.
    long: bool,
}

fn settings() -> Settings {
    let kill_seconds = std::env::var("DATAJOB_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70);
    let seed = std::env::var("DATAJOB_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    Settings {
        kill_seconds,
        seed,
        long: kill_seconds >= 300,
    }
}

/// A small deterministic generator: the seed repeats a run's choices.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---- operator replicas --------------------------------------------------------------

/// One operator process, its log in `target/tmp/e2e-chaos/`.
struct Replica {
    name: String,
    child: Child,
    admin: String,
    log: PathBuf,
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-chaos");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Replica {
    /// Starts `datajob-operator` as `name` (its POD_NAME), without a webhook, with `env`
    /// on top of the chaos settings, and waits until it serves.
    async fn start(name: &str, env: &[(&str, &str)]) -> Replica {
        let admin = format!("127.0.0.1:{}", free_port());
        let log = log_dir().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file for the operator");
        let mut cmd = Command::new(common::bin("datajob-operator"));
        for (k, _) in std::env::vars() {
            if k.starts_with("DATAJOB_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("DATAJOB_ADMIN_ADDR", &admin)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", LEASE_NS)
            .env("RUST_LOG", "info,kube=warn")
            // The tests shorten the watchdog's graces instead of waiting minutes.
            .env("DATAJOB_IMAGE_PULL_GRACE", "10s")
            .env("DATAJOB_CONFIG_GRACE", "10s")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log file"))
            .stderr(file)
            .kill_on_drop(true);
        // As the Helm chart's ServiceAccount, when e2e/suites.sh made one.
        if let Ok(k) = std::env::var("DATAJOB_OPERATOR_KUBECONFIG") {
            cmd.env("KUBECONFIG", k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start datajob-operator");
        let mut r = Replica {
            name: name.to_string(),
            child,
            admin,
            log,
        };
        for _ in 0..300 {
            if http_get(&r.admin, "/readyz")
                .await
                .is_some_and(|o| o.starts_with("HTTP/1.1 200"))
            {
                return r;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("{name} exited early: {status}; log {}", r.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        r.child.kill().await.ok();
        panic!("{name} not ready after 30 s; log {}", r.log.display());
    }

    /// Whether it says it leads, if it answers.
    async fn leads(&self) -> Option<bool> {
        let out = http_get(&self.admin, "/metrics").await?;
        sample(&out, "datajob_leader", &[]).map(|v| v == 1.0)
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still the one started (it never exited).
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// kill -9, and reap it.
    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM (the leader releases the Lease), then KILL after 10 s.
    async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The index of the replica that says it leads.
async fn leader(replicas: &[Replica]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        if r.leads().await == Some(true) {
            return Some(i);
        }
    }
    None
}

/// Waits until one of `replicas` leads; returns it and how long that took.
async fn until_a_leader(replicas: &[Replica], timeout: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        if let Some(i) = leader(replicas).await {
            return (i, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "no replica leads after {timeout:?}; logs in {}",
            log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- the cluster --------------------------------------------------------------------

/// `e2e/cluster.sh restart COMPONENT --kill`: returns once it serves again.
async fn restart(component: &str, how: &str) -> Duration {
    let start = Instant::now();
    let script = concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "/e2e/cluster.sh"
    );
    let mut args = vec![script, "restart", component];
    if !how.is_empty() {
        args.push(how);
    }
    let status = Command::new("bash")
        .args(&args)
        .stdin(Stdio::null())
        .status()
        .await
        .expect("run e2e/cluster.sh restart");
    assert!(
        status.success(),
        "e2e/cluster.sh restart {component} failed"
    );
    start.elapsed()
}

/// The CRDs of this checkout, applied (server-side) and established: `make chaos` runs
/// this suite on a fresh cluster, without the shared operator that installs them.
async fn ensure_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = concat!(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), "/crds");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("crds/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a CRD file");
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("a CRD");
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("datajob-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        wait_for_object(
            &crds,
            &name,
            "the CRD established",
            Duration::from_secs(30),
            |c| {
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
}

async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.ok().flatten().is_none() {
        let ns: Namespace = common::from_json(json!({"metadata": {"name": name}}));
        let _ = api.create(&PostParams::default(), &ns).await;
    }
}

/// Deletes a cluster-scoped object when dropped (a NodeGroup, a webhook configuration),
/// also when the test fails.
struct DeleteOnDrop {
    what: &'static str,
    path: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let (what, path) = (self.what, self.path.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(c) = Client::try_default().await {
                        let req = http::Request::delete(path.as_str()).body(Vec::new());
                        if let Ok(req) = req {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(10), c.request_text(req))
                                    .await;
                        }
                    }
                });
            }
            let _ = what;
        });
        let _ = handle.join();
    }
}

fn datajob(name: &str, spec: serde_json::Value) -> DataJob {
    common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name}, "spec": spec,
    }))
}

/// Creates `dj`, retrying through an apiserver outage; a 409 means an earlier try got
/// through before its answer was lost.
async fn create_through_outages(api: &Api<DataJob>, dj: &DataJob) {
    let start = Instant::now();
    loop {
        match api.create(&PostParams::default(), dj).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(90),
                    "could not create DataJob {} for 90 s: {e}",
                    dj.name_any()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

// ---- watching the node group --------------------------------------------------------

#[derive(Default)]
struct NodeWatch {
    /// Nodes that appeared (a name used again counts again).
    made: usize,
    removed: usize,
    /// "node X went while pod Y was Running".
    violations: Vec<String>,
    polls: u64,
}

/// Every 500 ms: the group's nodes and the namespace's pods. A node that went while a
/// pod bound to it had not finished is a node removed under a running pod.
fn watch_nodes(
    client: Client,
    ns: String,
    group: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<NodeWatch>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(NodeWatch::default()));
    let out = state.clone();
    let task = tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let mut current: BTreeSet<String> = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(n) = nodes
                .list_metadata(&ListParams::default().labels(&format!("{GROUP_LABEL}={group}")))
                .await
            else {
                continue;
            };
            let Ok(p) = pods.list(&ListParams::default()).await else {
                continue;
            };
            let now: BTreeSet<String> = n.items.iter().map(|n| n.name_any()).collect();
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.polls += 1;
            s.made += now.difference(&current).count();
            for gone in current.difference(&now) {
                s.removed += 1;
                for pod in &p.items {
                    let on_it = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                        == Some(gone.as_str());
                    let phase = common::pod_phase(pod).to_string();
                    if on_it && !matches!(phase.as_str(), "Succeeded" | "Failed") {
                        s.violations.push(format!(
                            "node {gone} went while pod {} was {phase}",
                            pod.name_any()
                        ));
                    }
                }
            }
            for pod in &p.items {
                if common::pod_condition(pod, "DisruptionTarget")
                    .is_some_and(|(status, _, _)| status == "True")
                {
                    let v = format!("pod {} was disrupted", pod.name_any());
                    if !s.violations.contains(&v) {
                        s.violations.push(v);
                    }
                }
            }
            current = now;
        }
    });
    (out, task)
}

// ---- what is checked at the end -----------------------------------------------------

/// The finished state of a Job, if it finished.
fn job_outcome(j: &Job) -> Option<RunState> {
    if common::job_has_condition(j, "Complete") {
        Some(RunState::Succeeded)
    } else if common::job_has_condition(j, "Failed") {
        Some(RunState::Failed)
    } else {
        None
    }
}

/// Why a DataJob's status does not agree with its Jobs, if it does not.
fn disagreement(dj: &DataJob, jobs: &[&Job]) -> Option<String> {
    let status = dj.status.clone().unwrap_or_default();
    if status.observed_generation != dj.metadata.generation {
        return Some(format!(
            "observedGeneration {:?} of generation {:?}",
            status.observed_generation, dj.metadata.generation
        ));
    }
    let records: HashMap<&str, RunState> = status
        .recent_runs
        .iter()
        .map(|r| (r.name.as_str(), r.state))
        .collect();
    let mut active: Vec<String> = Vec::new();
    for j in jobs {
        let name = j.name_any();
        let Some(recorded) = records.get(name.as_str()) else {
            return Some(format!("run {name} is not on the status"));
        };
        match job_outcome(j) {
            Some(outcome) if *recorded != outcome => {
                return Some(format!(
                    "run {name} is {recorded} on the status, {outcome} by its Job"
                ));
            }
            Some(_) => {}
            None => {
                if recorded.is_finished() {
                    return Some(format!(
                        "run {name} is {recorded} on the status, unfinished by its Job"
                    ));
                }
                active.push(name);
            }
        }
    }
    let mut said = status.active_runs.clone();
    said.sort();
    active.sort();
    (said != active).then(|| format!("activeRuns {said:?}, unfinished Jobs {active:?}"))
}

#[tokio::test]
async fn operator_kills_and_control_plane_restarts_mid_burst_lose_and_double_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = settings();
    let mut rng = Lcg(s.seed);
    eprintln!(
        "chaos: seed {} (DATAJOB_CHAOS_SEED repeats it), kill phase {} s, {} run, operator logs in {}",
        s.seed,
        s.kill_seconds,
        if s.long { "long" } else { "short" },
        log_dir().display()
    );
    let started = Instant::now();
    let client = client().await;
    ensure_crds(&client).await;
    ensure_namespace(&client, LEASE_NS).await;
    let ns = test_namespace(&client, "chaos").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), ns.name());

    // Pod Security is enforced here: a pod that is not `restricted` is refused.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let privileged: Pod = common::from_json(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]},
    }));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let refused = pods
        .create(&dry, &privileged)
        .await
        .expect_err("the namespace enforces Pod Security");
    assert!(
        refused
            .to_string()
            .contains("violates PodSecurity \"restricted"),
        "{refused}"
    );

    // The node group every run of the burst goes to (with a NodeGroup, every DataJob is
    // placed on the cheapest group that fits).
    let group = common::unique_name("chaos");
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let ng: NodeGroup = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
        "metadata": {"name": group},
        "spec": {
            "node": {"cpu": "8", "memory": "32Gi"}, "maxSize": 8, "pricePerHour": "0.5",
            "scaleDownAfter": "20s", "provisioningTimeout": "5m",
            "provider": {"kwok": {"bootDelay": "1s"}},
        },
    }));
    groups.create(&PostParams::default(), &ng).await.unwrap();
    let _group_guard = DeleteOnDrop {
        what: "NodeGroup",
        path: format!("/apis/datajob.dev/v1alpha1/nodegroups/{group}"),
    };
    let stop_watch = Arc::new(AtomicBool::new(false));
    let (node_watch, node_task) = watch_nodes(
        client.clone(),
        ns.name().to_string(),
        group.clone(),
        stop_watch.clone(),
    );

    // Phase 1: two replicas and a kill -9 every 10–20 s.
    let short_lease = [
        ("DATAJOB_LEASE_DURATION", "6s"),
        ("DATAJOB_LEASE_RENEW_DEADLINE", "4s"),
        ("DATAJOB_LEASE_RETRY_PERIOD", "1s"),
    ];
    let mut generation = 0u32;
    let mut replicas = vec![
        Replica::start("chaos-a-0", &short_lease).await,
        Replica::start("chaos-b-0", &short_lease).await,
    ];
    // A Lease left by a suite before may still have to run out.
    until_a_leader(&replicas, Duration::from_secs(40)).await;

    // The burst: every-minute DataJobs, stuck runs, and one-offs from a task of their own.
    for i in 0..EVERY_MINUTE {
        let dj = datajob(
            &format!("every-{i}"),
            json!({"image": "busybox", "schedule": "* * * * *", "history": 30,
                   "podAnnotations": {common::kwok::DURATION: "3s"}}),
        );
        create_through_outages(&api, &dj).await;
    }
    let mut stuck: BTreeMap<String, &'static str> = BTreeMap::new();
    let create_stuck = |round: usize| {
        let bad = common::kwok::BAD_IMAGE_MARKER;
        let missing = common::kwok::MISSING_REF_MARKER;
        vec![
            (
                format!("bad-image-{round}"),
                "ImageNotFound",
                json!({"image": format!("registry.example.com/team/{bad}:1.0")}),
            ),
            (
                format!("missing-secret-{round}"),
                "MissingConfig",
                json!({"image": "busybox", "env": [{"name": "PASSWORD", "valueFrom":
                    {"secretKeyRef": {"name": format!("{missing}-db-credentials"), "key": "password"}}}]}),
            ),
            (
                format!("overdue-{round}"),
                "DeadlineExceeded",
                json!({"image": "busybox", "deadline": "20s",
                       "podAnnotations": {common::kwok::DURATION: "10m"}}),
            ),
        ]
    };
    for (name, reason, spec) in create_stuck(0) {
        create_through_outages(&api, &datajob(&name, spec)).await;
        stuck.insert(name, reason);
    }
    let stop_burst = Arc::new(AtomicBool::new(false));
    let one_offs: Arc<Mutex<Vec<String>>> = Arc::default();
    let burst = {
        let (api, stop, names) = (api.clone(), stop_burst.clone(), one_offs.clone());
        let mut rng = Lcg(s.seed ^ 0x5eed);
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("once-{i}");
                let secs = rng.between(2, 12);
                let dj = datajob(
                    &name,
                    json!({"image": "busybox",
                           "podAnnotations": {common::kwok::DURATION: format!("{secs}s")}}),
                );
                create_through_outages(&api, &dj).await;
                names.lock().unwrap_or_else(|e| e.into_inner()).push(name);
                i += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    let mut kills: Vec<(String, bool)> = Vec::new();
    let mut failovers: Vec<Duration> = Vec::new();
    let phase1_end = Instant::now() + Duration::from_secs(s.kill_seconds);
    let mut next_stuck = Instant::now() + Duration::from_secs(120);
    let mut round = 1;
    loop {
        let wait = Duration::from_secs(rng.between(10, 20));
        if Instant::now() + wait > phase1_end {
            break;
        }
        tokio::time::sleep(wait).await;
        if s.long && Instant::now() >= next_stuck {
            for (name, reason, spec) in create_stuck(round) {
                create_through_outages(&api, &datajob(&name, spec)).await;
                stuck.insert(name, reason);
            }
            round += 1;
            next_stuck += Duration::from_secs(120);
        }
        let leading = leader(&replicas).await;
        let victim = leading.unwrap_or(rng.between(0, 1) as usize);
        let killed_at = Instant::now();
        replicas[victim].kill().await;
        kills.push((replicas[victim].name.clone(), leading.is_some()));
        generation += 1;
        let base = if victim == 0 { "chaos-a" } else { "chaos-b" };
        let name = format!("{base}-{generation}");
        let survivor = 1 - victim;
        // The killed one comes back at once (its Deployment restarts it); one of the two
        // takes over once the dead leader's Lease ran out.
        let fresh = Replica::start(&name, &short_lease);
        tokio::pin!(fresh);
        let mut started: Option<Replica> = None;
        let mut took = None;
        while killed_at.elapsed() < Duration::from_secs(40) {
            tokio::select! {
                r = &mut fresh, if started.is_none() => started = Some(r),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let fresh_leads = match &started {
                Some(r) => r.leads().await == Some(true),
                None => false,
            };
            if fresh_leads || replicas[survivor].leads().await == Some(true) {
                took = Some(killed_at.elapsed());
                break;
            }
        }
        let fresh = match started {
            Some(r) => r,
            None => fresh.await,
        };
        replicas[victim] = fresh;
        match took {
            Some(t) if leading.is_some() => failovers.push(t),
            Some(_) => {}
            None => panic!(
                "no replica leads 40 s after a kill; logs in {}",
                log_dir().display()
            ),
        }
    }
    let leader_kills = kills.iter().filter(|(_, l)| *l).count();
    eprintln!(
        "chaos: phase 1 done after {:.0?}: {} kills ({} of the leader), failovers {:?}",
        started.elapsed(),
        kills.len(),
        leader_kills,
        failovers
            .iter()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    for r in replicas.iter_mut() {
        r.stop().await;
    }

    // Phase 2: the default Lease; the apiserver, then etcd, restarted under it.
    let mut replicas = vec![
        Replica::start("chaos-c", &[]).await,
        Replica::start("chaos-d", &[]).await,
    ];
    let (lead, _) = until_a_leader(&replicas, Duration::from_secs(40)).await;
    let leader_pid = replicas[lead].pid();
    let mut restarts: Vec<(String, Duration, Duration)> = Vec::new();
    let mut plan: Vec<(&str, &str)> = vec![("kube-apiserver", "--kill"), ("etcd", "--kill")];
    if s.long {
        plan.extend([("kube-apiserver", ""), ("etcd", "")]);
    }
    for (n, (component, how)) in plan.iter().enumerate() {
        // Let the burst go on a little before each restart.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let down_for = restart(component, how).await;
        // A DataJob created now is seen only through the operator's watches.
        let probe = format!("probe-{n}");
        let probe_at = Instant::now();
        create_through_outages(&api, &datajob(&probe, json!({"image": "busybox"}))).await;
        let seen = wait_for_object(
            &api,
            &probe,
            "the probe's run on its status",
            WATCHES_BACK_WITHIN,
            |d: &DataJob| {
                d.status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .is_some()
            },
        )
        .await;
        let back = probe_at.elapsed();
        let how = if how.is_empty() { "TERM" } else { "KILL" };
        assert!(
            seen.is_ok(),
            "after {component} restarted ({how}), the operator did not see a new DataJob within {WATCHES_BACK_WITHIN:?}: {seen:?}"
        );
        for r in replicas.iter_mut() {
            assert!(
                r.alive(),
                "{} exited during the {component} restart; log {}",
                r.name,
                r.log.display()
            );
        }
        assert_eq!(
            leader(&replicas).await,
            Some(lead),
            "the same replica leads after the {component} restart"
        );
        assert_eq!(replicas[lead].pid(), leader_pid, "in the same process");
        eprintln!(
            "chaos: {component} restarted ({how}): serving again {:.1}s after it was stopped; the operator saw a new DataJob {:.1}s after that, without restarting",
            down_for.as_secs_f64(),
            back.as_secs_f64()
        );
        restarts.push((format!("{component} ({how})"), down_for, back));
    }
    stop_burst.store(true, Ordering::Relaxed);
    burst.await.unwrap();
    let one_offs: Vec<String> = one_offs.lock().unwrap_or_else(|e| e.into_inner()).clone();

    // The scheduled slots checked: from the first minute after the last CronJob was made
    // to the last minute before now that has had 40 s to get its Job.
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let made = cronjobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|c| c.metadata.creation_timestamp.as_ref())
        .filter_map(datajob_core::labels::from_k8s_time)
        .map(|t: DateTime<Utc>| t.timestamp())
        .max()
        .expect("the every-minute DataJobs have CronJobs");
    let first = made.div_euclid(60) * 60 + 60;
    // At least the first slot is checked: a short run whose CronJobs came late in a
    // minute would otherwise end before any slot had its 40 s.
    while Utc::now().timestamp() < first + 40 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = (Utc::now().timestamp() - 40).div_euclid(60) * 60;
    let expected: BTreeSet<i64> = (first..=last).step_by(60).collect();
    // Then the every-minute DataJobs stop (a spec change that must converge too).
    for i in 0..EVERY_MINUTE {
        let patch = json!({"spec": {"suspend": true}});
        api.patch(
            &format!("every-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    }

    // Every one-off and probe finishes; every stuck run ends with its reason.
    let mut finished_names = one_offs.clone();
    finished_names.extend((0..plan.len()).map(|n| format!("probe-{n}")));
    for name in &finished_names {
        let done = wait_for_object(
            &api,
            name,
            "the one-off run succeeded",
            Duration::from_secs(180),
            |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
        )
        .await;
        if let Err(e) = done {
            panic!("{e}\n{}", what_became_of(&client, ns.name(), name).await);
        }
    }
    let mut stuck_ended = 0;
    for (name, reason) in &stuck {
        let dj = wait_for_object(
            &api,
            name,
            &format!("the stuck run ended {reason}"),
            Duration::from_secs(180),
            |d: &DataJob| {
                d.status.as_ref().is_some_and(|s| {
                    s.state == Some(RunState::Failed) && s.reason.as_deref() == Some(*reason)
                })
            },
        )
        .await
        .unwrap();
        let run = dj.status.and_then(|s| s.last_run).expect("a run");
        // The Job controller fails the Job a moment after the watchdog ended the run.
        let job = wait_for_object(
            &jobs_api,
            &run.name,
            "the stuck run's Job Failed",
            Duration::from_secs(60),
            |j: &Job| job_outcome(j) == Some(RunState::Failed),
        )
        .await
        .unwrap();
        assert_eq!(
            job.annotations().get(END_REASON).map(String::as_str),
            Some(*reason),
            "the watchdog ended {name}'s run with its reason"
        );
        stuck_ended += 1;
    }

    // Statuses converge on what the Jobs say.
    let converged = wait_for(
        "every status agreeing with its Jobs",
        Duration::from_secs(120),
        || async {
            let djs = api.list(&ListParams::default()).await?.items;
            let jobs = jobs_api.list(&ListParams::default()).await?.items;
            let mut wrong = Vec::new();
            for dj in &djs {
                let mine: Vec<&Job> = jobs
                    .iter()
                    .filter(|j| j.labels().get(NAME) == Some(&dj.name_any()))
                    .collect();
                if let Some(why) = disagreement(dj, &mine) {
                    wrong.push(format!("{}: {why}", dj.name_any()));
                }
            }
            if wrong.is_empty() {
                Ok(Some(djs.len()))
            } else {
                Err(wrong.join("; ").into())
            }
        },
    )
    .await
    .unwrap();

    // Duplicates and missed logical times.
    let all = jobs_api.list(&ListParams::default()).await.unwrap().items;
    let mut per_time: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for j in &all {
        let (Some(owner), Some(t)) = (
            j.labels().get(NAME).cloned(),
            j.annotations()
                .get(LOGICAL_TIME)
                .and_then(|t| parse_rfc3339(t)),
        ) else {
            continue;
        };
        per_time
            .entry((owner, t.timestamp()))
            .or_default()
            .push(j.name_any());
    }
    let mut duplicates: Vec<String> = per_time
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((o, t), v)| format!("{o}@{t}: {v:?}"))
        .collect();
    let mut missed: Vec<String> = Vec::new();
    for dj in api.list(&ListParams::default()).await.unwrap().items {
        let name = dj.name_any();
        let records = dj.status.map(|s| s.recent_runs).unwrap_or_default();
        let mut times: Vec<i64> = records
            .iter()
            .filter_map(|r| parse_rfc3339(&r.logical_time))
            .map(|t| t.timestamp())
            .collect();
        let n = times.len();
        times.sort_unstable();
        times.dedup();
        if times.len() != n {
            duplicates.push(format!("{name}: a logical time twice on the status"));
        }
        let mut seen: BTreeSet<i64> = times.into_iter().collect();
        seen.extend(per_time.keys().filter(|(o, _)| *o == name).map(|(_, t)| *t));
        if name.starts_with("every-") {
            missed.extend(expected.difference(&seen).map(|t| format!("{name}@{t}")));
        } else if seen.is_empty() {
            missed.push(format!("{name}: never ran"));
        }
    }

    stop_watch.store(true, Ordering::Relaxed);
    node_task.await.unwrap();
    let nodes = std::mem::take(&mut *node_watch.lock().unwrap_or_else(|e| e.into_inner()));
    let events: Api<Event> = Api::namespaced(client.clone(), ns.name());
    let refused_pods: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter_map(|e| e.message)
        .filter(|m| m.contains("PodSecurity"))
        .collect();
    let pods_made = all
        .iter()
        .filter_map(|j| j.status.as_ref())
        .map(|s| s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) + s.active.unwrap_or(0))
        .sum::<i32>();

    for r in replicas.iter_mut() {
        r.stop().await;
    }
    eprintln!(
        "chaos counts ({:.0?} in all, seed {}):\n\
         \x20 operator kills (kill -9): {} ({} of the leader); failover after a leader kill: {}\n\
         \x20 control-plane restarts: {}\n\
         \x20 DataJobs: {} one-off, {} every-minute, {} stuck, {} probes; Jobs {}, pods {}\n\
         \x20 scheduled slots checked: {} per every-minute DataJob ({} in all)\n\
         \x20 duplicate Jobs: {}\n\
         \x20 missed logical times: {}\n\
         \x20 stuck runs ended with their reason: {}/{}\n\
         \x20 statuses converged: {}/{}\n\
         \x20 node group {}: {} nodes made, {} removed, removed under a running pod: {}\n\
         \x20 pods refused by Pod Security (restricted): {}",
        started.elapsed(),
        s.seed,
        kills.len(),
        leader_kills,
        summary(&failovers),
        restarts
            .iter()
            .map(|(c, down, back)| format!(
                "{c} down {:.1}s, watches back {:.1}s later",
                down.as_secs_f64(),
                back.as_secs_f64()
            ))
            .collect::<Vec<_>>()
            .join("; "),
        one_offs.len(),
        EVERY_MINUTE,
        stuck.len(),
        plan.len(),
        all.len(),
        pods_made,
        expected.len(),
        expected.len() * EVERY_MINUTE,
        duplicates.len(),
        missed.len(),
        stuck_ended,
        stuck.len(),
        converged,
        converged,
        group,
        nodes.made,
        nodes.removed,
        nodes.violations.len(),
        refused_pods.len(),
    );
    assert!(
        !expected.is_empty(),
        "at least one scheduled slot was checked"
    );
    assert!(kills.len() >= 3, "the operator was killed: {kills:?}");
    assert!(duplicates.is_empty(), "duplicate runs: {duplicates:?}");
    assert!(missed.is_empty(), "missed logical times: {missed:?}");
    assert!(
        nodes.violations.is_empty(),
        "nodes removed under running pods: {:?}",
        nodes.violations
    );
    assert!(
        nodes.made > 0 && nodes.polls > 10,
        "the node group made nodes and was watched"
    );
    assert!(
        refused_pods.is_empty(),
        "Pod Security refused: {refused_pods:?}"
    );
}

/// The Jobs, pods and events of DataJob `name`, for a failure message.
async fn what_became_of(client: &Client, ns: &str, name: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("{NAME}={name}"));
    let mut out = String::new();
    for j in jobs
        .list(&selector)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "Job {}: {}\n",
            j.name_any(),
            serde_json::to_string(&j.status).unwrap_or_default()
        ));
    }
    for p in pods
        .list(&selector)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "Pod {} on {:?}, deleted {:?}: {}\n",
            p.name_any(),
            p.spec.as_ref().and_then(|s| s.node_name.clone()),
            p.metadata.deletion_timestamp,
            serde_json::to_string(&p.status).unwrap_or_default()
        ));
    }
    for e in common::events_for(client, ns, name)
        .await
        .unwrap_or_default()
    {
        out.push_str(&format!("Event {:?}: {:?}\n", e.reason, e.message));
    }
    out
}

fn summary(d: &[Duration]) -> String {
    if d.is_empty() {
        return "none".into();
    }
    let mut s: Vec<f64> = d.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    format!(
        "min {:.1}s, median {:.1}s, max {:.1}s over {}",
        s[0],
        s[s.len() / 2],
        s[s.len() - 1],
        s.len()
    )
}

#[tokio::test]
async fn with_the_webhook_unreachable_datajobs_are_still_checked_and_fail_tells_what_to_do() {
    let _one = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    ensure_crds(&client).await;
    ensure_namespace(&client, LEASE_NS).await;
    let ns = test_namespace(&client, "webhook-down").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());

    // An operator whose webhook has failurePolicy Fail, under a configuration of its own
    // (the shared one stays as it is), run as admin: the chart's RBAC names its own.
    let configuration = common::unique_name("chaos-fail");
    let _configuration_guard = DeleteOnDrop {
        what: "ValidatingWebhookConfiguration",
        path: format!(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{configuration}"
        ),
    };
    let secret = common::unique_name("chaos-webhook-cert");
    let webhook = format!("127.0.0.1:{}", free_port());
    let url = format!("https://{webhook}");
    let admin_kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG of the cluster");
    let mut op = Replica::start(
        "chaos-webhook",
        &[
            ("KUBECONFIG", &admin_kubeconfig),
            ("DATAJOB_LEADER_ELECT", "false"),
            ("DATAJOB_WEBHOOK_ADDR", &webhook),
            ("DATAJOB_WEBHOOK_URL", &url),
            ("DATAJOB_WEBHOOK_CONFIGURATION", &configuration),
            ("DATAJOB_WEBHOOK_SECRET", &secret),
            ("DATAJOB_WEBHOOK_FAILURE_POLICY", "Fail"),
        ],
    )
    .await;
    // It refuses a bad DataJob (the apiserver reads webhook configurations from a cache).
    let bad = datajob(
        "bad-deadline",
        json!({"image": "busybox", "deadline": "30d"}),
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let words = wait_for(
        "the webhook refusing a bad DataJob",
        Duration::from_secs(30),
        || async {
            match api.create(&dry, &bad).await {
                Err(kube::Error::Api(e)) if e.message.contains("spec.deadline") => {
                    Ok(Some(e.message))
                }
                _ => Ok(None),
            }
        },
    )
    .await
    .unwrap();
    let resolved = datajob_core::validation::resolve(
        &{
            let mut d = bad.clone();
            d.metadata.namespace = Some(ns.name().to_string());
            d
        },
        &datajob_core::validation::Limits::default(),
    )
    .expect_err("it is invalid");
    assert!(words.contains(&resolved.to_string()), "{words}");
    let good = datajob(
        "nightly",
        json!({"image": "busybox", "schedule": "0 3 * * *"}),
    );
    api.create(&PostParams::default(), &good).await.unwrap();

    // The operator dies; its webhook configuration stays, with Fail.
    op.kill().await;
    let file = log_dir().join("webhook-down.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&datajob(
            "after-the-crash",
            json!({"image": "busybox", "schedule": "0 4 * * *"}),
        ))
        .unwrap(),
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let out = wait_for(
        "kubectl apply refused by the dead webhook",
        Duration::from_secs(30),
        || {
            let file = file.clone();
            let ns = ns.name().to_string();
            async move {
                let out = common::kubectl::kubectl(&["apply", "-n", &ns, "-f", &file], None);
                Ok((!out.ok).then_some(out))
            }
        },
    )
    .await
    .unwrap();
    eprintln!(
        "webhook down, failurePolicy Fail: kubectl apply says:\n{}",
        out.stderr.trim()
    );
    assert!(
        out.stderr
            .contains("failed calling webhook \"validate.datajob.dev\""),
        "{out}"
    );
    // What kubectl datajob says about the same refusal, with what to do.
    let trigger = common::plugin::plugin(ns.name(), &["trigger", "nightly"]).await;
    eprintln!(
        "webhook down: kubectl datajob trigger says:\n{}",
        trigger.stderr.trim()
    );
    assert_ne!(trigger.code, 0, "{trigger}");
    assert!(
        trigger.stderr.contains("did not answer")
            && trigger.stderr.contains("failurePolicy is Fail")
            && trigger.stderr.contains("Try again in a minute"),
        "{trigger}"
    );
    let plan = common::plugin::plugin(ns.name(), &["plan", "-f", &file]).await;
    assert!(
        plan.stdout.contains("did not answer") || plan.stderr.contains("did not answer"),
        "{plan}"
    );

    // failurePolicy Ignore (the default): the same outage lets a bad DataJob in, and the
    // reconciler's backstop marks it Invalid with the webhook's words.
    let vwc: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    vwc.delete(&configuration, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the apiserver forgetting the Fail webhook",
        Duration::from_secs(30),
        || async {
            Ok(api
                .create(&dry, &good_copy("probe"))
                .await
                .is_ok()
                .then_some(()))
        },
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &bad).await.unwrap();
    let mut op = Replica::start(
        "chaos-backstop",
        &[
            ("KUBECONFIG", &admin_kubeconfig),
            ("DATAJOB_LEADER_ELECT", "false"),
        ],
    )
    .await;
    let dj = wait_for_object(
        &api,
        "bad-deadline",
        "the reconciler marking it Invalid",
        Duration::from_secs(30),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Invalid),
    )
    .await
    .unwrap();
    op.stop().await;
    let message = dj.status.and_then(|s| s.message).unwrap_or_default();
    assert_eq!(
        message,
        resolved.to_string(),
        "the same words as the webhook"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|j| j.labels().get(NAME).map(String::as_str) != Some("bad-deadline")),
        "an invalid DataJob gets no run"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), LEASE_NS);
    let _ = secrets.delete(&secret, &DeleteParams::default()).await;
}

fn good_copy(name: &str) -> DataJob {
    datajob(name, json!({"image": "busybox"}))
}

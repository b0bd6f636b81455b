//! Benchmark (`make bench-scale`): N scheduled DataJobs beside N plain CronJobs with the
//! same pod, in one run, on the local control plane with kwok nodes.
//!
//! For each N it:
//! 1. starts a release-built operator of its own (`BENCH_OPERATOR`; e2e/bench/scale.sh
//!    builds the image's static binary) (no webhook URL but the bench's own),
//!    waits until it leads, and reads its idle RSS;
//! 2. applies N DataJobs through the webhook (8 at a time) and times it; `E` of them run
//!    every minute (`BENCH_SCALE_EVERY_MINUTE`, default 100: what the local control
//!    plane sustains on 2 cores), the rest once a day; beside them N plain CronJobs, the
//!    same split, the same pod (`busybox`, kwok runs it 1 s), `Forbid`, 60 s starting
//!    deadline;
//! 3. watches Jobs and DataJobs for `BENCH_SCALE_SLOTS` (default 3) every-minute slots,
//!    sampling the operator's RSS and CPU every second;
//! 4. prints one row per side: run start lag after the slot (p50, p99, max: the Job's
//!    `startTime`, which for a DataJob includes the operator starting the suspended
//!    Job), missed and doubled runs; for DataJob, status lag (a Job finished → the DataJob's status
//!    shows it, p50/p99/max, and runs that never reached the status), RSS idle and
//!    peak, CPU, and the apply time.
//!
//! 5. at the end of the slots, says where the memory goes: every object the operator
//!    caches (DataJobs, NodeGroups, Nodes, and the managed Jobs and pods; CronJobs are
//!    watched for their owner, not cached) is listed, trimmed as the operator trims it,
//!    and put in a reflector store like the operator's, under an allocator that counts
//!    the bytes this thread holds; a table gives the objects and MiB per kind beside the
//!    operator's own heap (its counting allocator, from `/metrics`) and RSS.
//!
//! `BENCH_SCALE_N` (default `100,500,1000,2000`) lists the sizes; each size runs in a
//! namespace of its own, deleted afterwards. Run it with `bash e2e/bench/scale.sh`
//! (brings the cluster up and down). Results: docs/benchmarks.md.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datajob_api::DataJob;
use datajob_core::labels::{self, NAME};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Counts the bytes each thread allocates and has not freed, for the cache table.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    pub struct Counting;

    fn add(n: isize) {
        let _ = LIVE.try_with(|l| l.set(l.get() + n));
    }

    // SAFETY: every call goes to the system allocator unchanged; only a thread-local
    // counter (const-initialised, so it never allocates) is updated beside it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Bytes this thread holds now.
    pub fn live() -> isize {
        LIVE.try_with(Cell::get).unwrap_or(0)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const CRONJOB_LABEL: &str = "bench.datajob.dev/cronjob";
const KWOK_DURATION: &str = "kwok.datajob.dev/duration";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("scale bench: {e}");
        std::process::exit(1);
    }
}

/// What one size measured.
struct Row {
    n: usize,
    every_minute: usize,
    slots: usize,
    apply: Duration,
    datajob: Side,
    cronjob: Side,
    status_lag: Vec<f64>,
    never_in_status: usize,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
    /// The operator's heap (its counting allocator, from `/metrics`): at the end of the
    /// slots, and the most it held at once.
    heap_end_mib: f64,
    heap_peak_mib: f64,
    cpu_percent: f64,
    /// What the operator's caches held at the end of the slots, per kind.
    caches: Vec<CacheUse>,
}

/// One kind in the operator's caches: how many objects, and the bytes they take.
struct CacheUse {
    kind: &'static str,
    objects: usize,
    bytes: isize,
}

#[derive(Default)]
struct Side {
    lags: Vec<f64>,
    missed: usize,
    doubled: usize,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s[i.min(s.len() - 1)]
}

async fn bench() -> Result<()> {
    let client = Client::try_default().await?;
    let sizes: Vec<usize> = env_or("BENCH_SCALE_N", "100,500,1000,2000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let every: usize = env_or("BENCH_SCALE_EVERY_MINUTE", "100").parse()?;
    let slots: usize = env_or("BENCH_SCALE_SLOTS", "3").parse()?;
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("== N = {n} ({} every minute)", n.min(every));
        match size(&client, n, n.min(every), slots).await {
            Ok(r) => rows.push(r),
            Err(e) => eprintln!("N = {n}: {e}"),
        }
    }
    println!();
    println!(
        "Operator measured: {}",
        env_or("BENCH_OPERATOR", "target/release/datajob-operator")
    );
    print_table(&rows);
    print_caches(&rows);
    Ok(())
}

fn print_caches(rows: &[Row]) {
    println!();
    println!(
        "Where the memory goes at the end of the slots: the objects the operator caches, trimmed as it trims them, in a reflector store."
    );
    println!();
    println!("| N | kind | objects | MiB in cache | bytes per object |");
    println!("| --- | --- | --- | --- | --- |");
    let mib = |b: isize| b as f64 / 1048576.0;
    for r in rows {
        let mut total = 0;
        for c in &r.caches {
            total += c.bytes;
            println!(
                "| {} | {} | {} | {:.1} | {} |",
                r.n,
                c.kind,
                c.objects,
                mib(c.bytes),
                c.bytes.checked_div(c.objects as isize).unwrap_or(0)
            );
        }
        println!(
            "| {} | all caches | {} | {:.1} | — |",
            r.n,
            r.caches.iter().map(|c| c.objects).sum::<usize>(),
            mib(total)
        );
        println!(
            "| {} | the operator's heap: at the end / at its peak | — | {:.1} / {:.1} | — |",
            r.n, r.heap_end_mib, r.heap_peak_mib
        );
        println!(
            "| {} | the operator's RSS: at its peak | — | {:.1} | — |",
            r.n, r.rss_peak_mib
        );
    }
}

/// Lists `kind` as the operator's watch would see it (`params`), then measures the bytes
/// a reflector store holds for those objects once `trim` has run on each: deserialised
/// from the JSON again, on this thread, with nothing awaited meanwhile.
async fn cache_use<K>(
    kind: &'static str,
    api: Api<K>,
    params: &ListParams,
    trim: fn(&mut K),
) -> Result<CacheUse>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let listed = api.list(params).await?.items;
    let json: Vec<Vec<u8>> = listed
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<_, _>>()?;
    drop(listed);
    Ok(held_by_store(kind, &json, trim))
}

fn held_by_store<K>(kind: &'static str, json: &[Vec<u8>], trim: fn(&mut K)) -> CacheUse
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
{
    let before = counting::live();
    let (store, mut writer) = kube::runtime::reflector::store::<K>();
    for bytes in json {
        if let Ok(mut obj) = serde_json::from_slice::<K>(bytes) {
            datajob_operator::controller::as_cached(&mut obj, trim);
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
    }
    let bytes = counting::live() - before;
    let objects = store.state().len();
    drop((store, writer));
    CacheUse {
        kind,
        objects,
        bytes,
    }
}

/// What each of the operator's caches holds now.
async fn caches_now(client: &Client) -> Result<Vec<CacheUse>> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    let all = ListParams::default();
    let managed = ListParams::default().labels(&labels::managed_selector());
    fn keep<K>(_: &mut K) {}
    Ok(vec![
        cache_use("DataJob", Api::<DataJob>::all(client.clone()), &all, keep).await?,
        cache_use(
            "NodeGroup",
            Api::<datajob_api::NodeGroup>::all(client.clone()),
            &all,
            keep,
        )
        .await?,
        cache_use(
            "Node",
            Api::<Node>::all(client.clone()),
            &all,
            datajob_operator::controller::trim_node,
        )
        .await?,
        cache_use(
            "Job",
            Api::<Job>::all(client.clone()),
            &managed,
            datajob_operator::controller::trim_job,
        )
        .await?,
        cache_use(
            "Pod",
            Api::<Pod>::all(client.clone()),
            &managed,
            datajob_operator::controller::trim_pod,
        )
        .await?,
    ])
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| N | every minute | side | run start lag after the slot p50 / p99 / max (s) | missed | doubled | status lag p50 / p99 / max (s) | never in status | RSS idle → peak (MiB) | CPU | apply N through the webhook |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let lag = |s: &Side| {
            format!(
                "{:.1} / {:.1} / {:.1}",
                quantile(&s.lags, 0.5),
                quantile(&s.lags, 0.99),
                quantile(&s.lags, 1.0)
            )
        };
        let expected = r.every_minute * r.slots;
        println!(
            "| {} | {} | DataJob | {} | {} of {expected} | {} | {:.1} / {:.1} / {:.1} | {} | {:.0} → {:.0} | {:.0} % | {:.1} s |",
            r.n,
            r.every_minute,
            lag(&r.datajob),
            r.datajob.missed,
            r.datajob.doubled,
            quantile(&r.status_lag, 0.5),
            quantile(&r.status_lag, 0.99),
            quantile(&r.status_lag, 1.0),
            r.never_in_status,
            r.rss_idle_mib,
            r.rss_peak_mib,
            r.cpu_percent,
            r.apply.as_secs_f64()
        );
        println!(
            "| {} | {} | CronJob | {} | {} of {expected} | {} | — | — | — | — | — |",
            r.n,
            r.every_minute,
            lag(&r.cronjob),
            r.cronjob.missed,
            r.cronjob.doubled,
        );
    }
}

/// The operator under measurement: the release binary, its own admin and webhook ports.
struct Operator {
    child: tokio::process::Child,
    admin: String,
    pid: u32,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    Some(out)
}

async fn start_operator() -> Result<Operator> {
    let bin = env_or(
        "BENCH_OPERATOR",
        concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/target/release/datajob-operator"
        ),
    );
    let (admin, webhook) = (
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
    );
    let mut cmd = tokio::process::Command::new(&bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("DATAJOB_") {
            cmd.env_remove(k);
        }
    }
    let log = std::fs::File::create(env_or(
        "BENCH_OPERATOR_LOG",
        concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/target/bench-scale-operator.log"
        ),
    ))?;
    cmd.env("DATAJOB_ADMIN_ADDR", &admin)
        .env("DATAJOB_WEBHOOK_ADDR", &webhook)
        .env("DATAJOB_WEBHOOK_URL", format!("https://{webhook}"))
        .env("DATAJOB_WEBHOOK_CONFIGURATION", "bench-scale.datajob.dev")
        .env("DATAJOB_WEBHOOK_SECRET", "bench-scale-webhook-cert")
        .env("DATAJOB_LEASE_NAME", "bench-scale")
        .env("DATAJOB_LOG_JSON", "false")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("start {bin}: {e} (the bench builds it: bash e2e/bench/scale.sh)"))?;
    let pid = child.id().ok_or("the operator has no pid")?;
    let op = Operator { child, admin, pid };
    for _ in 0..300 {
        let text = http_get(&op.admin, "/metrics").await.unwrap_or_default();
        if text.lines().any(|l| l == "datajob_leader 1") {
            return Ok(op);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the operator did not lead within 60 s".into())
}

/// RSS (MiB) and CPU seconds of a process.
fn usage(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((rss_kb / 1024.0, ticks / 100.0))
}

fn pod_template() -> serde_json::Value {
    json!({
        "metadata": {"annotations": {KWOK_DURATION: "1s"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

async fn size(client: &Client, n: usize, every: usize, slots: usize) -> Result<Row> {
    let op = start_operator().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_idle_mib, _) = usage(op.pid).ok_or("cannot read the operator's /proc")?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace =
        serde_json::from_value(json!({"metadata": {"generateName": format!("bench-scale-{n}-")}}))?;
    let ns = namespaces
        .create(&PostParams::default(), &ns_obj)
        .await?
        .name_any();
    let result = measure(client, &op, &ns, n, every, slots, rss_idle_mib).await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    drop(op);
    // The next size starts from an empty cluster: its operator's idle memory must not
    // hold this size's DataJobs.
    for _ in 0..600 {
        if namespaces.get_opt(&ns).await.ok().flatten().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &Client,
    op: &Operator,
    ns: &str,
    n: usize,
    every: usize,
    slots: usize,
    rss_idle_mib: f64,
) -> Result<Row> {
    let datajobs: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    // The namespace's default ServiceAccount (pods are refused before it exists).
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    for _ in 0..150 {
        if sas.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Jobs and DataJob statuses, as they happen.
    let job_first_seen: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>> = Arc::default();
    let finished_in_status: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>> = Arc::default();
    let jobs_watch = {
        let seen = job_first_seen.clone();
        let stream = watcher(jobs.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(j)) = stream.try_next().await {
                seen.lock()
                    .map(|mut m| {
                        m.entry(j.name_any()).or_insert_with(Utc::now);
                    })
                    .ok();
            }
        })
    };
    let status_watch = {
        let seen = finished_in_status.clone();
        let stream = watcher(datajobs.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(dj)) = stream.try_next().await {
                let now = Utc::now();
                if let Ok(mut m) = seen.lock() {
                    for r in dj.status.iter().flat_map(|s| s.recent_runs.iter()) {
                        if r.state.is_finished() {
                            m.entry(r.name.clone()).or_insert(now);
                        }
                    }
                }
            }
        })
    };

    // Apply: N DataJobs through the webhook, 8 at a time; then N CronJobs.
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = datajobs.clone();
            async move {
                let schedule = if i < every { "* * * * *" } else { "0 3 * * *" };
                let dj: DataJob = serde_json::from_value(json!({
                    "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
                    "metadata": {"name": format!("dj-{i}")},
                    "spec": {"image": "busybox", "schedule": schedule, "deadline": "5m",
                        "resources": {"cpu": "10m", "memory": "16Mi"},
                        "podAnnotations": {KWOK_DURATION: "1s"}},
                }))?;
                api.create(&PostParams::default(), &dj).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let apply = started.elapsed();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = cronjobs.clone();
            async move {
                let schedule = if i < every { "* * * * *" } else { "0 3 * * *" };
                let cj: CronJob = serde_json::from_value(json!({
                    "metadata": {"name": format!("cj-{i}")},
                    "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 60,
                        "successfulJobsHistoryLimit": 5, "failedJobsHistoryLimit": 5,
                        "jobTemplate": {"metadata": {"labels": {CRONJOB_LABEL: format!("cj-{i}")}},
                            "spec": {"backoffLimit": 0, "template": pod_template()}}},
                }))?;
                api.create(&PostParams::default(), &cj).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "applied {n} DataJobs in {:.1} s, and {n} CronJobs",
        apply.as_secs_f64()
    );

    // The slots: the first full minute after everything exists, and the next ones.
    let now = Utc::now();
    let first = now.timestamp().div_euclid(60) * 60 + 60;
    let slot_times: Vec<i64> = (0..slots as i64).map(|k| first + 60 * k).collect();
    let end = first + 60 * slots as i64 + 45;
    let (mut rss_peak, cpu_start, wall_start) =
        (rss_idle_mib, usage(op.pid).map(|u| u.1), Instant::now());
    while Utc::now().timestamp() < end {
        if let Some((rss, _)) = usage(op.pid) {
            rss_peak = rss_peak.max(rss);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu_percent = match (cpu_start, usage(op.pid)) {
        (Some(a), Some((_, b))) => (b - a) / wall_start.elapsed().as_secs_f64() * 100.0,
        _ => f64::NAN,
    };
    jobs_watch.abort();
    status_watch.abort();
    let metrics = http_get(&op.admin, "/metrics").await.unwrap_or_default();
    let heap_mib = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map_or(f64::NAN, |b| b / 1048576.0)
    };
    let (heap_end_mib, heap_peak_mib) = (
        heap_mib("datajob_heap_bytes"),
        heap_mib("datajob_heap_peak_bytes"),
    );
    let caches = caches_now(client).await.unwrap_or_else(|e| {
        eprintln!("could not list the cached objects: {e}");
        Vec::new()
    });

    // Jobs per side and slot.
    let all = jobs.list(&ListParams::default()).await?.items;
    let wanted: BTreeSet<i64> = slot_times.iter().copied().collect();
    let (mut dj_side, mut cj_side) = (Side::default(), Side::default());
    let mut per: BTreeMap<(bool, String, i64), usize> = BTreeMap::new();
    let seen = job_first_seen.lock().map(|m| m.clone()).unwrap_or_default();
    let mut dj_jobs = Vec::new();
    for j in &all {
        let (is_dj, owner) = match (j.labels().get(NAME), j.labels().get(CRONJOB_LABEL)) {
            (Some(d), _) => (true, d.clone()),
            (_, Some(c)) => (false, c.clone()),
            _ => continue,
        };
        let Some(slot) = j
            .name_any()
            .rsplit('-')
            .next()
            .and_then(|m| m.parse::<i64>().ok())
            .map(|m| m * 60)
        else {
            continue;
        };
        if !wanted.contains(&slot) {
            continue;
        }
        *per.entry((is_dj, owner.clone(), slot)).or_default() += 1;
        // When the run started: the Job controller sets `startTime` once the Job is not
        // suspended. A DataJob's Job is created suspended by the same CronJob controller
        // and started by the operator: the extra hop shows here. Before it started, when
        // the bench first saw the Job.
        let started = j
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .and_then(labels::from_k8s_time)
            .or_else(|| seen.get(&j.name_any()).copied());
        if let Some(c) = started {
            let lag = c.timestamp() as f64 + f64::from(c.timestamp_subsec_millis()) / 1000.0
                - slot as f64;
            if is_dj {
                dj_side.lags.push(lag);
            } else {
                cj_side.lags.push(lag);
            }
        }
        if is_dj {
            dj_jobs.push(j.clone());
        }
    }
    for ((is_dj, _, _), count) in &per {
        let side = if *is_dj { &mut dj_side } else { &mut cj_side };
        side.doubled += count.saturating_sub(1);
    }
    let expected = every * slots;
    dj_side.missed = expected.saturating_sub(per.keys().filter(|(d, _, _)| *d).count());
    cj_side.missed = expected.saturating_sub(per.keys().filter(|(d, _, _)| !*d).count());

    // Status lag: a DataJob Job's completion → the status shows the run finished.
    let in_status = finished_in_status
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut status_lag = Vec::new();
    let mut never = 0;
    for j in &dj_jobs {
        let done = j
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .and_then(labels::from_k8s_time);
        // Only runs that had time to reach the status before the watch ended.
        let Some(done) = done.filter(|d| d.timestamp() < end - 10) else {
            continue;
        };
        match in_status.get(&j.name_any()) {
            Some(t) => status_lag.push((*t - done).num_milliseconds() as f64 / 1000.0),
            None => never += 1,
        }
    }
    Ok(Row {
        n,
        every_minute: every,
        slots,
        apply,
        datajob: dj_side,
        cronjob: cj_side,
        status_lag,
        never_in_status: never,
        rss_idle_mib,
        rss_peak_mib: rss_peak,
        heap_end_mib,
        heap_peak_mib,
        cpu_percent,
        caches,
    })
}

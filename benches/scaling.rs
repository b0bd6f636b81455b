//! Benchmark: DataJob's node-group scaler against a Cluster-Autoscaler-like baseline.
//!
//! Replays one bursty trace of one-off DataJobs twice on the local control plane, each
//! time on a fresh kwok NodeGroup of 4-CPU nodes:
//!
//! * `datajob`: the product defaults, `minSize: 0`, `scaleDownAfter: 2m`;
//! * `baseline`: `minSize: 1` and a 10-minute idle delay (what Cluster Autoscaler does
//!   out of the box: one node kept warm, 10 minutes before an idle node goes).
//!
//! It samples nodes, pods and the NodeGroup's status every 250 ms and prints one table:
//! utilisation (run CPU-seconds ÷ node CPU-seconds from the first submission until the
//! group is back at its resting size), node-seconds and their cost, the time from the last
//! run's end to zero nodes, the latency from a pod becoming Unschedulable to the scale-up
//! decision, and from a DataJob's creation to its pod running.
//!
//! Run it with `bash e2e/bench/scaling.sh` (starts the cluster and the operator, and stops
//! them). Settings: `BENCH_BASELINE_IDLE` (default `10m`), `BENCH_SCALE_DOWN_AFTER`
//! (default `2m`), `BENCH_BOOT_DELAY` (default `10s`), `BENCH_ONLY` (`datajob` or
//! `baseline`). Results and how to read them: docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datajob::api::{DataJob, NodeGroup, RunState};
use datajob::labels;
use datajob::nodegroups::GROUP_LABEL;
use datajob::resources::Request;
use datajob::watchdog::unschedulable_condition;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// One burst of the trace: `count` DataJobs created `at` seconds after the start.
struct Burst {
    at: u64,
    count: usize,
    cpu: u32,
    memory: &'static str,
    seconds: u64,
}

/// Bursts of mixed sizes with gaps between them, about three minutes of work in all.
const TRACE: &[Burst] = &[
    Burst {
        at: 0,
        count: 5,
        cpu: 2,
        memory: "4Gi",
        seconds: 40,
    },
    Burst {
        at: 20,
        count: 3,
        cpu: 1,
        memory: "2Gi",
        seconds: 30,
    },
    Burst {
        at: 90,
        count: 4,
        cpu: 3,
        memory: "8Gi",
        seconds: 25,
    },
    Burst {
        at: 150,
        count: 6,
        cpu: 1,
        memory: "2Gi",
        seconds: 20,
    },
];
const NODE_CPU: f64 = 4.0;
const PRICE_PER_HOUR: f64 = 0.20;
const SAMPLE: Duration = Duration::from_millis(250);
const DURATION_ANNOTATION: &str = "kwok.datajob.dev/duration";

struct Scaler {
    name: &'static str,
    min_size: i32,
    scale_down_after: String,
}

#[derive(Default)]
struct PodSeen {
    datajob: String,
    cpu: f64,
    /// How long the trace says it runs.
    seconds: f64,
    unschedulable: Option<Instant>,
    running: Option<Instant>,
    finished: Option<Instant>,
}

/// What one replay saw.
struct Replay {
    start: Instant,
    /// (when, nodes of the group, status.desired)
    samples: Vec<(Instant, usize, i32)>,
    pods: BTreeMap<String, PodSeen>,
    created: BTreeMap<String, Instant>,
    /// When the group was back at its resting size after the last run.
    at_rest: Option<Instant>,
    succeeded: usize,
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("scaling bench: {e}");
        std::process::exit(1);
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

async fn bench() -> Result<()> {
    let client = Client::try_default().await?;
    let boot = env_or("BENCH_BOOT_DELAY", "10s");
    let only = std::env::var("BENCH_ONLY").ok();
    let scalers = [
        Scaler {
            name: "datajob",
            min_size: 0,
            scale_down_after: env_or("BENCH_SCALE_DOWN_AFTER", "2m"),
        },
        Scaler {
            name: "baseline",
            min_size: 1,
            scale_down_after: env_or("BENCH_BASELINE_IDLE", "10m"),
        },
    ];
    let runs: usize = TRACE.iter().map(|b| b.count).sum();
    eprintln!(
        "trace: {runs} runs in {} bursts over {} s; nodes of {NODE_CPU} CPU, boot delay {boot}",
        TRACE.len(),
        TRACE.iter().map(|b| b.at + b.seconds).max().unwrap_or(0)
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for s in scalers
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == s.name))
    {
        eprintln!(
            "== {}: minSize {}, scaleDownAfter {}",
            s.name, s.min_size, s.scale_down_after
        );
        match replay(&client, s, &boot).await {
            Ok(r) => rows.push((s, r)),
            Err(e) => failed.push(format!("{}: {e}", s.name)),
        }
    }
    print_table(&rows, runs);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}

async fn replay(client: &Client, s: &Scaler, boot: &str) -> Result<Replay> {
    let suffix = std::process::id();
    let group = format!("bench-{}-{suffix}", s.name);
    let ns = group.clone();
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let ng: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": group},
        "spec": {
            "node": {"cpu": NODE_CPU as u32, "memory": "16Gi"},
            "minSize": s.min_size, "maxSize": 8, "pricePerHour": PRICE_PER_HOUR.to_string(),
            "scaleDownAfter": s.scale_down_after,
            "taints": [{"key": "datajob.dev/dedicated", "value": "bench", "effect": "NoSchedule"}],
            "provider": {"kwok": {"bootDelay": boot}},
        },
    }))?;
    groups.create(&PostParams::default(), &ng).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let result = drive(client, s, &group, &ns).await;
    // Clean up whatever happened: the namespace (DataJobs, Jobs, pods), then the group
    // and its nodes.
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    let _ = groups.delete(&group, &DeleteParams::default()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    if let Ok(list) = nodes
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={group}")))
        .await
    {
        for n in list.items {
            let _ = nodes.delete(&n.name_any(), &DeleteParams::default()).await;
        }
    }
    result
}

async fn drive(client: &Client, s: &Scaler, group: &str, ns: &str) -> Result<Replay> {
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let datajobs: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let by_group = ListParams::default().labels(&format!("{GROUP_LABEL}={group}"));

    // The group at its resting size, and the namespace ready for pods, before the trace.
    let settle = Instant::now();
    loop {
        let g = groups.get(group).await?;
        let ready = g
            .status
            .as_ref()
            .is_some_and(|st| st.desired == s.min_size && st.ready == s.min_size);
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_opt("default")
            .await?;
        if ready && sa.is_some() {
            break;
        }
        if settle.elapsed() > Duration::from_secs(120) {
            return Err(format!("NodeGroup {group} did not settle at {} nodes", s.min_size).into());
        }
        tokio::time::sleep(SAMPLE).await;
    }

    let mut todo: Vec<(Duration, String, &Burst)> = TRACE
        .iter()
        .enumerate()
        .flat_map(|(b, burst)| {
            (0..burst.count)
                .map(move |i| (Duration::from_secs(burst.at), format!("b{b}-{i}"), burst))
        })
        .collect();
    todo.reverse();
    let total = todo.len();
    let mut r = Replay {
        start: Instant::now(),
        samples: Vec::new(),
        pods: BTreeMap::new(),
        created: BTreeMap::new(),
        at_rest: None,
        succeeded: 0,
    };
    let give_up = r.start
        + Duration::from_secs(TRACE.iter().map(|b| b.at + b.seconds).max().unwrap_or(0) + 300)
        + datajob::units::parse_duration(&s.scale_down_after)
            .map_err(|e| format!("scaleDownAfter: {e}"))?;
    loop {
        let now = Instant::now();
        while todo.last().is_some_and(|(at, _, _)| r.start + *at <= now) {
            if let Some((_, name, burst)) = todo.pop() {
                create(&datajobs, &name, burst).await?;
                r.created.insert(name, Instant::now());
            }
        }
        let now = Instant::now();
        let count = nodes.list_metadata(&by_group).await?.items.len();
        let desired = groups
            .get(group)
            .await?
            .status
            .map(|st| st.desired)
            .unwrap_or_default();
        r.samples.push((now, count, desired));
        for p in pods.list(&ListParams::default()).await?.items {
            let seen = r.pods.entry(p.name_any()).or_insert_with(|| PodSeen {
                datajob: p.labels().get(labels::NAME).cloned().unwrap_or_default(),
                cpu: Request::of(&p).cpu_millis as f64 / 1000.0,
                seconds: p
                    .annotations()
                    .get(DURATION_ANNOTATION)
                    .and_then(|d| datajob::units::parse_duration(d).ok())
                    .map_or(0.0, |d| d.as_secs_f64()),
                ..PodSeen::default()
            });
            let phase = p
                .status
                .as_ref()
                .and_then(|st| st.phase.clone())
                .unwrap_or_default();
            if seen.unschedulable.is_none() && unschedulable_condition(&p).is_some() {
                seen.unschedulable = Some(now);
            }
            if seen.running.is_none() && (phase == "Running" || phase == "Succeeded") {
                seen.running = Some(now);
            }
            if seen.finished.is_none() && (phase == "Succeeded" || phase == "Failed") {
                seen.finished = Some(now);
            }
        }
        if todo.is_empty() && r.succeeded < total {
            r.succeeded = datajobs
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|d| d.status.as_ref().and_then(|st| st.state) == Some(RunState::Succeeded))
                .count();
        }
        if r.succeeded == total && count == s.min_size as usize && desired == s.min_size {
            r.at_rest = Some(now);
            break;
        }
        if now > give_up {
            eprintln!(
                "   gave up waiting: {} of {total} succeeded, {count} nodes",
                r.succeeded
            );
            break;
        }
        tokio::time::sleep(SAMPLE.saturating_sub(now.elapsed())).await;
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let at = |t: Option<Instant>| {
            t.map_or("-".into(), |t| {
                format!("{:.1}", (t - r.start).as_secs_f64())
            })
        };
        eprintln!("   pod: created / unschedulable / running / finished (s from start)");
        for (name, p) in &r.pods {
            eprintln!(
                "   {name}: {} / {} / {} / {}",
                at(r.created.get(&p.datajob).copied()),
                at(p.unschedulable),
                at(p.running),
                at(p.finished)
            );
        }
        for w in r
            .samples
            .windows(2)
            .filter(|w| (w[0].1, w[0].2) != (w[1].1, w[1].2))
        {
            eprintln!(
                "   {:.1}: nodes {} desired {}",
                (w[1].0 - r.start).as_secs_f64(),
                w[1].1,
                w[1].2
            );
        }
    }
    Ok(r)
}

async fn create(api: &Api<DataJob>, name: &str, b: &Burst) -> Result<()> {
    let dj: DataJob = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": name},
        "spec": {
            "image": "busybox", "deadline": "10m",
            "resources": {"cpu": b.cpu, "memory": b.memory},
            "podAnnotations": {DURATION_ANNOTATION: format!("{}s", b.seconds)},
        },
    }))?;
    // Right after the group appears the webhook's cache may not have it yet.
    for _ in 0..40 {
        match api.create(&PostParams::default(), &dj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.message.contains("node group") => {
                tokio::time::sleep(SAMPLE).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!("DataJob {name} was refused for 10 s").into())
}

/// The numbers of one replay.
struct Summary {
    utilisation: f64,
    node_seconds: f64,
    cost: f64,
    peak_nodes: usize,
    rest_nodes: usize,
    last_run_to_rest: Option<f64>,
    scale_up: Vec<f64>,
    to_running: Vec<f64>,
    /// Pods that ran more than 3 s longer than asked: the simulation (kwok) was late.
    late: usize,
}

fn summarise(r: &Replay) -> Summary {
    // Node-seconds: each sample's node count held until the next sample.
    let node_seconds: f64 = r
        .samples
        .windows(2)
        .map(|w| w[0].1 as f64 * (w[1].0 - w[0].0).as_secs_f64())
        .sum();
    let run_cpu_seconds: f64 = r
        .pods
        .values()
        .filter_map(|p| Some(p.cpu * (p.finished? - p.running?).as_secs_f64()))
        .sum();
    let last_finish = r.pods.values().filter_map(|p| p.finished).max();
    // Scale-up latency: each rise of status.desired, from the earliest pod first seen
    // Unschedulable that no earlier rise answered.
    let mut waiting: Vec<Instant> = r.pods.values().filter_map(|p| p.unschedulable).collect();
    waiting.sort();
    let mut scale_up = Vec::new();
    for w in r.samples.windows(2) {
        if w[1].2 > w[0].2 {
            let t = w[1].0;
            let answered = waiting.iter().take_while(|u| **u <= t).count();
            if let Some(first) = waiting.first().filter(|_| answered > 0) {
                scale_up.push((t - *first).as_secs_f64());
            }
            waiting.drain(..answered);
        }
    }
    let to_running = r
        .pods
        .values()
        .filter_map(|p| Some((p.running? - *r.created.get(&p.datajob)?).as_secs_f64()))
        .collect();
    Summary {
        utilisation: if node_seconds > 0.0 {
            run_cpu_seconds / (node_seconds * NODE_CPU)
        } else {
            0.0
        },
        node_seconds,
        cost: node_seconds / 3600.0 * PRICE_PER_HOUR,
        peak_nodes: r.samples.iter().map(|s| s.1).max().unwrap_or(0),
        rest_nodes: r.samples.last().map_or(0, |s| s.1),
        last_run_to_rest: last_finish
            .zip(r.at_rest)
            .map(|(f, a)| (a - f).as_secs_f64()),
        scale_up,
        to_running,
        late: r
            .pods
            .values()
            .filter(|p| {
                p.running
                    .zip(p.finished)
                    .is_some_and(|(a, b)| (b - a).as_secs_f64() > p.seconds + 3.0)
            })
            .count(),
    }
}

fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied()
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.1} s"))
}

fn print_table(rows: &[(&Scaler, Replay)], runs: usize) {
    println!();
    println!(
        "| scaler | runs ok | utilisation | node-seconds | cost | peak nodes | nodes at rest | last run → zero | unschedulable → scale-up p50 / max | created → running p50 / max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for (s, r) in rows {
        let m = summarise(r);
        if m.late > 0 {
            notes.push(format!(
                "{}: {} pod(s) ran more than 3 s longer than asked (kwok was late): its numbers are distorted; run again.",
                s.name, m.late
            ));
        }
        let to_zero = match (m.rest_nodes, m.last_run_to_rest) {
            (0, t) => secs(t),
            (n, t) => format!("never ({n} node kept; at rest after {})", secs(t)),
        };
        println!(
            "| {} (min {}, idle {}) | {}/{runs} | {:.0} % | {:.0} | {:.4} | {} | {} | {} | {} / {} | {} / {} |",
            s.name,
            s.min_size,
            s.scale_down_after,
            r.succeeded,
            m.utilisation * 100.0,
            m.node_seconds,
            m.cost,
            m.peak_nodes,
            m.rest_nodes,
            to_zero,
            secs(percentile(&m.scale_up, 0.5)),
            secs(percentile(&m.scale_up, 1.0)),
            secs(percentile(&m.to_running, 0.5)),
            secs(percentile(&m.to_running, 1.0)),
        );
    }
    println!();
    println!(
        "Utilisation: run CPU-seconds ÷ node CPU-seconds from the first submission until the group is back at its resting size. Latencies are sampled every {} ms.",
        SAMPLE.as_millis()
    );
    for n in notes {
        println!("WARNING {n}");
    }
}

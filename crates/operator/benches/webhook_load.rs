//! `make bench-webhook`: 200 admission reviews of a DataJob at the schema's bounds
//! (about 1.5 MiB each, what etcd takes at most) posted at once to the webhook's own
//! router, while `/readyz` is asked every 20 ms. Prints how many were answered or told
//! busy (503, the apiserver then applies the failurePolicy), the heap before, at its
//! peak and after (the operator's counting allocator), and the probe's and the
//! reviews' latencies. The webhook reads at most 8 bodies at a time, so the heap's peak
//! is about 8 bodies and their parse, not 200; and the probe never waits behind them.
use std::sync::Arc;
use std::time::{Duration, Instant};

use datajob_api::{DataJob, NodeGroup};
use datajob_core::decide::children::Guards;
use datajob_core::validation::Limits;
use datajob_operator::admin::{self, Readiness};
use datajob_operator::controller::Synced;
use datajob_operator::heap;
use datajob_operator::leader::LeaseHealth;
use datajob_operator::metrics::Metrics;
use datajob_operator::webhook;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

const REVIEWS: usize = 200;
const PROBE_EVERY: Duration = Duration::from_millis(20);

fn store<K: kube::Resource<DynamicType = ()> + Clone + 'static>() -> Store<K> {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);
    store
}

/// A review of a DataJob whose args fill about 1.5 MiB, with 256 env vars and 64 inputs.
fn review() -> Vec<u8> {
    let arg = "a".repeat(32 << 10);
    let args: Vec<&str> = std::iter::repeat_n(arg.as_str(), 46).collect();
    let env: Vec<serde_json::Value> = (0..256)
        .map(|i| serde_json::json!({"name": format!("SETTING_{i}"), "value": "x".repeat(64)}))
        .collect();
    let inputs: Vec<String> = (0..64).map(|i| format!("upstream-{i:02}")).collect();
    let dj = serde_json::json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "big", "namespace": "analytics"},
        "spec": {"image": "busybox", "args": args, "env": env, "inputs": inputs},
    });
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "datajob.dev", "version": "v1alpha1", "kind": "DataJob"},
            "resource": {"group": "datajob.dev", "version": "v1alpha1", "resource": "datajobs"},
            "name": "big", "namespace": "analytics", "operation": "CREATE",
            "userInfo": {"username": "alice"}, "object": dj, "dryRun": false,
        }
    }))
    .unwrap_or_default()
}

/// One HTTP/1.1 request on a new connection; the status code and how long it took.
async fn request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, started.elapsed());
    };
    let head = format!(
        "{head}\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return (0, started.elapsed());
    }
    let mut buf = [0u8; 16];
    let status = match s.read_exact(&mut buf[..12]).await {
        Ok(_) => std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    (status, started.elapsed())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let groups: Store<NodeGroup> = store();
    let datajobs: Store<DataJob> = store();
    let caches = webhook::Caches {
        groups_synced: Synced::of(&groups),
        groups,
        datajobs_synced: Synced::of(&datajobs),
        datajobs,
    };
    let hook = webhook::router(
        Limits::default(),
        Guards::default(),
        caches,
        None,
        Metrics::default(),
        None,
    );
    let ready = Readiness::default();
    ready.set_ready();
    let probes = admin::probes(ready, LeaseHealth::default());
    let bind = || async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let addr = l.local_addr().ok()?;
        Some((l, addr))
    };
    let (Some((hook_listener, hook_addr)), Some((probe_listener, probe_addr))) =
        (bind().await, bind().await)
    else {
        eprintln!("webhook_load: cannot listen on 127.0.0.1");
        std::process::exit(1);
    };
    tokio::spawn(async move { axum::serve(hook_listener, hook).await });
    tokio::spawn(async move { axum::serve(probe_listener, probes).await });

    let body = Arc::new(review());
    // One review first: the regular expressions and the caches' signals are warm.
    let (first, _) = request(hook_addr, "POST /validate-datajob HTTP/1.1", &body).await;
    if first != 200 {
        eprintln!("webhook_load: the webhook answered the first review {first}");
        std::process::exit(1);
    }
    let before = heap::usage().map_or(0, |(now, _)| now);

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            let mut failed = 0usize;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let (code, t) = request(probe_addr, "GET /readyz HTTP/1.1", b"").await;
                if code != 200 {
                    failed += 1;
                }
                took.push(t);
                tokio::time::sleep(PROBE_EVERY).await;
            }
            (took, failed)
        })
    };
    let started = Instant::now();
    let posts: Vec<_> = (0..REVIEWS)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move {
                request(hook_addr, "POST /validate-datajob HTTP/1.1", &body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for p in posts {
        if let Ok(a) = p.await {
            answers.push(a);
        }
    }
    let wall = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut probe_took, probe_failed) = probing.await.unwrap_or_default();
    let (after, peak) = heap::usage().unwrap_or_default();
    let ok = answers.iter().filter(|(c, _)| *c == 200).count();
    let busy = answers.iter().filter(|(c, _)| *c == 503).count();
    let other = answers.len() - ok - busy;
    let mut review_took: Vec<Duration> = answers.iter().map(|(_, t)| *t).collect();
    review_took.sort();
    probe_took.sort();
    println!(
        "webhook under load: {REVIEWS} reviews of {} at once, /readyz every {} ms",
        mib(body.len()),
        PROBE_EVERY.as_millis()
    );
    println!(
        "| answered 200 | busy 503 | other | wall | review p50 | review p99 | heap before | heap peak | heap after | /readyz asked | /readyz not 200 | /readyz p50 | /readyz p99 | /readyz max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {ok} | {busy} | {other} | {:.1} s | {:.0} ms | {:.0} ms | {} | {} | {} | {} | {probe_failed} | {:.1} ms | {:.1} ms | {:.1} ms |",
        wall.as_secs_f64(),
        pct(&review_took, 0.5).as_secs_f64() * 1e3,
        pct(&review_took, 0.99).as_secs_f64() * 1e3,
        mib(before),
        mib(peak),
        mib(after),
        probe_took.len(),
        pct(&probe_took, 0.5).as_secs_f64() * 1e3,
        pct(&probe_took, 0.99).as_secs_f64() * 1e3,
        probe_took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

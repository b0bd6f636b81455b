//! End-to-end: two operator replicas with leader election: a leader killed mid-burst,
//! and a leader cut off from the apiserver (issue 25 item 3). `make e2e` runs this suite
//! on its own, after the suites that share the operator of `e2e/with-operator.sh`, so
//! the replicas here are the only ones acting.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::netcut::{NetCut, kubeconfig_server, kubeconfig_through};
use common::operator::{Operator, spawn};
use common::{client, test_namespace, wait_for, wait_for_event, wait_for_object};
use datajob_api::{DataJob, RunState};
use datajob_core::labels::{LOGICAL_TIME, NAME, parse_rfc3339};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The operator's namespace, where the Lease lives.
const LEASE_NS: &str = "datajob-system";
const ONE_OFF: usize = 50;
const EVERY_MINUTE: usize = 20;

/// A replica's settings; with the Helm chart's identity when `e2e/suites.sh` made one.
fn replica(name: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        ("POD_NAME", name),
        ("POD_NAMESPACE", LEASE_NS),
        // Long enough that a run stuck before the kill is ended after it.
        ("DATAJOB_IMAGE_PULL_GRACE", "30s"),
    ];
    if let Ok(k) = std::env::var("DATAJOB_OPERATOR_KUBECONFIG") {
        env.push(("KUBECONFIG", Box::leak(k.into_boxed_str())));
    }
    env
}

async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.unwrap().is_none() {
        let ns: Namespace = common::from_json(json!({"metadata": {"name": name}}));
        let _ = api.create(&PostParams::default(), &ns).await;
    }
}

/// Waits until `op` says it leads (or not); returns how long that took.
async fn until_leads(op: &Operator, leads: bool, timeout: Duration) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("operator on {} to say leader={leads}", op.admin),
        timeout,
        || async { Ok((op.leads().await == Some(leads)).then_some(())) },
    )
    .await
    .unwrap();
    start.elapsed()
}

/// Polls faster than `wait_for` (failover times are the measurement).
async fn time_until_leads(op: &Operator, since: Instant, timeout: Duration) -> Duration {
    loop {
        if op.leads().await == Some(true) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < timeout,
            "operator on {} did not take over within {timeout:?}",
            op.admin
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn datajob(name: &str, spec: serde_json::Value) -> DataJob {
    common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name}, "spec": spec,
    }))
}

#[tokio::test]
async fn the_leader_dies_mid_burst_and_the_other_replica_takes_over_with_nothing_lost_or_doubled() {
    let client = client().await;
    ensure_namespace(&client, LEASE_NS).await;
    let ns = test_namespace(&client, "failover").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());

    // A Lease left by a suite before may still run out: up to its duration.
    let mut a = spawn(&replica("replica-a")).await;
    until_leads(&a, true, Duration::from_secs(40)).await;
    let mut b = spawn(&replica("replica-b")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.leads().await, Some(false), "a second replica follows");
    assert_eq!(a.leads().await, Some(true), "the first one still leads");

    // A run that is stuck before the leader dies.
    let stuck = datajob(
        "stuck",
        json!({"image": format!("registry.example.com/team/{}:1.0", common::kwok::BAD_IMAGE_MARKER)}),
    );
    api.create(&PostParams::default(), &stuck).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    wait_for(
        "the stuck run's pod failing to pull",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("{NAME}=stuck")))
                .await?;
            Ok(list
                .items
                .iter()
                .any(|p| common::waiting_reason(p).is_some_and(|(r, _)| r.contains("ImagePull")))
                .then_some(()))
        },
    )
    .await
    .unwrap();

    // The burst, with the leader killed in the middle of it.
    let created_at = Utc::now();
    for i in 0..EVERY_MINUTE {
        let dj = datajob(
            &format!("every-{i}"),
            json!({"image": "busybox", "schedule": "* * * * *", "history": 20}),
        );
        api.create(&PostParams::default(), &dj).await.unwrap();
    }
    let mut killed_at = None;
    for i in 0..ONE_OFF {
        if i == ONE_OFF / 2 {
            a.kill().await;
            killed_at = Some(Instant::now());
        }
        let dj = datajob(&format!("once-{i}"), json!({"image": "busybox"}));
        api.create(&PostParams::default(), &dj).await.unwrap();
    }
    let killed_at = killed_at.unwrap();
    let takeover = time_until_leads(&b, killed_at, Duration::from_secs(20)).await;
    eprintln!("failover after kill -9: replica-b leads {takeover:.1?} after the kill");

    // The stuck run is ended by the new leader, with its reason.
    wait_for_object(
        &api,
        "stuck",
        "stuck run ended ImageNotFound",
        Duration::from_secs(120),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("ImageNotFound"),
    )
    .await
    .unwrap();
    let events = wait_for_event(
        &client,
        ns.name(),
        "stuck",
        "ImageNotFound",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let enders: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ImageNotFound"))
        .filter_map(|e| e.reporting_instance.clone())
        .collect();
    assert!(
        enders.iter().all(|i| i.starts_with("replica-b")),
        "the run was ended by the new leader: {enders:?}"
    );

    // Every one-off DataJob ran once.
    for i in 0..ONE_OFF {
        wait_for_object(
            &api,
            &format!("once-{i}"),
            "one-off succeeded",
            Duration::from_secs(180),
            |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
        )
        .await
        .unwrap();
    }

    // Let the every-minute DataJobs run slots under the new leader. The slots checked go
    // from the first full minute after creation to the last one that has had a full
    // minute to be created, admitted and finished: wait until that is at least two.
    let first = created_at.timestamp().div_euclid(60) * 60 + 60;
    let last_done = || (Utc::now().timestamp() - 60).div_euclid(60) * 60;
    while last_done() < first + 60 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let last = last_done();
    let expected: BTreeSet<i64> = (first..=last).step_by(60).collect();

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    let mut per_time: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for j in &all {
        let Some(owner) = j.labels().get(NAME).cloned() else {
            continue;
        };
        let Some(t) = j
            .annotations()
            .get(LOGICAL_TIME)
            .and_then(|t| parse_rfc3339(t))
        else {
            continue;
        };
        per_time
            .entry((owner, t.timestamp()))
            .or_default()
            .push(j.name_any());
    }
    let duplicates: Vec<_> = per_time.iter().filter(|(_, v)| v.len() > 1).collect();
    let mut missed = Vec::new();
    for i in 0..EVERY_MINUTE {
        let name = format!("every-{i}");
        let dj = api.get(&name).await.unwrap();
        let mut seen: BTreeSet<i64> = per_time
            .keys()
            .filter(|(o, _)| *o == name)
            .map(|(_, t)| *t)
            .collect();
        // A run pruned beyond the history is still on the status.
        if let Some(s) = dj.status.as_ref() {
            seen.extend(
                s.recent_runs
                    .iter()
                    .filter_map(|r| parse_rfc3339(&r.logical_time))
                    .map(|t: DateTime<Utc>| t.timestamp()),
            );
        }
        missed.extend(expected.difference(&seen).map(|t| (name.clone(), *t)));
    }
    for i in 0..ONE_OFF {
        let name = format!("once-{i}");
        let n = per_time.keys().filter(|(o, _)| *o == name).count();
        if n == 0 {
            missed.push((name, 0));
        }
    }
    eprintln!(
        "failover burst: {ONE_OFF} one-off + {EVERY_MINUTE} every-minute DataJobs, {} Jobs, {} slots expected each, duplicates {}, missed {}",
        all.len(),
        expected.len(),
        duplicates.len(),
        missed.len()
    );
    assert!(duplicates.is_empty(), "duplicate runs: {duplicates:?}");
    assert!(missed.is_empty(), "missed logical times: {missed:?}");

    // A graceful hand-over: a new follower, then SIGTERM to the leader, which stops its
    // controllers and releases the Lease.
    let a2 = spawn(&replica("replica-a2")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a2.leads().await, Some(false));
    b.terminate().await;
    let sigterm_at = Instant::now();
    let handover = time_until_leads(&a2, sigterm_at, Duration::from_secs(2)).await;
    eprintln!("hand-over after SIGTERM: replica-a2 leads {handover:.1?} after it");
    b.stop().await;
    let mut a2 = a2;
    a2.stop().await;
}

/// Issue 25 item 3: the leader's traffic to the apiserver is cut (a black hole: no
/// error, no reset) and never restored. Its Lease calls are bounded by the renew
/// deadline, so it steps down and exits before the other replica may take the Lease:
/// sampled every 200 ms, `datajob_leader` is never 1 on both, and nothing the cut-off
/// replica writes lands after the take-over.
#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_steps_down_before_the_other_takes_over() {
    let client = client().await;
    ensure_namespace(&client, LEASE_NS).await;
    let ns = test_namespace(&client, "netcut").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());

    // Replica a reaches the apiserver only through a proxy that the test cuts.
    let base = std::env::var("DATAJOB_OPERATOR_KUBECONFIG")
        .or_else(|_| std::env::var("KUBECONFIG"))
        .expect("a kubeconfig");
    let proxy = NetCut::start(&kubeconfig_server(&base)).await;
    let dir = tempfile::tempdir().unwrap();
    let proxied = dir.path().join("through-proxy.kubeconfig");
    kubeconfig_through(&base, proxy.addr, &proxied);
    let proxied = proxied.to_string_lossy().into_owned();
    let mut env_a: Vec<(&str, &str)> = replica("cut-a")
        .into_iter()
        .filter(|(k, _)| *k != "KUBECONFIG")
        .collect();
    env_a.push(("KUBECONFIG", &proxied));
    let mut a = spawn(&env_a).await;
    until_leads(&a, true, Duration::from_secs(40)).await;
    let b = spawn(&replica("cut-b")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.leads().await, Some(false), "a second replica follows");

    // The leader acts before the cut: its events name it.
    api.create(
        &PostParams::default(),
        &datajob("before", json!({"image": "busybox"})),
    )
    .await
    .unwrap();
    wait_for_object(
        &api,
        "before",
        "the run before the cut succeeded",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();

    // Sample both replicas every 200 ms from before the cut to well after the take-over.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (admin_a, admin_b, on) = (a.admin.clone(), b.admin.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                let at = Instant::now();
                let (la, lb) = tokio::join!(leads_at(&admin_a), leads_at(&admin_b));
                samples.push((at, la, lb));
                tokio::time::sleep(Duration::from_millis(200).saturating_sub(at.elapsed())).await;
            }
            samples
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    let cut_at = Instant::now();
    let takeover = time_until_leads(&b, cut_at, Duration::from_secs(60)).await;
    let took_over_at = Utc::now();
    // Work after the take-over is the new leader's.
    api.create(
        &PostParams::default(),
        &datajob("after", json!({"image": "busybox"})),
    )
    .await
    .unwrap();
    wait_for_object(
        &api,
        "after",
        "the run after the take-over succeeded",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let samples = sampler.await.unwrap();

    let both: Vec<_> = samples
        .iter()
        .filter(|(_, la, lb)| *la == Some(true) && *lb == Some(true))
        .map(|(at, _, _)| at.saturating_duration_since(cut_at))
        .collect();
    let a_stopped = samples
        .iter()
        .find(|(at, la, _)| *at >= cut_at && *la != Some(true))
        .map(|(at, _, _)| at.saturating_duration_since(cut_at));
    let exited = a.exited();
    eprintln!(
        "netcut: {} samples every 200 ms; the cut-off leader stopped leading {a_stopped:.1?} after the cut and {}; the other took over {takeover:.1?} after it; both leading in {} samples",
        samples.len(),
        match exited {
            Some(s) => format!("exited ({s})"),
            None => "had not exited".into(),
        },
        both.len()
    );
    assert!(
        both.is_empty(),
        "both replicas said datajob_leader 1 at {both:?} after the cut"
    );
    assert!(
        a_stopped.is_some_and(|d| d < takeover),
        "the cut-off replica stopped leading ({a_stopped:?}) before the take-over ({takeover:?})"
    );
    assert!(
        exited.is_some(),
        "the cut-off replica exits once it lost the Lease"
    );

    // Nothing the cut-off replica wrote landed after the take-over (the apiserver's own
    // clock stamps every Event it stores).
    let events = events_in(&client, ns.name()).await;
    let by = |prefix: &str| {
        events
            .iter()
            .filter(|e| {
                e.reporting_instance
                    .as_deref()
                    .is_some_and(|i| i.starts_with(prefix))
            })
            .collect::<Vec<_>>()
    };
    assert!(
        !by("cut-a").is_empty(),
        "the leader's events before the cut"
    );
    assert!(!by("cut-b").is_empty(), "the new leader's events");
    let late: Vec<_> = by("cut-a")
        .into_iter()
        .filter(|e| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0.as_millisecond() > took_over_at.timestamp_millis())
        })
        .map(|e| e.reason.clone())
        .collect();
    assert!(
        late.is_empty(),
        "written by the cut-off replica after the take-over: {late:?}"
    );
    let mut b = b;
    b.stop().await;
    a.stop().await;
}

/// `datajob_leader` of the replica whose admin server is `admin`, if it answers.
async fn leads_at(admin: &str) -> Option<bool> {
    let out = common::operator::http_get(admin, "/metrics").await?;
    let body = out.strip_prefix("HTTP/1.1 200")?;
    common::operator::sample(body, "datajob_leader", &[]).map(|v| v == 1.0)
}

async fn events_in(client: &Client, ns: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.unwrap().items
}

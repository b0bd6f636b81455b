//! End-to-end: the Grafana dashboard and the alerts, proven against a real Prometheus that
//! scrapes a real operator. The suite starts its own operator (as the Helm chart's
//! ServiceAccount when `e2e/suites.sh` made one) and Debian's `prometheus` as a plain
//! process on 127.0.0.1 (scraping the operator every second, with the chart's rules
//! loaded); makes runs succeed and fail for every reason the kwok nodes can produce, a
//! scheduled run that starts (schedule lag) and a slot that is missed, a NodeGroup that
//! scales up and back down, and a NodeGroup whose provider fails (reconcile errors); then
//! sends every query of every dashboard panel to Prometheus' HTTP API and expects data
//! for this installation (its scrape job) and none for another, checks that every metric
//! the dashboard and the alerts use is in the operator's
//! `/metrics`, and that the alerts that should fire do, and the others do not.
//! Prometheus sends its alerts to Debian's Alertmanager, loaded with the chart's documented
//! route per owner (`charts/datajob/alerts/alertmanager-owners.yaml`) and receivers that
//! are a local HTTP sink: a failed run and a late run each reach their owner's receiver,
//! and no alert reaches anybody else's.
//!
//! NodeGroups move every DataJob, and the shared operator of `e2e/with-operator.sh` must
//! not act beside this one: `e2e/suites.sh` runs the suite on its own, in phase 2.
//!   bash e2e/run-e2e.sh cargo test -p datajob-e2e --features e2e --test e2e -- alone::observability:: --nocapture

use crate::common;

use common::alerting;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::operator::{Operator, free_port, sample, spawn};
use common::{
    GroupGuard, Result, client, kwok, test_namespace, unique_name, wait_for, wait_for_object,
};
use datajob_api::{DataJob, NodeGroup, RunState};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The operator's namespace (its Lease and webhook Secret live there).
const OPERATOR_NS: &str = "datajob-system";
/// The scheduled DataJob the Schedules row is checked with.
const SCHEDULED: &str = "every-minute";
/// The DataJob whose run is late.
const LATE: &str = "late-report";
/// The scrape job of the operator: the installation the dashboard's `$job` selects.
const JOB: &str = "datajob-metrics";
/// Every failure reason produced here, with the DataJob that produces it.
const FAILURES: [(&str, &str); 7] = [
    ("bad-image", "ImageNotFound"),
    ("needs-secret", "MissingConfig"),
    ("huge", "Unschedulable"),
    ("slow", "DeadlineExceeded"),
    ("hungry", "OutOfMemory"),
    ("exit-3", "RetriesExhausted"),
    ("not-runnable", "CommandNotRunnable"),
];

// ---- Prometheus, as a plain process ---------------------------------------------------

/// A Prometheus server on 127.0.0.1 with its own storage (a [`Daemon`]).
struct Prometheus {
    daemon: Daemon,
    addr: String,
    started: Instant,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (host:port) every second as job
    /// [`JOB`], evaluating `rules` every second and sending the alerts to the
    /// Alertmanager at `alertmanager` (host:port).
    async fn start(target: &str, rules: &Path, alertmanager: &str) -> Prometheus {
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::Builder::new()
            .prefix("datajob-prometheus-")
            .tempdir()
            .expect("a temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n",
                rules = rules.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let mut daemon = Daemon::spawn(
            cmd,
            dir,
            "prometheus",
            "install Debian's prometheus package, or set PROMETHEUS",
        );
        daemon
            .wait_ready(|| async {
                http_get(&addr, "/-/ready")
                    .await
                    .is_ok_and(|(code, _)| code == 200)
            })
            .await;
        eprintln!(
            "prometheus {} on {}, data in {}",
            version(&bin),
            addr,
            daemon.dir.path().display()
        );
        Prometheus {
            daemon,
            addr,
            started: Instant::now(),
        }
    }

    /// An instant query at now: the result vector, or Prometheus' error.
    async fn query(&self, q: &str) -> std::result::Result<Vec<Value>, String> {
        let (code, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", encode(q)))
            .await
            .map_err(|e| format!("GET /api/v1/query: {e}"))?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {code}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {code}: {} {}", v["errorType"], v["error"]));
        }
        match v["data"]["resultType"].as_str() {
            Some("vector") => Ok(v["data"]["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![json!({"metric": {}, "value": v["data"]["result"]})]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// Polls `q` until `pred` holds for its result; returns it.
    async fn wait(
        &self,
        what: &str,
        q: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let last = self.query(q).await;
            if let Ok(r) = &last
                && pred(r)
            {
                return r.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "after {timeout:?}, Prometheus has not {what}: {q} gave {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Kills it and waits for it; the directory goes with it.
    fn stop(self) {
        self.daemon.stop();
    }
}

fn version(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` over HTTP/1.0 (no chunked encoding; the server closes the connection):
/// the status code and the body.
async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

// ---- the cluster ------------------------------------------------------------------------

/// The CRDs, as `e2e/with-operator.sh` applies them (this suite may run alone).
async fn ensure_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "datajob.dev_datajobs.yaml",
        "datajob.dev_nodegroups.yaml",
        "datajob.dev_backfills.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{ROOT}/crds/{file}")).unwrap();
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("e2e-observability").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        wait_for_object(
            &api,
            &crd.name_any(),
            "CRD established",
            Duration::from_secs(30),
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
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(OPERATOR_NS).await.unwrap().is_none() {
        let ns: Namespace = common::from_json(json!({"metadata": {"name": OPERATOR_NS}}));
        let _ = namespaces.create(&PostParams::default(), &ns).await;
    }
}

/// The operator of this suite: short grace periods as `e2e/with-operator.sh` sets them,
/// the webhook on a free port, the chart's identity when `e2e/suites.sh` made one.
async fn start_operator() -> Operator {
    let webhook = format!("127.0.0.1:{}", free_port());
    let url = format!("https://{webhook}");
    let mut env: Vec<(&str, String)> = vec![
        ("POD_NAME", "observability".into()),
        ("POD_NAMESPACE", OPERATOR_NS.into()),
        ("DATAJOB_WEBHOOK_ADDR", webhook),
        ("DATAJOB_WEBHOOK_URL", url),
        ("DATAJOB_IMAGE_PULL_GRACE", "5s".into()),
        ("DATAJOB_CONFIG_GRACE", "5s".into()),
        ("DATAJOB_UNSCHEDULABLE_GRACE", "60s".into()),
        ("DATAJOB_PVC_GRACE", "5s".into()),
        ("DATAJOB_CLEANUP_INTERVAL", "2s".into()),
    ];
    if let Ok(k) = std::env::var("DATAJOB_OPERATOR_KUBECONFIG") {
        env.push(("KUBECONFIG", k));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let op = spawn(&env).await;
    // A Lease left by a suite before may still run out: up to its duration.
    wait_for("the operator to lead", Duration::from_secs(40), || async {
        Ok((op.leads().await == Some(true)).then_some(()))
    })
    .await
    .unwrap();
    op
}

async fn node_group(client: &Client, name: &str, spec: Value) -> GroupGuard {
    let ng: NodeGroup = common::from_json(
        json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": name}, "spec": spec}),
    );
    Api::<NodeGroup>::all(client.clone())
        .create(&PostParams::default(), &ng)
        .await
        .expect("create NodeGroup");
    GroupGuard(name.to_string())
}

async fn last_run(api: &Api<DataJob>, name: &str, state: RunState, reason: Option<&str>) {
    wait_for_object(
        api,
        name,
        &format!("{name}: last run {state} {reason:?}"),
        Duration::from_secs(120),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == state && r.reason.as_deref() == reason)
        },
    )
    .await
    .unwrap();
}

/// Polls the operator's `/metrics` until `name{labels}` satisfies `pred`.
async fn operator_sample(
    op: &Operator,
    name: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(f64) -> bool,
    timeout: Duration,
) {
    let start = Instant::now();
    loop {
        let text = op.metrics().await.unwrap_or_default();
        if sample(&text, name, labels).is_some_and(&pred) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "after {timeout:?}, no sample {name}{labels:?} with the wanted value in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- the dashboard and the rules -----------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/datajob/dashboards/datajob.json")).unwrap(),
    )
    .unwrap()
}

fn rules_path() -> PathBuf {
    PathBuf::from(format!("{ROOT}/charts/datajob/alerts/datajob.rules.yaml"))
}

/// The metric names in a PromQL expression: `datajob_…` (not inside quotes).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            i += 1;
            continue;
        }
        let word: String = chars[start..i].iter().collect();
        if word.starts_with("datajob_") && !(start > 0 && chars[start - 1] == '"') {
            names.insert(word);
        }
    }
    names
}

/// What a panel's query becomes in Grafana with these variables: the cluster (All: no
/// series here has a `cluster` label), the installation `job`, the namespace and DataJob
/// (regexes, as Grafana's `=~` gets them) and `range` for the time range and the rate
/// interval (the whole test, so that every event is in it).
fn fill(expr: &str, job: &str, ns: &str, datajob: &str, range: &str) -> String {
    expr.replace("$__rate_interval", range)
        .replace("$__range", range)
        .replace("$__interval", "15s")
        .replace("$cluster", ".*")
        .replace("$job", job)
        .replace("$namespace", ns)
        .replace("$datajob", datajob)
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or_default()
}

fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `label → value` of a result.
fn by(result: &[Value], name: &str) -> BTreeMap<String, f64> {
    result
        .iter()
        .map(|s| (label(s, name).to_string(), value(s)))
        .collect()
}

// ---- the test ---------------------------------------------------------------------------

#[tokio::test]
async fn every_dashboard_panel_and_alert_works_against_a_real_prometheus() {
    let client = client().await;
    ensure_crds(&client).await;
    let mut op = start_operator().await;
    // Alertmanager with the documented route per owner, its receivers a local sink.
    let sink = alerting::Sink::start().await;
    let example: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(alerting::example_path()).unwrap())
            .unwrap();
    alerting::check_config(Path::new(&alerting::example_path()));
    let (am_config, receivers) = alerting::config_for(&example, &sink);
    assert_eq!(
        receivers,
        BTreeSet::from(["platform".into(), "team-growth".into(), "team-ml".into()]),
        "the example's receivers"
    );
    let alertmanager = alerting::Alertmanager::start(&am_config).await;
    let prometheus = Prometheus::start(&op.admin, &rules_path(), &alertmanager.addr).await;
    prometheus
        .wait(
            "scraped the operator",
            &format!("up{{job=\"{JOB}\"}}"),
            Duration::from_secs(30),
            |r| r.iter().any(|s| value(s) == 1.0),
        )
        .await;
    let ns = test_namespace(&client, "obs").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());

    // Runs that succeed, fail for every reason the kwok nodes can produce, and a
    // scheduled one that runs longer than its schedule's interval: its next slot is
    // skipped (concurrencyPolicy Forbid) and missed after the 60 s starting deadline.
    let quick = json!({kwok::DURATION: "5s"});
    let bad_image = format!("registry.example.com/team/{}:1.0", kwok::BAD_IMAGE_MARKER);
    let secret = format!("db-{}-creds", kwok::MISSING_REF_MARKER);
    let specs = [
        (
            SCHEDULED,
            json!({"image": "busybox", "schedule": "* * * * *", "deadline": "10m", "podAnnotations": {kwok::DURATION: "150s"}}),
        ),
        ("ok-a", json!({"image": "busybox", "podAnnotations": quick})),
        ("ok-b", json!({"image": "busybox", "podAnnotations": quick})),
        ("bad-image", json!({"image": bad_image, "retries": 3})),
        (
            "needs-secret",
            json!({"image": "busybox", "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}),
        ),
        (
            "huge",
            json!({"image": "busybox", "resources": {"cpu": 200, "memory": "1Gi"}}),
        ),
        (
            "slow",
            json!({"image": "busybox", "deadline": "5s", "retries": 2, "podAnnotations": {kwok::DURATION: "120s"}}),
        ),
        (
            "hungry",
            json!({"image": "busybox", "retries": 0, "owner": "team-ml", "resources": {"memory": "256Mi"}, "podAnnotations": {kwok::OOM: "true"}}),
        ),
        (
            "exit-3",
            json!({"image": "busybox", "retries": 0, "podAnnotations": {kwok::EXIT_CODE: "3"}}),
        ),
        // Expected a minute after its logical time, it runs ten: late, for team-growth.
        (
            LATE,
            json!({"image": "busybox", "expectBy": "1m", "deadline": "20m", "owner": "team-growth", "podAnnotations": {kwok::DURATION: "600s"}}),
        ),
        (
            "not-runnable",
            json!({"image": "busybox", "retries": 2, "podAnnotations": {kwok::EXIT_CODE: "127"}}),
        ),
    ];
    let created = Instant::now();
    for (name, spec) in specs {
        common::datajob(&client, ns.name(), name, spec).await;
    }
    for name in ["ok-a", "ok-b"] {
        last_run(&api, name, RunState::Succeeded, None).await;
    }
    for (name, reason) in FAILURES {
        last_run(&api, name, RunState::Failed, Some(reason)).await;
    }
    eprintln!(
        "every failure reason produced {:.0?} after the DataJobs were created",
        created.elapsed()
    );
    // The scheduled run is running before NodeGroups move DataJobs (its Job keeps its
    // placement; the slots after it would wait for the group).
    let running = wait_for_object(
        &api,
        SCHEDULED,
        "the first scheduled run running",
        Duration::from_secs(100),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == RunState::Running)
        },
    )
    .await
    .unwrap();
    let first_slot = running
        .status
        .and_then(|s| s.last_run)
        .and_then(|r| datajob_core::labels::parse_rfc3339(&r.logical_time))
        .expect("the first run's logical time");

    // A kwok NodeGroup that scales from zero for one run and back, and one whose
    // provider fails (Cluster API without the machine; no run fits its 1 Mi nodes).
    let group = unique_name("obs-kwok");
    let _group = node_group(
        &client,
        &group,
        json!({
            "node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3, "pricePerHour": "0.50",
            "scaleDownAfter": "5s", "provisioningTimeout": "60s",
            "taints": [{"key": "datajob.dev/dedicated", "value": "batch", "effect": "NoSchedule"}],
            "provider": {"kwok": {"bootDelay": "2s"}},
        }),
    )
    .await;
    let broken = unique_name("obs-broken");
    let _broken = node_group(
        &client,
        &broken,
        json!({
            "node": {"cpu": 1, "memory": "1Mi"}, "maxSize": 1, "pricePerHour": "100",
            "provider": {"clusterAPI": {"namespace": ns.name(), "name": "does-not-exist"}},
        }),
    )
    .await;
    common::datajob(
        &client,
        ns.name(),
        "on-group",
        json!({"image": "busybox", "resources": {"cpu": 1, "memory": "1Gi"}, "podAnnotations": {kwok::DURATION: "8s"}}),
    )
    .await;
    let groups: Api<NodeGroup> = Api::all(client.clone());
    wait_for_object(
        &groups,
        &group,
        "the group scaled up",
        Duration::from_secs(60),
        |g: &NodeGroup| g.status.as_ref().is_some_and(|s| s.ready >= 1),
    )
    .await
    .unwrap();
    let done = wait_for_object(
        &api,
        "on-group",
        "on-group Succeeded on the group",
        Duration::from_secs(90),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == RunState::Succeeded)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        done.status.and_then(|s| s.node_group).as_deref(),
        Some(group.as_str())
    );
    wait_for_object(
        &groups,
        &group,
        "the group back to zero",
        Duration::from_secs(60),
        |g: &NodeGroup| {
            g.status
                .as_ref()
                .is_some_and(|s| s.desired == 0 && s.current == 0)
        },
    )
    .await
    .unwrap();
    operator_sample(
        &op,
        "datajob_reconcile_errors_total",
        &[("controller", "nodegroup")],
        |v| v >= 1.0,
        Duration::from_secs(30),
    )
    .await;

    // The missed slot: the first run still runs when the next slot's starting deadline
    // (60 s) passes, so it is counted 60 s + 10 s after that slot, and only it.
    operator_sample(
        &op,
        "datajob_schedule_missed_total",
        &[("namespace", ns.name()), ("datajob", SCHEDULED)],
        |v| v >= 1.0,
        Duration::from_secs(240),
    )
    .await;
    let counted_at = chrono::Utc::now();
    assert!(
        counted_at >= first_slot + chrono::Duration::seconds(130),
        "the slot after {first_slot} was counted missed at {counted_at}, before its deadline ran out"
    );
    let text = op.metrics().await.unwrap_or_default();
    assert_eq!(
        sample(
            &text,
            "datajob_schedule_missed_total",
            &[("namespace", ns.name()), ("datajob", SCHEDULED)]
        ),
        Some(1.0),
        "one slot missed"
    );
    api.patch(
        SCHEDULED,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    eprintln!(
        "a scheduled slot was missed {:.0?} after the DataJobs were created",
        created.elapsed()
    );

    // Prometheus has the end state.
    let ns_sel = format!("namespace=\"{}\"", ns.name());
    prometheus
        .wait(
            "seen the missed slot",
            &format!("datajob_schedule_missed_total{{{ns_sel}}}"),
            Duration::from_secs(30),
            |r| r.iter().any(|s| value(s) >= 1.0),
        )
        .await;
    prometheus
        .wait(
            "seen the group back at zero",
            &format!("datajob_nodegroup_current_nodes{{nodegroup=\"{group}\"}}"),
            Duration::from_secs(30),
            |r| r.iter().any(|s| value(s) == 0.0),
        )
        .await;

    // Every panel, with the variables filled as Grafana would.
    let range = format!("{}s", prometheus.started.elapsed().as_secs() + 60);
    let dash = dashboard();
    let mut row = String::new();
    let mut table = Vec::new();
    let mut results: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        if panel["type"] == "row" {
            row = title;
            continue;
        }
        // The Schedules row is looked at for the scheduled DataJob; the rest for all.
        let datajob = if row == "Schedules" { SCHEDULED } else { ".*" };
        for target in panel["targets"].as_array().unwrap() {
            let raw = target["expr"].as_str().unwrap();
            let expr = fill(raw, JOB, ns.name(), datajob, &range);
            let result = prometheus
                .query(&expr)
                .await
                .unwrap_or_else(|e| panic!("panel {title:?}: {e}\n{expr}"));
            table.push((title.clone(), expr, result.len()));
            results.entry(title.clone()).or_default().push(result);
            // Another installation selected: nothing of this one shows.
            let other = fill(raw, "another-installation", ns.name(), datajob, &range);
            let result = prometheus
                .query(&other)
                .await
                .unwrap_or_else(|e| panic!("panel {title:?}: {e}\n{other}"));
            assert!(
                result.is_empty(),
                "panel {title:?} shows this installation with another one selected: {other} gave {result:?}"
            );
        }
    }
    eprintln!("\n{:<48} | {:>6} | query", "panel", "series");
    for (title, expr, n) in &table {
        eprintln!("{title:<48} | {n:>6} | {expr}");
    }
    let empty: Vec<&(String, String, usize)> = table.iter().filter(|(_, _, n)| *n == 0).collect();
    assert!(empty.is_empty(), "panels without data: {empty:#?}");

    // ... and what they show is what happened.
    let first = |title: &str| -> &Vec<Value> { &results[title][0] };
    let one = |title: &str| value(&first(title)[0]);
    let names: Vec<&str> = FAILURES.iter().map(|(n, _)| *n).collect();
    let reasons: BTreeSet<&str> = FAILURES.iter().map(|(_, r)| *r).collect();
    let failures = by(first("Failures by reason"), "reason");
    for reason in &reasons {
        assert!(
            failures.get(*reason).is_some_and(|v| *v >= 1.0),
            "failures by reason: {reason} in {failures:?}"
        );
    }
    assert!(one("Runs failed") >= 7.0, "{}", one("Runs failed"));
    assert!(one("Runs started") >= 11.0, "{}", one("Runs started"));
    let rate = one("Success rate");
    assert!(rate > 0.0 && rate < 1.0, "success rate {rate}");
    let last_failed = by(first("DataJobs whose last run failed"), "datajob");
    for name in &names {
        assert!(last_failed.contains_key(*name), "{name} in {last_failed:?}");
    }
    let lag = by(&results["Schedule lag p50 / p99"][0], "");
    assert!(
        lag.values()
            .all(|v| v.is_finite() && *v >= 0.0 && *v < 60.0),
        "the scheduled run started within its minute: {lag:?}"
    );
    let missed = by(first("Scheduled runs missed"), "datajob");
    assert_eq!(missed.get(SCHEDULED), Some(&1.0), "{missed:?}");
    let endings: BTreeSet<String> = first("Watchdog endings by DataJob")
        .iter()
        .map(|s| label(s, "reason").to_string())
        .collect();
    for reason in [
        "ImageNotFound",
        "MissingConfig",
        "Unschedulable",
        "DeadlineExceeded",
    ] {
        assert!(endings.contains(reason), "{reason} in {endings:?}");
    }
    assert!(
        by(first("Attempts killed for memory"), "reason").contains_key("OutOfMemory"),
        "OutOfMemory attempts"
    );
    let cost = first("Cost per DataJob");
    assert!(
        cost.iter().any(|s| label(s, "datajob") == "on-group"
            && label(s, "nodegroup") == group
            && value(s) > 0.0),
        "{cost:?}"
    );
    let errors = first("Reconcile errors");
    assert!(
        errors.iter().any(|s| label(s, "controller") == "nodegroup"),
        "{errors:?}"
    );
    assert_eq!(one("Leading replicas"), 1.0);
    let scaled = prometheus
        .query(&format!(
            "max_over_time(datajob_nodegroup_desired_nodes{{nodegroup=\"{group}\"}}[{range}])"
        ))
        .await
        .unwrap();
    assert!(
        scaled.iter().any(|s| value(s) >= 1.0),
        "the group scaled up: {scaled:?}"
    );

    // The variables' label_values() queries find the namespace and every DataJob.
    for var in dash["templating"]["list"].as_array().unwrap() {
        let Some(def) = var["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap();
        let (selector, label_name) = inner.rsplit_once(',').unwrap();
        let q = format!(
            "count by ({}) ({})",
            label_name.trim(),
            fill(selector, JOB, ns.name(), ".*", &range)
        );
        let values = by(&prometheus.query(&q).await.unwrap(), label_name.trim());
        let wanted: Vec<&str> = match label_name.trim() {
            // No `cluster` label in this Prometheus: no value, and All (`.*`) matches.
            "cluster" => {
                assert!(
                    values.keys().all(String::is_empty),
                    "variable cluster: {values:?}"
                );
                vec![]
            }
            // The installations: the jobs that serve datajob_build_info.
            "job" => {
                assert_eq!(values.keys().collect::<Vec<_>>(), [JOB], "variable job");
                vec![JOB]
            }
            "namespace" => vec![ns.name()],
            "datajob" => names
                .iter()
                .copied()
                .chain([SCHEDULED, "ok-a", "on-group"])
                .collect(),
            other => panic!("variable {other}: {def}"),
        };
        for w in wanted {
            assert!(
                values.contains_key(w),
                "variable {}: {w} in {values:?}",
                var["name"]
            );
        }
    }

    // Every metric the dashboard and the alerts use is in the operator's /metrics.
    let exposition = op.metrics().await.expect("the operator's /metrics");
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().cloned().unwrap_or_default() {
            for n in metric_names(t["expr"].as_str().unwrap_or_default()) {
                used.insert(n, format!("panel {}", panel["title"]));
            }
        }
    }
    let rules: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(rules_path()).unwrap()).unwrap();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            for n in metric_names(r["expr"].as_str().unwrap_or_default()) {
                used.insert(n, format!("alert {}", r["alert"]));
            }
        }
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exposed.contains(n.as_str()))
        .map(|(n, by)| format!("{n} ({by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not in the operator's /metrics: {missing:?}"
    );
    eprintln!(
        "{} metric names used by the dashboard and the alerts, all exposed",
        used.len()
    );

    // The rules loaded and evaluate; the alerts that should fire do, the others do not.
    let (_, body) = http_get(&prometheus.addr, "/api/v1/rules").await.unwrap();
    let loaded: Value = serde_json::from_str(&body).unwrap();
    let mut health = Vec::new();
    for g in loaded["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            health.push((
                r["name"].as_str().unwrap_or_default().to_string(),
                r["health"].as_str().unwrap_or_default().to_string(),
                r["lastError"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    assert_eq!(health.len(), 14, "{health:?}");
    assert!(
        health.iter().all(|(_, h, _)| h == "ok"),
        "rules evaluate: {health:?}"
    );
    let firing = |alert: &str, extra: &str| {
        format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"{extra}}}")
    };
    let in_ns = format!(",{ns_sel}");
    let alerts = [
        (
            "DataJobRunsEndedByWatchdog",
            firing("DataJobRunsEndedByWatchdog", &in_ns),
        ),
        (
            "DataJobScheduleMissed",
            firing("DataJobScheduleMissed", &in_ns),
        ),
        (
            "DataJobLastRunFailed",
            firing("DataJobLastRunFailed", &in_ns),
        ),
    ];
    for (alert, q) in &alerts {
        let r = prometheus
            .wait(&format!("fired {alert}"), q, Duration::from_secs(90), |r| {
                !r.is_empty()
            })
            .await;
        let datajobs: BTreeSet<&str> = r.iter().map(|s| label(s, "datajob")).collect();
        eprintln!("alert {alert} firing for {datajobs:?}");
    }
    // Each failed DataJob's alert fires once it has been failing for the rule's minute.
    prometheus
        .wait(
            "fired DataJobLastRunFailed for every failed DataJob",
            &firing("DataJobLastRunFailed", &in_ns),
            Duration::from_secs(90),
            |r| {
                names
                    .iter()
                    .all(|n| r.iter().any(|s| label(s, "datajob") == *n))
            },
        )
        .await;
    // Each DataJob's alert carries its owner, for Alertmanager to route on.
    let r = prometheus
        .query(&firing("DataJobLastRunFailed", &in_ns))
        .await
        .unwrap();
    for s in &r {
        let want = if label(s, "datajob") == "hungry" {
            "team-ml"
        } else {
            ""
        };
        assert_eq!(label(s, "owner"), want, "the owner of {s}");
        // ... and its installation: the scrape job (no cluster label here).
        assert_eq!(label(s, "job"), JOB, "the installation of {s}");
    }
    for alert in ["DataJobRunsEndedByWatchdog", "DataJobLastRunFailed"] {
        let r = prometheus.query(&firing(alert, &in_ns)).await.unwrap();
        assert!(
            !r.iter().any(|s| label(s, "datajob").starts_with("ok-")),
            "{alert} fires for a DataJob that succeeded: {r:?}"
        );
    }
    for alert in [
        "DataJobOperatorDown",
        "DataJobNoLeader",
        "DataJobWebhookNotCalled",
        "DataJobWebhookSlow",
        "DataJobWebhookCertificateExpiring",
        "DataJobNodeGroupAtMaxSize",
    ] {
        let r = prometheus
            .query(&format!("ALERTS{{alertname=\"{alert}\"}}"))
            .await
            .unwrap();
        assert!(r.is_empty(), "{alert} should not fire: {r:?}");
    }

    // The broken NodeGroup's reconciles keep failing: the alert is pending for the
    // nodegroup controller (it fires after 15 minutes of it, longer than this test).
    let r = prometheus
        .wait(
            "DataJobReconcileErrorsPersistent pending",
            r#"ALERTS{alertname="DataJobReconcileErrorsPersistent"}"#,
            Duration::from_secs(90),
            |r| !r.is_empty(),
        )
        .await;
    assert!(
        r.iter()
            .all(|s| label(s, "alertstate") == "pending" && label(s, "controller") == "nodegroup"),
        "pending for the nodegroup controller alone: {r:?}"
    );

    // The late run's alert fires, for it alone, with its owner.
    let r = prometheus
        .wait(
            "fired DataJobRunLate",
            &firing("DataJobRunLate", &in_ns),
            Duration::from_secs(120),
            |r| !r.is_empty(),
        )
        .await;
    assert!(
        r.len() == 1 && label(&r[0], "datajob") == LATE && label(&r[0], "owner") == "team-growth",
        "DataJobRunLate fires for {LATE} of team-growth alone: {r:?}"
    );

    // Alertmanager routes each to its owner's receiver: the failed run of team-ml's
    // DataJob to team-ml, the late run of team-growth's to team-growth, the failures of
    // DataJobs without an owner to the catch-all; and nothing to anybody else.
    let mine = |n: &alerting::Notified| n.label("namespace") == ns.name();
    let got = sink
        .wait(
            "the failed run at team-ml, the late run at team-growth, the others at platform",
            Duration::from_secs(60),
            |got| {
                let has = |receiver: &str, alert: &str, datajob: &str| {
                    got.iter().any(|n| {
                        mine(n)
                            && n.receiver == receiver
                            && n.label("alertname") == alert
                            && n.label("datajob") == datajob
                    })
                };
                has("team-ml", "DataJobLastRunFailed", "hungry")
                    && has("team-growth", "DataJobRunLate", LATE)
                    && has("platform", "DataJobLastRunFailed", "exit-3")
            },
        )
        .await;
    for n in got.iter().filter(|n| mine(n)) {
        let want = match n.label("owner") {
            "" => "platform",
            owner => owner,
        };
        assert_eq!(
            n.receiver,
            want,
            "{} of {} reached {}, not its owner's receiver: {:?}",
            n.label("alertname"),
            n.label("datajob"),
            n.receiver,
            n.labels
        );
    }
    let per: BTreeMap<&str, usize> =
        got.iter()
            .filter(|n| mine(n))
            .fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n.receiver.as_str()).or_default() += 1;
                m
            });
    eprintln!("alerts notified per receiver: {per:?}");

    // Stop Alertmanager and Prometheus (their directories go with them) and the operator.
    let data = prometheus.daemon.dir.path().to_path_buf();
    prometheus.stop();
    assert!(!data.exists(), "{} removed", data.display());
    let am_data = alertmanager.dir().to_path_buf();
    alertmanager.stop();
    assert!(!am_data.exists(), "{} removed", am_data.display());
    drop(sink);
    op.stop().await;
}

// ---- the chart ------------------------------------------------------------------------

/// `$HELM`, or the helm that `e2e/tools.sh` builds (cached).
fn helm() -> String {
    if let Ok(h) = std::env::var("HELM") {
        return h;
    }
    let out = Command::new("bash")
        .arg(format!("{ROOT}/e2e/tools.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/tools.sh");
    assert!(out.status.success(), "e2e/tools.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    format!("{}/helm", stdout.lines().last().unwrap().trim())
}

fn template(args: &[&str]) -> std::result::Result<Vec<Value>, String> {
    let chart = format!("{ROOT}/charts/datajob");
    let version = common::kube_version();
    let mut all = vec![
        "template",
        "datajob",
        chart.as_str(),
        "--namespace",
        "platform",
        "--kube-version",
        version.as_str(),
    ];
    all.extend_from_slice(args);
    let out = Command::new(helm()).args(&all).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(text
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<Value>(d).ok())
        .filter(|v| v.is_object())
        .collect())
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn promtool_check(rules: &Value) -> Result<()> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(serde_saphyr::to_string(rules)?.as_bytes())?;
    let out = Command::new(std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into()))
        .args(["check", "rules"])
        .arg(file.path())
        .output()?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into()),
    }
}

#[test]
fn the_chart_ships_the_dashboard_and_the_rules_when_asked() {
    // Off by default.
    let docs = template(&[]).unwrap();
    assert!(find(&docs, "PrometheusRule").is_none());
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "datajob-dashboard")
    );
    let env = |docs: &[Value], name: &str| -> Value {
        find(docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(env(&docs, "DATAJOB_METRICS_PER_DATAJOB"), "true");

    // The dashboard: the file itself, with the sidecar's label.
    let docs = template(&[
        "--set",
        "metrics.dashboard.enabled=true",
        "--set",
        "metrics.dashboard.label=my_dashboards",
        "--set-string",
        "metrics.dashboard.labelValue=yes",
        "--set",
        "metrics.dashboard.namespace=monitoring",
        "--set",
        "metrics.perDataJob=false",
    ])
    .unwrap();
    assert_eq!(env(&docs, "DATAJOB_METRICS_PER_DATAJOB"), "false");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "datajob-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["my_dashboards"], "yes");
    let shipped: Value =
        serde_json::from_str(cm["data"]["datajob.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard());
    let default_label = template(&["--set", "metrics.dashboard.enabled=true"]).unwrap();
    let cm = find(&default_label, "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");

    // The rules: the file's groups, with the thresholds of the values.
    let file: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(rules_path()).unwrap()).unwrap();
    let docs = template(&["--set", "metrics.prometheusRule.enabled=true"]).unwrap();
    let rule = find(&docs, "PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["spec"]["groups"], file["groups"],
        "the defaults render the file as it is"
    );
    promtool_check(&rule["spec"]).unwrap();
    // ... whose runbook URLs are absolute, on the project's docs.
    for g in rule["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let url = r["annotations"]["runbook_url"].as_str().unwrap();
            assert!(
                url.starts_with("https://datajob.dev/docs/operations.md#"),
                "{}: {url}",
                r["alert"]
            );
        }
    }
    let docs = template(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.scheduleLateSeconds=600",
        "--set",
        "metrics.prometheusRule.idleCostPerDay=2.5",
        "--set",
        "metrics.prometheusRule.webhookLatencySeconds=1.5",
        "--set",
        "metrics.prometheusRule.runbookBaseURL=https://example.com/datajob/",
        "--set",
        "metrics.prometheusRule.alertLabels.team=platform",
        "--set",
        "metrics.prometheusRule.labels.release=monitoring",
        "--set",
        "webhook.enabled=false",
    ])
    .unwrap();
    let rule = find(&docs, "PrometheusRule").unwrap();
    assert_eq!(rule["metadata"]["labels"]["release"], "monitoring");
    promtool_check(&rule["spec"]).unwrap();
    let rendered: BTreeMap<String, Value> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r))
        .collect();
    assert!(
        !rendered.contains_key("DataJobWebhookNotCalled"),
        "no webhook, no webhook alert"
    );
    assert_eq!(rendered.len(), 13);
    let expr = |a: &str| rendered[a]["expr"].as_str().unwrap().to_string();
    assert!(expr("DataJobScheduleLate").contains(r#"le=~"600(\\.0)?""#));
    assert!(!expr("DataJobScheduleLate").contains("300"));
    assert!(expr("DataJobNodeGroupIdleCost").ends_with("> 2.5"));
    assert!(expr("DataJobWebhookSlow").trim_end().ends_with("> 1.5"));
    for (name, r) in &rendered {
        assert_eq!(r["labels"]["team"], "platform", "{name}");
        assert!(r["labels"]["severity"].is_string(), "{name}");
        assert!(
            r["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .starts_with("https://example.com/datajob/docs/"),
            "{name}"
        );
    }
    // A threshold that is not a bucket bound is refused by name.
    let refused = template(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.scheduleLateSeconds=250",
    ])
    .unwrap_err();
    assert!(
        refused.contains("/metrics/prometheusRule/scheduleLateSeconds"),
        "{refused}"
    );
    // A runbook base that is not an absolute http(s) URL ending in / is refused by name.
    for base in [
        "",
        "docs/",
        "https://example.com/datajob",
        "example.com/datajob/",
    ] {
        let refused = template(&[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set-string",
            &format!("metrics.prometheusRule.runbookBaseURL={base}"),
        ])
        .unwrap_err();
        assert!(
            refused.contains("/metrics/prometheusRule/runbookBaseURL"),
            "{base:?}: {refused}"
        );
    }
    // helm lint in strict mode with both on.
    let out = Command::new(helm())
        .args([
            "lint",
            "--strict",
            &format!("{ROOT}/charts/datajob"),
            "--set",
            "metrics.dashboard.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The route per owner that operations.md shows is the file the chart ships (and that
/// the test above loads into Alertmanager), line for line.
#[test]
fn the_documented_route_per_owner_is_the_tested_one() {
    let example = std::fs::read_to_string(alerting::example_path()).unwrap();
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/operations.md")).unwrap();
    let body: Vec<&str> = example.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        doc.contains(&format!("```yaml\n{}\n```", body.join("\n"))),
        "docs/operations.md#routing-alerts-to-owners shows {} as it is:\n{}",
        alerting::example_path(),
        body.join("\n")
    );
}

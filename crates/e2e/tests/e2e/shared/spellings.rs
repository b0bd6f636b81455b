//! End-to-end: what `kubectl datajob plan` (and so the webhook) accepts, the apiserver
//! accepts. Many generated specs — schedules, every time zone, resource quantities,
//! env names, annotation keys, images, names — go through the operator's own
//! validation; each one it accepts has its CronJob or Job built as the reconciler builds
//! it, and created with a server-side dry run. A refusal by the apiserver fails the test
//! and names the spelling.

use crate::common;

use std::collections::BTreeMap;

use chrono::Utc;
use common::{client, test_namespace};
use datajob_api::DataJob;
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::children::{self, Guards};
use datajob_core::validation::Limits;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn datajob(ns: &str, name: &str, spec: Value) -> DataJob {
    common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name, "namespace": ns, "uid": "00000000-0000-4000-8000-000000000001"},
        "spec": spec,
    }))
}

/// A small deterministic generator, so a failure can be reproduced.
struct Lcg(u64);
impl Lcg {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        from[((self.0 >> 33) as usize) % from.len()]
    }
}

fn schedules() -> Vec<String> {
    let minute = [
        "0", "59", "*", "*/5", "0-59/15", "5,10,15", "7-9", "*/59", "3/20",
    ];
    let hour = ["*", "0", "23", "*/2", "1-5", "9-17/4", "0,12"];
    let dom = ["*", "?", "1", "31", "1-15", "*/10", "28"];
    let month = ["*", "1", "12", "JAN", "jan-mar", "*/3", "Dec", "2-11/2"];
    let dow = [
        "*", "?", "0", "7", "5-7", "MON-FRI", "sun", "1,7", "*/2", "0-7", "SAT,SUN", "1-5/2", "6-7",
    ];
    let mut out: Vec<String> = [
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every spelling of each field with the others at `*`.
    for m in minute {
        out.push(format!("{m} * * * *"));
    }
    for h in hour {
        out.push(format!("0 {h} * * *"));
    }
    for d in dom {
        out.push(format!("0 0 {d} * *"));
    }
    for m in month {
        out.push(format!("0 0 1 {m} *"));
    }
    for d in dow {
        out.push(format!("0 0 * * {d}"));
    }
    // And a few hundred mixtures.
    let mut g = Lcg(42);
    for _ in 0..300 {
        out.push(format!(
            "{} {} {} {} {}",
            g.pick(&minute),
            g.pick(&hour),
            g.pick(&dom),
            g.pick(&month),
            g.pick(&dow)
        ));
    }
    out.sort();
    out.dedup();
    out
}

fn specs(ns: &str) -> Vec<(String, DataJob)> {
    let mut out = Vec::new();
    for (i, s) in schedules().into_iter().enumerate() {
        out.push((
            format!("schedule {s:?}"),
            datajob(
                ns,
                &format!("s{i}"),
                json!({"image": "busybox", "schedule": s}),
            ),
        ));
    }
    for (i, tz) in chrono_tz::TZ_VARIANTS.iter().enumerate() {
        out.push((
            format!("timeZone {}", tz.name()),
            datajob(
                ns,
                &format!("tz{i}"),
                json!({"image": "busybox", "schedule": "0 3 * * *", "timeZone": tz.name()}),
            ),
        ));
    }
    let cpus = [
        "1", "0.5", "500m", "1.5", "2000m", "0.01", "64", "10m", "0.125",
    ];
    let memories = [
        "16Mi",
        "1Gi",
        "1.5Gi",
        "512M",
        "1G",
        "1000000000",
        "100Mi",
        "2.5G",
        "64Ki",
    ];
    let disks = ["1Mi", "10Gi", "0.5Gi", "100G", "60Gi", "1Ti"];
    let mut g = Lcg(7);
    for i in 0..40 {
        let (cpu, memory, disk) = (g.pick(&cpus), g.pick(&memories), g.pick(&disks));
        out.push((
            format!("resources cpu {cpu} memory {memory} disk {disk}"),
            datajob(
                ns,
                &format!("r{i}"),
                json!({"image": "busybox", "resources": {"cpu": cpu, "memory": memory, "disk": disk}}),
            ),
        ));
    }
    for (i, gpu) in [0, 1, 16].iter().enumerate() {
        out.push((
            format!("gpu {gpu}"),
            datajob(
                ns,
                &format!("g{i}"),
                json!({"image": "busybox", "resources": {"gpu": gpu}}),
            ),
        ));
    }
    for (i, name) in [
        "A",
        "a.b",
        "a-b",
        "_x",
        "x1",
        ".x",
        "-x",
        "LONG_NAME_WITH_DIGITS_123",
        "é",
    ]
    .iter()
    .enumerate()
    {
        out.push((
            format!("env name {name:?}"),
            datajob(
                ns,
                &format!("e{i}"),
                json!({"image": "busybox", "env": [{"name": name, "value": "v"}]}),
            ),
        ));
    }
    for (i, key) in [
        "a",
        "example.com/x",
        "a.b/c-d_e.f",
        "sidecar.istio.io/inject",
        "x/y",
        "-bad",
        "Example.com/x",
    ]
    .iter()
    .enumerate()
    {
        let mut a = BTreeMap::new();
        a.insert(key.to_string(), "v".to_string());
        out.push((
            format!("podAnnotations key {key:?}"),
            datajob(
                ns,
                &format!("a{i}"),
                json!({"image": "busybox", "podAnnotations": a}),
            ),
        ));
    }
    for (i, sa) in ["sa", "a.b-c", "a..b", "UPPER"].iter().enumerate() {
        out.push((
            format!("serviceAccountName {sa:?}"),
            datajob(
                ns,
                &format!("sa{i}"),
                json!({"image": "busybox", "serviceAccountName": sa}),
            ),
        ));
    }
    for (i, image) in [
        "busybox",
        "busybox:1.36",
        "127.0.0.1:5000/datajob/busybox:1",
        "registry.example.com:5000/a/b/c:tag_1.0-x",
        &format!("busybox@sha256:{}", "a".repeat(64)),
        &format!("ghcr.io/acme/churn:1.4.2@sha256:{}", "0".repeat(64)),
        "[::1]:5000/x:1",
    ]
    .iter()
    .enumerate()
    {
        out.push((
            format!("image {image:?}"),
            datajob(ns, &format!("i{i}"), json!({"image": image})),
        ));
    }
    // The longest names, scheduled and not: the CronJob, Job and pod names derived from them.
    let long = "n".repeat(52);
    out.push((
        "a 52-character scheduled name".into(),
        datajob(
            ns,
            &long,
            json!({"image": "busybox", "schedule": "*/5 * * * *"}),
        ),
    ));
    let long_one_off = format!("o{}", "n".repeat(51));
    out.push((
        "a 52-character one-off name".into(),
        datajob(ns, &long_one_off, json!({"image": "busybox"})),
    ));
    out.push((
        "every field".into(),
        datajob(
            ns,
            "full",
            json!({
                "image": "ghcr.io/acme/churn:1.4.2", "command": ["python", "-m", "x"], "args": ["--a", "b"],
                "schedule": "30 2 * * 1-5", "timeZone": "Europe/London", "deadline": "2h", "retries": 10,
                "history": 50, "pendingTimeout": "30m", "suspend": true,
                "resources": {"cpu": 4, "memory": "16Gi", "disk": "100Gi", "gpu": 1},
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "podAnnotations": {"sidecar.istio.io/inject": "true"},
                "serviceAccountName": "runner", "inputs": ["raw-events"], "output": "s3://bucket/path",
            }),
        ),
    ));
    out
}

#[tokio::test]
async fn what_plan_accepts_the_apiserver_accepts() {
    let client = client().await;
    let ns = test_namespace(&client, "spellings").await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let dry = PostParams {
        dry_run: true,
        field_manager: Some("datajob-operator".into()),
    };
    let (limits, guards) = (Limits::default(), Guards::default());
    let all = specs(ns.name());
    let (mut accepted, mut refused_by_plan) = (0, 0);
    let mut refused_by_apiserver = Vec::new();
    for (what, dj) in &all {
        let r = match resolve_and_place(dj, &limits, &guards, &[]) {
            Ok(r) => r,
            Err(_) => {
                refused_by_plan += 1;
                continue;
            }
        };
        accepted += 1;
        let result = match children::cronjob(dj, &r, &guards) {
            Some(cj) => cronjobs.create(&dry, &cj).await.map(|_| ()),
            None => {
                let job = children::job(dj, &r, &guards, Utc::now(), false);
                jobs.create(&dry, &job).await.map(|_| ())
            }
        };
        if let Err(e) = result {
            refused_by_apiserver.push(format!("{what}: {e}"));
        }
    }
    eprintln!(
        "spellings: {} generated, {accepted} accepted by plan and dry-run created, {refused_by_plan} refused by plan, {} refused by the apiserver",
        all.len(),
        refused_by_apiserver.len()
    );
    assert!(accepted > 700, "the generator covers enough: {accepted}");
    assert!(
        refused_by_apiserver.is_empty(),
        "plan accepted, the apiserver refused:\n{}",
        refused_by_apiserver.join("\n")
    );
}

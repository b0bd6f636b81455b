//! End-to-end: preflight at `kubectl apply` and in `kubectl datajob plan`. Before any pod
//! exists, a tag missing from the (real, local) registry, a Secret or ConfigMap that does
//! not exist or lacks the key read, and a service account that does not exist are
//! warnings, never refusals; a registry that does not answer costs at most the limit and
//! says nothing.

use crate::common;

use std::time::{Duration, Instant};

use common::kubectl::kubectl;
use common::plugin::plugin;
use common::{client, test_namespace};
use datajob_api::DataJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

fn manifest(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

/// The warnings kubectl printed (`Warning: …` lines on stderr).
fn warnings(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Warning: "))
        .map(str::to_string)
        .collect()
}

/// `kubectl apply` of one DataJob: it must be accepted; returns its warnings.
fn apply(ns: &str, name: &str, spec: &str) -> Vec<String> {
    let out = kubectl(&["apply", "-f", "-"], Some(&manifest(ns, name, spec)));
    assert!(out.ok, "a preflight finding is not a refusal: {out}");
    warnings(&out.stderr)
}

#[tokio::test]
async fn missing_images_secrets_config_maps_and_accounts_are_warned_about_at_apply_and_in_plan() {
    let Some(node) = common::realnode::real_node() else {
        return;
    };
    let client = client().await;
    let ns = test_namespace(&client, "preflight").await;
    let (registry_image, registry) = (node.image_nonroot.clone(), node.registry.clone());

    // The image is in the local registry: no warning. A tag that is not: a warning that
    // names the field and the value.
    let w = apply(
        ns.name(),
        "present",
        &format!("  image: {registry_image}\n"),
    );
    assert!(w.is_empty(), "{w:?}");
    let missing_tag = format!("{registry}/datajob/busybox-nonroot:no-such-tag");
    let w = apply(
        ns.name(),
        "missing-tag",
        &format!("  image: {missing_tag}\n"),
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "spec.image \"{missing_tag}\" was not found in its registry"
        )) && w[0].contains("ImageNotFound"),
        "{w:?}"
    );
    let missing_repo = format!("{registry}/nobody/nothing:1");
    let w = apply(
        ns.name(),
        "missing-repo",
        &format!("  image: {missing_repo}\n"),
    );
    assert!(w.len() == 1 && w[0].contains("was not found"), "{w:?}");

    // Secrets, ConfigMaps and the service account.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let s: Secret = common::from_json(
        json!({"metadata": {"name": "db"}, "stringData": {"user": "u", "host": "h"}}),
    );
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let m: ConfigMap =
        common::from_json(json!({"metadata": {"name": "settings"}, "data": {"mode": "fast"}}));
    maps.create(&PostParams::default(), &m).await.unwrap();
    let spec = format!(
        "  image: {registry_image}\n  serviceAccountName: runner\n  env:\n  - name: PASSWORD\n    valueFrom: {{secretKeyRef: {{name: db, key: password}}}}\n  - name: TOKEN\n    valueFrom: {{secretKeyRef: {{name: api-token, key: token}}}}\n  - name: MODE\n    valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}\n  - name: REGION\n    valueFrom: {{configMapKeyRef: {{name: region, key: name}}}}\n  - name: OPTIONAL\n    valueFrom: {{secretKeyRef: {{name: maybe, key: k, optional: true}}}}\n"
    );
    let w = apply(ns.name(), "refs", &spec);
    let all = w.join("\n");
    assert_eq!(w.len(), 4, "{all}");
    assert!(
        all.contains("spec.env[0] reads key \"password\" of Secret \"db\", which has no such key (it has: host, user)"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "spec.env[1] reads Secret \"api-token\", which does not exist in {}",
            ns.name()
        )),
        "{all}"
    );
    assert!(
        all.contains("spec.env[3] reads ConfigMap \"region\""),
        "{all}"
    );
    assert!(
        all.contains("spec.serviceAccountName \"runner\" does not exist"),
        "{all}"
    );
    assert!(!all.contains("maybe") && !all.contains("settings"), "{all}");
    // Warnings, not refusals: the DataJob is there.
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    assert!(api.get_opt("refs").await.unwrap().is_some());

    // `plan` says the same, before anything is applied.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("refs.yaml");
    std::fs::write(&file, manifest(ns.name(), "refs-planned", &spec)).unwrap();
    let out = plugin(ns.name(), &["plan", "-f", file.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("Warnings"), "{out}");
    for expected in &w {
        assert!(
            out.stdout.contains(expected.as_str()),
            "plan lacks {expected:?}: {out}"
        );
    }
    let file = dir.path().join("tag.yaml");
    std::fs::write(
        &file,
        manifest(
            ns.name(),
            "tag-planned",
            &format!("  image: {missing_tag}\n"),
        ),
    )
    .unwrap();
    let out = plugin(
        ns.name(),
        &["plan", "-f", file.to_str().unwrap(), "-o", "json"],
    )
    .await;
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        plan["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("was not found in its registry")),
        "{out}"
    );
}

#[tokio::test]
async fn a_registry_that_does_not_answer_costs_at_most_the_limit_and_says_nothing() {
    let client = client().await;
    let ns = test_namespace(&client, "preflight-silent").await;
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(8) {
            open.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let image = format!("127.0.0.1:{port}/team/job:1");
    let started = Instant::now();
    let w = apply(ns.name(), "silent", &format!("  image: {image}\n"));
    let first = started.elapsed();
    assert!(w.is_empty(), "no answer is no finding: {w:?}");
    // The webhook's own limit is 5 s (a call past it fails, and the Ignore policy would
    // hide that): the preflight gives up at 2 s.
    assert!(first < Duration::from_millis(4500), "apply took {first:?}");
    // The answer (none) is cached: a second apply does not wait again.
    let started = Instant::now();
    let w = apply(ns.name(), "silent-again", &format!("  image: {image}\n"));
    let second = started.elapsed();
    assert!(w.is_empty(), "{w:?}");
    eprintln!("a silent registry: first apply {first:?}, second {second:?}");
    assert!(second < first, "cached: {second:?} after {first:?}");
    // A closed port: refused at once, says nothing either.
    let closed = format!("127.0.0.1:{}/team/job:1", common::realnode::closed_port());
    assert!(apply(ns.name(), "closed", &format!("  image: {closed}\n")).is_empty());
    drop(held);
}

/// Posts `review` to the shared operator's webhook as any pod could: no client
/// certificate, the server's not checked. Returns the review's `response`.
async fn post_review(review: serde_json::Value) -> serde_json::Value {
    let base =
        std::env::var("DATAJOB_WEBHOOK_URL").unwrap_or_else(|_| "https://127.0.0.1:9443".into());
    let mut config = kube::Config::new(base.parse().expect("DATAJOB_WEBHOOK_URL is a URL"));
    config.accept_invalid_certs = true;
    let forger = kube::Client::try_from(config).expect("a client for the webhook");
    let request = http::Request::post("/validate-datajob")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&review).expect("JSON"))
        .expect("a request");
    let answer: serde_json::Value = forger.request(request).await.expect("the webhook answers");
    answer["response"].clone()
}

/// A review the apiserver never sent: a create of `object` in `ns` by `user`.
fn forged(ns: &str, user: serde_json::Value, object: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "forged-1",
            "kind": {"group": "datajob.dev", "version": "v1alpha1", "kind": "DataJob"},
            "resource": {"group": "datajob.dev", "version": "v1alpha1", "resource": "datajobs"},
            "name": "probe", "namespace": ns, "operation": "CREATE",
            "userInfo": user,
            "object": object,
        }
    })
}

/// Issue 25 item 1: a pod posts a review of its own making for another team's
/// namespace. The answer tells it nothing about that namespace: not which ConfigMap
/// keys exist, nor whether a service account or the DataJobs named as inputs exist.
/// The same review by a user who may read them gets every fact (the check can fail).
#[tokio::test]
async fn a_forged_review_for_another_namespace_learns_nothing() {
    let client = client().await;
    let ns = test_namespace(&client, "forged").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let settings: ConfigMap = common::from_json(json!({
        "metadata": {"name": "team-settings"}, "data": {"secret-plan": "x"},
    }));
    maps.create(&PostParams::default(), &settings)
        .await
        .unwrap();
    let object = json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "probe", "namespace": ns.name()},
        "spec": {
            "image": "busybox",
            "serviceAccountName": "deployer",
            "inputs": ["payroll"],
            "env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "team-settings", "key": "mode"}}}],
        },
    });
    let facts = ["team-settings", "secret-plan", "deployer", "payroll"];
    let told = |response: &serde_json::Value| -> Vec<&str> {
        let text = response.to_string();
        facts.iter().copied().filter(|f| text.contains(f)).collect()
    };

    let nobody = json!({"username": "system:serviceaccount:tenant-a:default",
                        "groups": ["system:serviceaccounts", "system:authenticated"]});
    let answer = post_review(forged(ns.name(), nobody, object.clone())).await;
    assert_eq!(answer["uid"], "forged-1");
    assert_eq!(
        told(&answer),
        Vec::<&str>::new(),
        "the forger learned: {answer}"
    );
    assert_eq!(answer["allowed"], true, "{answer}");

    // A user who may read them is told every fact: the check can fail. (A missing
    // input refuses the DataJob before the preflight, so they are asked apart.)
    let admin = json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]});
    let answer = post_review(forged(ns.name(), admin.clone(), object.clone())).await;
    assert_eq!(told(&answer), ["payroll"], "{answer}");
    assert_eq!(answer["allowed"], false, "{answer}");
    let mut without_inputs = object;
    without_inputs["spec"]["inputs"] = json!([]);
    let answer = post_review(forged(ns.name(), admin, without_inputs)).await;
    assert_eq!(
        told(&answer),
        ["team-settings", "secret-plan", "deployer"],
        "{answer}"
    );
}

//! The chart under a GitOps tool: Argo CD and Flux render it with `helm template` (no
//! `lookup`, no release) and apply what it renders with server-side apply, at every
//! sync. Nothing the chart renders may undo what the operator wrote at run time: the
//! webhook certificate and the webhook's CA bundle stay the same across syncs, the
//! webhook keeps answering, and `kubectl diff` after a sync is empty (no "OutOfSync").

use super::*;
use common::operator::{Operator, free_port, spawn};
use common::wait_for;

/// Argo CD's field manager for server-side apply.
const MANAGER: &str = "argocd-controller";

/// Deletes what a sync created, when the test ends (also when it fails). The namespace
/// guard takes the namespaced objects; this takes the cluster-scoped ones.
struct Synced(String);

impl Drop for Synced {
    fn drop(&mut self) {
        let _ = kubectl_run(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.0),
        );
    }
}

/// `kubectl <verb> --server-side` of what the chart renders, as Argo CD's field manager
/// (with `ServerSideApply=true` Argo CD forces conflicts: it takes every field it renders).
fn as_argo(verb: &str, rendered: &str) -> Out {
    kubectl_run(
        &[
            verb,
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            MANAGER,
            "-f",
            "-",
        ],
        Some(rendered),
    )
}

/// One sync: what `helm template` renders, applied as Argo CD does.
fn sync(rendered: &str) {
    must(
        as_argo("apply", rendered),
        "kubectl apply --server-side of the rendered chart",
    );
}

/// The Secret's certificate keys and the webhook's CA bundle, once the operator wrote them.
async fn written(ns: &str, secret: &str, configuration: &str) -> (Value, Value) {
    let (ns, secret, configuration) = (
        ns.to_string(),
        secret.to_string(),
        configuration.to_string(),
    );
    wait_for(
        "the operator to write the certificate and the CA bundle",
        Duration::from_secs(60),
        || {
            let (ns, secret, configuration) = (ns.clone(), secret.clone(), configuration.clone());
            async move {
                let data = get_json(&["secret", &secret, "-n", &ns])["data"].clone();
                let bundle = get_json(&["validatingwebhookconfiguration", &configuration])
                    ["webhooks"][0]["clientConfig"]["caBundle"]
                    .clone();
                let full = ["ca.crt", "tls.crt", "tls.key"]
                    .iter()
                    .all(|k| data[*k].as_str().is_some_and(|v| !v.is_empty()));
                Ok((full && bundle.as_str().is_some_and(|b| !b.is_empty()))
                    .then_some((data, bundle)))
            }
        },
    )
    .await
    .unwrap()
}

/// The webhook refuses a DataJob whose deadline is above `settings.maxDeadline` (24h):
/// only the webhook knows that limit, so a refusal shows it answered.
async fn webhook_refuses(ns: &str) -> String {
    let bad = json!({
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": "too-long", "namespace": ns},
        "spec": {"image": "busybox:1.36", "command": ["true"], "resources": {"cpu": "100m", "memory": "64Mi"}, "deadline": "48h"}
    })
    .to_string();
    wait_for(
        "the webhook to refuse a 48h deadline",
        Duration::from_secs(30),
        || {
            let bad = bad.clone();
            async move {
                let out = kubectl_run(&["create", "--dry-run=server", "-f", "-"], Some(&bad));
                Ok((!out.ok && out.stderr.contains("denied the request")).then_some(out.stderr))
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn gitops_sync_with_server_side_apply_leaves_the_certificate_alone() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-gitops").await;
    let n = ns.name().to_string();
    let release = unique_name("djg");
    let configuration = format!("{release}.datajob.dev");
    let secret = format!("{}-webhook-cert", fullname(&release));
    let webhook = format!("127.0.0.1:{}", free_port());
    let url = format!("https://{webhook}");
    let values = [
        "--set-string".to_string(),
        format!("webhook.configurationName={configuration}"),
        "--set-string".into(),
        format!("webhook.url={url}"),
        "--set-string".into(),
        format!("leaderElection.leaseName={release}"),
        "--set-string".into(),
        "nodeSelector.type=kwok".into(),
        "--set".into(),
        "replicas=1".into(),
    ];
    let rendered = must(template(&release, &n, &strs(&values)), "helm template");
    let _synced = Synced(rendered.clone());
    let secret_doc = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "Secret")
        .expect("the chart renders the webhook Secret");
    assert!(
        secret_doc.get("data").is_none() && secret_doc.get("stringData").is_none(),
        "the chart renders the Secret's content, which the operator owns: {secret_doc}"
    );

    // The operator outside the cluster, as the chart configures it (the webhook at
    // `webhook.url`): it fills the Secret and applies the CA bundle.
    let start = || {
        let env = [
            ("POD_NAME", "gitops"),
            ("POD_NAMESPACE", n.as_str()),
            ("DATAJOB_WEBHOOK_ADDR", webhook.as_str()),
            ("DATAJOB_WEBHOOK_URL", url.as_str()),
            ("DATAJOB_WEBHOOK_CONFIGURATION", configuration.as_str()),
            ("DATAJOB_WEBHOOK_SECRET", secret.as_str()),
            ("DATAJOB_LEASE_NAME", release.as_str()),
        ];
        async move { spawn(&env).await }
    };

    sync(&rendered);
    let mut operator: Operator = start().await;
    let (cert, bundle) = written(&n, &secret, &configuration).await;
    webhook_refuses(&n).await;

    for round in 1..=3 {
        // A sync while the operator runs, then the operator restarts (it reads the
        // Secret and applies the webhook configuration again at start).
        sync(&rendered);
        operator.stop().await;
        operator = start().await;
        let (now, now_bundle) = written(&n, &secret, &configuration).await;
        assert_eq!(now, cert, "sync {round} changed the webhook certificate");
        assert_eq!(
            now_bundle, bundle,
            "sync {round} changed the webhook's CA bundle"
        );
        let refusal = webhook_refuses(&n).await;
        assert!(
            refusal.contains("deadline"),
            "after sync {round} the webhook refused for another reason: {refusal}"
        );
    }

    // What Argo CD shows as "OutOfSync": nothing.
    let diff = as_argo("diff", &rendered);
    assert!(
        diff.ok && diff.stdout.trim().is_empty(),
        "kubectl diff after the third sync is not empty:\n{}{}",
        diff.stdout,
        diff.stderr
    );
    operator.stop().await;
}

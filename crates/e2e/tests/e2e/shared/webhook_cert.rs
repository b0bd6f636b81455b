//! End-to-end: the webhook certificate is checked at start and renewed or reloaded while
//! the operator runs. Each test starts its own operator replica (a follower of the
//! shared operator's Lease, so it only serves its webhook) with its own Secret and its
//! own ValidatingWebhookConfiguration, and removes both afterwards.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::operator::{free_port, spawn};
use common::{client, unique_name, wait_for};
use datajob_operator::webhook::tls::{self, ServingCert, Unfit};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const NS: &str = "datajob-system";
const DAY: i64 = 24 * 3600;

async fn ensure_namespace(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(NS).await.unwrap().is_none() {
        let ns: Namespace = common::from_json(json!({"metadata": {"name": NS}}));
        let _ = api.create(&PostParams::default(), &ns).await;
    }
}

fn hosts() -> Vec<String> {
    tls::Endpoint::Url("https://127.0.0.1:1".into()).hosts()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn secret_of(name: &str, c: &ServingCert) -> Secret {
    let mut data = BTreeMap::from([
        (
            "ca.crt".to_string(),
            ByteString(c.ca_pem.clone().into_bytes()),
        ),
        (
            "tls.crt".to_string(),
            ByteString(c.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            ByteString(c.key_pem.clone().into_bytes()),
        ),
    ]);
    if let Some(k) = &c.ca_key_pem {
        data.insert("ca.key".into(), ByteString(k.clone().into_bytes()));
    }
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Runs openssl against the webhook port: the served certificate (PEM), and whether it
/// verifies for 127.0.0.1 against `ca_pem` (what the apiserver does with the caBundle).
fn handshake(port: u16, ca_pem: &str) -> (String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(&ca)
        .args([
            "-verify_ip",
            "127.0.0.1",
            "-verify_return_error",
            "-showcerts",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pem = text
        .split_once("-----BEGIN CERTIFICATE-----")
        .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
        .map(|(body, _)| format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----"))
        .unwrap_or_default();
    let ok = out.status.success() && text.contains("Verify return code: 0 (ok)");
    (pem, ok)
}

fn same_cert(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<String>();
    norm(a) == norm(b)
}

/// The operator under test: a follower serving its own webhook on `port`.
async fn operator(
    port: u16,
    secret: &str,
    configuration: &str,
    extra: &[(&str, &str)],
) -> common::operator::Operator {
    let url = format!("https://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let mut env: Vec<(&str, &str)> = vec![
        ("POD_NAMESPACE", NS),
        ("DATAJOB_WEBHOOK_URL", &url),
        ("DATAJOB_WEBHOOK_ADDR", &addr),
        ("DATAJOB_WEBHOOK_SECRET", secret),
        ("DATAJOB_WEBHOOK_CONFIGURATION", configuration),
    ];
    env.extend_from_slice(extra);
    spawn(&env).await
}

async fn remove(client: &Client, secret: &str, configuration: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let _ = secrets.delete(secret, &DeleteParams::default()).await;
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let _ = vwcs.delete(configuration, &DeleteParams::default()).await;
}

fn ca_bundle(vwc: &ValidatingWebhookConfiguration) -> String {
    vwc.webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn expired_expiring_misnamed_and_empty_certificates_are_replaced_at_start() {
    let client = client().await;
    ensure_namespace(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let t = now();
    let cases: Vec<(&str, Option<ServingCert>)> = vec![
        (
            "expired",
            Some(tls::generate_between(&hosts(), t - 30 * DAY, t - DAY).unwrap()),
        ),
        (
            "expiring",
            Some(tls::generate_between(&hosts(), t - DAY, t + 2 * DAY).unwrap()),
        ),
        (
            "misnamed",
            Some(tls::generate_between(&["elsewhere.example".into()], t, t + 90 * DAY).unwrap()),
        ),
        // What the Helm chart creates: an empty Secret the operator fills (a TLS Secret
        // must have the keys; they may be empty).
        ("empty", None),
    ];
    for (case, stored) in cases {
        let secret = unique_name(&format!("cert-{case}"));
        let configuration = format!("{secret}.e2e.datajob.dev");
        let mut obj = match &stored {
            Some(c) => secret_of(&secret, c),
            None => secret_of(
                &secret,
                &ServingCert {
                    ca_pem: String::new(),
                    cert_pem: String::new(),
                    key_pem: String::new(),
                    ca_key_pem: None,
                },
            ),
        };
        if stored.is_none() {
            obj.data = Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(Vec::new())),
                ("tls.key".to_string(), ByteString(Vec::new())),
            ]));
        }
        secrets.create(&PostParams::default(), &obj).await.unwrap();
        let port = free_port();
        let mut op = operator(port, &secret, &configuration, &[]).await;

        let now_stored = tls::from_secret(&secrets.get(&secret).await.unwrap());
        assert_eq!(
            tls::check(
                &now_stored,
                &hosts(),
                Duration::from_secs(30 * DAY as u64),
                now()
            ),
            Ok(()),
            "{case}: the Secret holds a fit certificate after the start"
        );
        if let Some(old) = &stored {
            assert_ne!(now_stored.cert_pem, old.cert_pem, "{case}: replaced");
        }
        let until = tls::not_after(&now_stored).unwrap();
        assert!(
            (until - (now() + 365 * DAY)).abs() < 3600,
            "{case}: a new certificate is valid for a year: {until}"
        );
        let vwc = vwcs.get(&configuration).await.unwrap();
        assert!(
            same_cert(&ca_bundle(&vwc), &now_stored.ca_pem),
            "{case}: caBundle is the CA"
        );
        let (served, trusted) = handshake(port, &ca_bundle(&vwc));
        assert!(
            trusted,
            "{case}: the served certificate verifies against the caBundle"
        );
        assert!(
            same_cert(&served, &now_stored.cert_pem),
            "{case}: serves the new certificate"
        );

        op.stop().await;
        remove(&client, &secret, &configuration).await;
    }
}

#[tokio::test]
async fn a_certificate_is_renewed_and_reloaded_without_a_restart() {
    let client = client().await;
    ensure_namespace(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let secret = unique_name("cert-renew");
    let configuration = format!("{secret}.e2e.datajob.dev");
    let port = free_port();
    let mut op = operator(
        port,
        &secret,
        &configuration,
        &[("DATAJOB_WEBHOOK_CERT_CHECK_INTERVAL", "1s")],
    )
    .await;
    let first = tls::from_secret(&secrets.get(&secret).await.unwrap());
    let (served, trusted) = handshake(port, &first.ca_pem);
    assert!(trusted && same_cert(&served, &first.cert_pem));

    // Someone leaves a certificate that expires tomorrow (signed by the same CA): the
    // running operator renews it with the same CA and serves the new one.
    let t = now();
    let mut soon = first.clone();
    let issuer_policy = tls::Policy {
        hosts: hosts(),
        validity: Duration::from_secs(DAY as u64),
        renew_before: Duration::from_secs(0),
    };
    let short = tls::renewed(Some(&first), &issuer_policy, t).unwrap();
    soon.cert_pem = short.cert_pem;
    soon.key_pem = short.key_pem;
    assert!(matches!(
        tls::check(&soon, &hosts(), Duration::from_secs(30 * DAY as u64), t),
        Err(Unfit::ExpiresSoon { .. })
    ));
    let mut obj = secrets.get(&secret).await.unwrap();
    obj.data = secret_of(&secret, &soon).data;
    secrets
        .replace(&secret, &PostParams::default(), &obj)
        .await
        .unwrap();
    let renewed = wait_for(
        "the operator renews the certificate",
        Duration::from_secs(30),
        || async {
            let c = tls::from_secret(&secrets.get(&secret).await?);
            Ok((c.cert_pem != soon.cert_pem && c.cert_pem != first.cert_pem).then_some(c))
        },
    )
    .await
    .unwrap();
    assert_eq!(renewed.ca_pem, first.ca_pem, "renewal keeps the CA");
    wait_for(
        "the new certificate is served",
        Duration::from_secs(30),
        || async {
            let (served, trusted) = handshake(port, &renewed.ca_pem);
            Ok((trusted && same_cert(&served, &renewed.cert_pem)).then_some(()))
        },
    )
    .await
    .unwrap();
    op.stop().await;

    // cert-manager's way: the operator only reads the Secret. A new CA and certificate
    // written there are served, and the caBundle follows, without a restart.
    let mut op = operator(
        port,
        &secret,
        &configuration,
        &[
            ("DATAJOB_WEBHOOK_CERT", "external"),
            ("DATAJOB_WEBHOOK_CERT_CHECK_INTERVAL", "1s"),
        ],
    )
    .await;
    let mut rotated = tls::generate_between(&hosts(), now(), now() + 90 * DAY).unwrap();
    rotated.ca_key_pem = None;
    let mut obj = secrets.get(&secret).await.unwrap();
    obj.data = secret_of(&secret, &rotated).data;
    secrets
        .replace(&secret, &PostParams::default(), &obj)
        .await
        .unwrap();
    wait_for(
        "the rotated certificate is served and trusted",
        Duration::from_secs(30),
        || async {
            let vwc = vwcs.get(&configuration).await?;
            let bundle = ca_bundle(&vwc);
            let (served, trusted) = handshake(port, &bundle);
            Ok((same_cert(&bundle, &rotated.ca_pem)
                && trusted
                && same_cert(&served, &rotated.cert_pem))
            .then_some(()))
        },
    )
    .await
    .unwrap();
    // The operator did not write the Secret in external mode.
    let stored = tls::from_secret(&secrets.get(&secret).await.unwrap());
    assert_eq!(stored.cert_pem, rotated.cert_pem);
    assert_eq!(secrets.get(&secret).await.unwrap().name_any(), secret);
    op.stop().await;
    remove(&client, &secret, &configuration).await;
}

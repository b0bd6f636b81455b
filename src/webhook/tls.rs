//! The webhook's certificate, made without hand steps: the operator keeps a CA and a
//! serving certificate in a Secret (created on first start, shared by replicas and
//! restarts) and writes the CA into its ValidatingWebhookConfiguration.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tracing::info;

use crate::labels::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_VALUE};
use crate::{Error, Result};

pub const CONFIGURATION_NAME: &str = "datajob.dev";
const CA_KEY: &str = "ca.crt";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";

/// PEM serving certificate and key, and the CA that signed it.
#[derive(Clone, Debug)]
pub struct ServingCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where the apiserver reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Url(String),
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
}

impl Endpoint {
    /// `namespace/name[:port]`.
    pub fn parse_service(s: &str) -> Result<Self> {
        let (ns, rest) = s.split_once('/').ok_or_else(|| {
            Error::Config(format!(
                "--webhook-service {s:?}: write it as namespace/name[:port]"
            ))
        })?;
        let (name, port) = match rest.split_once(':') {
            Some((n, p)) => (
                n,
                p.parse().map_err(|_| {
                    Error::Config(format!(
                        "--webhook-service {s:?}: port {p:?} is not a number"
                    ))
                })?,
            ),
            None => (rest, 443),
        };
        Ok(Endpoint::Service {
            namespace: ns.into(),
            name: name.into(),
            port,
        })
    }

    /// The names the serving certificate must carry.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        match self {
            Endpoint::Url(u) => {
                let host = u
                    .trim_start_matches("https://")
                    .split(['/', ':'])
                    .next()
                    .unwrap_or_default();
                if !host.is_empty() && !hosts.iter().any(|h| h == host) {
                    hosts.push(host.to_string());
                }
            }
            Endpoint::Service {
                namespace, name, ..
            } => {
                hosts.push(format!("{name}.{namespace}.svc"));
                hosts.push(format!("{name}.{namespace}.svc.cluster.local"));
            }
        }
        hosts
    }
}

/// A fresh CA and a serving certificate for `hosts`, valid for ten years.
pub fn generate(hosts: &[String]) -> Result<ServingCert> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "datajob-webhook-ca");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(hosts.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "datajob-webhook");
    leaf.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(ServingCert {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The certificate in `namespace/secret`, created there if it does not exist yet.
pub async fn load_or_create(
    client: Client,
    namespace: &str,
    secret: &str,
    hosts: &[String],
) -> Result<ServingCert> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let read = |s: &Secret| -> Option<ServingCert> {
        let data = s.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Some(ServingCert {
            ca_pem: get(CA_KEY)?,
            cert_pem: get(CERT_KEY)?,
            key_pem: get(KEY_KEY)?,
        })
    };
    if let Some(existing) = api
        .get_opt(secret)
        .await
        .map_err(Error::api("get", "Secret", namespace, secret))?
        .as_ref()
        .and_then(read)
    {
        return Ok(existing);
    }
    let cert = generate(hosts)?;
    let data = BTreeMap::from([
        (
            CA_KEY.to_string(),
            ByteString(cert.ca_pem.clone().into_bytes()),
        ),
        (
            CERT_KEY.to_string(),
            ByteString(cert.cert_pem.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_string(),
            ByteString(cert.key_pem.clone().into_bytes()),
        ),
    ]);
    let obj = Secret {
        metadata: ObjectMeta {
            name: Some(secret.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {
            info!(%namespace, %secret, "created the webhook certificate");
            Ok(cert)
        }
        // Another replica won the race: use its certificate.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let s = api
                .get(secret)
                .await
                .map_err(Error::api("get", "Secret", namespace, secret))?;
            read(&s).ok_or_else(|| {
                Error::Config(format!(
                    "Secret {namespace}/{secret} lacks {CA_KEY}, {CERT_KEY} or {KEY_KEY}"
                ))
            })
        }
        Err(e) => Err(Error::api("create", "Secret", namespace, secret)(e)),
    }
}

/// Writes the ValidatingWebhookConfiguration for DataJobs with the CA bundle.
pub async fn register(
    client: Client,
    endpoint: &Endpoint,
    ca_pem: &str,
    failure_policy: &str,
) -> Result<()> {
    let client_config = match endpoint {
        Endpoint::Url(u) => WebhookClientConfig {
            url: Some(format!("{}{}", u.trim_end_matches('/'), super::PATH)),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
        Endpoint::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            url: None,
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(super::PATH.into()),
                port: Some(*port),
            }),
        },
    };
    let config = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION_NAME.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.datajob.dev".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some(failure_policy.into()),
            timeout_seconds: Some(5),
            client_config,
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["datajob.dev".into()]),
                api_versions: Some(vec!["v1alpha1".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(vec!["datajobs".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..Default::default()
        }]),
    };
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    api.patch(
        CONFIGURATION_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&config),
    )
    .await
    .map_err(Error::api(
        "apply",
        "ValidatingWebhookConfiguration",
        "",
        CONFIGURATION_NAME,
    ))?;
    info!(name = CONFIGURATION_NAME, ?endpoint, "webhook registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_cover_the_endpoint() {
        let e = Endpoint::parse_service("datajob-system/datajob-webhook:9443").unwrap();
        assert!(
            e.hosts()
                .contains(&"datajob-webhook.datajob-system.svc".to_string())
        );
        let c = generate(&e.hosts()).unwrap();
        assert!(c.ca_pem.contains("BEGIN CERTIFICATE") && c.key_pem.contains("PRIVATE KEY"));
        assert!(Endpoint::parse_service("no-slash").is_err());
        assert!(
            Endpoint::Url("https://10.1.2.3:9443".into())
                .hosts()
                .contains(&"10.1.2.3".to_string())
        );
    }
}

//! The webhook's certificate, made without hand steps: the operator keeps a CA and a
//! serving certificate in a Secret (shared by replicas and restarts), checks it at start
//! and every `--webhook-cert-check-interval`, replaces it when it expired, expires soon,
//! names the wrong hosts or does not match its key, and writes the CA into its
//! ValidatingWebhookConfiguration. With `--webhook-cert external` someone else
//! (cert-manager) writes the Secret and the operator only reads it.
//!
//! Deciding is pure ([`check`], [`renewed`]); reading and writing the Secret and the
//! configuration are the edge ([`ensure`], [`register`]).
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use tracing::info;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::{Error, Result};
pub(crate) use datajob_core::labels::WEBHOOK_NAME;
use datajob_core::labels::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_VALUE};

/// The configuration's name when `--webhook-configuration` is not set.
pub const CONFIGURATION_NAME: &str = "datajob.dev";
const CA_KEY: &str = "ca.crt";
/// The serving certificate's key in the Secret, and its file name in a mounted
/// `kubernetes.io/tls` Secret (the secure metrics server reads such files).
pub(crate) const CERT_KEY: &str = "tls.crt";
/// The serving key's key in the Secret (and file name).
pub(crate) const KEY_KEY: &str = "tls.key";
/// The CA's private key, so that renewing the serving certificate keeps the CA (and the
/// caBundle every replica and the apiserver trust). Absent when cert-manager writes.
const CA_PRIVATE_KEY: &str = "ca.key";
/// How long a CA the operator makes is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// PEM serving certificate and key, the CA bundle that trusts it, and (when the
/// operator made the CA) the CA's key.
#[derive(Clone, Debug, PartialEq)]
pub struct ServingCert {
    /// One or more CA certificates; the first signed the serving certificate. During a
    /// CA rotation the old CA follows, so replicas still serving the old certificate
    /// stay trusted until they reload.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_key_pem: Option<String>,
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

/// What the serving certificate must satisfy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub hosts: Vec<String>,
    /// Validity of a serving certificate the operator makes.
    pub validity: Duration,
    /// Replace (or report) a certificate that expires within this.
    pub renew_before: Duration,
}

/// Why a stored certificate must not be served (any more).
#[derive(Clone, Debug, PartialEq)]
pub enum Unfit {
    /// There is no Secret yet.
    NoSecret,
    /// A key of the Secret is missing or empty (a new or emptied Secret).
    Missing(&'static str),
    Unreadable(String),
    Expired {
        not_after: i64,
    },
    ExpiresSoon {
        not_after: i64,
    },
    WrongNames {
        missing: Vec<String>,
    },
    NotSignedByCa,
    KeyMismatch,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(datajob_core::labels::rfc3339)
                .unwrap_or_else(|| t.to_string())
        };
        match self {
            Unfit::NoSecret => write!(f, "there is no Secret yet"),
            Unfit::Missing(key) => write!(f, "the Secret has no {key}"),
            Unfit::Unreadable(e) => write!(f, "the certificate cannot be read: {e}"),
            Unfit::Expired { not_after } => {
                write!(f, "the certificate expired at {}", at(*not_after))
            }
            Unfit::ExpiresSoon { not_after } => {
                write!(f, "the certificate expires soon, at {}", at(*not_after))
            }
            Unfit::WrongNames { missing } => write!(
                f,
                "the certificate does not name {} (the webhook's host changed)",
                missing.join(", ")
            ),
            Unfit::NotSignedByCa => write!(f, "the certificate is not signed by the CA in ca.crt"),
            Unfit::KeyMismatch => write!(f, "tls.key does not belong to tls.crt"),
        }
    }
}

fn parse_pems(what: &str, pem: &str) -> std::result::Result<Vec<Pem>, Unfit> {
    let pems: Vec<Pem> = Pem::iter_from_buffer(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Unfit::Unreadable(format!("{what}: {e}")))?;
    if pems.is_empty() {
        return Err(Unfit::Unreadable(format!("{what}: no PEM block")));
    }
    Ok(pems)
}

fn x509<'a>(what: &str, pem: &'a Pem) -> std::result::Result<X509Certificate<'a>, Unfit> {
    pem.parse_x509()
        .map_err(|e| Unfit::Unreadable(format!("{what}: {e}")))
}

/// Is `cert` fit to serve for `hosts` at `now` (Unix seconds)? The serving certificate
/// must be readable, signed by the first CA of the bundle, match its key, name every
/// host, and not expire within `renew_before`.
pub fn check(
    cert: &ServingCert,
    hosts: &[String],
    renew_before: Duration,
    now: i64,
) -> std::result::Result<(), Unfit> {
    for (key, value) in [
        (CA_KEY, &cert.ca_pem),
        (CERT_KEY, &cert.cert_pem),
        (KEY_KEY, &cert.key_pem),
    ] {
        if value.trim().is_empty() {
            return Err(Unfit::Missing(key));
        }
    }
    let leaf_pems = parse_pems(CERT_KEY, &cert.cert_pem)?;
    let leaf = x509(CERT_KEY, &leaf_pems[0])?;
    let ca_pems = parse_pems(CA_KEY, &cert.ca_pem)?;
    let ca = x509(CA_KEY, &ca_pems[0])?;
    let key = KeyPair::from_pem(&cert.key_pem)
        .map_err(|e| Unfit::Unreadable(format!("{KEY_KEY}: {e}")))?;
    if key.der_bytes() != &*leaf.public_key().subject_public_key.data {
        return Err(Unfit::KeyMismatch);
    }
    if leaf.verify_signature(Some(ca.public_key())).is_err() {
        return Err(Unfit::NotSignedByCa);
    }
    let not_after = leaf
        .validity()
        .not_after
        .timestamp()
        .min(ca.validity().not_after.timestamp());
    if not_after <= now {
        return Err(Unfit::Expired { not_after });
    }
    if not_after - now <= renew_before.as_secs() as i64 {
        return Err(Unfit::ExpiresSoon { not_after });
    }
    let names: Vec<GeneralName> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let named = |host: &str| {
        names
            .iter()
            .any(|n| match (n, host.parse::<std::net::IpAddr>()) {
                (GeneralName::DNSName(d), Err(_)) => d.eq_ignore_ascii_case(host),
                (GeneralName::IPAddress(b), Ok(std::net::IpAddr::V4(ip))) => *b == ip.octets(),
                (GeneralName::IPAddress(b), Ok(std::net::IpAddr::V6(ip))) => *b == ip.octets(),
                _ => false,
            })
    };
    let missing: Vec<String> = hosts.iter().filter(|h| !named(h)).cloned().collect();
    if !missing.is_empty() {
        return Err(Unfit::WrongNames { missing });
    }
    Ok(())
}

/// When the serving certificate (or its CA) expires, Unix seconds.
pub fn not_after(cert: &ServingCert) -> Option<i64> {
    let leaf_pems = parse_pems(CERT_KEY, &cert.cert_pem).ok()?;
    let leaf = x509(CERT_KEY, leaf_pems.first()?).ok()?;
    Some(leaf.validity().not_after.timestamp())
}

fn offset(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| Error::Config(format!("certificate time {unix}: {e}")))
}

fn ca_params(now: i64) -> Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "datajob-webhook-ca");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = offset(now - 60)?;
    ca.not_after = offset(now + CA_VALIDITY.as_secs() as i64)?;
    Ok(ca)
}

/// A serving certificate for `hosts`, valid from `not_before` to `not_after` (Unix
/// seconds), signed by a fresh CA. Tests use the window to make expired certificates.
pub fn generate_between(hosts: &[String], not_before: i64, not_after: i64) -> Result<ServingCert> {
    let ca_key = KeyPair::generate()?;
    let ca = ca_params(not_before)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let (cert_pem, key_pem) = leaf(hosts, not_before, not_after, &issuer)?;
    Ok(ServingCert {
        ca_pem: ca_cert.pem(),
        cert_pem,
        key_pem,
        ca_key_pem: Some(ca_key_pem),
    })
}

fn leaf(
    hosts: &[String],
    not_before: i64,
    not_after: i64,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(hosts.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "datajob-webhook");
    leaf.not_before = offset(not_before - 60)?;
    leaf.not_after = offset(not_after)?;
    let cert = leaf.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificate that replaces `current` at `now`: a new serving certificate for the
/// policy's hosts, signed by the current CA when the operator has its key and the CA
/// outlives the new certificate by `renew_before`; otherwise by a new CA, with the old
/// CA kept in the bundle while it is valid (replicas that still serve the old
/// certificate stay trusted until they reload).
pub fn renewed(current: Option<&ServingCert>, policy: &Policy, now: i64) -> Result<ServingCert> {
    let leaf_until = now + policy.validity.as_secs() as i64;
    let reusable_ca = current.and_then(|c| {
        let key_pem = c.ca_key_pem.as_ref()?;
        let pems = parse_pems(CA_KEY, &c.ca_pem).ok()?;
        let ca = x509(CA_KEY, pems.first()?).ok()?;
        let ca_until = ca.validity().not_after.timestamp();
        let key = KeyPair::from_pem(key_pem).ok()?;
        (key.der_bytes() == &*ca.public_key().subject_public_key.data
            && ca_until - leaf_until > policy.renew_before.as_secs() as i64)
            .then(|| (c.ca_pem.clone(), key_pem.clone(), key))
    });
    if let Some((bundle, key_pem, key)) = reusable_ca {
        let issuer = Issuer::from_ca_cert_pem(
            bundle
                .split_inclusive("-----END CERTIFICATE-----")
                .next()
                .unwrap_or(&bundle),
            key,
        )?;
        let (cert_pem, key_pem_leaf) = leaf(&policy.hosts, now, leaf_until, &issuer)?;
        return Ok(ServingCert {
            ca_pem: bundle,
            cert_pem,
            key_pem: key_pem_leaf,
            ca_key_pem: Some(key_pem),
        });
    }
    let mut fresh = generate_between(&policy.hosts, now, leaf_until)?;
    // Keep the old CA while it can still vouch for a certificate some replica serves.
    if let Some(old) = current.and_then(|c| {
        let pems = parse_pems(CA_KEY, &c.ca_pem).ok()?;
        let first = x509(CA_KEY, pems.first()?).ok()?;
        (first.validity().not_after.timestamp() > now)
            .then(|| {
                c.ca_pem
                    .split_inclusive("-----END CERTIFICATE-----")
                    .next()
                    .map(str::to_string)
            })
            .flatten()
    }) {
        fresh.ca_pem = format!("{}{}\n", fresh.ca_pem, old.trim());
    }
    Ok(fresh)
}

/// The certificate stored in a Secret; `None` for a missing key (an empty Secret, as
/// the Helm chart creates it).
pub fn from_secret(secret: &Secret) -> ServingCert {
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    ServingCert {
        ca_pem: get(CA_KEY).unwrap_or_default(),
        cert_pem: get(CERT_KEY).unwrap_or_default(),
        key_pem: get(KEY_KEY).unwrap_or_default(),
        ca_key_pem: get(CA_PRIVATE_KEY).filter(|k| !k.trim().is_empty()),
    }
}

fn secret_data(cert: &ServingCert) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::from([
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
    if let Some(k) = &cert.ca_key_pem {
        data.insert(
            CA_PRIVATE_KEY.to_string(),
            ByteString(k.clone().into_bytes()),
        );
    }
    data
}

/// Who writes the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The operator makes and renews the certificate.
    Operator,
    /// cert-manager (or someone else) writes it; the operator only reads.
    External,
}

impl Source {
    pub(crate) fn parse(s: &str) -> Source {
        match s {
            "external" => Source::External,
            _ => Source::Operator,
        }
    }
}

/// What [`ensure`] found.
#[derive(Debug)]
pub(crate) struct Ensured {
    pub cert: ServingCert,
    /// Why the stored certificate was replaced, when it was.
    pub replaced: Option<Unfit>,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A certificate fit to serve, from the Secret `namespace/name`: the stored one when it
/// passes [`check`]; otherwise, with [`Source::Operator`], a renewed one written back
/// (create, or replace with the Secret's resourceVersion, so of two replicas renewing at
/// once one wins and the other reads its certificate). With [`Source::External`] an unfit
/// certificate is an error that says why.
pub(crate) async fn ensure(
    client: Client,
    namespace: &str,
    name: &str,
    source: Source,
    policy: &Policy,
) -> Result<Ensured> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    for _ in 0..3 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(Error::api("get", "Secret", namespace, name))?;
        let stored = existing.as_ref().map(from_secret);
        let problem = match &stored {
            Some(c) => match check(c, &policy.hosts, policy.renew_before, now_unix()) {
                Ok(()) => {
                    return Ok(Ensured {
                        cert: c.clone(),
                        replaced: None,
                    });
                }
                Err(p) => p,
            },
            None => Unfit::NoSecret,
        };
        if source == Source::External {
            return Err(Error::Config(format!(
                "webhook certificate in Secret {namespace}/{name}: {problem} (it is written by cert-manager or another tool: --webhook-cert external)"
            )));
        }
        let cert = renewed(stored.as_ref(), policy, now_unix())?;
        let written = match existing {
            None => {
                let obj = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY.to_string(),
                            MANAGED_BY_VALUE.to_string(),
                        )])),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(secret_data(&cert)),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &obj).await
            }
            Some(mut s) => {
                // Keep the Secret's identity (labels from Helm, its type) and replace the
                // data, conditional on the version we read.
                s.data = Some(secret_data(&cert));
                api.replace(name, &PostParams::default(), &s).await
            }
        };
        match written {
            Ok(_) => {
                info!(%namespace, secret = %name, reason = %problem, "wrote a new webhook certificate");
                return Ok(Ensured {
                    cert,
                    replaced: Some(problem),
                });
            }
            // Another replica wrote first: read its certificate.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(Error::api("write", "Secret", namespace, name)(e)),
        }
    }
    Err(Error::Config(format!(
        "webhook certificate in Secret {namespace}/{name}: other writers kept changing it; trying again later"
    )))
}

/// The ValidatingWebhookConfiguration `name` for DataJobs with the CA bundle. The Helm
/// chart renders the same object (charts/datajob/templates/webhook.yaml): keep them alike.
pub fn configuration(
    name: &str,
    endpoint: &Endpoint,
    ca_pem: &str,
    failure_policy: &str,
) -> ValidatingWebhookConfiguration {
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
    // No labels: the Helm chart owns the object's labels (`managed-by: Helm`); the
    // operator applying its own would flip them back and forth with every upgrade.
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: WEBHOOK_NAME.into(),
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
    }
}

/// Writes the ValidatingWebhookConfiguration `name` (server-side apply).
pub(crate) async fn register(
    client: Client,
    name: &str,
    endpoint: &Endpoint,
    ca_pem: &str,
    failure_policy: &str,
) -> Result<()> {
    let config = configuration(name, endpoint, ca_pem, failure_policy);
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&config),
    )
    .await
    .map_err(Error::api(
        "apply",
        "ValidatingWebhookConfiguration",
        "",
        name,
    ))?;
    info!(%name, ?endpoint, "webhook registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    fn hosts() -> Vec<String> {
        Endpoint::parse_service("datajob-system/datajob-webhook:443")
            .unwrap()
            .hosts()
    }

    fn policy() -> Policy {
        Policy {
            hosts: hosts(),
            validity: Duration::from_secs(365 * DAY as u64),
            renew_before: Duration::from_secs(30 * DAY as u64),
        }
    }

    #[test]
    fn certificates_cover_the_endpoint() {
        let e = Endpoint::parse_service("datajob-system/datajob-webhook:9443").unwrap();
        assert!(
            e.hosts()
                .contains(&"datajob-webhook.datajob-system.svc".to_string())
        );
        assert!(Endpoint::parse_service("no-slash").is_err());
        assert!(
            Endpoint::Url("https://10.1.2.3:9443".into())
                .hosts()
                .contains(&"10.1.2.3".to_string())
        );
    }

    #[test]
    fn a_fresh_certificate_is_fit_and_names_every_host() {
        let now = now_unix();
        let c = renewed(None, &policy(), now).unwrap();
        assert_eq!(check(&c, &hosts(), policy().renew_before, now), Ok(()));
        let until = not_after(&c).unwrap();
        assert!((until - (now + 365 * DAY)).abs() < 120, "{until}");
    }

    #[test]
    fn expired_expiring_misnamed_and_mismatched_certificates_are_unfit() {
        let now = now_unix();
        let renew = Duration::from_secs(30 * DAY as u64);
        let expired = generate_between(&hosts(), now - 10 * DAY, now - DAY).unwrap();
        assert!(matches!(
            check(&expired, &hosts(), renew, now),
            Err(Unfit::Expired { .. })
        ));
        let soon = generate_between(&hosts(), now - DAY, now + 2 * DAY).unwrap();
        assert!(matches!(
            check(&soon, &hosts(), renew, now),
            Err(Unfit::ExpiresSoon { .. })
        ));
        let other = generate_between(&["elsewhere.svc".to_string()], now, now + 90 * DAY).unwrap();
        match check(&other, &hosts(), renew, now) {
            Err(Unfit::WrongNames { missing }) => {
                assert!(missing.contains(&"datajob-webhook.datajob-system.svc".to_string()))
            }
            r => panic!("{r:?}"),
        }
        let good = generate_between(&hosts(), now, now + 90 * DAY).unwrap();
        let swapped_key = ServingCert {
            key_pem: other.key_pem.clone(),
            ..good.clone()
        };
        assert_eq!(
            check(&swapped_key, &hosts(), renew, now),
            Err(Unfit::KeyMismatch)
        );
        let foreign_ca = ServingCert {
            ca_pem: other.ca_pem.clone(),
            ..good.clone()
        };
        assert_eq!(
            check(&foreign_ca, &hosts(), renew, now),
            Err(Unfit::NotSignedByCa)
        );
        let empty = ServingCert {
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_key_pem: None,
        };
        assert_eq!(
            check(&empty, &hosts(), renew, now),
            Err(Unfit::Missing("ca.crt"))
        );
        let garbage = ServingCert {
            cert_pem: "not a certificate".into(),
            ..good
        };
        assert!(matches!(
            check(&garbage, &hosts(), renew, now),
            Err(Unfit::Unreadable(_))
        ));
        // Every reason reads as a sentence.
        assert!(
            Unfit::WrongNames {
                missing: vec!["a.svc".into()]
            }
            .to_string()
            .contains("a.svc")
        );
    }

    #[test]
    fn renewal_keeps_a_healthy_ca_so_the_ca_bundle_does_not_change() {
        let now = now_unix();
        let first = renewed(None, &policy(), now).unwrap();
        let later = now + 340 * DAY;
        assert!(matches!(
            check(&first, &hosts(), policy().renew_before, later),
            Err(Unfit::ExpiresSoon { .. })
        ));
        let second = renewed(Some(&first), &policy(), later).unwrap();
        assert_eq!(second.ca_pem, first.ca_pem);
        assert_ne!(second.cert_pem, first.cert_pem);
        assert_eq!(
            check(&second, &hosts(), policy().renew_before, later),
            Ok(())
        );
    }

    #[test]
    fn a_ca_without_its_key_is_replaced_and_kept_in_the_bundle_while_valid() {
        let now = now_unix();
        let mut external = renewed(None, &policy(), now).unwrap();
        external.ca_key_pem = None;
        let next = renewed(Some(&external), &policy(), now).unwrap();
        assert_ne!(next.ca_pem, external.ca_pem);
        assert!(next.ca_pem.contains(external.ca_pem.trim()), "old CA kept");
        assert_eq!(check(&next, &hosts(), policy().renew_before, now), Ok(()));
        // The old serving certificate is still trusted by the new bundle's second CA.
        let pems = parse_pems(CA_KEY, &next.ca_pem).unwrap();
        assert_eq!(pems.len(), 2);
    }

    #[test]
    fn the_configuration_matches_what_the_chart_renders() {
        let c = configuration(
            "datajob.dev",
            &Endpoint::parse_service("datajob-system/datajob-webhook").unwrap(),
            "CA",
            "Ignore",
        );
        let w = &c.webhooks.as_ref().unwrap()[0];
        assert_eq!(w.name, WEBHOOK_NAME);
        let svc = w.client_config.service.as_ref().unwrap();
        assert_eq!(svc.port, Some(443));
        assert_eq!(svc.path.as_deref(), Some("/validate-datajob"));
    }
}

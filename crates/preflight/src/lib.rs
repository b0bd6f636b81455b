//! Preflight: before any pod exists, does the image exist in its registry, do the
//! Secrets and ConfigMaps the spec reads exist and hold the keys it reads, does its
//! service account exist? The answers are **warnings**, never refusals (a tag, a Secret
//! or an account can be created after the DataJob): the webhook returns them to
//! `kubectl apply`, and `kubectl datajob plan` prints them.
//!
//! Failing open: a look-up that errs, is not permitted (the operator may not read
//! Secrets, see the chart's `preflight.secrets`), or takes longer than the time limit
//! says nothing. Answers are cached, so a registry that does not answer costs one wait.
//!
//! Which registries the operator may connect to is an allow-list ([`Registries`], see
//! `allow.rs`): a registry it may not reach answers as one that does not answer.
//!
//! What to look up and what to say are pure ([`references`], [`findings`]); the look-ups
//! are the edge ([`Preflight`], `registry.rs` for images).
mod allow;
mod registry;

pub use allow::{InvalidRegistry, PUBLIC_REGISTRIES, Registries, RegistryHost};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Client;
use kube::api::Api;
use serde::Deserialize;
use tracing::debug;

use datajob_api::DataJobSpec;

/// The most a preflight adds to an admission review or a plan.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// A key of a Secret or ConfigMap that the spec reads, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// The spec field that reads it, e.g. `spec.env[1]`.
    pub field: String,
    pub name: String,
    pub key: String,
}

/// What a spec needs to exist before its pod can start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub image: String,
    pub secrets: Vec<KeyRef>,
    pub config_maps: Vec<KeyRef>,
    /// `spec.serviceAccountName`, or `default` (whose image pull secrets apply).
    pub service_account: String,
    /// Whether the spec named the account (only then is a missing one the user's to fix).
    pub service_account_named: bool,
}

/// The objects and keys a spec reads. Optional references (`optional: true`) are left out:
/// a pod starts without them.
pub fn references(spec: &DataJobSpec) -> References {
    let mut r = References {
        image: spec.image.trim().to_string(),
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        service_account_named: spec.service_account_name.is_some(),
        ..Default::default()
    };
    for (i, env) in spec.env.iter().enumerate() {
        let Some(from) = &env.value_from else {
            continue;
        };
        if let Some(s) = &from.secret_key_ref
            && !s.optional.unwrap_or(false)
        {
            r.secrets.push(KeyRef {
                field: format!("spec.env[{i}]"),
                name: s.name.clone(),
                key: s.key.clone(),
            });
        }
        if let Some(c) = &from.config_map_key_ref
            && !c.optional.unwrap_or(false)
        {
            r.config_maps.push(KeyRef {
                field: format!("spec.env[{i}]"),
                name: c.name.clone(),
                key: c.key.clone(),
            });
        }
    }
    r
}

/// What a look-up found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    Found(T),
    Missing,
    /// Not known: an error, a refusal, a time-out. Says nothing.
    Unknown,
}

/// What the look-ups found for one spec.
#[derive(Clone, Debug, Default)]
pub(crate) struct Answers {
    /// The image: found, or missing with the registry's words.
    pub image: Option<Lookup<()>>,
    pub image_detail: String,
    /// By name: the keys each Secret holds.
    pub secrets: BTreeMap<String, Lookup<BTreeSet<String>>>,
    pub config_maps: BTreeMap<String, Lookup<BTreeSet<String>>>,
    pub service_account: Option<Lookup<()>>,
}

fn key_findings(
    kind: &str,
    refs: &[KeyRef],
    found: &BTreeMap<String, Lookup<BTreeSet<String>>>,
    namespace: &str,
    out: &mut Vec<String>,
) {
    for r in refs {
        match found.get(&r.name) {
            Some(Lookup::Missing) => out.push(format!(
                "{} reads {kind} {:?}, which does not exist in {namespace}: runs end MissingConfig until it is created",
                r.field, r.name
            )),
            Some(Lookup::Found(keys)) if !keys.contains(&r.key) => out.push(format!(
                "{} reads key {:?} of {kind} {:?}, which has no such key (it has: {})",
                r.field,
                r.key,
                r.name,
                match keys.is_empty() {
                    true => "none".to_string(),
                    false => keys.iter().cloned().collect::<Vec<_>>().join(", "),
                }
            )),
            _ => {}
        }
    }
}

/// The warnings for what was found: one sentence each, naming the field, the value and
/// what happens if nothing changes.
pub(crate) fn findings(refs: &References, answers: &Answers, namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    if answers.image == Some(Lookup::Missing) {
        out.push(format!(
            "spec.image {:?} was not found in its registry ({}): runs end ImageNotFound until it is pushed",
            refs.image, answers.image_detail
        ));
    }
    key_findings(
        "Secret",
        &refs.secrets,
        &answers.secrets,
        namespace,
        &mut out,
    );
    key_findings(
        "ConfigMap",
        &refs.config_maps,
        &answers.config_maps,
        namespace,
        &mut out,
    );
    if refs.service_account_named && answers.service_account == Some(Lookup::Missing) {
        out.push(format!(
            "spec.serviceAccountName {:?} does not exist in {namespace}: no pod can start until it is created",
            refs.service_account
        ));
    }
    out
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
}

/// The registry of an image reference as pull secrets name it (`docker.io` for short names).
pub(crate) fn registry_of(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match has_registry {
        true => first.to_string(),
        false => "docker.io".to_string(),
    }
}

/// An image reference split as the OCI client's parser splits it (the tests compare; that
/// parser's Unicode regex holds about 7 MiB for the life of the process, measured with
/// heaptrack under bench-scale). `None` for what is not an image reference. Docker Hub's
/// short names are completed as Docker completes them (`busybox` is `library/busybox`),
/// and the tag defaults to `latest` when there is no digest.
pub(crate) fn reference_of(image: &str) -> Option<registry::ImageRef> {
    if !datajob_core::validation::is_image_reference(image) {
        return None;
    }
    let (named, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last = named.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match named[last..].rfind(':') {
        Some(i) => (&named[..last + i], Some(named[last + i + 1..].to_string())),
        None => (named, None),
    };
    let mut registry = registry_of(name);
    let mut repository = match name.split_once('/') {
        Some((first, rest)) if first == registry => rest.to_string(),
        _ => name.to_string(),
    };
    if registry == "index.docker.io" {
        registry = "docker.io".into();
    }
    if registry == "docker.io" && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag,
    };
    Some(registry::ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// User and password for `registry` from a `.dockerconfigjson`, if it has them.
pub fn credentials(dockerconfigjson: &[u8], registry: &str) -> Option<(String, String)> {
    let config: DockerConfig = serde_json::from_slice(dockerconfigjson).ok()?;
    let host = |k: &str| {
        k.trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let wanted = |k: &str| {
        let h = host(k);
        h == registry
            || (registry == "docker.io" && (h == "index.docker.io" || h == "registry-1.docker.io"))
    };
    let entry = config.auths.iter().find(|(k, _)| wanted(k))?.1;
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Some((u.clone(), p.clone()));
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_ref()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[derive(Clone)]
enum Cached {
    Keys(Lookup<BTreeSet<String>>),
    Exists(Lookup<()>),
    Image(Lookup<()>, String),
    Credentials(Option<(String, String)>),
}

/// How long an answer is kept.
fn ttl(c: &Cached) -> Duration {
    match c {
        Cached::Image(Lookup::Found(_), _) => Duration::from_secs(300),
        Cached::Image(Lookup::Missing, _) => Duration::from_secs(30),
        Cached::Image(Lookup::Unknown, _) => Duration::from_secs(60),
        _ => Duration::from_secs(10),
    }
}

/// What the one who asks may read in the namespace: a warning tells nothing they could
/// not read themselves (a look-up they may not make is not made). The webhook asks the
/// apiserver (SubjectAccessReview) for the user a review names; `kubectl datajob plan`
/// looks up with the user's own credentials, so it may say everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readable {
    pub secrets: bool,
    pub config_maps: bool,
    pub service_accounts: bool,
}

impl Readable {
    /// Everything: for a caller whose own rights bound the look-ups.
    pub const ALL: Readable = Readable {
        secrets: true,
        config_maps: true,
        service_accounts: true,
    };

    /// Whether an image may be looked up with the namespace's image pull secrets (it
    /// reads the service account and its Secrets); without, anonymously, which tells
    /// only what anyone may ask the registry.
    pub fn pull_secrets(&self) -> bool {
        self.secrets && self.service_accounts
    }
}

/// The look-ups, with a cache shared by every review.
pub struct Preflight {
    client: Client,
    registry: registry::Registry,
    cache: Mutex<HashMap<String, (Instant, Cached)>>,
}

const MAX_CACHED: usize = 10_000;

impl Preflight {
    /// Look-ups through `client`; images only in the registries `allowed` lets it reach.
    pub fn new(client: Client, allowed: Registries) -> Self {
        Preflight {
            client,
            registry: registry::Registry::new(allowed),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        let cache = self.cache.lock().ok()?;
        let (at, c) = cache.get(key)?;
        (at.elapsed() < ttl(c)).then(|| c.clone())
    }

    fn remember(&self, key: String, c: Cached) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, c)| at.elapsed() < ttl(c));
            }
            if cache.len() < MAX_CACHED {
                cache.insert(key, (Instant::now(), c));
            }
        }
    }

    /// The warnings for a spec in `namespace`, within [`TIME_LIMIT`].
    pub async fn warnings(&self, namespace: &str, spec: &DataJobSpec) -> Vec<String> {
        self.warnings_for(namespace, spec, Readable::ALL).await
    }

    /// The warnings that tell only what `readable` allows: the look-ups of the rest
    /// are not made, and an image is looked up anonymously unless its pull secrets may
    /// be read.
    pub async fn warnings_for(
        &self,
        namespace: &str,
        spec: &DataJobSpec,
        readable: Readable,
    ) -> Vec<String> {
        let mut refs = references(spec);
        if !readable.secrets {
            refs.secrets.clear();
        }
        if !readable.config_maps {
            refs.config_maps.clear();
        }
        let answers = self.answers(namespace, &refs, readable).await;
        let mut shown = refs;
        shown.service_account_named &= readable.service_accounts;
        findings(&shown, &answers, namespace)
    }

    async fn answers(&self, ns: &str, refs: &References, readable: Readable) -> Answers {
        let secret_names: BTreeSet<&String> = refs.secrets.iter().map(|r| &r.name).collect();
        let map_names: BTreeSet<&String> = refs.config_maps.iter().map(|r| &r.name).collect();
        let secrets = futures::future::join_all(
            secret_names
                .into_iter()
                .map(|n| async move { (n.clone(), self.keys::<Secret>(ns, n).await) }),
        );
        let maps = futures::future::join_all(
            map_names
                .into_iter()
                .map(|n| async move { (n.clone(), self.keys::<ConfigMap>(ns, n).await) }),
        );
        let account = async {
            match readable.service_accounts && refs.service_account_named {
                true => Some(self.service_account(ns, &refs.service_account).await),
                false => None,
            }
        };
        let pull_as = readable
            .pull_secrets()
            .then_some(refs.service_account.as_str());
        let image = self.image(ns, &refs.image, pull_as);
        let (secrets, maps, account, (image, detail)) =
            futures::join!(secrets, maps, account, image);
        Answers {
            image: Some(image),
            image_detail: detail,
            secrets: secrets.into_iter().collect(),
            config_maps: maps.into_iter().collect(),
            service_account: account,
        }
    }

    /// The keys of a Secret or ConfigMap, if it can be read.
    async fn keys<K>(&self, ns: &str, name: &str) -> Lookup<BTreeSet<String>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + HasKeys,
    {
        let cache_key = format!("{}/{ns}/{name}", K::kind(&()));
        if let Some(Cached::Keys(l)) = self.cached(&cache_key) {
            return l;
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let l = match tokio::time::timeout(TIME_LIMIT, api.get_opt(name)).await {
            Ok(Ok(Some(o))) => Lookup::Found(o.key_names()),
            Ok(Ok(None)) => Lookup::Missing,
            Ok(Err(e)) => {
                debug!(error = %e, %ns, %name, "preflight: cannot read; says nothing");
                Lookup::Unknown
            }
            Err(_) => Lookup::Unknown,
        };
        self.remember(cache_key, Cached::Keys(l.clone()));
        l
    }

    async fn service_account(&self, ns: &str, name: &str) -> Lookup<()> {
        let cache_key = format!("ServiceAccount/{ns}/{name}");
        if let Some(Cached::Exists(l)) = self.cached(&cache_key) {
            return l;
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let l = match tokio::time::timeout(TIME_LIMIT, api.get_metadata_opt(name)).await {
            Ok(Ok(Some(_))) => Lookup::Found(()),
            Ok(Ok(None)) => Lookup::Missing,
            _ => Lookup::Unknown,
        };
        self.remember(cache_key, Cached::Exists(l.clone()));
        l
    }

    /// Credentials for the image's registry from the account's image pull secrets, when
    /// the operator may read them.
    async fn pull_credentials(
        &self,
        ns: &str,
        account: &str,
        registry: &str,
    ) -> Option<(String, String)> {
        let cache_key = format!("pull/{ns}/{account}/{registry}");
        if let Some(Cached::Credentials(c)) = self.cached(&cache_key) {
            return c;
        }
        let sa = Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .get_opt(account)
            .await
            .ok()
            .flatten();
        let secrets = Api::<Secret>::namespaced(self.client.clone(), ns);
        let mut found = None;
        for reference in sa.and_then(|s| s.image_pull_secrets).unwrap_or_default() {
            let Ok(Some(s)) = secrets.get_opt(&reference.name).await else {
                continue;
            };
            if let Some(c) = s
                .data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .and_then(|b| credentials(&b.0, registry))
            {
                found = Some(c);
                break;
            }
        }
        self.remember(cache_key, Cached::Credentials(found.clone()));
        found
    }

    /// Is the image's manifest in its registry? A HEAD on `/v2/<name>/manifests/<ref>`,
    /// with the pull secrets of `account` (`None`: anonymously).
    async fn image(&self, ns: &str, image: &str, account: Option<&str>) -> (Lookup<()>, String) {
        let cache_key = match account {
            Some(account) => format!("image/{ns}/{account}/{image}"),
            None => format!("image/anonymous/{image}"),
        };
        if let Some(Cached::Image(l, d)) = self.cached(&cache_key) {
            return (l, d);
        }
        let answer = tokio::time::timeout(TIME_LIMIT, async {
            let Some(reference) = reference_of(image) else {
                return (Lookup::Unknown, registry::NOT_REACHABLE.into());
            };
            let credentials = match account {
                Some(account) => {
                    self.pull_credentials(ns, account, &registry_of(image))
                        .await
                }
                None => None,
            };
            self.registry.exists(&reference, credentials).await
        })
        .await
        .unwrap_or((Lookup::Unknown, registry::NOT_REACHABLE.into()));
        debug!(%image, answer = ?answer, "preflight: image");
        self.remember(cache_key, Cached::Image(answer.0.clone(), answer.1.clone()));
        answer
    }
}

/// The key names of a Secret or ConfigMap.
pub(crate) trait HasKeys {
    fn key_names(&self) -> BTreeSet<String>;
}

impl HasKeys for Secret {
    fn key_names(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.data.iter().flat_map(|d| d.keys().cloned()).collect();
        keys.extend(self.string_data.iter().flat_map(|d| d.keys().cloned()));
        keys
    }
}

impl HasKeys for ConfigMap {
    fn key_names(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.data.iter().flat_map(|d| d.keys().cloned()).collect();
        keys.extend(self.binary_data.iter().flat_map(|d| d.keys().cloned()));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> DataJobSpec {
        serde_json::from_value(v).unwrap()
    }

    /// A cluster where every object is missing (404); it counts the requests it gets.
    pub(crate) fn missing_everything() -> (Client, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(404)
                        .header("Content-Type", "application/json")
                        .body(kube::client::Body::from(body.to_vec()))
                        .unwrap(),
                )
            }
        });
        (Client::new(service, "default"), asked)
    }

    /// Issue 25 item 1: a review whose user may read nothing in the namespace gets no
    /// fact about it, and the operator does not even look.
    #[tokio::test]
    async fn a_caller_who_may_read_nothing_learns_nothing_and_nothing_is_looked_up() {
        let dj = spec(serde_json::json!({
            // An image reference the registry check refuses unread: only the cluster's
            // objects are under test here.
            "image": "not a reference",
            "serviceAccountName": "runner",
            "env": [
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            ]
        }));
        let (client, asked) = missing_everything();
        let pf = Preflight::new(client, Registries::new(Vec::new()));
        let told = pf.warnings_for("team-b", &dj, Readable::default()).await;
        assert_eq!(told, Vec::<String>::new());
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed to read ConfigMaps only: that one fact, and one look-up.
        let maps = Readable {
            config_maps: true,
            ..Readable::default()
        };
        let told = pf.warnings_for("team-b", &dj, maps).await;
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("ConfigMap \"settings\""), "{told:?}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Everything: the Secret, the ConfigMap and the account.
        let (client, _) = missing_everything();
        let pf = Preflight::new(client, Registries::new(Vec::new()));
        let told = pf.warnings_for("team-b", &dj, Readable::ALL).await;
        assert_eq!(told.len(), 3, "{told:?}");
    }

    #[test]
    fn references_skip_optional_ones() {
        let r = references(&spec(serde_json::json!({
            "image": " 127.0.0.1:5000/x:1 ",
            "serviceAccountName": "runner",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "k", "optional": true}}},
                {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            ]
        })));
        assert_eq!(r.image, "127.0.0.1:5000/x:1");
        assert_eq!(
            r.secrets,
            vec![KeyRef {
                field: "spec.env[1]".into(),
                name: "db".into(),
                key: "password".into()
            }]
        );
        assert_eq!(r.config_maps[0].field, "spec.env[3]");
        assert_eq!(r.service_account, "runner");
        let d = references(&spec(serde_json::json!({"image": "busybox"})));
        assert_eq!(
            (d.service_account.as_str(), d.service_account_named),
            ("default", false)
        );
    }

    #[test]
    fn findings_name_the_field_the_value_and_what_happens() {
        let refs = references(&spec(serde_json::json!({
            "image": "127.0.0.1:5000/x:nope",
            "serviceAccountName": "runner",
            "env": [
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            ]
        })));
        let answers = Answers {
            image: Some(Lookup::Missing),
            image_detail: "manifest unknown".into(),
            secrets: BTreeMap::from([("db".into(), Lookup::Missing)]),
            config_maps: BTreeMap::from([(
                "settings".into(),
                Lookup::Found(BTreeSet::from(["other".to_string()])),
            )]),
            service_account: Some(Lookup::Missing),
        };
        let w = findings(&refs, &answers, "analytics");
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].starts_with("spec.image \"127.0.0.1:5000/x:nope\" was not found"));
        assert!(w[0].contains("ImageNotFound"));
        assert!(
            w[1].contains("spec.env[0] reads Secret \"db\", which does not exist in analytics")
        );
        assert!(
            w[2].contains("key \"mode\" of ConfigMap \"settings\"")
                && w[2].contains("it has: other")
        );
        assert!(w[3].starts_with("spec.serviceAccountName \"runner\" does not exist"));
        // Unknown answers (no permission, no answer) say nothing.
        let quiet = Answers {
            image: Some(Lookup::Unknown),
            secrets: BTreeMap::from([("db".into(), Lookup::Unknown)]),
            service_account: Some(Lookup::Found(())),
            ..Default::default()
        };
        assert!(findings(&refs, &quiet, "analytics").is_empty());
    }

    #[test]
    fn the_default_account_missing_is_not_the_users_to_fix() {
        let refs = references(&spec(serde_json::json!({"image": "busybox"})));
        let answers = Answers {
            service_account: Some(Lookup::Missing),
            ..Default::default()
        };
        assert!(findings(&refs, &answers, "ns").is_empty());
    }

    #[test]
    fn pull_credentials_are_read_for_the_images_registry() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("acme/churn:1"), "docker.io");
        assert_eq!(registry_of("ghcr.io/acme/churn:1"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5000/x:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn image_references_split_as_the_registry_client_splits_them() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for image in [
            "busybox".to_string(),
            "busybox:1.36".into(),
            "acme/churn:1".into(),
            "docker.io/busybox".into(),
            "index.docker.io/acme/churn".into(),
            "ghcr.io/acme/team/churn:v1.2-rc_3".into(),
            "127.0.0.1:5000/x".into(),
            "127.0.0.1:5000/x:1".into(),
            "localhost/x".into(),
            "localhost:5000/a/b".into(),
            format!("busybox@{digest}"),
            format!("registry.example:443/etl:2@{digest}"),
        ] {
            // The client's own parser is the reference (this test pays its 7 MiB).
            let theirs: oci_client::Reference = image.parse().unwrap();
            let ours = reference_of(&image).unwrap();
            assert_eq!(
                (
                    ours.registry.as_str(),
                    ours.repository.as_str(),
                    ours.tag.as_deref(),
                    ours.digest.as_deref()
                ),
                (
                    theirs.registry(),
                    theirs.repository(),
                    theirs.tag(),
                    theirs.digest()
                ),
                "{image}"
            );
        }
        for bad in ["", "Busybox", "a//b", "x:", "busybox@sha256:12"] {
            assert!(reference_of(bad).is_none(), "{bad}");
        }
        let cfg = br#"{"auths": {"https://ghcr.io": {"auth": "dXNlcjpwYXNz"}, "127.0.0.1:5000": {"username": "u", "password": "p"}, "https://index.docker.io/v1/": {"auth": "ZDpo"}}}"#;
        assert_eq!(
            credentials(cfg, "ghcr.io"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            credentials(cfg, "127.0.0.1:5000"),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            credentials(cfg, "docker.io"),
            Some(("d".into(), "h".into()))
        );
        assert_eq!(credentials(cfg, "quay.io"), None);
        assert_eq!(credentials(b"not json", "ghcr.io"), None);
    }
}

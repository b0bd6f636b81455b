//! Does an image's manifest exist in its registry: a HEAD on `/v2/<name>/manifests/<ref>`
//! (a GET only to read why a registry said 404), anonymous or with the pull secret's
//! credentials, through the Docker token flow.
//!
//! Every connection is held to the allow-list (`allow.rs`, issue 25 item 6): the URL is
//! checked before each request, the client follows no redirect and no token URL by
//! itself (both are followed here, after the same check), and its resolver drops the
//! addresses a host may not have, so the address connected to is the address checked
//! (no second look-up a DNS answer could change in between). A refusal, a failure and
//! no answer are one answer: [`NOT_REACHABLE`], which says nothing to the user.
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use tracing::{debug, warn};

use crate::allow::{Refused, Registries, is_public};
use crate::{Lookup, TIME_LIMIT};

/// What a look-up that got no usable answer says, whatever the reason: not on the list,
/// refused address, no connection, an error, no answer in time.
pub(crate) const NOT_REACHABLE: &str = "not reachable";

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// The most read of an error or token body.
const MAX_BODY: usize = 64 * 1024;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// An image reference, split (see `reference_of`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a look-up has no answer. Logged at debug; the user sees [`NOT_REACHABLE`].
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("not a URL: {0}")]
    Url(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("a redirect without a usable Location")]
    Location,
    #[error("credentials asked for ({0}) and none usable")]
    Unauthorized(String),
    #[error("no token in the answer of {0}")]
    NoToken(String),
    #[error("answer of more than {MAX_BODY} bytes")]
    TooLarge,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("the registry says: {0}")]
    Says(String),
    #[error("the registry client could not be built")]
    NoClient,
}

/// A resolver that keeps only the addresses a name may have: any for a named host, public
/// ones otherwise. IP literals never reach it; `Registries::check` judges them.
struct Guarded(Arc<Registries>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.0.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let any = allowed.any_address(&name);
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| any || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                debug!(%name, addresses = ?all, "preflight: no address the registry may have");
                return Err(Box::new(Refused::Internal(name)) as Box<_>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The registry client, shared by every look-up.
pub(crate) struct Registry {
    http: Option<reqwest::Client>,
    allowed: Arc<Registries>,
}

impl Registry {
    pub(crate) fn new(allowed: Registries) -> Self {
        // reqwest takes the process's TLS crypto; ring unless one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let allowed = Arc::new(allowed);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Guarded(allowed.clone())))
            .connect_timeout(TIME_LIMIT)
            .read_timeout(TIME_LIMIT)
            .user_agent(concat!("datajob-preflight/", env!("CARGO_PKG_VERSION")))
            .build()
            .inspect_err(
                |e| warn!(error = %e, "preflight: no registry client; images are not looked up"),
            )
            .ok();
        Registry { http, allowed }
    }

    /// Is the manifest there? `credentials` are those of the image's registry; they go to
    /// it and to the token service it names, never across a redirect to another host.
    pub(crate) async fn exists(
        &self,
        image: &ImageRef,
        credentials: Option<(String, String)>,
    ) -> (Lookup<()>, String) {
        match self.look(image, credentials).await {
            Ok(answer) => answer,
            Err(why) => {
                debug!(image = ?image, %why, "preflight: registry not reached");
                (Lookup::Unknown, NOT_REACHABLE.into())
            }
        }
    }

    async fn look(
        &self,
        image: &ImageRef,
        mut credentials: Option<(String, String)>,
    ) -> Result<(Lookup<()>, String), Failure> {
        let http = self.http.as_ref().ok_or(Failure::NoClient)?;
        let mut url = manifest_url(image)?;
        let mut method = Method::HEAD;
        let mut authorization: Option<HeaderValue> = None;
        let mut authorized = false;
        let mut redirects = 0;
        loop {
            self.allowed.check(&url)?;
            let mut request = http
                .request(method.clone(), url.clone())
                .header(ACCEPT, MANIFEST_TYPES);
            if let Some(a) = &authorization {
                request = request.header(AUTHORIZATION, a.clone());
            }
            let response = request.send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok((Lookup::Found(()), String::new()));
            }
            if status.is_redirection() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(Failure::Redirects);
                }
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or(Failure::Location)?;
                if next.origin() != url.origin() {
                    // Another host: what was for the first stays with it.
                    authorization = None;
                    credentials = None;
                    authorized = false;
                }
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !authorized {
                authorized = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                authorization = Some(
                    self.authorize(http, &challenge, image, credentials.as_ref())
                        .await?,
                );
                continue;
            }
            if status == StatusCode::NOT_FOUND && method == Method::HEAD {
                // A HEAD has no body: ask again for the registry's words.
                method = Method::GET;
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                let body = read(response).await?;
                return match errors_of(&body) {
                    None => Ok((Lookup::Missing, "HTTP 404".into())),
                    Some((true, words)) => Ok((Lookup::Missing, words)),
                    Some((false, words)) => Err(Failure::Says(words)),
                };
            }
            return Err(Failure::Status(status.as_u16()));
        }
    }

    /// The `Authorization` that answers a registry's challenge: Basic with the
    /// credentials, or a Bearer token from the token service it names (after the same
    /// check as every URL; no redirect followed there).
    async fn authorize(
        &self,
        http: &reqwest::Client,
        challenge: &str,
        image: &ImageRef,
        credentials: Option<&(String, String)>,
    ) -> Result<HeaderValue, Failure> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = |(u, p): &(String, String)| {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| Failure::Unauthorized("credentials".into()))
        };
        match scheme.as_str() {
            "basic" => credentials
                .map(basic)
                .unwrap_or_else(|| Err(Failure::Unauthorized("basic".into()))),
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| Failure::Unauthorized("bearer without realm".into()))?;
                let mut token_url =
                    Url::parse(realm).map_err(|_| Failure::Url(realm.to_string()))?;
                let scope = format!("repository:{}:pull", image.repository);
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                        q.append_pair("service", service);
                    }
                    match params.iter().find(|(k, _)| k == "scope") {
                        Some((_, s)) => q.append_pair("scope", s),
                        None => q.append_pair("scope", &scope),
                    };
                }
                self.allowed.check(&token_url)?;
                let mut request = http.get(token_url.clone());
                if let Some(c) = credentials {
                    request = request.header(AUTHORIZATION, basic(c)?);
                }
                let response = request.send().await?;
                if !response.status().is_success() {
                    return Err(Failure::Status(response.status().as_u16()));
                }
                let body = read(response).await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&body)
                    .map_err(|_| Failure::NoToken(token_url.to_string()))?;
                let token = token
                    .token
                    .or(token.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Failure::NoToken(token_url.to_string()))?;
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Failure::NoToken(token_url.to_string()))
            }
            other => Err(Failure::Unauthorized(other.to_string())),
        }
    }
}

/// `<scheme>://<registry>/v2/<repository>/manifests/<digest or tag>`: HTTPS, or plain
/// HTTP on this host; Docker Hub's API is at `index.docker.io`.
fn manifest_url(image: &ImageRef) -> Result<Url, Failure> {
    let host = match image.registry.as_str() {
        "docker.io" => "index.docker.io",
        other => other,
    };
    let reference = image
        .digest
        .as_deref()
        .or(image.tag.as_deref())
        .unwrap_or("latest");
    let path = format!("{host}/v2/{}/manifests/{reference}", image.repository);
    let url = Url::parse(&format!("https://{path}")).map_err(|_| Failure::Url(path.clone()))?;
    match url.host().map(|h| crate::allow::is_loopback(&h)) {
        Some(true) => Url::parse(&format!("http://{path}")).map_err(|_| Failure::Url(path)),
        _ => Ok(url),
    }
}

/// The body, up to [`MAX_BODY`].
async fn read(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(Failure::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A distribution error envelope: whether it says the manifest or repository is unknown,
/// and its words. `None` when the body is no envelope.
fn errors_of(body: &[u8]) -> Option<(bool, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    if envelope.errors.is_empty() {
        return None;
    }
    let unknown = envelope
        .errors
        .iter()
        .any(|e| e.code == "MANIFEST_UNKNOWN" || e.code == "NAME_UNKNOWN");
    let words: Vec<&str> = envelope
        .errors
        .iter()
        .map(|e| match e.message.is_empty() {
            true => e.code.as_str(),
            false => e.message.as_str(),
        })
        .collect();
    Some((unknown, words.join(", ")))
}

/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`: the
/// scheme (lower case) and its parameters (keys lower case, quotes removed).
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string();
        }
        params.push((key, value));
    }
    (scheme.to_ascii_lowercase(), params)
}

#[cfg(test)]
mod tests;

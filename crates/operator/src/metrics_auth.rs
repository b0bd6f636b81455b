//! Who may read `/metrics` when it is served securely (`--metrics-secure`): what
//! controller-runtime's `filters.WithAuthenticationAndAuthorization` and kube-rbac-proxy
//! do. A scrape carries a bearer token; the apiserver says whose it is (a TokenReview,
//! `authentication.k8s.io/v1`) and whether that user may `get` the non-resource URL
//! `/metrics` (a SubjectAccessReview, `authorization.k8s.io/v1`). No token or one the
//! apiserver does not accept: 401; a user without the permission: 403; else 200.
//!
//! Answers are cached by a hash of the token (allowed for [`ALLOWED_TTL`], refused for
//! [`DENIED_TTL`], at most [`CACHE_CAPACITY`] tokens), so a Prometheus scraping every
//! 15 s costs two API calls every other scrape, not every scrape.
//!
//! Everything here is pure: reading the header, the review requests, what their answers
//! mean and the cache. The calls to the apiserver and the HTTPS server are the edge
//! (`admin::serve_secure`).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use k8s_openapi::api::authentication::v1::{
    TokenReview, TokenReviewSpec, TokenReviewStatus, UserInfo,
};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The non-resource URL a scraper must be allowed to `get`.
pub const PATH: &str = "/metrics";
/// The verb it must be allowed.
pub const VERB: &str = "get";
/// How long an allowed token is let in without asking again.
pub const ALLOWED_TTL: Duration = Duration::from_secs(30);
/// How long a refused token (unknown, or not allowed) is refused without asking again.
pub const DENIED_TTL: Duration = Duration::from_secs(10);
/// How many tokens the cache remembers.
pub const CACHE_CAPACITY: usize = 1024;
/// A longer `Authorization` value is refused unread (a service account token is ~1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a request carries no usable bearer token: each is a 401.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no Authorization header")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme in any
/// case, as Kubernetes reads it).
pub fn bearer_token(header: Option<&[u8]>) -> Result<&str, TokenError> {
    let raw = header.ok_or(TokenError::Missing)?;
    if raw.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err(TokenError::TooLong);
    }
    let value = std::str::from_utf8(raw).map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = value
        .trim()
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(TokenError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(TokenError::NotBearer);
    }
    Ok(token)
}

/// What a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The token is a user's who may `get` `/metrics`.
    Allowed,
    /// The token is a user's who may not.
    Forbidden,
    /// No token, or one the apiserver does not accept.
    Unauthenticated,
}

impl Decision {
    pub fn status(self) -> StatusCode {
        match self {
            Decision::Allowed => StatusCode::OK,
            Decision::Forbidden => StatusCode::FORBIDDEN,
            Decision::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// How long the cache keeps it.
    pub fn ttl(self) -> Duration {
        match self {
            Decision::Allowed => ALLOWED_TTL,
            Decision::Forbidden | Decision::Unauthenticated => DENIED_TTL,
        }
    }
}

/// The TokenReview that asks whose `token` is (for the apiserver's own audiences, as a
/// service account token from the TokenRequest API or a projected volume has them).
pub fn token_review(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: None,
        },
        ..Default::default()
    }
}

/// Who the TokenReview's answer says the token belongs to; [`Decision::Unauthenticated`]
/// when the apiserver did not authenticate it or named nobody.
pub fn authenticated(status: Option<&TokenReviewStatus>) -> Result<&UserInfo, Decision> {
    let status = status.ok_or(Decision::Unauthenticated)?;
    if status.authenticated != Some(true) {
        return Err(Decision::Unauthenticated);
    }
    status
        .user
        .as_ref()
        .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
        .ok_or(Decision::Unauthenticated)
}

/// The SubjectAccessReview that asks whether `user` (with its groups, uid and extra, as
/// the TokenReview gave them) may `get` `/metrics`.
pub fn access_review(user: &UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(PATH.into()),
                verb: Some(VERB.into()),
            }),
            resource_attributes: None,
        },
        ..Default::default()
    }
}

/// What the SubjectAccessReview's answer means: allowed, or (denied, no opinion, no
/// answer) forbidden.
pub fn authorized(status: Option<&SubjectAccessReviewStatus>) -> Decision {
    match status {
        Some(s) if s.allowed && s.denied != Some(true) => Decision::Allowed,
        _ => Decision::Forbidden,
    }
}

/// A token as the cache knows it: its SHA-256, so the cache holds no token.
pub type Key = [u8; 32];

pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// Recent decisions by token, each until it expires; at most `capacity` of them.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<Key, (Decision, Instant)>,
    capacity: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(CACHE_CAPACITY)
    }
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The decision on `key` if it has not expired at `now`.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Decision> {
        match self.entries.get(key) {
            Some((d, until)) if now < *until => Some(*d),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `decision` on `key` from `now` for its [`Decision::ttl`]. When full,
    /// expired entries go first, then the one that would expire soonest.
    pub fn put(&mut self, key: Key, decision: Decision, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, until)| now < *until);
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (decision, now + decision.ttl()));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_token_is_read_from_a_bearer_authorization_header() {
        assert_eq!(bearer_token(Some(b"Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer_token(Some(b"bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some(b"BEARER   abc  ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(TokenError::Missing));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer    ",
            b"Basic dXNlcjpwYXNz",
            b"abc",
            b"Bearer a b",
            b"Bearer a\tb",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(
                bearer_token(Some(bad)),
                Err(TokenError::NotBearer),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("Bearer {}", "x".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(
            bearer_token(Some(long.as_bytes())),
            Err(TokenError::TooLong)
        );
        let longest = format!("Bearer {}", "x".repeat(MAX_TOKEN_BYTES));
        assert!(bearer_token(Some(longest.as_bytes())).is_ok());
    }

    #[test]
    fn decisions_are_http_statuses() {
        assert_eq!(Decision::Allowed.status(), StatusCode::OK);
        assert_eq!(Decision::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(Decision::Unauthenticated.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Decision::Allowed.ttl(), Duration::from_secs(30));
        assert_eq!(Decision::Forbidden.ttl(), Duration::from_secs(10));
        assert_eq!(Decision::Unauthenticated.ttl(), Duration::from_secs(10));
    }

    fn user() -> UserInfo {
        UserInfo {
            username: Some("system:serviceaccount:monitoring:prometheus".into()),
            uid: Some("1234".into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:monitoring".into(),
                "system:authenticated".into(),
            ]),
            extra: Some(BTreeMap::from([(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec!["prometheus-0".to_string()],
            )])),
        }
    }

    #[test]
    fn only_an_authenticated_review_with_a_user_names_someone() {
        assert_eq!(authenticated(None), Err(Decision::Unauthenticated));
        let refused = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..Default::default()
        };
        assert_eq!(
            authenticated(Some(&refused)),
            Err(Decision::Unauthenticated)
        );
        let silent = TokenReviewStatus::default();
        assert_eq!(authenticated(Some(&silent)), Err(Decision::Unauthenticated));
        let nobody = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(UserInfo {
                username: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(authenticated(Some(&nobody)), Err(Decision::Unauthenticated));
        let ok = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(user()),
            ..Default::default()
        };
        assert_eq!(authenticated(Some(&ok)), Ok(&user()));
    }

    #[test]
    fn the_reviews_ask_about_the_token_and_get_on_the_metrics_url_for_the_whole_user() {
        let t = token_review("tok");
        assert_eq!(t.spec.token, "tok");
        assert_eq!(t.spec.audiences, None);
        let a = access_review(&user());
        let s = &a.spec;
        assert_eq!(
            s.user.as_deref(),
            Some("system:serviceaccount:monitoring:prometheus")
        );
        assert_eq!(s.uid.as_deref(), Some("1234"));
        assert_eq!(s.groups, user().groups);
        assert_eq!(s.extra, user().extra);
        assert_eq!(
            s.non_resource_attributes,
            Some(NonResourceAttributes {
                path: Some("/metrics".into()),
                verb: Some("get".into()),
            })
        );
        assert!(s.resource_attributes.is_none());
        // What the apiserver is sent: the v1 kinds.
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(json["kind"], "SubjectAccessReview");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(json["kind"], "TokenReview");
    }

    #[test]
    fn only_an_allowed_access_review_allows() {
        let allowed = SubjectAccessReviewStatus {
            allowed: true,
            ..Default::default()
        };
        assert_eq!(authorized(Some(&allowed)), Decision::Allowed);
        let no_opinion = SubjectAccessReviewStatus::default();
        assert_eq!(authorized(Some(&no_opinion)), Decision::Forbidden);
        let denied = SubjectAccessReviewStatus {
            allowed: false,
            denied: Some(true),
            reason: Some("no".into()),
            ..Default::default()
        };
        assert_eq!(authorized(Some(&denied)), Decision::Forbidden);
        let contradictory = SubjectAccessReviewStatus {
            allowed: true,
            denied: Some(true),
            ..Default::default()
        };
        assert_eq!(authorized(Some(&contradictory)), Decision::Forbidden);
        assert_eq!(authorized(None), Decision::Forbidden);
    }

    #[test]
    fn the_cache_keys_by_hash_and_forgets_allowed_after_30s_and_refused_after_10s() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        let (a, f, u) = (key("allowed"), key("forbidden"), key("garbage"));
        assert_ne!(a, f);
        assert_eq!(a, key("allowed"));
        assert_eq!(c.get(&a, t0), None);
        c.put(a, Decision::Allowed, t0);
        c.put(f, Decision::Forbidden, t0);
        c.put(u, Decision::Unauthenticated, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A scrape every 15 s: the second one is answered from the cache.
        assert_eq!(c.get(&a, at(15)), Some(Decision::Allowed));
        assert_eq!(c.get(&f, at(9)), Some(Decision::Forbidden));
        assert_eq!(c.get(&u, at(9)), Some(Decision::Unauthenticated));
        assert_eq!(c.get(&f, at(10)), None);
        assert_eq!(c.get(&u, at(10)), None);
        assert_eq!(c.get(&a, at(29)), Some(Decision::Allowed));
        assert_eq!(c.get(&a, at(30)), None);
        assert!(c.is_empty(), "expired entries are dropped when read");
        // A new answer replaces the old one, and its time starts again.
        c.put(a, Decision::Forbidden, at(40));
        assert_eq!(c.get(&a, at(45)), Some(Decision::Forbidden));
        c.put(a, Decision::Allowed, at(46));
        assert_eq!(c.get(&a, at(70)), Some(Decision::Allowed));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_the_soonest_to_expire() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = Cache::new(3);
        c.put(key("a"), Decision::Allowed, t0); // until 30
        c.put(key("b"), Decision::Forbidden, t0); // until 10
        c.put(key("c"), Decision::Allowed, at(5)); // until 35
        // Full at 12: b expired, so it makes room and a and c stay.
        c.put(key("d"), Decision::Allowed, at(12)); // until 42
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("a"), at(12)), Some(Decision::Allowed));
        assert_eq!(c.get(&key("c"), at(12)), Some(Decision::Allowed));
        assert_eq!(c.get(&key("d"), at(12)), Some(Decision::Allowed));
        // Full at 13 with nothing expired: a (until 30) is the soonest and goes.
        c.put(key("e"), Decision::Forbidden, at(13)); // until 23
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("a"), at(13)), None);
        assert_eq!(c.get(&key("e"), at(13)), Some(Decision::Forbidden));
        // Updating a known key never evicts another.
        c.put(key("c"), Decision::Allowed, at(14));
        assert_eq!(c.len(), 3);
        // Many tokens never make it grow beyond its capacity.
        let mut big = Cache::new(16);
        for i in 0..1000 {
            big.put(key(&i.to_string()), Decision::Unauthenticated, t0);
            assert!(big.len() <= 16);
        }
        assert_eq!(Cache::new(0).capacity, 1);
    }
}

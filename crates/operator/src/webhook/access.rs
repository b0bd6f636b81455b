//! What the user an admission review names may read in the review's namespace, so that
//! the webhook's answer tells nothing more (issue 25, item 1).
//!
//! Any pod that reaches the webhook's port can post a review of its own making, naming
//! any namespace. Its answer used to say which ConfigMap and Secret keys exist, whether
//! a service account exists and whether the DataJobs named as inputs exist. Now each of
//! those facts is looked up, and told, only when the review's user may `get` that kind
//! in that namespace (a SubjectAccessReview per kind, answers cached briefly). When the
//! apiserver cannot say (an error, a time-out), the answer is no: say less.
//!
//! A forger who claims the name of a user with those rights is not stopped here (a
//! review carries no proof of who sent it): the chart's NetworkPolicy
//! (`networkPolicy.webhookFrom`) keeps the port for the apiserver.
//!
//! What to ask and what the answers mean are pure ([`reviews`], [`rights`]); the calls
//! are [`Access::rights_of`].
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datajob_preflight::Readable;
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tracing::debug;

/// How long an answer is remembered (a `kubectl apply -f dir/` of many DataJobs asks once).
pub const TTL: Duration = Duration::from_secs(10);
/// How many (user, namespace) answers are remembered.
pub const CAPACITY: usize = 1024;

/// What a review's answer may tell about its namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// Secrets, ConfigMaps and ServiceAccounts: the preflight's look-ups.
    pub readable: Readable,
    /// DataJobs: whether the inputs a spec names exist.
    pub datajobs: bool,
}

impl Rights {
    /// All of it: no client to ask with (the webhook's own tests), or nothing to hide.
    pub const ALL: Rights = Rights {
        readable: Readable::ALL,
        datajobs: true,
    };
}

/// The kinds asked about, in the order of [`rights`]: (API group, resource).
pub const KINDS: [(&str, &str); 4] = [
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("datajob.dev", "datajobs"),
];

/// The SubjectAccessReviews for `user` in `namespace`: may they `get` each of [`KINDS`]?
pub fn reviews(user: &UserInfo, namespace: &str) -> Vec<SubjectAccessReview> {
    KINDS
        .iter()
        .map(|(group, resource)| SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some("get".into()),
                    group: Some((*group).to_string()),
                    resource: Some((*resource).to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

/// The rights the answers say, one per [`KINDS`] (`None`: not known, so no).
pub fn rights(allowed: &[Option<bool>]) -> Rights {
    let yes = |i: usize| allowed.get(i).copied().flatten().unwrap_or(false);
    Rights {
        readable: Readable {
            secrets: yes(0),
            config_maps: yes(1),
            service_accounts: yes(2),
        },
        datajobs: yes(3),
    }
}

/// The cache's key: who, as the review names them, and where.
fn key(user: &UserInfo, namespace: &str) -> String {
    let mut groups = user.groups.clone().unwrap_or_default();
    groups.sort();
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{namespace}",
        user.username.as_deref().unwrap_or_default(),
        user.uid.as_deref().unwrap_or_default(),
        groups.join(",")
    )
}

/// Asks the apiserver, and remembers the answers for [`TTL`].
pub struct Access {
    client: kube::Client,
    cache: Mutex<HashMap<String, (Instant, Rights)>>,
}

impl Access {
    pub fn new(client: kube::Client) -> Self {
        Access {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// What `user` may read in `namespace`, asked within `limit`; what is not answered
    /// in time is a no (and is not remembered).
    pub async fn rights_of(&self, user: &UserInfo, namespace: &str, limit: Duration) -> Rights {
        let key = key(user, namespace);
        if let Some(r) = self.cached(&key) {
            return r;
        }
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let asks = reviews(user, namespace).into_iter().map(|review| {
            let api = api.clone();
            async move {
                match api.create(&PostParams::default(), &review).await {
                    Ok(answer) => answer
                        .status
                        .map(|s| s.allowed && !s.denied.unwrap_or(false)),
                    Err(e) => {
                        debug!(error = %e, "webhook: a SubjectAccessReview failed; saying less");
                        None
                    }
                }
            }
        });
        let Ok(allowed) = tokio::time::timeout(limit, futures::future::join_all(asks)).await else {
            return Rights::default();
        };
        let r = rights(&allowed);
        if allowed.iter().all(Option::is_some) {
            self.remember(key, r);
        }
        r
    }

    fn cached(&self, key: &str) -> Option<Rights> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, r) = cache.get(key)?;
        (at.elapsed() < TTL).then_some(*r)
    }

    fn remember(&self, key: String, r: Rights) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CAPACITY {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        if cache.len() < CAPACITY {
            cache.insert(key, (Instant::now(), r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: Some(name.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn one_review_per_kind_for_the_user_the_review_names_in_its_namespace() {
        let asks = reviews(&user("ana", &["team-a"]), "team-b");
        assert_eq!(asks.len(), KINDS.len());
        for (ask, (group, resource)) in asks.iter().zip(KINDS) {
            assert_eq!(ask.spec.user.as_deref(), Some("ana"));
            assert_eq!(ask.spec.groups, Some(vec!["team-a".to_string()]));
            let attrs = ask.spec.resource_attributes.as_ref().unwrap();
            assert_eq!(attrs.namespace.as_deref(), Some("team-b"));
            assert_eq!(attrs.verb.as_deref(), Some("get"));
            assert_eq!(attrs.group.as_deref(), Some(group));
            assert_eq!(attrs.resource.as_deref(), Some(resource));
        }
    }

    #[test]
    fn what_is_not_answered_is_a_no() {
        assert_eq!(rights(&[]), Rights::default());
        let r = rights(&[Some(false), Some(true), None, Some(true)]);
        assert_eq!(
            r,
            Rights {
                readable: Readable {
                    secrets: false,
                    config_maps: true,
                    service_accounts: false,
                },
                datajobs: true,
            }
        );
        assert_eq!(rights(&[Some(true); 4]), Rights::ALL);
    }

    #[test]
    fn the_cache_tells_users_groups_and_namespaces_apart() {
        let a = key(&user("ana", &["x", "y"]), "ns");
        assert_eq!(a, key(&user("ana", &["y", "x"]), "ns"));
        assert_ne!(a, key(&user("ana", &["x"]), "ns"));
        assert_ne!(a, key(&user("ana", &["x", "y"]), "other"));
        assert_ne!(a, key(&user("ben", &["x", "y"]), "ns"));
    }
}

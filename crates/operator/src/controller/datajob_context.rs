//! What the DataJob reconciler keeps between reconciles: its caches and how far each
//! DataJob's missed schedules were counted. A leaf of the controller: the reconciler
//! (`datajob.rs`) and the run lifecycle (`lifecycle.rs`) both read it.
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;

use super::Context;
use datajob_api::{DataJob, NodeGroup};

pub struct DataJobContext {
    pub base: Context,
    /// How far each DataJob's missed schedules were counted.
    pub missed_counted: Mutex<MissedCounted>,
    /// Every NodeGroup, for placement.
    pub groups: Store<NodeGroup>,
    /// Every Job DataJob manages, trimmed of managed fields.
    pub jobs: Store<Job>,
    /// Every pod of a run, to say why a failed run's last attempt died.
    pub pods: Store<Pod>,
    /// Every DataJob (the cache every replica keeps for admission): the inputs of a
    /// DataJob, and what they published.
    pub datajobs: Store<DataJob>,
}

/// Per DataJob, which generation of its spec this process follows, since when, and up to
/// when its missed schedules were counted. A spec change (a new schedule, `suspend`)
/// starts afresh. In memory: a new leader counts the slots due after it started
/// following them that run out of time while it leads.
#[derive(Default)]
pub struct MissedCounted {
    followed: HashMap<(String, String), Followed>,
    pruned: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy)]
struct Followed {
    generation: Option<i64>,
    since: DateTime<Utc>,
    counted_to: DateTime<Utc>,
}

impl MissedCounted {
    /// Records that `key` is counted up to `now`; returns (since, counted up to before),
    /// or `None` when this generation is seen for the first time.
    pub fn advance(
        &mut self,
        key: (String, String),
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        // Every DataJob is reconciled at least every 5 minutes: entries older than an
        // hour belong to deleted DataJobs.
        let hour = chrono::Duration::hours(1);
        if self.pruned.is_none_or(|t| now - t > hour) {
            self.followed.retain(|_, f| now - f.counted_to < hour);
            self.pruned = Some(now);
        }
        let previous = self
            .followed
            .get(&key)
            .copied()
            .filter(|f| f.generation == generation);
        let since = previous.map_or(now, |f| f.since);
        self.followed.insert(
            key,
            Followed {
                generation,
                since,
                counted_to: now,
            },
        );
        previous.map(|f| (f.since, f.counted_to))
    }
}

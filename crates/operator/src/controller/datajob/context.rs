//! What the DataJob reconciler keeps between reconciles: its caches and how far each
//! DataJob's missed schedules were counted.
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;

use crate::controller::Context;
use datajob_api::{DataJob, NodeGroup};

pub(crate) struct DataJobContext {
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
pub(crate) struct MissedCounted {
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
    /// What [`MissedCounted::advance`] would return now, without recording anything:
    /// (since, counted up to before), or `None` when this generation is seen for the
    /// first time (or its entry is old enough to be pruned first).
    pub(crate) fn peek(
        &self,
        key: &(String, String),
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let prunes = self.pruned.is_none_or(|t| now - t > PRUNE_AFTER);
        self.followed
            .get(key)
            .filter(|f| f.generation == generation)
            .filter(|f| !(prunes && now - f.counted_to >= PRUNE_AFTER))
            .map(|f| (f.since, f.counted_to))
    }

    /// Records that `key` is counted up to `now`; returns (since, counted up to before),
    /// or `None` when this generation is seen for the first time.
    pub(crate) fn advance(
        &mut self,
        key: (String, String),
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let previous = self.peek(&key, generation, now);
        // Every DataJob is reconciled at least every 5 minutes: entries older than an
        // hour belong to deleted DataJobs.
        if self.pruned.is_none_or(|t| now - t > PRUNE_AFTER) {
            self.followed
                .retain(|_, f| now - f.counted_to < PRUNE_AFTER);
            self.pruned = Some(now);
        }
        let since = previous.map_or(now, |(since, _)| since);
        self.followed.insert(
            key,
            Followed {
                generation,
                since,
                counted_to: now,
            },
        );
        previous
    }
}

/// Entries not counted for this long are dropped.
const PRUNE_AFTER: chrono::Duration = chrono::Duration::hours(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn peek_says_what_advance_returns_and_changes_nothing() {
        let key = ("data".to_string(), "nightly".to_string());
        let mut counted = MissedCounted::default();
        let times = [
            (Some(1), "2026-12-01T00:00:00Z"),
            (Some(1), "2026-12-01T00:05:00Z"),
            // the spec changed: afresh
            (Some(2), "2026-12-01T00:06:00Z"),
            (Some(2), "2026-12-01T00:10:00Z"),
            // not looked at for over an hour: pruned, afresh
            (Some(2), "2026-12-01T01:30:00Z"),
            (Some(2), "2026-12-01T01:31:00Z"),
        ];
        let mut seen = Vec::new();
        for (generation, at) in times {
            let now = t(at);
            let peeked = counted.peek(&key, generation, now);
            assert_eq!(counted.peek(&key, generation, now), peeked);
            assert_eq!(counted.advance(key.clone(), generation, now), peeked);
            seen.push(peeked.is_some());
        }
        assert_eq!(seen, [false, true, false, true, false, true]);
    }
}

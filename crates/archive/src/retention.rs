//! Which archived logs go: those of runs older than the age limit, and those of a
//! DataJob's runs beyond the newest `max_runs`. A run goes whole (all its attempts and
//! containers), judged by its newest object.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::layout;

/// One object listed in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// How long and how many runs the archive keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Runs whose newest log is older than this go.
    pub max_age: Duration,
    /// Per DataJob, only the newest this many runs stay.
    pub max_runs: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_age: Duration::from_secs(30 * 86_400),
            max_runs: 100,
        }
    }
}

/// What a retention pass found and decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Keys to delete.
    pub delete: Vec<String>,
    /// What stays: objects and their bytes.
    pub objects: u64,
    pub bytes: u64,
}

/// Applies `policy` at `now` to everything listed under the archive's `prefix`. Objects
/// that are not log keys of ours are left alone and not counted.
pub fn sweep(prefix: &str, listed: &[Object], policy: Policy, now: DateTime<Utc>) -> Sweep {
    type Run<'a> = (DateTime<Utc>, Vec<&'a Object>);
    // (namespace, datajob) -> run -> (newest object time, objects)
    let mut by_datajob: BTreeMap<(&str, &str), BTreeMap<&str, Run<'_>>> = BTreeMap::new();
    for o in listed {
        let Some(p) = layout::parse(prefix, &o.key) else {
            continue;
        };
        let run = by_datajob
            .entry((p.namespace, p.datajob))
            .or_default()
            .entry(p.run)
            .or_insert((o.last_modified, Vec::new()));
        run.0 = run.0.max(o.last_modified);
        run.1.push(o);
    }
    let max_age = chrono::Duration::from_std(policy.max_age).unwrap_or(chrono::Duration::MAX);
    let oldest_kept = now.checked_sub_signed(max_age);
    let mut out = Sweep::default();
    for runs in by_datajob.into_values() {
        let mut runs: Vec<(&str, Run<'_>)> = runs.into_iter().collect();
        // Newest first; the run id breaks ties so the order is the same every pass.
        runs.sort_by(|a, b| (b.1.0, b.0).cmp(&(a.1.0, a.0)));
        for (i, (_, (newest, objects))) in runs.into_iter().enumerate() {
            let too_old = oldest_kept.is_some_and(|t| newest < t);
            if too_old || i >= policy.max_runs {
                out.delete.extend(objects.iter().map(|o| o.key.clone()));
            } else {
                out.objects += objects.len() as u64;
                out.bytes += objects.iter().map(|o| o.size).sum::<u64>();
            }
        }
    }
    out.delete.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64, at: &str) -> Object {
        Object {
            key: key.into(),
            size,
            last_modified: at.parse().unwrap(),
        }
    }

    #[test]
    fn old_runs_and_runs_beyond_the_count_go_whole_and_the_rest_is_counted() {
        let listed = [
            // Run a: two attempts, the newest object is recent: it stays.
            object("l/ns/dj/a/1-p/main.log", 10, "2026-12-01T00:00:00Z"),
            object("l/ns/dj/a/2-q/main.log", 20, "2026-12-07T00:00:00Z"),
            // Run b: recent but beyond max_runs (c and a are newer).
            object("l/ns/dj/b/1-p/main.log", 30, "2026-12-06T00:00:00Z"),
            // Run c: newest.
            object("l/ns/dj/c/1-p/main.log", 40, "2026-12-07T12:00:00Z"),
            // Another DataJob's run that is too old.
            object("l/ns/other/x/1-p/main.log", 50, "2026-10-01T00:00:00Z"),
            // Not ours.
            object("l/README", 60, "2020-01-01T00:00:00Z"),
        ];
        let policy = Policy {
            max_age: Duration::from_secs(30 * 86_400),
            max_runs: 2,
        };
        let s = sweep(
            "l/",
            &listed,
            policy,
            "2026-12-08T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            s.delete,
            ["l/ns/dj/b/1-p/main.log", "l/ns/other/x/1-p/main.log"]
        );
        assert_eq!((s.objects, s.bytes), (3, 70));
    }
}

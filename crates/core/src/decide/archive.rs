//! The log archive's decisions (pure): when a run's pod may be copied, when it must be
//! let go even if the copy failed, and what a run's record says about its logs.
//!
//! A run's pods carry [`FINALIZER`] while the archive is on, so neither the Job's TTL,
//! the history prune, the watchdog nor anyone's delete removes a pod before its logs
//! are copied; the node group keeps a node while a pod on it holds it. The operator
//! copies once the pod's containers stopped, then drops the finalizer. A store that
//! does not take the copy holds the pod at most [`RELEASE_AFTER`].
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// On a run's pods while the archive is on: taken off once the logs are copied.
pub const FINALIZER: &str = "datajob.dev/log-archive";

/// On a run's Job: what became of its last attempt's logs, [`Kept`] as a word.
pub const LOGS: &str = "datajob.dev/logs";

/// The longest a pod whose containers stopped is held for its copy by default
/// (`--log-archive-give-up-after`): after this the finalizer goes even if the store
/// never took the copy, and the run says its logs were not kept.
pub const RELEASE_AFTER: Duration = Duration::from_secs(120);

/// What became of an attempt's logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Copied whole.
    Archived,
    /// Copied, the tail only (the log was longer than the bound).
    Cut,
    /// Not copied: the store did not take it in time.
    NotKept,
    /// Nothing to copy: no container of the pod ever started.
    Empty,
}

impl Kept {
    pub fn as_str(self) -> &'static str {
        match self {
            Kept::Archived => "Archived",
            Kept::Cut => "Cut",
            Kept::NotKept => "NotKept",
            Kept::Empty => "Empty",
        }
    }

    pub fn parse(s: &str) -> Option<Kept> {
        [Kept::Archived, Kept::Cut, Kept::NotKept, Kept::Empty]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What to do with a pod that carries [`FINALIZER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not ours to act on (no finalizer).
    Nothing,
    /// Its containers still run (or have not started): look again when it changes.
    Wait,
    /// Copy these containers' logs (init containers first, in the pod's order), then let
    /// the pod go.
    Copy { containers: Vec<String> },
    /// Let the pod go without a copy: `None` when there was nothing to copy (no
    /// container ever started), else why nothing was kept.
    Release { not_kept: Option<String> },
}

pub fn holds(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let s = pod.status.as_ref();
    s.and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            s.and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
}

fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// Whether a container wrote anything: it started once (its state, or its last
/// state after a restart, says it ran).
fn ran(c: &ContainerStatus) -> bool {
    let ran_in = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        s.is_some_and(|s| {
            s.running.is_some()
                || s.terminated
                    .as_ref()
                    .is_some_and(|t| t.started_at.is_some())
        })
    };
    ran_in(c.state.as_ref()) || ran_in(c.last_state.as_ref())
}

/// When the pod stopped: its last container's end, or when its delete was asked.
fn stopped_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let ended = statuses(pod)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .filter_map(crate::labels::from_k8s_time)
        .max();
    let deleted = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(crate::labels::from_k8s_time);
    ended.into_iter().chain(deleted).max()
}

/// The copy is due once the pod is finished (Succeeded or Failed), or being deleted
/// with no container running. The copy is given up `give_up_after` the pod stopped;
/// `None` (no archive configured) lets every pod go at once.
pub fn assess(pod: &Pod, give_up_after: Option<Duration>, now: DateTime<Utc>) -> Verdict {
    if !holds(pod) {
        return Verdict::Nothing;
    }
    let Some(give_up_after) = give_up_after else {
        return Verdict::Release {
            not_kept: Some("no log archive is configured".into()),
        };
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    let deleting = pod.metadata.deletion_timestamp.is_some() && !statuses(pod).any(running);
    if !finished && !deleting {
        return Verdict::Wait;
    }
    let containers: Vec<String> = statuses(pod)
        .filter(|c| ran(c))
        .map(|c| c.name.clone())
        .collect();
    if containers.is_empty() {
        return Verdict::Release { not_kept: None };
    }
    let overdue =
        stopped_at(pod).is_some_and(|t| (now - t).to_std().unwrap_or_default() >= give_up_after);
    if overdue {
        return Verdict::Release {
            not_kept: Some(format!(
                "the log archive did not take the copy within {} s of the pod's end",
                give_up_after.as_secs()
            )),
        };
    }
    Verdict::Copy { containers }
}

/// When a pod that failed to be copied is looked at again: soon, but never past the
/// release bound `give_up_after`.
pub fn retry_in(pod: &Pod, give_up_after: Duration, now: DateTime<Utc>) -> Duration {
    let left = stopped_at(pod)
        .map(|t| give_up_after.saturating_sub((now - t).to_std().unwrap_or_default()))
        .unwrap_or(give_up_after);
    left.clamp(Duration::from_secs(1), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ON: Option<Duration> = Some(RELEASE_AFTER);

    fn now() -> DateTime<Utc> {
        "2026-12-01T02:10:00Z".parse().unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        let mut base = json!({"metadata": {"name": "p", "finalizers": [FINALIZER]}});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in o {
                if k == "metadata" {
                    for (mk, mv) in val.as_object().unwrap() {
                        b["metadata"][mk] = mv.clone();
                    }
                } else {
                    b.insert(k.clone(), val.clone());
                }
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn terminated(name: &str, finished: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "startedAt": "2026-12-01T02:00:00Z", "finishedAt": finished}}})
    }

    #[test]
    fn a_finished_pod_is_copied_init_containers_first_and_a_running_one_waits() {
        let p = pod(json!({"status": {"phase": "Succeeded",
            "initContainerStatuses": [terminated("stage", "2026-12-01T02:00:01Z")],
            "containerStatuses": [terminated("main", "2026-12-01T02:09:00Z")]}}));
        assert_eq!(
            assess(&p, ON, now()),
            Verdict::Copy {
                containers: vec!["stage".into(), "main".into()]
            }
        );
        let p = pod(
            json!({"status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-12-01T02:00:00Z"}}}]}}),
        );
        assert_eq!(assess(&p, ON, now()), Verdict::Wait);
        // Being deleted while its container still runs: the kubelet stops it first.
        let mut deleting = p.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-01T02:09:59Z".parse().unwrap(),
            ));
        assert_eq!(assess(&deleting, ON, now()), Verdict::Wait);
    }

    #[test]
    fn a_pod_whose_container_never_started_goes_at_once_with_nothing_to_keep() {
        // An image that cannot be pulled: the watchdog deletes the pod.
        let p = pod(
            json!({"metadata": {"deletionTimestamp": "2026-12-01T02:09:00Z"},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
        );
        assert_eq!(assess(&p, ON, now()), Verdict::Release { not_kept: None });
    }

    #[test]
    fn a_copy_the_store_never_takes_is_given_up_at_the_bound() {
        let p = pod(json!({"status": {"phase": "Failed",
            "containerStatuses": [terminated("main", "2026-12-01T02:08:30Z")]}}));
        assert!(matches!(assess(&p, ON, now()), Verdict::Copy { .. }));
        assert_eq!(retry_in(&p, RELEASE_AFTER, now()), Duration::from_secs(10));
        let later = now() + chrono::Duration::seconds(31);
        let Verdict::Release {
            not_kept: Some(why),
        } = assess(&p, ON, later)
        else {
            panic!("{:?}", assess(&p, ON, later))
        };
        assert!(why.contains("120 s"), "{why}");
        // No archive configured: a pod left with the finalizer (the archive was turned
        // off) goes at once.
        assert!(matches!(
            assess(&p, None, now()),
            Verdict::Release { not_kept: Some(_) }
        ));
    }

    #[test]
    fn a_pod_without_the_finalizer_is_not_ours() {
        let mut p = pod(json!({"status": {"phase": "Succeeded"}}));
        p.metadata.finalizers = None;
        assert_eq!(assess(&p, ON, now()), Verdict::Nothing);
    }
}

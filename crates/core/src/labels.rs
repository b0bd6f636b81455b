//! Names, labels and annotations that tie every child object to its DataJob and run.
//! A run's identity is (DataJob, logical time); its Job name is derived from it the
//! same way the CronJob controller names Jobs, so a duplicate is refused by the apiserver.
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const FIELD_MANAGER: &str = "datajob-operator";
/// The one webhook of the operator's ValidatingWebhookConfiguration (what
/// `kubectl datajob` looks for to say whether admission is on).
pub const WEBHOOK_NAME: &str = "validate.datajob.dev";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "datajob-operator";
/// On every child: the DataJob's name.
pub const NAME: &str = "datajob.dev/name";
/// On Jobs and pods: the run id (the Job's name).
pub const RUN_ID: &str = "datajob.dev/run-id";
/// On Jobs and pods: the run's logical time, RFC 3339 UTC.
pub const LOGICAL_TIME: &str = "datajob.dev/logical-time";
/// On Jobs the operator ended: the reason and message it recorded.
pub const END_REASON: &str = "datajob.dev/reason";
pub const END_MESSAGE: &str = "datajob.dev/message";
/// On Jobs: what happened to an attempt that did not end the run (e.g. OutOfMemory).
pub const LAST_FAILURE_REASON: &str = "datajob.dev/last-failure-reason";
pub const LAST_FAILURE_MESSAGE: &str = "datajob.dev/last-failure-message";
/// On Jobs: the run's deadline in seconds, counted from its first container start.
pub(crate) const DEADLINE_SECONDS: &str = "datajob.dev/deadline-seconds";
/// On Jobs: how long the run may wait for a node, in seconds (absent: operator default).
pub(crate) const PENDING_TIMEOUT_SECONDS: &str = "datajob.dev/pending-timeout-seconds";
/// On a DataJob: ask for a run now (`kubectl datajob trigger`), value RFC 3339.
pub const TRIGGER: &str = "datajob.dev/trigger";
/// On a DataJob, with [`TRIGGER`]: the run's arguments, a JSON object of strings.
pub const TRIGGER_ARGS: &str = "datajob.dev/trigger-args";
/// On a run's Job and pod: the DataJob's `spec.owner`, for event exporters and log
/// pipelines to route on (absent when it names none).
pub const OWNER: &str = "datajob.dev/owner";
/// On the Job of a run with parameters: the arguments it was given (JSON).
pub const PARAMS: &str = "datajob.dev/params";
/// On the Job that publishes a run's output (and its pod): the run id.
pub(crate) const PUBLISH_OF: &str = "datajob.dev/publish-of";
/// On the runs a Backfill started: its name.
pub const BACKFILL: &str = "datajob.dev/backfill";
/// On a run that replays a missed scheduled time (`catchUp: all`).
pub(crate) const CATCH_UP: &str = "datajob.dev/catch-up";
/// On a run's Job that waits to start: why (e.g. `WaitingForInput`), and in words.
pub(crate) const WAITING_REASON: &str = "datajob.dev/waiting-reason";
pub(crate) const WAITING_MESSAGE: &str = "datajob.dev/waiting-message";
/// Set by the CronJob controller on the Jobs it creates.
pub const CRONJOB_SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Set by the Job controller on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// The one container of a run's pod.
pub const CONTAINER: &str = "main";

/// The selector for everything DataJob manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// `churn-features` at 2026-11-25T03:00Z -> `churn-features-29926260` (minutes since the epoch),
/// exactly the name the CronJob controller gives the Job it creates for that time.
pub fn run_id(datajob: &str, logical_time: DateTime<Utc>) -> String {
    format!("{datajob}-{}", logical_time.timestamp().div_euclid(60))
}

/// The logical time a run id encodes, when it is one of ours.
pub(crate) fn logical_time_of(datajob: &str, run_id: &str) -> Option<DateTime<Utc>> {
    let minutes: i64 = run_id
        .strip_prefix(datajob)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    DateTime::from_timestamp(minutes.checked_mul(60)?, 0)
}

/// A logical time truncated to the minute, the precision of run identity.
pub fn truncate_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap_or(t)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Kubernetes' `Time` (jiff) as chrono.
pub fn from_k8s_time(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

pub fn to_k8s_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// `s`, cut to at most `max` bytes at a character boundary, with `…` when cut (event
/// notes and annotation values have limits).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An event's note, told for its owner: `note` and ` Owner: OWNER.` when there is one,
/// so `kubectl get events` and event exporters show whose run it is; at most `max`
/// bytes (the note is cut, never the owner).
pub fn with_owner(note: &str, owner: Option<&str>, max: usize) -> String {
    match owner.filter(|o| !o.is_empty()) {
        None => truncate(note, max),
        Some(o) => {
            let tail = format!(" Owner: {o}.");
            format!(
                "{}{tail}",
                truncate(note, max.saturating_sub(tail.len() + 3))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_note_names_its_owner_within_the_limit() {
        assert_eq!(with_owner("run failed", None, 100), "run failed");
        assert_eq!(with_owner("run failed", Some(""), 100), "run failed");
        assert_eq!(
            with_owner("run failed", Some("team-ml"), 100),
            "run failed Owner: team-ml."
        );
        let long = "x".repeat(200);
        let n = with_owner(&long, Some("team-ml"), 100);
        assert!(n.len() <= 100 && n.ends_with("… Owner: team-ml."), "{n}");
    }

    #[test]
    fn run_ids_match_the_cronjob_controller() {
        let t = parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        let id = run_id("churn-features", t);
        assert_eq!(id, "churn-features-29926260");
        assert_eq!(logical_time_of("churn-features", &id), Some(t));
        assert_eq!(logical_time_of("churn", &id), None);
        assert_eq!(
            truncate_to_minute(parse_rfc3339("2026-11-25T03:00:59Z").unwrap()),
            t
        );
    }
}

//! Why a DataJob is in its state, in plain words, from plain values.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::terminal;
use crate::terminal::zone_of;
use crate::{history, logs};
use datajob_api::{DataJob, RunRecord, RunState};
use datajob_core::labels::{self, JOB_NAME};
use datajob_core::units;
use datajob_core::validation;

/// The facts `describe` reasons from.
pub(crate) struct Facts<'a> {
    pub dj: &'a DataJob,
    pub runs: &'a [RunRecord],
    pub pods: &'a [Pod],
    pub now: DateTime<Utc>,
}

fn when(s: &str, f: &Facts) -> String {
    terminal::status_time(s, zone_of(f.dj), f.now)
}

/// A logical time in the DataJob's zone (how long ago it was says little).
fn logical(s: &str, f: &Facts) -> String {
    labels::parse_rfc3339(s)
        .map_or_else(|| s.to_string(), |t| terminal::local_time(t, zone_of(f.dj)))
}

fn deadline_of(dj: &DataJob) -> Duration {
    dj.spec
        .deadline
        .as_deref()
        .and_then(|d| units::parse_duration(d).ok())
        .unwrap_or(validation::DEFAULT_DEADLINE)
}

/// What the user can do about a failure with this reason, unless `message` already
/// says it (the operator's messages usually end with the fix).
fn advice(reason: &str, message: &str, name: &str, run: &str) -> Option<String> {
    let (field, words) = match reason {
        "ImageNotFound" => (
            "spec.image",
            "Fix spec.image (check the tag and that the cluster may pull it).",
        ),
        "DeadlineExceeded" => (
            "spec.deadline",
            "Raise spec.deadline or make the job faster.",
        ),
        "OutOfMemory" => ("spec.resources.memory", "Raise spec.resources.memory."),
        "MissingConfig" => (
            "spec.env",
            "Create the Secret or ConfigMap it names, or fix the reference in spec.env.",
        ),
        "Unschedulable" => (
            "spec.resources",
            "Ask for less (spec.resources), or ask your platform team for nodes that fit.",
        ),
        "CommandNotRunnable" => (
            "spec.command",
            "Fix spec.command: it must exist in the image and be executable.",
        ),
        "RunsAsRoot" => ("USER", "Build the image with a non-root USER."),
        _ => {
            return Some(format!(
                "Read its logs: `kubectl datajob logs {name} --run {run}`."
            ));
        }
    };
    (!message.contains(field)).then(|| words.to_string())
}

/// Why run `run` has not started: what its pod waits for, or what the run says.
fn not_started(run: &RunRecord, f: &Facts) -> String {
    let pods: Vec<Pod> = f
        .pods
        .iter()
        .filter(|p| p.labels().get(JOB_NAME) == Some(&run.name))
        .cloned()
        .collect();
    let situation = match logs::pick_pod(&pods) {
        None => run
            .message
            .clone()
            .unwrap_or_else(|| "its pod has not been created yet".into()),
        Some(p) => format!(
            "its pod {} is waiting: {}",
            p.name_any(),
            logs::not_started(p).unwrap_or_else(|| "starting".into())
        ),
    };
    format!(
        "Run {} (logical time {}) has not started: {situation}. The operator ends a run that cannot start within a bounded time, with a reason.",
        run.name,
        logical(&run.logical_time, f)
    )
}

/// How long run `run` has run, and how long it may go on before its deadline stops it.
fn running(run: &RunRecord, f: &Facts) -> String {
    let ran = history::took(run, f.now).unwrap_or_default();
    let left = deadline_of(f.dj).saturating_sub(ran);
    format!(
        "Run {} (logical time {}) has been running for {}; it is stopped if it is still running in {} (its deadline is {}).",
        run.name,
        logical(&run.logical_time, f),
        terminal::short_duration(ran),
        terminal::short_duration(left),
        units::format_duration(deadline_of(f.dj))
    )
}

/// How the last run, `run`, of the DataJob `name` failed, and what to do about it.
fn failed(run: &RunRecord, f: &Facts, name: &str) -> Vec<String> {
    let reason = run.reason.as_deref().unwrap_or("Failed");
    let mut why = vec![format!(
        "The last run, {} (logical time {}), failed{}: {reason}: {}",
        run.name,
        logical(&run.logical_time, f),
        run.finish_time
            .as_deref()
            .map(|t| format!(" at {}", when(t, f)))
            .unwrap_or_default(),
        run.message.as_deref().unwrap_or("no message")
    )];
    why.extend(advice(
        reason,
        run.message.as_deref().unwrap_or_default(),
        name,
        &run.name,
    ));
    why
}

/// Why the DataJob is in its state, in plain words.
pub(crate) fn explain(f: &Facts) -> Vec<String> {
    let dj = f.dj;
    let name = dj.name_any();
    let mut why = Vec::new();
    let Some(status) = dj.status.as_ref() else {
        why.push("The operator has not written a status yet: it has not processed this DataJob. Is the DataJob operator running in this cluster?".into());
        return why;
    };
    if let (Some(seen), Some(current)) = (status.observed_generation, dj.metadata.generation)
        && seen < current
    {
        why.push(format!("The operator has not caught up with the latest change yet (it last saw generation {seen}, the DataJob is at {current}); what follows may be out of date."));
    }
    let next = status.next_run.as_deref().map(|n| when(n, f));
    let latest = f.runs.first();
    match status.state.unwrap_or_default() {
        RunState::Invalid => {
            why.push(
                "The spec is invalid, so the operator creates no runs until it is fixed:".into(),
            );
            for line in status.message.as_deref().unwrap_or_default().lines() {
                why.push(format!("  {line}"));
            }
            why.push("Fix these fields and apply it again; `kubectl datajob plan -f FILE` checks a file before you apply it.".into());
            return why;
        }
        RunState::Suspended => {
            why.push("spec.suspend is true: no new runs are scheduled. Set it to false to resume; `kubectl datajob trigger` still starts a run by hand.".into());
            return why;
        }
        RunState::Scheduled => match &next {
            Some(n) => why.push(format!("It has not run yet; the first run is due {n}.")),
            None => why.push("It has not run yet.".into()),
        },
        RunState::Waiting => {
            if let Some(run) = latest.filter(|r| !r.state.is_finished()) {
                why.push(format!(
                    "Run {} (logical time {}) waits for its inputs: {}. It starts as soon as they have published; if one of them fails, it ends UpstreamFailed.",
                    run.name,
                    logical(&run.logical_time, f),
                    run.message.as_deref().unwrap_or("an input has not published yet")
                ));
            }
        }
        RunState::Pending => match latest.filter(|r| !r.state.is_finished()) {
            Some(run) => why.push(not_started(run, f)),
            None => why.push("A run was asked for and is being created.".into()),
        },
        RunState::Running => {
            if let Some(run) = latest.filter(|r| !r.state.is_finished()) {
                why.push(running(run, f));
            }
        }
        RunState::Succeeded => {
            if let Some(run) = latest {
                let finished = run.finish_time.as_deref().map(|t| when(t, f));
                why.push(format!(
                    "The last run, {} (logical time {}), succeeded{}{}.",
                    run.name,
                    logical(&run.logical_time, f),
                    finished.map(|t| format!(" at {t}")).unwrap_or_default(),
                    history::took(run, f.now)
                        .map(|d| format!(" after {}", terminal::short_duration(d)))
                        .unwrap_or_default()
                ));
            }
        }
        RunState::Failed => {
            if let Some(run) = latest {
                why.extend(failed(run, f, &name));
            }
        }
    }
    why.extend(what_next(next.as_deref(), dj, status.state));
    why
}

/// When the next run is due (said already for a DataJob that has not run yet), or that
/// it has no schedule.
fn what_next(next: Option<&str>, dj: &DataJob, state: Option<RunState>) -> Option<String> {
    match (next, &dj.spec.schedule) {
        (Some(n), _) if state != Some(RunState::Scheduled) => {
            Some(format!("The next run is due {n}."))
        }
        (None, None) => Some(format!(
            "It has no schedule: it runs once. `kubectl datajob trigger {}` starts another run.",
            dj.name_any()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJobSpec, DataJobStatus};

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }

    fn dj(status: Option<DataJobStatus>) -> DataJob {
        let mut d = DataJob::new(
            "churn-features",
            DataJobSpec {
                image: "ghcr.io/acme/churn:1.4.3".into(),
                schedule: Some("0 3 * * *".into()),
                deadline: Some("2h".into()),
                ..Default::default()
            },
        );
        d.status = status;
        d
    }

    fn facts<'a>(d: &'a DataJob, runs: &'a [RunRecord]) -> Vec<String> {
        explain(&Facts {
            dj: d,
            runs,
            pods: &[],
            now: now(),
        })
    }

    #[test]
    fn no_status_means_no_operator() {
        let d = dj(None);
        assert!(facts(&d, &[])[0].contains("Is the DataJob operator running"));
    }

    #[test]
    fn a_failed_run_is_explained_with_what_to_do() {
        let run = RunRecord {
            name: "churn-features-29926260".into(),
            logical_time: "2026-11-25T03:00:00Z".into(),
            state: RunState::Failed,
            finish_time: Some("2026-11-25T03:01:00Z".into()),
            reason: Some("ImageNotFound".into()),
            message: Some("ghcr.io/acme/churn:1.4.3 could not be pulled (manifest unknown)".into()),
            ..Default::default()
        };
        let d = dj(Some(DataJobStatus {
            state: Some(RunState::Failed),
            reason: Some("ImageNotFound".into()),
            next_run: Some("2026-11-26T03:00:00Z".into()),
            recent_runs: vec![run.clone()],
            ..Default::default()
        }));
        let why = facts(&d, &[run]);
        assert_eq!(
            why[0],
            "The last run, churn-features-29926260 (logical time 2026-11-25 03:00 UTC), failed at 2026-11-25 03:01 UTC (6h ago): ImageNotFound: ghcr.io/acme/churn:1.4.3 could not be pulled (manifest unknown)"
        );
        assert!(why[1].starts_with("Fix spec.image"));
        assert_eq!(why[2], "The next run is due 2026-11-26 03:00 UTC (in 17h).");
        assert_eq!(
            advice(
                "ImageNotFound",
                "x could not be pulled; check spec.image",
                "a",
                "a-1"
            ),
            None
        );
        assert_eq!(
            advice("Failed", "", "a", "a-1").unwrap(),
            "Read its logs: `kubectl datajob logs a --run a-1`."
        );
    }

    #[test]
    fn running_says_how_long_is_left() {
        let run = RunRecord {
            name: "churn-features-29926800".into(),
            logical_time: "2026-11-25T09:00:00Z".into(),
            state: RunState::Running,
            start_time: Some("2026-11-25T09:30:00Z".into()),
            ..Default::default()
        };
        let d = dj(Some(DataJobStatus {
            state: Some(RunState::Running),
            ..Default::default()
        }));
        let why = facts(&d, &[run]);
        assert!(why[0].contains("has been running for 30m; it is stopped if it is still running in 1h30m (its deadline is 2h)"), "{why:?}");
    }

    #[test]
    fn invalid_and_suspended() {
        let d = dj(Some(DataJobStatus {
            state: Some(RunState::Invalid),
            message: Some("spec.schedule \"61 * * * *\" has minute 61, outside 0-59".into()),
            ..Default::default()
        }));
        let why = facts(&d, &[]);
        assert!(why[0].starts_with("The spec is invalid"));
        assert!(why[1].contains("minute 61"));
        let d = dj(Some(DataJobStatus {
            state: Some(RunState::Suspended),
            ..Default::default()
        }));
        assert!(facts(&d, &[])[0].starts_with("spec.suspend is true"));
    }
}

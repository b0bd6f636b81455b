//! `kubectl datajob trigger NAME [--arg KEY=VALUE …] [--wait]`: start a run now. The run
//! is asked for with the `datajob.dev/trigger` annotation (and its arguments with
//! `datajob.dev/trigger-args`); the operator creates it with that logical time (to the
//! minute), so triggering twice in a minute with the same arguments asks for the same
//! run. A run with arguments has a run id of its own.
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::error::{CliError, Result};
use super::history;
use super::terminal::{self, Color, Format, Progress, Style};
use datajob_api::{DataJob, RunRecord, RunState};
use datajob_core::labels::{self, TRIGGER, TRIGGER_ARGS};
use datajob_core::params;
use datajob_core::units;

fn duration(s: &str) -> std::result::Result<Duration, String> {
    units::parse_duration(s).map_err(|e| format!("{s:?} {e}"))
}

#[derive(clap::Args, Debug)]
pub struct TriggerArgs {
    /// The DataJob.
    pub name: String,

    /// The run's logical time (RFC 3339, e.g. 2026-11-25T03:00:00Z). Default: now, to
    /// the minute.
    #[arg(long, visible_alias = "logical-time", value_name = "TIME")]
    pub at: Option<String>,

    /// A parameter the DataJob declares in spec.params, as KEY=VALUE (repeat for more).
    /// The run's container gets it as DATAJOB_ARG_<KEY>.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = datajob_core::params::parse_arg)]
    pub args: Vec<(String, String)>,

    /// Wait until the run has finished; exit 1 when it failed.
    #[arg(long)]
    pub wait: bool,

    /// With --wait: give up after this long (default: the run's deadline plus 20m).
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// What `trigger -o json|yaml` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TriggerReport {
    pub datajob: String,
    pub namespace: String,
    pub run_id: String,
    pub logical_time: String,
    /// False when a run of that logical time already existed.
    pub created: bool,
    /// The arguments the run was given.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: params::Args,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
}

/// The progress text while waiting.
pub(crate) fn wait_text(
    id: &str,
    run: Option<&RunRecord>,
    waited: Duration,
    picked_up: bool,
) -> String {
    let w = terminal::short_duration(waited);
    match run {
        Some(r) => format!("run {id}: {} · {w}", r.state),
        None if picked_up || waited < Duration::from_secs(15) => {
            format!("run {id}: waiting for the operator to create it · {w}")
        }
        None => format!(
            "run {id}: the operator has not acted on the trigger yet (is it running?) · {w}"
        ),
    }
}

/// The final line of `trigger --wait`.
pub(crate) fn finished_line(run: &RunRecord, now: DateTime<Utc>, style: Style) -> String {
    let took = history::took(run, now)
        .map(|d| format!(" after {}", terminal::short_duration(d)))
        .unwrap_or_default();
    match run.state {
        RunState::Succeeded => format!(
            "{} run {}{took}",
            style.paint("✓ succeeded", Color::Green),
            run.name
        ),
        _ => format!(
            "{}: {}{took} (run {}): {}",
            style.paint("✗ failed", Color::Red),
            run.reason.as_deref().unwrap_or("Failed"),
            run.name,
            run.message.as_deref().unwrap_or("")
        ),
    }
}

/// The arguments of `--arg`, each name once, as the DataJob takes them.
pub(crate) fn given_args(dj: &DataJob, pairs: &[(String, String)]) -> Result<params::Args> {
    let mut given = params::Args::new();
    for (k, v) in pairs {
        if given.insert(k.clone(), v.clone()).is_some() {
            return Err(CliError::Invalid(format!(
                "--arg {k} is given twice: give each parameter once"
            )));
        }
    }
    let problems = params::check_trigger(&dj.spec, &given);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(CliError::Invalid(lines.join("\n")));
    }
    Ok(given)
}

/// Refuses to trigger what the operator would not run.
fn check_runnable(dj: &DataJob, name: &str) -> Result<()> {
    let status = dj.status.clone().unwrap_or_default();
    if status.state == Some(RunState::Invalid) {
        return Err(CliError::Invalid(format!(
            "DataJob {name} is invalid, so the operator would not run it:\n  {}\nfix it (`kubectl datajob plan -f FILE` shows every problem) and apply it again",
            status.message.unwrap_or_default().replace('\n', "\n  ")
        )));
    }
    Ok(())
}

pub(crate) async fn run(args: &TriggerArgs, cluster: &Cluster, format: Format) -> Result<()> {
    let dj = cluster.datajob(&args.name).await?;
    check_runnable(&dj, &args.name)?;
    let given = given_args(&dj, &args.args)?;
    let logical_time =
        labels::truncate_to_minute(crate::flags::time_or_now("--at", args.at.as_deref())?);
    let value = labels::rfc3339(logical_time);
    let id = params::run_id(&args.name, logical_time, &given);
    let runs = history::runs_of(cluster, &dj).await?;
    let existing = runs.iter().find(|r| r.name == id).cloned();
    let created = existing.is_none();
    match &existing {
        Some(r) => eprintln!(
            "run {id} (logical time {value}) already exists: {}. A run is identified by its logical time, to the minute, and its arguments; use --at for another.",
            r.state
        ),
        None => {
            // One patch: the operator never sees the time without its arguments.
            let trigger_args = (!given.is_empty()).then(|| params::annotation(&given));
            let patch =
                json!({"metadata": {"annotations": {TRIGGER: value, TRIGGER_ARGS: trigger_args}}});
            cluster
                .api::<DataJob>()
                .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(cluster.error(format!("trigger DataJob {}", args.name)))?;
            eprintln!("triggered run {id} (logical time {value})");
        }
    }
    let mut report = TriggerReport {
        datajob: args.name.clone(),
        namespace: cluster.namespace.clone(),
        run_id: id.clone(),
        logical_time: value.clone(),
        created,
        params: given.clone(),
        run: existing,
    };
    if !args.wait {
        if format == Format::Name {
            terminal::print_names(terminal::JOB_KIND, [id.as_str()]);
        } else if format != Format::Human {
            terminal::print_data(format, &report)?;
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    let key = datajob_core::decide::runs::trigger_key(
        &value,
        (!given.is_empty())
            .then(|| params::annotation(&given))
            .as_deref(),
    );
    let finished = wait_finished(args, cluster, &dj, &id, &key).await?;
    eprintln!("{}", finished_line(&finished, Utc::now(), Style::stderr()));
    let failed = finished.state != RunState::Succeeded;
    report.run = Some(finished);
    if format == Format::Name {
        terminal::print_names(terminal::JOB_KIND, [id.as_str()]);
    } else if format != Format::Human {
        terminal::print_data(format, &report)?;
    }
    if failed {
        return Err(CliError::Reported("the run failed"));
    }
    Ok(())
}

/// Follows run `id` (asked for by the trigger `key`, as `status.lastTrigger` records it)
/// of `dj` on one progress line until it has
/// finished and the operator recorded it, or `--timeout` (default: the run's deadline
/// and 20 minutes) passes.
async fn wait_finished(
    args: &TriggerArgs,
    cluster: &Cluster,
    dj: &DataJob,
    id: &str,
    key: &str,
) -> Result<RunRecord> {
    let deadline = dj
        .spec
        .deadline
        .as_deref()
        .and_then(|d| units::parse_duration(d).ok())
        .unwrap_or(datajob_core::validation::DEFAULT_DEADLINE);
    let timeout = args
        .timeout
        .unwrap_or(deadline + Duration::from_secs(20 * 60));
    let progress = Progress::new();
    let started = Instant::now();
    // When the Job has finished, wait a little for the operator to record it too, so
    // that `status` and `describe` right after agree with what this prints.
    let mut job_finished_at: Option<Instant> = None;
    let finished = loop {
        let dj = cluster.datajob(&args.name).await?;
        let runs = history::runs_of(cluster, &dj).await?;
        let run = runs.into_iter().find(|r| r.name == id);
        if let Some(r) = run.as_ref().filter(|r| r.state.is_finished()) {
            let since = *job_finished_at.get_or_insert_with(Instant::now);
            if recorded(&dj, id) || since.elapsed() >= RECORD_GRACE {
                break r.clone();
            }
        }
        let picked_up = dj.status.as_ref().and_then(|s| s.last_trigger.as_deref()) == Some(key);
        if started.elapsed() >= timeout {
            progress.finish();
            let state = run.map_or_else(|| "not created".to_string(), |r| r.state.to_string());
            return Err(CliError::Local(format!(
                "gave up waiting after {}: run {id} is {state}; see `kubectl datajob describe {}`",
                terminal::short_duration(timeout),
                args.name
            )));
        }
        for _ in 0..8 {
            progress.set(wait_text(id, run.as_ref(), started.elapsed(), picked_up));
            tokio::time::sleep(Duration::from_millis(125)).await;
        }
    };
    progress.finish();
    Ok(finished)
}

/// How long `trigger --wait` waits, after the run's Job finished, for the DataJob's
/// status to record it.
const RECORD_GRACE: Duration = Duration::from_secs(30);

/// Whether the DataJob's status records run `id` as finished.
fn recorded(dj: &DataJob, id: &str) -> bool {
    dj.status.as_ref().is_some_and(|s| {
        s.recent_runs
            .iter()
            .any(|r| r.name == id && r.state.is_finished())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_says_what_it_waits_for() {
        let t = wait_text("a-1", None, Duration::from_secs(3), false);
        assert_eq!(t, "run a-1: waiting for the operator to create it · 3s");
        let t = wait_text("a-1", None, Duration::from_secs(30), false);
        assert!(t.contains("has not acted on the trigger yet (is it running?)"));
        let r = RunRecord {
            name: "a-1".into(),
            state: RunState::Running,
            ..Default::default()
        };
        assert_eq!(
            wait_text("a-1", Some(&r), Duration::from_secs(75), true),
            "run a-1: Running · 1m15s"
        );
    }

    #[test]
    fn a_run_is_recorded_once_the_status_has_it_finished() {
        let mut dj: DataJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": "a"}, "spec": {"image": "busybox"},
        }))
        .unwrap();
        assert!(!recorded(&dj, "a-1"), "no status yet");
        let run = |state| RunRecord {
            name: "a-1".into(),
            state,
            ..Default::default()
        };
        dj.status = Some(datajob_api::DataJobStatus {
            recent_runs: vec![run(RunState::Running)],
            ..Default::default()
        });
        assert!(!recorded(&dj, "a-1"), "still running in the status");
        assert!(!recorded(&dj, "a-2"), "another run");
        dj.status = Some(datajob_api::DataJobStatus {
            recent_runs: vec![run(RunState::Failed)],
            ..Default::default()
        });
        assert!(recorded(&dj, "a-1"));
    }

    #[test]
    fn the_final_line() {
        let now = labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap();
        let r = RunRecord {
            name: "a-1".into(),
            state: RunState::Failed,
            start_time: Some("2026-11-25T09:59:00Z".into()),
            finish_time: Some("2026-11-25T09:59:30Z".into()),
            reason: Some("RetriesExhausted".into()),
            message: Some("the run failed 1 time(s)".into()),
            ..Default::default()
        };
        assert_eq!(
            finished_line(&r, now, Style { color: false }),
            "✗ failed: RetriesExhausted after 30s (run a-1): the run failed 1 time(s)"
        );
    }

    #[test]
    fn an_invalid_datajob_is_not_triggered() {
        let mut dj = DataJob::new("a", Default::default());
        dj.status = Some(datajob_api::DataJobStatus {
            state: Some(RunState::Invalid),
            message: Some("spec.schedule \"61 * * * *\" has minute 61".into()),
            ..Default::default()
        });
        let e = check_runnable(&dj, "a").unwrap_err().to_string();
        assert!(e.contains("is invalid") && e.contains("minute 61"), "{e}");
    }
}

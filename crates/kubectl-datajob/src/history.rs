//! `kubectl datajob runs NAME`: a DataJob's run history, newest first. The history is
//! the status' `recentRuns`, refreshed with what the run Jobs still present say.
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::cluster::Cluster;
use super::error::Result;
use super::terminal::zone_of;
use super::terminal::{self, Format, Style, Table, state_color};
use datajob_api::{DataJob, RunRecord};
use datajob_core::decide::runs;
use datajob_core::labels::{self, NAME};

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// The DataJob.
    pub name: String,
}

/// The run Jobs of DataJob `name` still in the cluster.
pub(crate) async fn jobs_of(cluster: &Cluster, name: &str) -> Result<Vec<Job>> {
    let api: Api<Job> = cluster.api();
    Ok(api
        .list(&ListParams::default().labels(&format!("{NAME}={name}")))
        .await
        .map_err(cluster.error(format!("list the Jobs of DataJob {name}")))?
        .items)
}

/// The runs of `dj`, newest first: its status' history refreshed with its Jobs.
pub(crate) fn runs_from(dj: &DataJob, jobs: &[Job]) -> Vec<RunRecord> {
    let name = dj.name_any();
    let previous = dj
        .status
        .as_ref()
        .map(|s| s.recent_runs.clone())
        .unwrap_or_default();
    // A Job that succeeded is not yet a published run: the status says whether its output
    // is still being published, or could not be.
    let current = jobs
        .iter()
        .filter_map(|j| runs::run_of(j, &name))
        .map(|run| {
            previous
                .iter()
                .find(|p| {
                    p.name == run.name
                        && p.start_time == run.start_time
                        && run.state == datajob_api::RunState::Succeeded
                        && matches!(
                            p.reason.as_deref(),
                            Some(
                                datajob_core::decide::dataflow::PUBLISHING
                                    | datajob_core::decide::dataflow::PUBLISH_FAILED
                            )
                        )
                })
                .cloned()
                .unwrap_or(run)
        })
        .collect();
    runs::merge_runs(&previous, current)
}

/// The runs of `dj`, newest first.
pub(crate) async fn runs_of(cluster: &Cluster, dj: &DataJob) -> Result<Vec<RunRecord>> {
    let jobs = jobs_of(cluster, &dj.name_any()).await?;
    Ok(runs_from(dj, &jobs))
}

/// How long a run took, or has been going.
pub(crate) fn took(run: &RunRecord, now: DateTime<Utc>) -> Option<Duration> {
    let start = labels::parse_rfc3339(run.start_time.as_deref()?)?;
    let end = match run.finish_time.as_deref() {
        Some(f) => labels::parse_rfc3339(f)?,
        None if !run.state.is_finished() => now,
        None => return None,
    };
    (end - start).to_std().ok()
}

/// `churn-features-29926260  2026-11-25 03:00 GMT  Failed (ImageNotFound) after 1m5s`
pub(crate) fn run_line(run: &RunRecord, tz: Tz, now: DateTime<Utc>) -> String {
    let logical = labels::parse_rfc3339(&run.logical_time)
        .map_or_else(|| run.logical_time.clone(), |t| terminal::local_time(t, tz));
    let mut s = format!("{}  {logical}  {}", run.name, run.state);
    if let Some(r) = &run.reason {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(d) = took(run, now) {
        let word = if run.state.is_finished() {
            "after"
        } else {
            "for"
        };
        s.push_str(&format!(" {word} {}", terminal::short_duration(d)));
    }
    s
}

/// `day=2026-11-01 mode=full`: a run's arguments, or `-`.
pub(crate) fn params_text(run: &RunRecord) -> String {
    if run.params.is_empty() {
        return "-".into();
    }
    let pairs: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(" ")
}

/// The history table; a COST column when the runs have estimated costs (node groups),
/// a PARAMS column when a run was given arguments.
pub(crate) fn table(runs: &[RunRecord], tz: Tz, now: DateTime<Utc>, style: Style) -> String {
    let costs = runs.iter().any(|r| r.estimated_cost.is_some());
    let with_params = runs.iter().any(|r| !r.params.is_empty());
    let mut headers = vec![
        "RUN ID",
        "LOGICAL TIME",
        "STATE",
        "REASON",
        "STARTED",
        "DURATION",
    ];
    if costs {
        headers.push("COST");
    }
    if with_params {
        headers.push("PARAMS");
    }
    let mut t = Table::new(&headers);
    for run in runs {
        let state = run.state.to_string();
        let started = run
            .start_time
            .as_deref()
            .and_then(labels::parse_rfc3339)
            .map_or_else(|| "-".to_string(), |t| terminal::relative(t, now));
        let duration = took(run, now).map_or_else(
            || "-".to_string(),
            |d| {
                if run.state.is_finished() {
                    terminal::short_duration(d)
                } else {
                    format!("{} so far", terminal::short_duration(d))
                }
            },
        );
        let mut row = vec![
            (run.name.clone(), None),
            (
                labels::parse_rfc3339(&run.logical_time)
                    .map_or_else(|| run.logical_time.clone(), |t| terminal::local_time(t, tz)),
                None,
            ),
            (state.clone(), state_color(&state)),
            (run.reason.clone().unwrap_or_default(), None),
            (started, None),
            (duration, None),
        ];
        if costs {
            row.push((
                run.estimated_cost.clone().unwrap_or_else(|| "-".into()),
                None,
            ));
        }
        if with_params {
            row.push((params_text(run), None));
        }
        t.row(row);
    }
    t.render(style)
}

pub(crate) async fn run(args: &RunsArgs, cluster: &Cluster, format: Format) -> Result<()> {
    let dj = cluster.datajob(&args.name).await?;
    let runs = runs_of(cluster, &dj).await?;
    if format == Format::Name {
        terminal::print_names(terminal::JOB_KIND, runs.iter().map(|r| r.name.as_str()));
        return Ok(());
    }
    if format != Format::Human {
        return terminal::print_data(format, &runs);
    }
    if runs.is_empty() {
        eprintln!(
            "DataJob {} has no runs yet{}.",
            args.name,
            dj.status
                .as_ref()
                .and_then(|s| s.next_run.as_deref())
                .map(|n| format!(
                    "; the next is due {}",
                    terminal::status_time(n, zone_of(&dj), Utc::now())
                ))
                .unwrap_or_default()
        );
        return Ok(());
    }
    print!(
        "{}",
        table(&runs, zone_of(&dj), Utc::now(), Style::stdout())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::RunState;

    #[test]
    fn a_succeeded_job_still_publishing_shows_as_the_status_says() {
        let mut dj: DataJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": "raw"}, "spec": {"image": "busybox"},
        }))
        .unwrap();
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "raw-29926260"},
            "status": {"startTime": "2026-11-25T03:00:01Z",
                "conditions": [{"type": "Complete", "status": "True"}]},
        }))
        .unwrap();
        dj.status = Some(datajob_api::DataJobStatus {
            recent_runs: vec![RunRecord {
                name: "raw-29926260".into(),
                logical_time: "2026-11-25T03:00:00Z".into(),
                state: RunState::Failed,
                start_time: Some("2026-11-25T03:00:01Z".into()),
                reason: Some(datajob_core::decide::dataflow::PUBLISH_FAILED.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let runs = runs_from(&dj, std::slice::from_ref(&job));
        assert_eq!(runs[0].state, RunState::Failed);
        // A run of the same time started again is what its Job says.
        dj.status.as_mut().unwrap().recent_runs[0].start_time = Some("2026-11-25T02:00:00Z".into());
        assert_eq!(runs_from(&dj, &[job])[0].state, RunState::Succeeded);
    }

    #[test]
    fn history_table() {
        let now = labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap();
        let runs = vec![
            RunRecord {
                name: "churn-features-29926800".into(),
                logical_time: "2026-11-25T12:00:00Z".into(),
                state: RunState::Running,
                start_time: Some("2026-11-25T09:58:00Z".into()),
                ..Default::default()
            },
            RunRecord {
                name: "churn-features-29926260".into(),
                logical_time: "2026-11-25T03:00:00Z".into(),
                state: RunState::Failed,
                start_time: Some("2026-11-25T03:00:01Z".into()),
                finish_time: Some("2026-11-25T03:05:01Z".into()),
                reason: Some("DeadlineExceeded".into()),
                ..Default::default()
            },
        ];
        let t = table(
            &runs,
            chrono_tz::Europe::London,
            now,
            Style { color: false },
        );
        assert_eq!(
            t,
            "RUN ID                   LOGICAL TIME          STATE    REASON            STARTED  DURATION\n\
             churn-features-29926800  2026-11-25 12:00 GMT  Running                    2m ago   2m so far\n\
             churn-features-29926260  2026-11-25 03:00 GMT  Failed   DeadlineExceeded  6h ago   5m\n"
        );
        let mut with_cost = runs.clone();
        with_cost[1].estimated_cost = Some("0.0421".into());
        let t = table(&with_cost, chrono_tz::UTC, now, Style { color: false });
        assert!(
            t.lines().next().unwrap().ends_with("DURATION   COST"),
            "{t}"
        );
        assert!(t.lines().nth(1).unwrap().ends_with("2m so far  -"), "{t}");
        assert!(
            t.lines().nth(2).unwrap().ends_with("5m         0.0421"),
            "{t}"
        );
        let mut with_params = runs.clone();
        with_params[0].params = [("day".to_string(), "2026-11-01".to_string())].into();
        let t = table(&with_params, chrono_tz::UTC, now, Style { color: false });
        assert!(t.lines().next().unwrap().ends_with("PARAMS"), "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with("day=2026-11-01"), "{t}");
        assert!(t.lines().nth(2).unwrap().ends_with("  -"), "{t}");
    }
}

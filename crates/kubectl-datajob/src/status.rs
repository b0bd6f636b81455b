//! `kubectl datajob status [NAME]`: the state of one DataJob, or a table of them.
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::cluster::Cluster;
use super::error::Result;
use super::history;
use super::terminal::{self, Color, Format, Style, Table, state_color, zone_of};
use datajob_api::{DataJob, RunRecord};
use datajob_core::labels;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The DataJob; without it, every DataJob in the namespace.
    pub name: Option<String>,

    /// Every namespace (with no NAME).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
}

/// The state word, `Unknown` before the operator wrote any status.
pub(crate) fn state_of(dj: &DataJob) -> String {
    dj.status
        .as_ref()
        .and_then(|s| s.state)
        .map_or_else(|| "Unknown".to_string(), |s| s.to_string())
}

fn when(s: Option<&str>, now: DateTime<Utc>) -> String {
    s.and_then(labels::parse_rfc3339)
        .map_or_else(|| "-".to_string(), |t| terminal::relative(t, now))
}

/// The table `status` prints without a name.
pub(crate) fn table(
    djs: &[DataJob],
    all_namespaces: bool,
    now: DateTime<Utc>,
    style: Style,
) -> String {
    let mut headers = vec![
        "NAME", "SCHEDULE", "LAST RUN", "STATE", "NEXT RUN", "REASON",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&headers);
    for dj in djs {
        let status = dj.status.clone().unwrap_or_default();
        let state = state_of(dj);
        let mut row = vec![
            (dj.name_any(), None),
            (dj.spec.schedule.clone().unwrap_or_else(|| "-".into()), None),
            (
                when(
                    status.last_run.as_ref().map(|r| r.logical_time.as_str()),
                    now,
                ),
                None,
            ),
            (state.clone(), state_color(&state)),
            (when(status.next_run.as_deref(), now), None),
            (status.reason.unwrap_or_default(), None),
        ];
        if all_namespaces {
            row.insert(0, (dj.namespace().unwrap_or_default(), None));
        }
        t.row(row);
    }
    t.render(style)
}

/// One DataJob's state in a few lines.
pub(crate) fn one(dj: &DataJob, runs: &[RunRecord], now: DateTime<Utc>, style: Style) -> String {
    let tz = zone_of(dj);
    let status = dj.status.clone().unwrap_or_default();
    let state = state_of(dj);
    let mut out = format!(
        "{}  {}",
        style.paint(&dj.name_any(), Color::Bold),
        match state_color(&state) {
            Some(c) => style.paint(&state, c),
            None => state.clone(),
        }
    );
    if let Some(reason) = &status.reason {
        out.push_str(&format!("  {reason}"));
    }
    out.push('\n');
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        for line in m.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(last) = runs.first() {
        rows.push(("last run", history::run_line(last, tz, now)));
    } else {
        rows.push(("last run", "none yet".into()));
    }
    rows.push((
        "next run",
        match (&status.next_run, &dj.spec.schedule) {
            (Some(n), _) => terminal::status_time(n, tz, now),
            (None, Some(_)) if dj.spec.suspend == Some(true) => "none: suspended".into(),
            (None, Some(_)) => "-".into(),
            (None, None) => {
                "none: no schedule (runs once; `kubectl datajob trigger` for more)".into()
            }
        },
    ));
    let active: Vec<String> = runs
        .iter()
        .filter(|r| !r.state.is_finished())
        .map(|r| r.name.clone())
        .collect();
    rows.push((
        "active",
        if active.is_empty() {
            "none".into()
        } else {
            active.join(", ")
        },
    ));
    for (k, v) in rows {
        out.push_str(&format!("  {k:<9} {v}\n"));
    }
    out
}

/// A DataJob for `-o json|yaml`: as the API has it, without managed fields.
pub(crate) fn for_scripts(mut dj: DataJob) -> DataJob {
    dj.metadata.managed_fields = None;
    dj
}

pub(crate) async fn run(args: &StatusArgs, cluster: &Cluster, format: Format) -> Result<()> {
    let now = Utc::now();
    match &args.name {
        Some(name) => {
            let dj = cluster.datajob(name).await?;
            if format == Format::Name {
                terminal::print_names(terminal::DATAJOB_KIND, [dj.name_any().as_str()]);
                return Ok(());
            }
            if format != Format::Human {
                return terminal::print_data(format, &for_scripts(dj));
            }
            let runs = history::runs_of(cluster, &dj).await?;
            print!("{}", one(&dj, &runs, now, Style::stdout()));
        }
        None => {
            let api: Api<DataJob> = if args.all_namespaces {
                Api::all(cluster.client.clone())
            } else {
                cluster.api()
            };
            let what = if args.all_namespaces {
                "list DataJobs in all namespaces".to_string()
            } else {
                format!("list DataJobs in namespace {}", cluster.namespace)
            };
            let mut list = api
                .list(&ListParams::default())
                .await
                .map_err(cluster.error(what))?
                .items;
            list.sort_by_key(|d| (d.namespace(), d.name_any()));
            if format == Format::Name {
                let names: Vec<String> = list.iter().map(|d| d.name_any()).collect();
                terminal::print_names(terminal::DATAJOB_KIND, names.iter().map(String::as_str));
                return Ok(());
            }
            if format != Format::Human {
                let items: Vec<DataJob> = list.into_iter().map(for_scripts).collect();
                return terminal::print_data(
                    format,
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
                );
            }
            if list.is_empty() {
                let place = if args.all_namespaces {
                    "any namespace".to_string()
                } else {
                    format!("namespace {}", cluster.namespace)
                };
                eprintln!("No DataJobs in {place}.");
                return Ok(());
            }
            print!(
                "{}",
                table(&list, args.all_namespaces, now, Style::stdout())
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJobSpec, DataJobStatus, RunState};

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:12:00Z").unwrap()
    }

    fn failed() -> DataJob {
        let mut dj = DataJob::new(
            "bad-image",
            DataJobSpec {
                image: "ghcr.io/acme/churn:1.4.3".into(),
                ..Default::default()
            },
        );
        let run = RunRecord {
            name: "bad-image-29926452".into(),
            logical_time: "2026-11-25T10:12:00Z".into(),
            state: RunState::Failed,
            start_time: Some("2026-11-25T10:12:00Z".into()),
            finish_time: Some("2026-11-25T10:13:05Z".into()),
            reason: Some("ImageNotFound".into()),
            message: Some("ghcr.io/acme/churn:1.4.3 could not be pulled (manifest unknown)".into()),
            ..Default::default()
        };
        dj.status = Some(DataJobStatus {
            state: Some(RunState::Failed),
            reason: Some("ImageNotFound".into()),
            message: run.message.clone(),
            last_run: Some(run.clone()),
            recent_runs: vec![run],
            ..Default::default()
        });
        dj
    }

    #[test]
    fn the_table_is_kubectl_get_with_relative_times() {
        let mut nightly = DataJob::new(
            "churn-features",
            DataJobSpec {
                image: "x".into(),
                schedule: Some("0 3 * * *".into()),
                ..Default::default()
            },
        );
        nightly.status = Some(DataJobStatus {
            state: Some(RunState::Succeeded),
            next_run: Some("2026-11-26T03:00:00Z".into()),
            ..Default::default()
        });
        let t = table(&[nightly, failed()], false, now(), Style { color: false });
        assert_eq!(
            t,
            "NAME            SCHEDULE   LAST RUN  STATE      NEXT RUN  REASON\n\
             churn-features  0 3 * * *  -         Succeeded  in 16h\n\
             bad-image       -          just now  Failed     -         ImageNotFound\n"
        );
    }

    #[test]
    fn one_datajob_in_a_few_lines() {
        let dj = failed();
        let runs = dj.status.clone().unwrap().recent_runs;
        let text = one(&dj, &runs, now(), Style { color: false });
        assert!(
            text.starts_with(
                "bad-image  Failed  ImageNotFound\n  ghcr.io/acme/churn:1.4.3 could not be pulled"
            ),
            "{text}"
        );
        assert!(text.contains("last run  bad-image-29926452  2026-11-25 10:12 UTC  Failed (ImageNotFound) after 1m5s"), "{text}");
        assert!(text.contains("next run  none: no schedule"));
        assert!(text.contains("active    none"));
    }
}

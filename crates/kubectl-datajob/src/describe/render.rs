//! `describe`'s report for people, and its children in a line each.
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::{Child, Description, EventLine, Summary};
use crate::history;
use crate::terminal::{self, Color, Style, Table, state_color};
use datajob_api::RunRecord;
use datajob_core::labels::{self, JOB_NAME};

/// The CronJob and the run Jobs with their pods, in a line each.
pub(crate) fn children(
    name: &str,
    cronjob: Option<&CronJob>,
    jobs: &[Job],
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Vec<Child> {
    let mut out = Vec::new();
    if let Some(cj) = cronjob {
        let spec = cj.spec.clone();
        let last = cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .and_then(labels::from_k8s_time)
            .map_or_else(
                || "never scheduled yet".to_string(),
                |t| format!("last scheduled {}", terminal::relative(t, now)),
            );
        out.push(Child {
            kind: "CronJob".into(),
            name: cj.name_any(),
            state: if spec.suspend == Some(true) {
                "Suspended"
            } else {
                "Active"
            }
            .into(),
            detail: format!(
                "{} in {}, {last}",
                spec.schedule,
                spec.time_zone.unwrap_or_else(|| "UTC".into())
            ),
        });
    }
    let mut jobs: Vec<&Job> = jobs.iter().collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.name_any()));
    for job in jobs {
        let id = job.name_any();
        let run = datajob_core::decide::runs::run_of(job, name);
        let mut job_pods: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.labels().get(JOB_NAME) == Some(&id))
            .collect();
        job_pods.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
        let pod_words: Vec<String> = job_pods
            .iter()
            .map(|p| {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                match node {
                    Some(n) => format!("{} {phase} on {n}", p.name_any()),
                    None => format!("{} {phase}", p.name_any()),
                }
            })
            .collect();
        out.push(Child {
            kind: "Job".into(),
            name: id,
            state: run
                .as_ref()
                .map_or_else(|| "?".into(), |r| r.state.to_string()),
            detail: if pod_words.is_empty() {
                "no pods".into()
            } else {
                format!("pods: {}", pod_words.join(", "))
            },
        });
    }
    out
}

/// The CapacityBuffers kept for the DataJob's next run, in a line each: ready for
/// the autoscaler or not, and why the operator keeps it.
pub(crate) fn buffer_children(buffers: &[kube::core::DynamicObject]) -> Vec<Child> {
    buffers
        .iter()
        .map(|b| {
            let ready = b
                .data
                .pointer("/status/conditions")
                .and_then(serde_json::Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "ReadyForProvisioning")
                        .map(|c| c["status"] == "True")
                });
            Child {
                kind: "CapacityBuffer".into(),
                name: b.name_any(),
                state: match ready {
                    Some(true) => "Ready",
                    Some(false) => "NotReady",
                    None => "New",
                }
                .into(),
                detail: b
                    .annotations()
                    .get(datajob_core::decide::nodegroup::buffers::WHY)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The human report: the DataJob in short, its state and why, its children, recent runs
/// and events.
pub(crate) fn render(
    d: &Description,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
    style: Style,
) -> String {
    let mut out = String::new();
    let field =
        |out: &mut String, k: &str, v: &str| out.push_str(&format!("{:<11}{v}\n", format!("{k}:")));
    field(&mut out, "Name", &d.name);
    field(&mut out, "Namespace", &d.namespace);
    for (k, v) in d.spec.as_ref().map(spec_fields).unwrap_or_default() {
        field(&mut out, k, &v);
    }
    let state = match state_color(&d.state) {
        Some(c) => style.paint(&d.state, c),
        None => d.state.clone(),
    };
    let reason = d
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    field(&mut out, "State", &format!("{state}{reason}"));
    if let Some(logs) = logs_line(&d.name, &d.runs) {
        field(&mut out, "Logs", &logs);
    }
    out.push_str(&format!("\n{}\n", style.paint("Why:", Color::Bold)));
    for line in &d.why {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("\n{}\n", style.paint("Children:", Color::Bold)));
    out.push_str(&indented(children_table(&d.children, style)));
    if !d.runs.is_empty() {
        out.push_str(&format!("\n{}\n", style.paint("Recent runs:", Color::Bold)));
        out.push_str(&indented(history::table(&d.runs, tz, now, style)));
    }
    out.push_str(&format!("\n{}\n", style.paint("Events:", Color::Bold)));
    out.push_str(&indented(events_table(&d.events, now, style)));
    out
}

/// Where the runs' logs are once their pods go, from what the recent runs say
/// (`recentRuns[].logs`, which only an operator with a log archive writes); `None`
/// before any run finished.
pub(crate) fn logs_line(name: &str, runs: &[RunRecord]) -> Option<String> {
    let finished: Vec<&RunRecord> = runs.iter().filter(|r| r.state.is_finished()).collect();
    if finished.is_empty() {
        return None;
    }
    let told = |k: &str| {
        finished
            .iter()
            .filter(|r| r.logs.as_deref() == Some(k))
            .count()
    };
    let kept = told("Archived") + told("Cut");
    if kept + told("NotKept") + told("Empty") == 0 {
        return Some(
            "not archived: a run's logs go with its pod (TTL, history, node scale-down); the operator keeps no log archive (chart values logArchive.*)".into(),
        );
    }
    let mut line = format!(
        "kept in the log archive after the pods go ({kept} of the last {} finished runs); `kubectl datajob logs {name} --run ID` reads them",
        finished.len()
    );
    let not_kept = told("NotKept");
    if not_kept > 0 {
        line.push_str(&format!(
            "; {not_kept} run(s) whose logs the archive did not take in time"
        ));
    }
    Some(line)
}

/// Each line of `text`, indented by two spaces.
fn indented(text: String) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The DataJob's spec in short, one field per row.
fn spec_fields(s: &Summary) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Image", s.image.clone())];
    let mut line = s.command.clone();
    line.extend(s.args.iter().cloned());
    if !line.is_empty() {
        rows.push(("Command", terminal::shell_words(&line)));
    }
    rows.push((
        "Schedule",
        match &s.schedule {
            Some(e) => format!("{e} ({})", s.time_zone),
            None => "none (runs once)".into(),
        },
    ));
    rows.push(("Resources", s.resources()));
    rows.push((
        "Limits",
        format!(
            "deadline {}, retries {}, keeps {} finished runs",
            s.deadline, s.retries, s.history
        ),
    ));
    if !s.inputs.is_empty() {
        rows.push(("Inputs", s.inputs.join(", ")));
    }
    if let Some(o) = &s.output {
        rows.push(("Output", o.clone()));
    }
    if !s.params.is_empty() {
        let defaults: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push((
            "Params",
            format!(
                "{} (defaults; `trigger --arg KEY=VALUE` gives others)",
                defaults.join(" ")
            ),
        ));
    }
    if let Some(o) = &s.owner {
        rows.push(("Owner", o.clone()));
    }
    rows
}

/// The DataJob's CronJob, Jobs and pods, one row each (`none` when it has none).
fn children_table(children: &[Child], style: Style) -> String {
    if children.is_empty() {
        return "none".into();
    }
    let mut t = Table::new(&["KIND", "NAME", "STATE", "DETAIL"]);
    for c in children {
        t.row(vec![
            (c.kind.clone(), None),
            (c.name.clone(), None),
            (c.state.clone(), state_color(&c.state)),
            (c.detail.clone(), None),
        ]);
    }
    t.render(style)
}

/// The DataJob's events, in the order given (`none` when it has none).
fn events_table(events: &[EventLine], now: DateTime<Utc>, style: Style) -> String {
    if events.is_empty() {
        return "none".into();
    }
    let mut t = Table::new(&["AGE", "TYPE", "REASON", "MESSAGE"]);
    for e in events {
        let age = labels::parse_rfc3339(&e.time)
            .map_or_else(|| "-".into(), |t| terminal::relative(t, now));
        let color = (e.type_ == "Warning").then_some(Color::Yellow);
        t.row(vec![
            (age, None),
            (e.type_.clone(), color),
            (e.reason.clone(), None),
            (e.message.clone(), None),
        ]);
    }
    t.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::RunState;

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }

    #[test]
    fn the_spec_says_its_parameters_and_its_owner() {
        let dj: datajob_api::DataJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": "report", "namespace": "a"},
            "spec": {"image": "busybox", "owner": "team-growth", "params": {"day": "yesterday", "mode": "full"}},
        }))
        .unwrap();
        let r = datajob_core::validation::resolve(&dj, &Default::default()).unwrap();
        let rows = spec_fields(&Summary::from(&r));
        let get = |k: &str| rows.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("Params").as_deref(),
            Some("day=yesterday mode=full (defaults; `trigger --arg KEY=VALUE` gives others)")
        );
        assert_eq!(get("Owner").as_deref(), Some("team-growth"));
        let plain = datajob_api::DataJob::new(
            "p",
            datajob_api::DataJobSpec {
                image: "busybox".into(),
                ..Default::default()
            },
        );
        let r = datajob_core::validation::resolve(&plain, &Default::default()).unwrap();
        let rows = spec_fields(&Summary::from(&r));
        assert!(
            !rows.iter().any(|(n, _)| *n == "Params" || *n == "Owner"),
            "{rows:?}"
        );
    }

    #[test]
    fn the_logs_line_says_whether_the_archive_keeps_them() {
        let run = |state: RunState, logs: Option<&str>| RunRecord {
            name: "r".into(),
            state,
            logs: logs.map(Into::into),
            ..Default::default()
        };
        assert_eq!(logs_line("etl", &[run(RunState::Running, None)]), None);
        let plain = logs_line("etl", &[run(RunState::Succeeded, None)]).unwrap();
        assert!(plain.starts_with("not archived"), "{plain}");
        let kept = logs_line(
            "etl",
            &[
                run(RunState::Succeeded, Some("Archived")),
                run(RunState::Failed, Some("Cut")),
                run(RunState::Failed, Some("NotKept")),
            ],
        )
        .unwrap();
        assert!(kept.contains("(2 of the last 3 finished runs)"), "{kept}");
        assert!(kept.contains("kubectl datajob logs etl --run ID"), "{kept}");
        assert!(
            kept.contains("1 run(s) whose logs the archive did not take"),
            "{kept}"
        );
    }

    #[test]
    fn children_in_a_line_each() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "churn-features-29926260", "annotations": {"datajob.dev/logical-time": "2026-11-25T03:00:00Z"}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "churn-features-29926260-abcde", "labels": {"batch.kubernetes.io/job-name": "churn-features-29926260"}},
            "spec": {"nodeName": "kwok-large-0", "containers": []},
            "status": {"phase": "Succeeded"},
        }))
        .unwrap();
        let c = children("churn-features", None, &[job], &[pod], now());
        assert_eq!(
            c,
            vec![Child {
                kind: "Job".into(),
                name: "churn-features-29926260".into(),
                state: "Succeeded".into(),
                detail: "pods: churn-features-29926260-abcde Succeeded on kwok-large-0".into(),
            }]
        );
    }
}

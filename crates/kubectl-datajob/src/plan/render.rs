//! `plan`'s report for people: the spec with its defaults, the next runs, the objects
//! and their guards in words, the node group, the dry run.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::JobSpec;

use super::assess::{DryRun, Placement, Plan, Summary};
use crate::terminal::{self, Color, Style};
use datajob_core::decide::children::UNRETRYABLE_EXIT_CODES;
use datajob_core::labels;
use datajob_core::units;

/// The guards of a run's Job, in words.
fn job_guards(spec: &JobSpec) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(b) = spec.backoff_limit {
        out.push(format!(
            "at most {} attempt(s) (backoffLimit {b}); exit codes {} fail the run at once, evictions are not counted",
            b + 1,
            UNRETRYABLE_EXIT_CODES.map(|c| c.to_string()).join(" and ")
        ));
    }
    if let Some(d) = spec.active_deadline_seconds {
        out.push(format!(
            "activeDeadlineSeconds {d}: a backstop of {} for the deadline plus time to start",
            units::format_duration(Duration::from_secs(d.max(0) as u64))
        ));
    }
    if let Some(t) = spec.ttl_seconds_after_finished {
        out.push(format!(
            "deleted {} after it finished (ttlSecondsAfterFinished), its outcome kept in the status",
            units::format_duration(Duration::from_secs(t.max(0) as u64))
        ));
    }
    if let Some(sel) = spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.node_selector.as_ref())
        .filter(|s| !s.is_empty())
    {
        let pairs: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!("runs only on nodes {}", pairs.join(", ")));
    }
    out.push("one pod at a time, restartPolicy Never, non-root, no privilege escalation, requests = limits".into());
    out
}

/// The objects in words: what is created and how it is guarded.
fn objects_in_words(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for obj in &plan.objects {
        let kind = obj.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let name = obj
            .pointer("/metadata/name")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        match kind {
            "CronJob" => {
                let Ok(cj) =
                    serde_json::from_value::<k8s_openapi::api::batch::v1::CronJob>(obj.clone())
                else {
                    continue;
                };
                let spec = cj.spec;
                out.push(format!(
                    "CronJob {name}: schedule {:?} in {}, concurrencyPolicy Forbid (runs never overlap), startingDeadlineSeconds {}{}",
                    spec.schedule,
                    spec.time_zone.unwrap_or_default(),
                    spec.starting_deadline_seconds.unwrap_or_default(),
                    if spec.suspend == Some(true) { ", suspended" } else { "" }
                ));
                out.push(format!(
                    "each run: a Job {name}-<minutes since 1970>, started by the operator with its logical time"
                ));
                if let Some(js) = spec.job_template.spec {
                    out.extend(job_guards(&js).into_iter().map(|g| format!("  {g}")));
                }
            }
            "Job" => {
                let Ok(job) =
                    serde_json::from_value::<k8s_openapi::api::batch::v1::Job>(obj.clone())
                else {
                    continue;
                };
                out.push(format!(
                    "Job {name}: the one run, as soon as the DataJob is applied (logical time: its creation, to the minute)"
                ));
                if let Some(js) = job.spec {
                    out.extend(job_guards(&js).into_iter().map(|g| format!("  {g}")));
                }
            }
            _ => {}
        }
    }
    out
}

/// The human report of one plan: a refusal in the field's words, or what the DataJob
/// is, when it runs next, what it would create, where it would run, what would stop its
/// runs, and what the cluster said.
pub(crate) fn render(plan: &Plan, style: Style, now: DateTime<Utc>) -> String {
    let id = format!("{}/{}", plan.namespace, plan.name);
    if !plan.valid {
        return refusal(plan, &id, style);
    }
    let mut out = String::new();
    out.push_str(&style.paint(&format!("DataJob {id} is valid."), Color::Green));
    out.push_str("\n\n");
    if let Some(s) = &plan.spec {
        for (k, v) in summary_rows(s) {
            out.push_str(&format!("  {k:<10} {v}\n"));
        }
    }
    if !plan.next_runs.is_empty() {
        out.push_str(&next_runs(plan, style, now));
    }
    out.push_str("\nWould create (the full objects with -o yaml):\n");
    for l in objects_in_words(plan) {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str(&placement_warnings_and_dry_run(plan, style));
    out.push_str("Nothing was changed.\n");
    out
}

/// Why the DataJob `id` would be refused: each problem, and the cluster's refusal.
fn refusal(plan: &Plan, id: &str, style: Style) -> String {
    let mut out = String::new();
    let n = plan.problems.len();
    let head = if n == 0 {
        format!("DataJob {id} would be refused by the cluster.")
    } else {
        format!(
            "DataJob {id} is invalid: {n} problem{}.",
            if n == 1 { "" } else { "s" }
        )
    };
    out.push_str(&style.paint(&head, Color::Red));
    out.push_str("\n\n");
    for p in &plan.problems {
        out.push_str(&format!(
            "  {} {}\n",
            style.paint("✗", Color::Red),
            p.message
        ));
    }
    if let DryRun::Refused { cluster, message } = &plan.server_dry_run {
        out.push_str(&format!(
            "  {} the cluster at {cluster} refused it: {message}\n",
            style.paint("✗", Color::Red)
        ));
    }
    out.push_str("\n`kubectl apply` would refuse it with the same words. Fix the fields above and plan again.\n");
    out
}

/// What the DataJob is, one row per field that matters, in words.
fn summary_rows(s: &Summary) -> Vec<(&'static str, String)> {
    let mut rows: Vec<(&'static str, String)> = vec![("image", s.image.clone())];
    let mut line = s.command.clone();
    line.extend(s.args.iter().cloned());
    rows.push((
        "command",
        if line.is_empty() {
            "the image's own entrypoint".into()
        } else {
            terminal::shell_words(&line)
        },
    ));
    rows.push((
        "schedule",
        match &s.schedule {
            Some(e) => format!("{e} in {}", s.time_zone),
            None => "none: runs once, as soon as it is applied".into(),
        },
    ));
    rows.push(("resources", s.resources()));
    rows.push((
        "deadline",
        format!("{} (a run is stopped when it runs longer)", s.deadline),
    ));
    rows.push((
        "retries",
        format!("{} (at most {} attempts per run)", s.retries, s.retries + 1),
    ));
    rows.push((
        "history",
        format!("{} finished runs keep their Job and logs", s.history),
    ));
    if !s.inputs.is_empty() {
        rows.push(("inputs", s.inputs.join(", ")));
    }
    if let Some(o) = &s.output {
        rows.push((
            "output",
            format!("{o} (staged per run, published on success)"),
        ));
    }
    if s.suspend {
        rows.push((
            "suspend",
            "true: no runs are scheduled until it is false".into(),
        ));
    }
    rows
}

/// Its next run times, in its time zone, with how far off each is.
fn next_runs(plan: &Plan, style: Style, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let tz = plan
        .spec
        .as_ref()
        .map(|s| s.time_zone.clone())
        .unwrap_or_default();
    out.push_str(&format!("\nNext {} runs ({tz}):\n", plan.next_runs.len()));
    for r in &plan.next_runs {
        let when = labels::parse_rfc3339(&r.utc)
            .map(|t| terminal::relative(t, now))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}   {}\n",
            r.local,
            style.paint(&when, Color::Dim)
        ));
    }
    out
}

/// Where it would run and what a run costs, what would stop its runs, and what the
/// server-side dry run said.
fn placement_warnings_and_dry_run(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    match &plan.node_group {
        Some(Placement::Placed {
            group,
            node,
            price_per_hour,
            max_cost_per_run,
        }) => out.push_str(&format!(
            "\nNode group: {group} (a node: {node}; {price_per_hour:.2} an hour); a run costs at most {max_cost_per_run:.2} (its share of a node for its whole deadline).\n"
        )),
        Some(Placement::NoGroups { message } | Placement::Unknown { message }) => {
            out.push_str(&format!("\nNode group: {message}.\n"));
        }
        None => {}
    }
    if !plan.warnings.is_empty() {
        out.push_str(&format!(
            "\n{} (the DataJob is accepted; these would stop its runs):\n",
            style.paint("Warnings", Color::Yellow)
        ));
        for w in &plan.warnings {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    match &plan.server_dry_run {
        DryRun::Skipped { reason } => {
            out.push_str(&format!("Server-side dry run: skipped ({reason}).\n"));
        }
        DryRun::Accepted {
            cluster,
            namespace,
            would,
        } => out.push_str(&format!(
            "Server-side dry run: {} by {cluster} (namespace {namespace}; would {would} the DataJob).\n",
            style.paint("accepted", Color::Green)
        )),
        DryRun::Refused { cluster, message } => out.push_str(&format!(
            "Server-side dry run: {} by {cluster}: {message}\n",
            style.paint("refused", Color::Red)
        )),
    }
    out
}

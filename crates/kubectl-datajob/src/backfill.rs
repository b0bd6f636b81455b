//! `kubectl datajob backfill NAME --from T1 --to T2`: runs every scheduled time of a
//! DataJob in a range, by applying a `Backfill` (the operator works through it, and
//! GitOps can hold the same object), then shows its progress and a closing summary.
//! The input is checked first with the operator's own rules ([`datajob_core::decide::backfill::plan`]).
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::error::{CliError, Result};
use super::terminal::{self, Color, Format, Progress, Style};
use datajob_api::{Backfill, BackfillSpec, BackfillState, BackfillStatus, DataJob};
use datajob_core::decide::backfill::{self, Member, Plan};
use datajob_core::decide::dataflow::Upstream;
use datajob_core::labels;
use datajob_core::units;

fn duration(s: &str) -> std::result::Result<Duration, String> {
    units::parse_duration(s).map_err(|e| format!("{s:?} {e}"))
}

#[derive(clap::Args, Debug)]
pub struct BackfillArgs {
    /// The DataJob (it must have a schedule).
    pub name: String,

    /// The first logical time: RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01,
    /// the start of that day in the DataJob's time zone).
    #[arg(long, value_name = "TIME")]
    pub from: String,

    /// The last logical time, included: RFC 3339, or a date (the whole day, in the
    /// DataJob's time zone).
    #[arg(long, value_name = "TIME")]
    pub to: String,

    /// How many runs of each DataJob go at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub parallel: i32,

    /// Also run the times whose run had failed before (they are reported otherwise).
    #[arg(long)]
    pub rerun_failed: bool,

    /// Refuse a range with more scheduled times than this (the DataJob's and those of
    /// the DataJobs downstream together).
    #[arg(long, value_name = "N", default_value_t = datajob_api::backfill::DEFAULT_MAX_SLOTS, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub max_slots: i32,

    /// Do not run the DataJobs that read this one (by default they follow, time by time).
    #[arg(long)]
    pub no_downstream: bool,

    /// Apply the Backfill and return; `kubectl get backfill NAME` shows how it goes.
    #[arg(long)]
    pub no_wait: bool,

    /// Give up waiting after this long (the Backfill goes on).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,
}

/// A time the user typed: RFC 3339, or a date in `tz` (its start, or with `end` its end).
pub(crate) fn parse_time(s: &str, tz: Tz, end: bool) -> Option<DateTime<Utc>> {
    if let Some(t) = labels::parse_rfc3339(s) {
        return Some(t);
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let at = match end {
        false => day.and_hms_opt(0, 0, 0)?,
        true => day.and_hms_opt(23, 59, 59)?,
    };
    tz.from_local_datetime(&at)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The Backfill's name: the DataJob's and a hash of the range, so the same command
/// applies the same object (and running it again creates nothing new).
pub(crate) fn backfill_name(datajob: &str, from: &str, to: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{from}/{to}").as_bytes());
    let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{datajob}-{short}")
}

/// `[█████░░░░░] 5/10 · 1 failed · 2 going · 1m05s`
pub(crate) fn progress_line(status: &BackfillStatus, waited: Duration) -> String {
    let total = status.total.max(0) as usize;
    let done = (status.succeeded + status.skipped + status.failed).max(0) as usize;
    let width = 20;
    let filled = (done * width).checked_div(total).unwrap_or(0).min(width);
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(width - filled));
    let mut line = format!("[{bar}] {done}/{total}");
    if status.failed > 0 {
        line.push_str(&format!(" · {} failed", status.failed));
    }
    if status.active > 0 {
        line.push_str(&format!(" · {} going or waiting", status.active));
    }
    line.push_str(&format!(" · {}", terminal::short_duration(waited)));
    line
}

/// The closing summary: counts, every failed time, and what to do about them.
pub(crate) fn summary(name: &str, datajob: &str, status: &BackfillStatus, style: Style) -> String {
    let mut out = String::new();
    let head = format!(
        "backfill {name} of {datajob}: {} time(s), {} succeeded, {} had succeeded before, {} failed",
        status.total, status.succeeded, status.skipped, status.failed
    );
    let color = match status.failed {
        0 => Color::Green,
        _ => Color::Red,
    };
    out.push_str(&style.paint(&head, color));
    out.push('\n');
    for p in &status.data_jobs {
        out.push_str(&format!(
            "  {}: {} time(s), {} succeeded, {} skipped, {} failed\n",
            p.data_job, p.slots, p.succeeded, p.skipped, p.failed
        ));
    }
    let listed = status.failed_slots.len();
    if usize::try_from(status.failed).is_ok_and(|all| all > listed) {
        out.push_str(&format!(
            "  the latest {listed} of {} failed times:\n",
            status.failed
        ));
    }
    for f in &status.failed_slots {
        out.push_str(&format!(
            "  {} {} {} {}\n",
            style.paint("✗", Color::Red),
            f.data_job,
            f.logical_time,
            f.reason
        ));
    }
    if status.failed > 0 {
        out.push_str(&format!(
            "see why with `kubectl datajob runs {datajob}`; run them again with --rerun-failed (downstream times follow once their inputs succeed)\n"
        ));
    }
    out
}

pub(crate) async fn run(args: &BackfillArgs, cluster: &Cluster, format: Format) -> Result<()> {
    let dj = cluster.datajob(&args.name).await?;
    let spec = spec_of(args, &dj);
    let plan = check(args, cluster, &spec).await?;
    let name = backfill_name(&args.name, &spec.from, &spec.to);
    let api: Api<Backfill> = cluster.api();
    apply(args, cluster, &api, &name, &spec).await?;
    let times: usize = plan.iter().map(|(_, s)| s.len()).sum();
    let who: Vec<String> = plan
        .iter()
        .map(|(n, s)| format!("{n} ({})", s.len()))
        .collect();
    eprintln!(
        "backfill {name}: {times} scheduled time(s) from {} to {}: {}; at most {} at a time per DataJob",
        spec.from,
        spec.to,
        who.join(", "),
        args.parallel
    );
    if args.no_wait {
        match format {
            Format::Human => println!("{name}"),
            Format::Name => terminal::print_names(terminal::BACKFILL_KIND, [name.as_str()]),
            _ => terminal::print_data(
                format,
                &api.get(&name)
                    .await
                    .map_err(cluster.error(format!("get Backfill {name}")))?,
            )?,
        }
        return Ok(());
    }
    let done = wait_done(args, cluster, &api, &name).await?;
    let status = done.status.clone().unwrap_or_default();
    eprint!("{}", summary(&name, &args.name, &status, Style::stderr()));
    if format == Format::Name {
        terminal::print_names(terminal::BACKFILL_KIND, [name.as_str()]);
    } else if format != Format::Human {
        terminal::print_data(format, &done)?;
    }
    match status.failed {
        0 => Ok(()),
        _ => Err(CliError::Reported("some times failed")),
    }
}

/// The Backfill the flags ask for, its times in the DataJob's time zone.
fn spec_of(args: &BackfillArgs, dj: &DataJob) -> BackfillSpec {
    let tz = dj
        .spec
        .time_zone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(chrono_tz::UTC);
    let rfc =
        |s: &str, end: bool| parse_time(s, tz, end).map_or_else(|| s.to_string(), labels::rfc3339);
    BackfillSpec {
        data_job: args.name.clone(),
        from: rfc(&args.from, false),
        to: rfc(&args.to, true),
        parallel: Some(args.parallel),
        rerun_failed: Some(args.rerun_failed),
        downstream: Some(!args.no_downstream),
        max_slots: Some(args.max_slots),
    }
}

/// The operator's own rules, with the flags' names: refused before anything is applied.
/// Returns the times each DataJob runs.
async fn check(args: &BackfillArgs, cluster: &Cluster, spec: &BackfillSpec) -> Result<Plan> {
    let all = cluster
        .api::<DataJob>()
        .list(&Default::default())
        .await
        .map_err(cluster.error(format!("list DataJobs in {}", cluster.namespace)))?;
    let members: Vec<Member> = all
        .items
        .iter()
        .map(|d| Member {
            name: d.name_any(),
            schedule: Upstream::of(d, Vec::new()).schedule,
            inputs: d.spec.inputs.clone(),
        })
        .collect();
    backfill::plan(
        spec,
        &cluster.namespace,
        &members,
        Utc::now(),
        backfill::FLAGS,
    )
    .map_err(|problems| {
        let lines: Vec<String> = problems.0.iter().map(|p| format!("  ✗ {p}")).collect();
        CliError::Usage(format!(
            "cannot backfill {}:\n{}",
            args.name,
            lines.join("\n")
        ))
    })
}

/// Applies the Backfill `name` (server-side). The same range asked again with
/// --rerun-failed after it finished with failures starts afresh: the old one goes first.
async fn apply(
    args: &BackfillArgs,
    cluster: &Cluster,
    api: &Api<Backfill>,
    name: &str,
    spec: &BackfillSpec,
) -> Result<()> {
    let existing = api
        .get_opt(name)
        .await
        .map_err(cluster.error(format!("get Backfill {name}")))?;
    if let Some(b) = &existing
        && b.spec == *spec
        && args.rerun_failed
        && b.status
            .as_ref()
            .is_some_and(|s| s.state == Some(BackfillState::Complete) && s.failed > 0)
    {
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(cluster.error(format!("delete Backfill {name}")))?;
        for _ in 0..50 {
            if api.get_opt(name).await.ok().flatten().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let body = json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "Backfill",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("kubectl-datajob").force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(cluster.error(format!("apply Backfill {name}")))?;
    Ok(())
}

/// Follows the Backfill `name` on one progress line until the operator says it is
/// complete (for its current spec), refuses it, or `--timeout` passes.
async fn wait_done(
    args: &BackfillArgs,
    cluster: &Cluster,
    api: &Api<Backfill>,
    name: &str,
) -> Result<Backfill> {
    let progress = Progress::new();
    let started = Instant::now();
    let generation = api
        .get(name)
        .await
        .map_err(cluster.error(format!("get Backfill {name}")))?
        .metadata
        .generation;
    let done = loop {
        let b = api
            .get(name)
            .await
            .map_err(cluster.error(format!("get Backfill {name}")))?;
        let status = b.status.clone().unwrap_or_default();
        let current = status.observed_generation == generation && generation.is_some();
        match status.state {
            Some(BackfillState::Complete) if current => break b,
            Some(BackfillState::Invalid) if current => {
                progress.finish();
                return Err(CliError::Invalid(format!(
                    "the operator refused backfill {name}:\n  {}",
                    status.message.unwrap_or_default().replace('\n', "\n  ")
                )));
            }
            _ => {}
        }
        let waited = started.elapsed();
        if args.timeout.is_some_and(|t| waited >= t) {
            progress.finish();
            return Err(CliError::Local(format!(
                "gave up waiting after {}: backfill {name} is at {}; it goes on (`kubectl get backfill {name}`)",
                terminal::short_duration(waited),
                status.progress.unwrap_or_default()
            )));
        }
        let text = match current {
            true => progress_line(&status, waited),
            false if waited > Duration::from_secs(20) => format!(
                "backfill {name}: the operator has not picked it up yet (is it running?) · {}",
                terminal::short_duration(waited)
            ),
            false => format!(
                "backfill {name}: waiting for the operator · {}",
                terminal::short_duration(waited)
            ),
        };
        for _ in 0..4 {
            progress.set(text.clone());
            tokio::time::sleep(Duration::from_millis(125)).await;
        }
    };
    progress.finish();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::FailedSlot;

    #[test]
    fn dates_are_days_in_the_datajobs_time_zone() {
        let utc = chrono_tz::UTC;
        assert_eq!(
            parse_time("2026-11-01", utc, false)
                .map(labels::rfc3339)
                .as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-07", utc, true)
                .map(labels::rfc3339)
                .as_deref(),
            Some("2026-11-07T23:59:59Z")
        );
        assert_eq!(
            parse_time("2026-07-01", chrono_tz::Europe::London, false)
                .map(labels::rfc3339)
                .as_deref(),
            Some("2026-06-30T23:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-25T03:00:00Z", utc, true)
                .map(labels::rfc3339)
                .as_deref(),
            Some("2026-11-25T03:00:00Z")
        );
        assert!(parse_time("yesterday", utc, false).is_none());
    }

    #[test]
    fn the_same_range_is_the_same_backfill() {
        let a = backfill_name("raw", "2026-11-01T00:00:00Z", "2026-11-07T23:59:59Z");
        assert_eq!(
            a,
            backfill_name("raw", "2026-11-01T00:00:00Z", "2026-11-07T23:59:59Z")
        );
        assert_ne!(
            a,
            backfill_name("raw", "2026-11-01T00:00:00Z", "2026-11-08T23:59:59Z")
        );
        assert!(a.starts_with("raw-") && a.len() == 12, "{a}");
        assert!(backfill_name(&"n".repeat(52), "a", "b").len() <= 63);
    }

    #[test]
    fn progress_and_summary() {
        let status = BackfillStatus {
            total: 10,
            succeeded: 4,
            skipped: 1,
            failed: 1,
            active: 2,
            failed_slots: vec![FailedSlot {
                data_job: "raw".into(),
                logical_time: "2026-11-25T02:00:00Z".into(),
                reason: "RetriesExhausted".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            progress_line(&status, Duration::from_secs(65)),
            "[████████████░░░░░░░░] 6/10 · 1 failed · 2 going or waiting · 1m5s"
        );
        let s = summary("raw-1", "raw", &status, Style { color: false });
        assert!(
            s.starts_with(
                "backfill raw-1 of raw: 10 time(s), 4 succeeded, 1 had succeeded before, 1 failed"
            ),
            "{s}"
        );
        assert!(
            s.contains("✗ raw 2026-11-25T02:00:00Z RetriesExhausted"),
            "{s}"
        );
        assert!(s.contains("--rerun-failed"), "{s}");
    }
}

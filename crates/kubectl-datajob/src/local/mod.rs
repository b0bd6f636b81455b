//! `kubectl datajob run --local -f job.yaml`: one run of a DataJob on this machine, with
//! the cluster's semantics and no cluster: the same environment (read from the Job the
//! operator would create), one deadline for the whole run, the same retry and exit-code
//! rules, and a staging directory published only on success.
pub(crate) mod attempts;
pub(crate) mod engine;
pub(crate) mod env;
pub(crate) mod process;
mod setup;
pub(crate) mod staging;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;
use tokio::time::Instant;

use self::attempts::{AttemptEnd, Decision, Outcome, decide};
use self::engine::{Choice, EngineArg};
use self::process::{Attempt, Runner};
use self::setup::{Prepared, Setup, prepare};
use super::error::{CliError, Result};
use super::terminal::{self, Color, Format, Progress, Style};
use datajob_api::RunState;
use datajob_core::labels;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Run on this machine, with no cluster (the only mode: to run on the cluster,
    /// `kubectl apply` the DataJob and `kubectl datajob trigger` it).
    #[arg(long)]
    pub local: bool,

    /// The DataJob file (YAML; `-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Which DataJob of the file to run, when it holds several.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where to run: a container engine that works and has the image, else the host.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    pub engine: EngineArg,

    /// The run's logical time (RFC 3339, e.g. 2026-11-25T03:00:00Z). Default: now,
    /// to the minute, like a triggered run.
    #[arg(long, value_name = "TIME")]
    pub logical_time: Option<String>,

    /// A parameter the DataJob declares in spec.params, as KEY=VALUE (repeat for more),
    /// exactly as `trigger --arg`: the run gets it as DATAJOB_ARG_<KEY>.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = datajob_core::params::parse_arg)]
    pub args: Vec<(String, String)>,

    /// Set an environment variable of the run, e.g. one that comes from a Secret on the
    /// cluster. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Where a run's scratch and home, and outputs that are not local paths (`pvc://`,
    /// object stores) are kept.
    #[arg(long, value_name = "DIR", default_value = ".datajob")]
    pub state_dir: PathBuf,
}

/// One attempt, for `-o json|yaml`.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptReport {
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub seconds: f64,
}

/// What `run --local -o json|yaml` prints at the end.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LocalRunReport {
    pub datajob: String,
    pub namespace: String,
    pub run_id: String,
    pub logical_time: String,
    /// `host`, `docker` or `podman`.
    pub engine: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    pub attempts: Vec<AttemptReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
    /// The partition published (`<root>/logical_time=<time>`), when the run succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// The inputs read: name, logical time, directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputReport>,
}

/// An input a local run read.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InputReport {
    pub name: String,
    pub logical_time: String,
    pub location: String,
}

fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        terminal::short_duration(d)
    }
}

/// The final line: state, reason, duration.
pub(crate) fn final_line(
    outcome: &Outcome,
    run_id: &str,
    took: Duration,
    attempts: u32,
    style: Style,
) -> String {
    let tries = format!("{attempts} attempt{}", if attempts == 1 { "" } else { "s" });
    match outcome.state {
        RunState::Succeeded => format!(
            "{} after {} (run {run_id}, {tries})",
            style.paint("✓ succeeded", Color::Green),
            seconds(took)
        ),
        _ => format!(
            "{}: {} after {} (run {run_id}, {tries}): {}",
            style.paint("✗ failed", Color::Red),
            outcome.reason.as_deref().unwrap_or("Failed"),
            seconds(took),
            outcome.message
        ),
    }
}

/// The program and arguments of an attempt on the host or in `engine`.
fn command_line(s: &Setup, container: &str) -> (String, Vec<String>) {
    let (cmd, args) = (&s.command, &s.args);
    let data: Vec<(&std::path::Path, bool)> = s
        .stage
        .iter()
        .map(|st| (st.root.as_path(), false))
        .chain(
            s.inputs
                .iter()
                .filter(|(_, _, d)| !d.as_os_str().is_empty())
                .map(|(_, _, d)| (d.as_path(), true)),
        )
        .collect();
    match &s.choice {
        Choice::Container { engine, .. } => (
            engine.program().to_string(),
            engine::run_args(
                *engine,
                container,
                &s.r,
                &s.env.vars,
                cmd,
                args,
                engine::Mounts {
                    scratch: &s.scratch,
                    home: &s.home,
                    data: &data,
                },
            ),
        ),
        Choice::Host { .. } => {
            let mut words: Vec<String> = cmd.to_vec();
            words.extend(args.iter().cloned());
            let program = words.first().cloned().unwrap_or_default();
            (program, words.into_iter().skip(1).collect())
        }
    }
}

/// Says where and how the run goes, and what differs from the cluster.
fn announce(s: &Setup, progress: &Progress) {
    let say = |line: String| progress.say(&line);
    let r = &s.r;
    let (where_, why) = match &s.choice {
        Choice::Container { engine, why } => (format!("in {}", engine.program()), why.clone()),
        Choice::Host { why } => ("on the host".to_string(), why.clone()),
    };
    say(format!(
        "running DataJob {}/{} {where_} ({why})",
        r.namespace, r.name
    ));
    say(format!(
        "run {}, logical time {}, deadline {}, at most {} attempt(s)",
        s.run_id,
        labels::rfc3339(s.logical_time),
        datajob_core::units::format_duration(r.deadline),
        r.retries + 1
    ));
    match s.choice {
        Choice::Host { .. } => {
            let yours = std::env::vars_os()
                .filter(|(k, _)| {
                    !k.to_string_lossy()
                        .starts_with(datajob_core::validation::RESERVED_ENV_PREFIX)
                        && !s.env.vars.iter().any(|(n, _)| std::ffi::OsStr::new(n) == k)
                })
                .count();
            say(format!(
                "on the host the command runs as you, with your files and tools; cpu and memory are not limited; HOME and DATAJOB_SCRATCH are {} and {}",
                s.home.display(),
                s.scratch.display()
            ));
            say(format!(
                "environment: {} variable(s) of the run ({}) and {yours} of your own environment (all of it but DATAJOB_*); use --engine docker or podman to pass only the run's",
                s.env.vars.len(),
                s.env
                    .vars
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Choice::Container { .. } => say(format!(
            "as user {} (never root, as on the cluster), with /scratch and HOME=/home/datajob from {}",
            r.run_as_user,
            s.scratch.parent().unwrap_or(&s.scratch).display()
        )),
    }
    if r.gpu > 0 {
        say(format!(
            "warning: the DataJob asks for {} GPU(s); a local run gets none",
            r.gpu
        ));
    }
    for w in &s.env.warnings {
        say(format!("warning: {w}"));
    }
    if let Some(st) = &s.stage {
        say(format!(
            "staging: {} (published as {} only if the run succeeds)",
            st.dir.display(),
            st.partition.display()
        ));
        if let Some(n) = &st.note {
            say(format!("note: {n}"));
        }
    }
    for (input, at, dir) in &s.inputs {
        match (at.is_empty(), dir.as_os_str().is_empty()) {
            (_, true) => say(format!("input {input}: it has no output, nothing to read")),
            (true, false) => say(format!("input {input}: {} (given with -e)", dir.display())),
            (false, false) => say(format!(
                "input {input}: its publication of {at}, {}",
                dir.display()
            )),
        }
    }
}

/// How an attempt runs: in the engine's container `container`, or on the host, where the
/// caller's own environment stays (tools, PATH) except the names the operator reserves:
/// a run sees only its own DATAJOB_ variables, as a pod.
fn runner(s: &Setup, container: String, command: &mut Command) -> Runner {
    match &s.choice {
        Choice::Container { engine, .. } => Runner::Container {
            engine: *engine,
            name: container,
        },
        Choice::Host { .. } => {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy()
                    .starts_with(datajob_core::validation::RESERVED_ENV_PREFIX)
                {
                    command.env_remove(k);
                }
            }
            command.envs(s.env.vars.iter().map(|(k, v)| (k, v)));
            Runner::Host
        }
    }
}

/// Keeps the progress line of attempt `n` of `of` fresh: the time since the run
/// `started` and what is left before its deadline. Runs until aborted.
async fn tick(
    progress: Arc<Progress>,
    run_id: String,
    (n, of): (u32, u32),
    started: Instant,
    deadline_at: Instant,
) {
    loop {
        let now = Instant::now();
        progress.set(format!(
            "run {run_id} · attempt {n}/{of} · {} · deadline in {}",
            seconds(now - started),
            terminal::short_duration(deadline_at.saturating_duration_since(now))
        ));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

/// The attempts, until one decides the run. Returns the outcome and each attempt.
async fn attempts(
    s: &Setup,
    progress: &Arc<Progress>,
    format: Format,
) -> Result<(Outcome, Vec<AttemptReport>)> {
    let r = &s.r;
    let style = Style::stderr();
    let started = Instant::now();
    let deadline_at = started + r.deadline;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut reports = Vec::new();
    let max_attempts = r.retries.max(0) as u32 + 1;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        if let Some(st) = &s.stage {
            let other_user = matches!(s.choice, Choice::Container { .. });
            staging::prepare(&st.root, &s.run_id, other_user).map_err(CliError::io(format!(
                "preparing the staging directory {}",
                st.dir.display()
            )))?;
        }
        let container = format!("datajob-{}-{attempt}", s.run_id);
        let (program, argv) = command_line(s, &container);
        let mut command = Command::new(&program);
        command.args(&argv);
        let runner = runner(s, container, &mut command);
        progress.say(&format!(
            "{} attempt {attempt} of {max_attempts}: {}",
            style.paint("▶", Color::Cyan),
            terminal::shell_words(&[vec![program.clone()], argv.clone()].concat())
        ));
        let attempt_start = Instant::now();
        let ticker = tokio::spawn(tick(
            progress.clone(),
            s.run_id.clone(),
            (attempt, max_attempts),
            started,
            deadline_at,
        ));
        let a = Attempt {
            progress: progress.clone(),
            stdout_to_stderr: format != Format::Human,
            deadline_at,
        };
        let mut end = process::run(command, &program, &runner, &a, interrupt.as_mut()).await;
        ticker.abort();
        progress.finish();
        if let Runner::Container { engine, name } = &runner {
            let oom = process::finish_container(*engine, name).await;
            if let AttemptEnd::Exited { code, .. } = end {
                end = AttemptEnd::Exited { code, oom };
            }
        }
        reports.push(AttemptReport {
            attempt,
            exit_code: end.exit_code(),
            seconds: attempt_start.elapsed().as_secs_f64(),
        });
        if let Decision::Finish(o) = decide(&end, attempt, max_attempts - 1, r.deadline) {
            return Ok((o, reports));
        }
        progress.say(&format!(
            "attempt {attempt} failed with exit code {}; retrying ({} left)",
            end.exit_code().unwrap_or_default(),
            max_attempts - attempt
        ));
        // The cluster backs off 10s, 20s, …; locally a short pause, within the deadline.
        let pause = (Instant::now() + Duration::from_secs(1)).min(deadline_at);
        tokio::select! {
            _ = tokio::time::sleep_until(pause) => {}
            _ = interrupt.as_mut() => return Ok((attempts::interrupted(), reports)),
        }
        if Instant::now() >= deadline_at {
            return Ok((attempts::deadline_exceeded(r.deadline), reports));
        }
    }
}

/// `run --local`.
pub(crate) async fn run(args: &RunArgs, namespace: Option<&str>, format: Format) -> Result<()> {
    let progress = Arc::new(Progress::new());
    let setup = match prepare(args, namespace, &progress).await? {
        Prepared::Ready(s) => *s,
        Prepared::NotStarted {
            r,
            run_id,
            logical_time,
            why,
        } => {
            let style = Style::stderr();
            progress.say(&format!(
                "{}: {}: {} (run {run_id} did not start)",
                style.paint("✗ not started", Color::Red),
                why.reason,
                why.message
            ));
            if format != Format::Human {
                let outcome = Outcome {
                    state: RunState::Waiting,
                    reason: Some(why.reason.to_string()),
                    message: why.message,
                };
                let report = LocalRunReport {
                    datajob: r.name.clone(),
                    namespace: r.namespace.clone(),
                    run_id,
                    logical_time: labels::rfc3339(logical_time),
                    engine: String::new(),
                    outcome,
                    seconds: 0.0,
                    attempts: Vec::new(),
                    staging: None,
                    published: None,
                    inputs: Vec::new(),
                };
                terminal::print_data(format, &report)?;
            }
            return Err(CliError::Reported("the run did not start"));
        }
    };
    announce(&setup, &progress);
    let started = Instant::now();
    let (outcome, reports) = attempts(&setup, &progress, format).await?;
    let took = started.elapsed();
    let published = publish(&setup, &outcome, &progress)?;
    progress.say(&final_line(
        &outcome,
        &setup.run_id,
        took,
        reports.len() as u32,
        Style::stderr(),
    ));
    let failed = outcome.state != RunState::Succeeded;
    if format != Format::Human {
        let report = report(&setup, outcome, took, reports, published);
        terminal::print_data(format, &report)?;
    }
    match failed {
        false => Ok(()),
        true => Err(CliError::Reported("the run failed")),
    }
}

/// Publishes the staged output of a run that succeeded (as the operator's `publish`
/// step does); says where it stays otherwise. Returns the partition published.
fn publish(setup: &Setup, outcome: &Outcome, progress: &Progress) -> Result<Option<String>> {
    let Some(st) = &setup.stage else {
        return Ok(None);
    };
    if outcome.state != RunState::Succeeded {
        progress.say(&format!(
            "not published: the staged output stays in {} for you to look at",
            st.dir.display()
        ));
        return Ok(None);
    }
    let origin = datajob_publish::Origin {
        data_job: Some(setup.r.name.clone()),
        namespace: Some(setup.r.namespace.clone()),
    };
    let (partition, manifest) =
        staging::publish(&st.root, &setup.run_id, setup.logical_time, &origin).map_err(
            CliError::io(format!(
                "publishing {} as {}",
                st.dir.display(),
                st.partition.display()
            )),
        )?;
    progress.say(&format!(
        "published the staged output as {} ({} file(s), manifest {})",
        partition.display(),
        manifest.files.len(),
        datajob_core::output::MANIFEST
    ));
    Ok(Some(partition.display().to_string()))
}

/// What `-o json|yaml` prints about a run that started.
fn report(
    setup: &Setup,
    outcome: Outcome,
    took: Duration,
    attempts: Vec<AttemptReport>,
    published: Option<String>,
) -> LocalRunReport {
    LocalRunReport {
        datajob: setup.r.name.clone(),
        namespace: setup.r.namespace.clone(),
        run_id: setup.run_id.clone(),
        logical_time: labels::rfc3339(setup.logical_time),
        engine: match &setup.choice {
            Choice::Container { engine, .. } => engine.program().into(),
            Choice::Host { .. } => "host".into(),
        },
        outcome,
        seconds: took.as_secs_f64(),
        attempts,
        staging: setup.stage.as_ref().map(|st| st.dir.display().to_string()),
        published,
        inputs: setup
            .inputs
            .iter()
            .map(|(name, at, dir)| InputReport {
                name: name.clone(),
                logical_time: at.clone(),
                location: dir.display().to_string(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_says_state_reason_and_duration() {
        let plain = Style { color: false };
        let ok = Outcome {
            state: RunState::Succeeded,
            reason: None,
            message: String::new(),
        };
        assert_eq!(
            final_line(&ok, "a-1", Duration::from_millis(1234), 1, plain),
            "✓ succeeded after 1.2s (run a-1, 1 attempt)"
        );
        let bad = attempts::deadline_exceeded(Duration::from_secs(2));
        assert_eq!(
            final_line(&bad, "a-1", Duration::from_secs(2), 1, plain),
            "✗ failed: DeadlineExceeded after 2.0s (run a-1, 1 attempt): the run took longer than its deadline (2s) and was stopped; raise spec.deadline or make the job faster"
        );
    }
}

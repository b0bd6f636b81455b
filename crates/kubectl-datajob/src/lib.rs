//! `kubectl datajob`: the kubectl plugin for DataJobs (see docs/cli.md). This module
//! holds the command line; each command lives in its own module, with its decisions
//! and formatting as pure functions and the API calls at the edge.
pub(crate) mod archive;
pub(crate) mod backfill;
pub(crate) mod cluster;
pub mod complete;
pub(crate) mod describe;
pub mod error;
pub(crate) mod flags;
pub(crate) mod history;
pub(crate) mod local;
pub(crate) mod logs;
pub(crate) mod manifest;
pub mod plan;
pub(crate) mod status;
pub(crate) mod terminal;
pub(crate) mod trigger;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use self::cluster::{Cluster, ClusterArgs};
use self::error::{CliError, Result};
use self::terminal::Format;

const EXAMPLES: &str = "\
Examples:
  kubectl datajob plan -f churn.yaml            # check a DataJob before applying it
  kubectl datajob run --local -f churn.yaml     # run it on this machine
  kubectl datajob status                        # every DataJob in the namespace
  kubectl datajob runs churn-features           # its run history
  kubectl datajob logs churn-features -f        # the latest run's logs, live
  kubectl datajob trigger churn-features --wait # run it now and wait for the outcome
  kubectl datajob backfill churn-features --from 2026-11-01 --to 2026-11-07  # every time in a range
  kubectl datajob describe churn-features       # why it is in its state

Exit codes: 0 ok; 1 the DataJob is invalid or its run failed; 2 wrong usage;
3 the command could not do its work (no cluster, no such DataJob, unreadable file).";

/// Run batch data jobs on Kubernetes: check, run locally, trigger and inspect DataJobs.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-datajob",
    bin_name = "kubectl datajob",
    version,
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format: human text (default), json / yaml for scripts, or name
    /// (`kind/name` per object, as kubectl) for status, runs, trigger and backfill.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value_t = Format::Human,
        hide_default_value = true,
        help_heading = "Output"
    )]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a DataJob file as admission would, show its next runs and what it would create. Changes nothing.
    #[command(
        long_about = "Check a DataJob file exactly as the cluster's admission would (the same code and words), \
show its next 5 run times in its time zone and the guarded CronJob or Job the operator \
would create (in full with -o yaml). With a reachable cluster it also does a server-side \
dry run. Changes nothing. Exits 1 when the DataJob is invalid.",
        after_help = "Examples:\n  kubectl datajob plan -f churn.yaml\n  kubectl datajob plan -f churn.yaml -o yaml --offline"
    )]
    Plan(plan::PlanArgs),

    /// Run a DataJob on this machine (--local), with the cluster's env, deadline, retries and staging.
    #[command(
        long_about = "Run a DataJob on this machine, with the same semantics as the cluster: the \
environment variables the operator injects, one deadline for the whole run (the run is \
stopped when it passes), the same retries and exit-code rules (126 and 127 are never \
retried), and a staging directory that is published only when the run succeeds. Uses \
docker or podman when one works and has the image, and otherwise runs the command \
directly on the host. No cluster is needed.",
        after_help = "Examples:\n  kubectl datajob run --local -f churn.yaml\n  kubectl datajob run --local -f churn.yaml --engine host --logical-time 2026-11-25T03:00:00Z -e DB_PASSWORD=secret"
    )]
    Run(local::RunArgs),

    /// Show the state of a DataJob, or a table of every DataJob in the namespace.
    Status(status::StatusArgs),

    /// Show a DataJob's run history: run id, logical time, state, reason, start, duration.
    Runs(history::RunsArgs),

    /// Print the logs of a DataJob's latest run (or --run ID), picking its pod for you.
    Logs(logs::LogsArgs),

    /// Start a run of a DataJob now (its logical time: this minute).
    Trigger(trigger::TriggerArgs),

    /// Run every scheduled time of a DataJob in a range, oldest first; downstream DataJobs follow.
    #[command(
        long_about = "Run every scheduled time of a DataJob in [--from, --to] once, oldest first, at most \
--parallel at a time, by applying a Backfill (the operator works through it and carries on \
after a restart). Times that already succeeded are skipped; times that failed before run \
again only with --rerun-failed. DataJobs that read this one follow, each time once its \
inputs published. Shows a progress bar and a closing summary; exits 1 when a time failed.",
        after_help = "Examples:\n  kubectl datajob backfill churn-features --from 2026-11-01 --to 2026-11-07\n  kubectl datajob backfill raw-events --from 2026-11-25T00:00:00Z --to 2026-11-25T05:00:00Z --parallel 2 --rerun-failed"
    )]
    Backfill(backfill::BackfillArgs),

    /// Explain a DataJob: what it is, what it created, and why it is in its state.
    Describe(describe::DescribeArgs),

    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(
        after_help = "Example:\n  kubectl-datajob completion bash > /etc/bash_completion.d/kubectl-datajob"
    )]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs the command line; the process exit code comes back.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::Reported(_)) {
                let style = terminal::Style::stderr();
                eprintln!("{} {e}", style.paint("error:", terminal::Color::Red));
            }
            e.exit_code()
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<()> {
    let format = cli.output;
    match &cli.command {
        Command::Plan(args) => {
            terminal::no_names(format, "plan")?;
            plan::run(args, &cli.cluster, format).await
        }
        Command::Run(args) => {
            terminal::no_names(format, "run --local")?;
            // The kubeconfig's namespace, as kubectl would; the cluster is never contacted.
            let namespace = match &cli.cluster.namespace {
                Some(ns) => Some(ns.clone()),
                None => cluster::load_config(&cli.cluster)
                    .await
                    .ok()
                    .map(|c| c.default_namespace),
            };
            local::run(args, namespace.as_deref(), format).await
        }
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "kubectl-datajob", &mut std::io::stdout());
            Ok(())
        }
        Command::Status(args) => {
            status::run(args, &Cluster::connect(&cli.cluster).await?, format).await
        }
        Command::Runs(args) => {
            history::run(args, &Cluster::connect(&cli.cluster).await?, format).await
        }
        Command::Logs(args) => {
            terminal::no_names(format, "logs")?;
            logs::run(args, &Cluster::connect(&cli.cluster).await?).await
        }
        Command::Trigger(args) => {
            trigger::run(args, &Cluster::connect(&cli.cluster).await?, format).await
        }
        Command::Backfill(args) => {
            backfill::run(args, &Cluster::connect(&cli.cluster).await?, format).await
        }
        Command::Describe(args) => {
            terminal::no_names(format, "describe")?;
            describe::run(args, &Cluster::connect(&cli.cluster).await?, format).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_style_flags_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-datajob",
            "logs",
            "churn",
            "-n",
            "analytics",
            "--context",
            "prod",
            "-f",
        ])
        .unwrap();
        assert_eq!(cli.cluster.namespace.as_deref(), Some("analytics"));
        assert_eq!(cli.cluster.context.as_deref(), Some("prod"));
        assert!(matches!(cli.command, Command::Logs(ref l) if l.follow && l.name == "churn"));
        let cli = Cli::try_parse_from(["kubectl-datajob", "-o", "json", "runs", "churn"]).unwrap();
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn the_standard_kubeconfig_flags() {
        let cli = Cli::try_parse_from([
            "kubectl-datajob",
            "status",
            "--cluster",
            "prod-eu",
            "--user",
            "alice",
            "--as",
            "system:serviceaccount:analytics:ci",
            "--as-group",
            "devs",
            "--as-group",
            "oncall",
            "--request-timeout",
            "1m30s",
            "-o",
            "name",
        ])
        .unwrap();
        let c = &cli.cluster;
        assert_eq!(c.cluster.as_deref(), Some("prod-eu"));
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(
            c.as_user.as_deref(),
            Some("system:serviceaccount:analytics:ci")
        );
        assert_eq!(c.as_group, ["devs", "oncall"]);
        assert_eq!(c.request_timeout, Some(std::time::Duration::from_secs(90)));
        assert_eq!(cli.output, Format::Name);
        let e = Cli::try_parse_from(["kubectl-datajob", "status", "--request-timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--request-timeout \"soon\" is not a duration"),
            "{e}"
        );
    }
}

//! Everything a local run decides before its first attempt: which DataJob, its
//! resolved spec, its logical time and run id, where it runs, its environment and its
//! staging directory.
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::engine::{self, Choice, Engine, EngineArg, Probe};
use super::{RunArgs, env, staging};
use crate::api::DataJob;
use crate::children::{self, Guards};
use crate::cli::error::{CliError, Result};
use crate::cli::manifest::{self, Document};
use crate::cli::output::Progress;
use crate::labels;
use crate::validation::{Limits, Resolved, resolve};

/// Picks the DataJob to run from the file's documents.
fn pick(docs: Vec<Document>, name: Option<&str>, path: &str) -> Result<DataJob> {
    let mut found = Vec::new();
    for doc in docs {
        match doc {
            Document::DataJob(dj) => found.push(*dj),
            Document::Malformed { name: n, problem } if name.is_none_or(|w| w == n) => {
                return Err(CliError::Invalid(format!(
                    "DataJob {n} is invalid:\n  ✗ {problem}"
                )));
            }
            _ => {}
        }
    }
    let names: Vec<String> = found.iter().map(|d| d.name_any()).collect();
    match name {
        Some(n) => found
            .into_iter()
            .find(|d| d.name_any() == n)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{path} has no DataJob named {n}; it has {}",
                    names.join(", ")
                ))
            }),
        None if found.len() == 1 => found.pop().ok_or_else(|| CliError::Usage(String::new())),
        None if found.is_empty() => Err(CliError::Manifest {
            path: path.into(),
            message: "has no DataJob in it".into(),
        }),
        None => Err(CliError::Usage(format!(
            "{path} holds several DataJobs ({}); pick one with --name",
            names.join(", ")
        ))),
    }
}

fn parse_env(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--env {p:?}: write NAME=VALUE")))
        })
        .collect()
}

/// The staging directory of a run whose DataJob has an `output`.
pub(super) struct Stage {
    pub(super) output: String,
    pub(super) dir: PathBuf,
    pub(super) target: PathBuf,
    pub(super) note: Option<String>,
}

/// Everything decided before the first attempt.
pub(super) struct Setup {
    pub(super) r: Resolved,
    pub(super) run_id: String,
    pub(super) logical_time: DateTime<Utc>,
    pub(super) choice: Choice,
    pub(super) env: env::Env,
    pub(super) command: Vec<String>,
    pub(super) args: Vec<String>,
    pub(super) stage: Option<Stage>,
    /// The run's scratch and home directories on this machine: mounted at `/scratch` and
    /// `/home/datajob` in a container, named by `DATAJOB_SCRATCH` and `HOME` on the host.
    pub(super) scratch: PathBuf,
    pub(super) home: PathBuf,
}

/// An empty directory anyone may write to (the container's user is not this user).
fn writable_dir(dir: &std::path::Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
        .map_err(CliError::io(format!("making {} writable", dir.display())))
}

pub(super) async fn prepare(
    args: &RunArgs,
    namespace: Option<&str>,
    progress: &Progress,
) -> Result<Setup> {
    if !args.local {
        return Err(CliError::Usage(
            "run needs --local: it runs the DataJob on this machine. To run it on the cluster, `kubectl apply -f` it and `kubectl datajob trigger NAME`".into(),
        ));
    }
    let (label, docs) = manifest::read(&args.file)?;
    let mut dj = pick(docs, args.name.as_deref(), &label)?;
    if dj.metadata.namespace.is_none() {
        dj.metadata.namespace = Some(namespace.unwrap_or("default").to_string());
    }
    let r = resolve(&dj, &Limits::default()).map_err(|problems| {
        let lines: Vec<String> = problems.0.iter().map(|p| format!("  ✗ {p}")).collect();
        CliError::Invalid(format!(
            "DataJob {} is invalid:\n{}",
            dj.name_any(),
            lines.join("\n")
        ))
    })?;
    let logical_time = match &args.logical_time {
        Some(s) => labels::parse_rfc3339(s).ok_or_else(|| {
            CliError::Usage(format!(
                "--logical-time {s:?} is not an RFC 3339 time; write e.g. 2026-11-25T03:00:00Z"
            ))
        })?,
        None => Utc::now(),
    };
    let logical_time = labels::truncate_to_minute(logical_time);
    let run_id = labels::run_id(&r.name, logical_time);
    let overrides = parse_env(&args.env)?;

    let probes: Vec<Probe> = match args.engine {
        EngineArg::Host => Vec::new(),
        EngineArg::Docker => vec![engine::probe(Engine::Docker, &r.image).await],
        EngineArg::Podman => vec![engine::probe(Engine::Podman, &r.image).await],
        EngineArg::Auto => {
            progress.set("looking for a container engine");
            let mut v = vec![engine::probe(Engine::Docker, &r.image).await];
            if !(v[0].working && v[0].image_present) {
                v.push(engine::probe(Engine::Podman, &r.image).await);
            }
            progress.finish();
            v
        }
    };
    let choice = engine::choose(args.engine, &probes, &r.image, !r.command.is_empty())
        .map_err(CliError::Local)?;

    // The environment of the Job the operator would create.
    let job = children::job(&dj, &r, &Guards::default(), logical_time, false);
    let mut env = env::container_env(&job, &format!("{run_id}-local"));
    let state_dir = std::env::current_dir()
        .map_err(CliError::io("reading the current directory"))?
        .join(&args.state_dir);
    let stage = r.output.as_ref().map(|o| {
        let (target, note) = staging::publish_target(o, &state_dir, &run_id);
        Stage {
            output: o.clone(),
            dir: staging::staging_dir(&state_dir, &run_id),
            target,
            note,
        }
    });
    if let Some(st) = &stage {
        env.set("DATAJOB_OUTPUT", st.output.clone());
        let seen = match &choice {
            Choice::Container { .. } => engine::CONTAINER_STAGING.to_string(),
            Choice::Host { .. } => st.dir.display().to_string(),
        };
        env.set("DATAJOB_STAGING", seen);
    }
    // Scratch and home, as the pod has them: empty and writable by the run's user.
    let run_dir = state_dir.join("runs").join(&run_id);
    let (scratch, home) = (run_dir.join("scratch"), run_dir.join("home"));
    writable_dir(&scratch)?;
    writable_dir(&home)?;
    if let Choice::Host { .. } = choice {
        env.set("HOME", home.display().to_string());
        env.set("DATAJOB_SCRATCH", scratch.display().to_string());
    }
    for (k, v) in &overrides {
        env.set(k, v.clone());
        let unset = format!("{k} is not set");
        env.warnings.retain(|w| !w.starts_with(&unset));
    }
    Ok(Setup {
        command: env.expand_all(&r.command),
        args: env.expand_all(&r.args),
        r,
        run_id,
        logical_time,
        choice,
        env,
        stage,
        scratch,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs() {
        assert_eq!(
            parse_env(&["A=1".into(), "B=x=y".into()]).unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(parse_env(&["A".into()]).is_err());
        assert!(parse_env(&["=1".into()]).is_err());
    }
}

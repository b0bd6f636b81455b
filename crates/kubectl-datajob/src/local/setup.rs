//! Everything a local run decides before its first attempt: which DataJob, its
//! resolved spec, its logical time and run id, where it runs, its environment and its
//! staging directory.
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::engine::{self, Choice, Engine, EngineArg, Probe};
use super::{RunArgs, env, staging};
use crate::error::{CliError, Result};
use crate::manifest::{self, Document};
use crate::terminal::Progress;
use datajob_api::DataJob;
use datajob_core::decide::children::{self, Guards};
use datajob_core::labels;
use datajob_core::output::{Output, input_env};
use datajob_core::validation::{Limits, Resolved, resolve};

/// Picks the DataJob to run from the file's documents; the others come back too (they
/// may be its inputs).
fn pick(docs: Vec<Document>, name: Option<&str>, path: &str) -> Result<(DataJob, Vec<DataJob>)> {
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
    let all = found.clone();
    let chosen = match name {
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
    }?;
    Ok((chosen, all))
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

/// Where a run whose DataJob has an `output` stages and publishes, on this machine.
pub(super) struct Stage {
    /// The output root on this machine.
    pub(super) root: PathBuf,
    /// `<root>/_runs/<run id>`.
    pub(super) dir: PathBuf,
    /// `<root>/logical_time=<time>`.
    pub(super) partition: PathBuf,
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
    /// The inputs' published versions read (input, logical time, directory).
    pub(super) inputs: Vec<(String, String, PathBuf)>,
    /// The run's scratch and home directories on this machine: mounted at `/scratch` and
    /// `/home/datajob` in a container, named by `DATAJOB_SCRATCH` and `HOME` on the host.
    pub(super) scratch: PathBuf,
    pub(super) home: PathBuf,
}

/// Why a local run did not start: its inputs (the words of the cluster's reasons).
pub(super) struct NotStarted {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

/// A local run ready to go, or one whose inputs are not there.
pub(super) enum Prepared {
    Ready(Box<Setup>),
    NotStarted {
        r: Box<Resolved>,
        run_id: String,
        logical_time: DateTime<Utc>,
        why: NotStarted,
    },
}

/// The published output of each input for the run's logical time, found under the
/// input's own root on this machine (the input must be in the same file). `-e
/// DATAJOB_INPUT_<NAME>=…` names it by hand instead.
fn find_inputs(
    r: &Resolved,
    all: &[DataJob],
    state_dir: &std::path::Path,
    logical_time: DateTime<Utc>,
    overrides: &[(String, String)],
    file: &str,
) -> std::result::Result<Vec<(String, String, PathBuf)>, NotStarted> {
    let mut out = Vec::new();
    for input in &r.inputs {
        let var = datajob_core::output::input_env(input);
        if let Some((_, v)) = overrides.iter().find(|(k, _)| *k == var) {
            out.push((input.clone(), String::new(), PathBuf::from(v)));
            continue;
        }
        let Some(dj) = all.iter().find(|d| d.name_any() == *input) else {
            return Err(NotStarted {
                reason: datajob_core::decide::dataflow::WAITING_FOR_INPUT,
                message: format!(
                    "input {input} is not in {file}, so its published output cannot be found here; add it to the file, or pass -e {var}=DIR"
                ),
            });
        };
        let view = datajob_core::decide::dataflow::Upstream::of(dj, Vec::new());
        let Some(out_of_input) = view.output.clone().or_else(|| {
            dj.spec
                .output
                .as_deref()
                .and_then(|o| Output::parse(o, true).ok())
        }) else {
            // An input without an output only orders the runs: nothing to read.
            out.push((input.clone(), String::new(), PathBuf::new()));
            continue;
        };
        let (root, _) = staging::local_root(&out_of_input, state_dir);
        let slot = view
            .schedule
            .as_ref()
            .and_then(|s| s.at_or_before(logical_time));
        match staging::published_input(&root, slot, logical_time) {
            Some((at, dir)) => out.push((input.clone(), labels::rfc3339(at), dir)),
            None => {
                let at = slot.map_or_else(
                    || format!("at or before {}", labels::rfc3339(logical_time)),
                    labels::rfc3339,
                );
                return Err(NotStarted {
                    reason: datajob_core::decide::dataflow::WAITING_FOR_INPUT,
                    message: format!(
                        "input {input} has not published {at} in {}; run it first: kubectl datajob run --local -f {file} --name {input} --logical-time {}",
                        root.display(),
                        slot.map_or_else(|| labels::rfc3339(logical_time), labels::rfc3339)
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// An empty directory the run's user may write to: this user alone on the host; for a
/// container, whose user is not this one (`other_user`), anyone (sticky, as /tmp).
fn writable_dir(dir: &std::path::Path, other_user: bool) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let mode = if other_user { 0o1777 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(CliError::io(format!("making {} writable", dir.display())))
}

/// The DataJob resolved by admission's rules (local paths allowed as output; mesh
/// opt-outs too, as there is no mesh here), or every problem in the field's words.
fn resolved(dj: &DataJob) -> Result<Resolved> {
    let limits = Limits {
        local_paths: true,
        mesh_opt_out: true,
        ..Limits::default()
    };
    resolve(dj, &limits).map_err(|problems| {
        let lines: Vec<String> = problems.0.iter().map(|p| format!("  ✗ {p}")).collect();
        CliError::Invalid(format!(
            "DataJob {} is invalid:\n{}",
            dj.name_any(),
            lines.join("\n")
        ))
    })
}

/// The container engines `--engine` asks about, each probed for `image` (auto: docker,
/// then podman when docker cannot run it).
async fn probes(choice: EngineArg, image: &str, progress: &Progress) -> Vec<Probe> {
    match choice {
        EngineArg::Host => Vec::new(),
        EngineArg::Docker => vec![engine::probe(Engine::Docker, image).await],
        EngineArg::Podman => vec![engine::probe(Engine::Podman, image).await],
        EngineArg::Auto => {
            progress.set("looking for a container engine");
            let mut v = vec![engine::probe(Engine::Docker, image).await];
            if !(v[0].working && v[0].image_present) {
                v.push(engine::probe(Engine::Podman, image).await);
            }
            progress.finish();
            v
        }
    }
}

/// Where run `run_id` stages its output and where it publishes it, on this machine.
fn stage(
    output: &Output,
    state_dir: &std::path::Path,
    run_id: &str,
    logical_time: DateTime<Utc>,
) -> Stage {
    let (root, note) = staging::local_root(output, state_dir);
    Stage {
        dir: root.join(datajob_core::output::STAGING_DIR).join(run_id),
        partition: root.join(datajob_core::output::partition_name(logical_time)),
        root,
        note,
    }
}

/// The DataJob `args` name in its file (with the file's label and every DataJob in it),
/// in `namespace` when it names none (else `default`).
fn datajob_to_run(
    args: &RunArgs,
    namespace: Option<&str>,
) -> Result<(String, DataJob, Vec<DataJob>)> {
    let (label, docs) = manifest::read(&args.file)?;
    let (mut dj, all) = pick(docs, args.name.as_deref(), &label)?;
    if dj.metadata.namespace.is_none() {
        dj.metadata.namespace = Some(namespace.unwrap_or("default").to_string());
    }
    Ok((label, dj, all))
}

pub(super) async fn prepare(
    args: &RunArgs,
    namespace: Option<&str>,
    progress: &Progress,
) -> Result<Prepared> {
    if !args.local {
        return Err(CliError::Usage(
            "run needs --local: it runs the DataJob on this machine. To run it on the cluster, `kubectl apply -f` it and `kubectl datajob trigger NAME`".into(),
        ));
    }
    let (label, dj, all) = datajob_to_run(args, namespace)?;
    let r = resolved(&dj)?;
    let logical_time = labels::truncate_to_minute(crate::flags::time_or_now(
        "--logical-time",
        args.logical_time.as_deref(),
    )?);
    let given = crate::trigger::given_args(&dj, &args.args)?;
    let run_id = datajob_core::params::run_id(&r.name, logical_time, &given);
    let overrides = parse_env(&args.env)?;

    let probes = probes(args.engine, &r.image, progress).await;
    let choice = engine::choose(args.engine, &probes, &r.image, !r.command.is_empty())
        .map_err(CliError::Local)?;

    // The environment of the Job the operator would create.
    let job = children::job(&dj, &r, &Guards::default(), logical_time, false);
    let job = children::with_args(job, &r, logical_time, &given);
    let mut env = env::container_env(&job, &format!("{run_id}-local"));
    let state_dir = std::env::current_dir()
        .map_err(CliError::io("reading the current directory"))?
        .join(&args.state_dir);
    let stage = r
        .output
        .as_ref()
        .map(|o| stage(o, &state_dir, &run_id, logical_time));
    // The same paths in a container (mounted where they are) and on the host.
    if let Some(st) = &stage {
        env.set("DATAJOB_OUTPUT", st.partition.display().to_string());
        env.set("DATAJOB_STAGING", st.dir.display().to_string());
    }
    let inputs = match find_inputs(&r, &all, &state_dir, logical_time, &overrides, &label) {
        Ok(found) => found,
        Err(why) => {
            return Ok(Prepared::NotStarted {
                r: Box::new(r),
                run_id,
                logical_time,
                why,
            });
        }
    };
    for (input, _, dir) in &inputs {
        env.set(&input_env(input), dir.display().to_string());
    }
    // Scratch and home, as the pod has them: empty and writable by the run's user.
    let run_dir = state_dir.join("runs").join(&run_id);
    let (scratch, home) = (run_dir.join("scratch"), run_dir.join("home"));
    let other_user = matches!(choice, Choice::Container { .. });
    writable_dir(&scratch, other_user)?;
    writable_dir(&home, other_user)?;
    if let Choice::Host { .. } = choice {
        env.set("HOME", home.display().to_string());
        env.set("DATAJOB_SCRATCH", scratch.display().to_string());
    }
    env.override_with(&overrides);
    Ok(Prepared::Ready(Box::new(Setup {
        command: env.expand_all(&r.command),
        args: env.expand_all(&r.args),
        r,
        run_id,
        logical_time,
        choice,
        env,
        stage,
        inputs,
        scratch,
        home,
    })))
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

//! Where a local run runs: in a container engine (docker or podman) that works and has
//! the image, or directly on the host. Probing runs the engines; choosing is pure.
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

use datajob_core::validation::Resolved;

/// `--engine`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineArg {
    /// docker or podman when one works and has the image, else the host.
    #[default]
    Auto,
    /// docker, which must work (it pulls the image if needed).
    Docker,
    /// podman, which must work (it pulls the image if needed).
    Podman,
    /// run `command` directly on this machine.
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub(crate) fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// What probing one engine found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub engine: Engine,
    pub installed: bool,
    /// `<engine> info` succeeded: there is an engine to talk to.
    pub working: bool,
    /// Why it does not work, in the engine's words.
    pub detail: String,
    pub image_present: bool,
}

/// Where the run goes, and why, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    Container { engine: Engine, why: String },
    Host { why: String },
}

/// Picks where to run. `Err` says why the run cannot go anywhere.
pub(crate) fn choose(
    requested: EngineArg,
    probes: &[Probe],
    image: &str,
    has_command: bool,
) -> Result<Choice, String> {
    let host_needs_command = |why: String| {
        if has_command {
            Ok(Choice::Host { why })
        } else {
            Err(format!(
                "{why}, and spec.command is empty: on the host there is no image entrypoint to run; set spec.command, or make the image available to docker or podman"
            ))
        }
    };
    let explicit = |engine: Engine| {
        let p = probes.iter().find(|p| p.engine == engine);
        match p {
            Some(p) if p.working => Ok(Choice::Container {
                engine,
                why: if p.image_present {
                    "asked for with --engine".into()
                } else {
                    format!(
                        "asked for with --engine; {} will pull {image}",
                        engine.program()
                    )
                },
            }),
            Some(p) if p.installed => Err(format!(
                "{} is installed but does not work: {}",
                engine.program(),
                p.detail
            )),
            _ => Err(format!("{} is not installed", engine.program())),
        }
    };
    match requested {
        EngineArg::Host => host_needs_command("asked for with --engine host".into()),
        EngineArg::Docker => explicit(Engine::Docker),
        EngineArg::Podman => explicit(Engine::Podman),
        EngineArg::Auto => {
            if let Some(p) = probes.iter().find(|p| p.working && p.image_present) {
                return Ok(Choice::Container {
                    engine: p.engine,
                    why: format!("{} works and has {image}", p.engine.program()),
                });
            }
            let reasons: Vec<String> = probes
                .iter()
                .filter(|p| p.installed)
                .map(|p| {
                    if p.working {
                        format!(
                            "{} works but does not have {image} (`{} pull {image}` to use it)",
                            p.engine.program(),
                            p.engine.program()
                        )
                    } else {
                        format!(
                            "{} is installed but its engine is not available ({})",
                            p.engine.program(),
                            p.detail
                        )
                    }
                })
                .collect();
            let why = if reasons.is_empty() {
                "no container engine (docker, podman) is installed".to_string()
            } else {
                reasons.join("; ")
            };
            host_needs_command(why)
        }
    }
}

/// Runs `program args` with a time limit: (exit success, stdout, stderr), or `None`
/// when it cannot be started.
async fn quiet(program: &str, args: &[&str]) -> Option<(bool, String, String)> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    match tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(out)) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
        Ok(Err(e)) => Some((false, String::new(), e.to_string())),
        Err(_) => Some((false, String::new(), "no answer within 10s".into())),
    }
}

/// Asks `engine` whether it works and has `image`.
pub(crate) async fn probe(engine: Engine, image: &str) -> Probe {
    let program = engine.program();
    let mut p = Probe {
        engine,
        installed: false,
        working: false,
        detail: String::new(),
        image_present: false,
    };
    // Each engine names its version field its own way.
    let version = match engine {
        Engine::Docker => "{{.ServerVersion}}",
        Engine::Podman => "{{.Version.Version}}",
    };
    let Some((ok, _, err)) = quiet(program, &["info", "--format", version]).await else {
        p.detail = "not installed".into();
        return p;
    };
    p.installed = true;
    if !ok {
        p.detail = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("it gave no reason")
            .to_string();
        return p;
    }
    p.working = true;
    if let Some((true, _, _)) =
        quiet(program, &["image", "inspect", "--format", "{{.Id}}", image]).await
    {
        p.image_present = true;
    }
    p
}

/// Limits on open files and processes a container may be given here: this process's
/// hard limits (`/proc/self/limits`), and no more processes than the kernel has ids
/// (`kernel.pid_max`). An engine's own defaults may be above what the machine allows,
/// and runc then fails (`error setting rlimit type 7: operation not permitted`).
pub(crate) fn hard_limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let hard = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        match line[name.len()..].split_whitespace().nth(1)? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    };
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let files = hard("Max open files")?.min(read("/proc/sys/fs/nr_open").unwrap_or(u64::MAX));
    let procs = hard("Max processes")?.min(read("/proc/sys/kernel/pid_max").unwrap_or(u64::MAX));
    Some((files, procs))
}

/// The host directories a container run mounts: the run's scratch and home, and the
/// data it reads and writes (its output root, its inputs' versions), each at the same
/// path as on the host, read-only when marked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mounts<'a> {
    pub scratch: &'a Path,
    pub home: &'a Path,
    pub data: &'a [(&'a Path, bool)],
}

/// The `<engine> run` arguments for one attempt: the same resources, user, volumes,
/// security and command rules as the run's pod (command replaces the entrypoint, args
/// the CMD).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_args(
    engine: Engine,
    container_name: &str,
    r: &Resolved,
    env: &[(String, String)],
    command: &[String],
    args: &[String],
    mounts: Mounts<'_>,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--name".into(),
        container_name.into(),
        "--cpus".into(),
        format!("{}", r.cpu_millis as f64 / 1000.0),
        "--memory".into(),
        r.memory_bytes.to_string(),
        "--memory-swap".into(),
        r.memory_bytes.to_string(),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        // Never root, whatever the image says: the pod's runAsUser/runAsGroup.
        "--user".into(),
        format!("{}:{}", r.run_as_user, r.run_as_user),
    ];
    if let Some((files, procs)) = hard_limits() {
        a.push("--ulimit".into());
        a.push(format!("nofile={files}:{files}"));
        a.push("--ulimit".into());
        a.push(format!("nproc={procs}:{procs}"));
    }
    let relabel = if engine == Engine::Podman { ":Z" } else { "" };
    for (dir, at) in [
        (mounts.scratch, datajob_core::decide::children::SCRATCH_PATH),
        (mounts.home, datajob_core::decide::children::HOME_PATH),
    ] {
        a.push("--volume".into());
        a.push(format!("{}:{at}{relabel}", dir.display()));
    }
    for (k, v) in env {
        a.push("--env".into());
        a.push(format!("{k}={v}"));
    }
    for (dir, read_only) in mounts.data {
        let options = match (read_only, relabel) {
            (true, "") => ":ro".to_string(),
            (true, r) => format!("{r},ro"),
            (false, r) => r.to_string(),
        };
        a.push("--volume".into());
        a.push(format!("{0}:{0}{options}", dir.display()));
    }
    let mut rest: Vec<String> = Vec::new();
    if let Some((first, more)) = command.split_first() {
        a.push("--entrypoint".into());
        a.push(first.clone());
        rest.extend(more.iter().cloned());
    }
    rest.extend(args.iter().cloned());
    a.push(r.image.clone());
    a.extend(rest);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJob, DataJobSpec};
    use datajob_core::validation::{Limits, resolve};

    fn probe(engine: Engine, installed: bool, working: bool, image: bool) -> Probe {
        Probe {
            engine,
            installed,
            working,
            detail: "Cannot connect to the Docker daemon".into(),
            image_present: image,
        }
    }

    #[test]
    fn auto_uses_a_working_engine_that_has_the_image() {
        let probes = [
            probe(Engine::Docker, true, true, false),
            probe(Engine::Podman, true, true, true),
        ];
        assert!(matches!(
            choose(EngineArg::Auto, &probes, "busybox", true),
            Ok(Choice::Container {
                engine: Engine::Podman,
                ..
            })
        ));
    }

    #[test]
    fn auto_falls_back_to_the_host_and_says_why() {
        let probes = [
            probe(Engine::Docker, true, false, false),
            probe(Engine::Podman, false, false, false),
        ];
        let Ok(Choice::Host { why }) = choose(EngineArg::Auto, &probes, "busybox", true) else {
            panic!()
        };
        assert!(
            why.contains("docker is installed but its engine is not available (Cannot connect"),
            "{why}"
        );
        let Ok(Choice::Host { why }) = choose(EngineArg::Auto, &[], "busybox", true) else {
            panic!()
        };
        assert!(why.contains("no container engine"));
        let err = choose(EngineArg::Auto, &[], "busybox", false).unwrap_err();
        assert!(err.contains("spec.command is empty"), "{err}");
    }

    #[test]
    fn an_explicit_engine_must_work() {
        let probes = [probe(Engine::Docker, true, false, false)];
        let err = choose(EngineArg::Docker, &probes, "busybox", true).unwrap_err();
        assert!(
            err.contains("docker is installed but does not work"),
            "{err}"
        );
        assert!(
            choose(EngineArg::Podman, &probes, "busybox", true)
                .unwrap_err()
                .contains("not installed")
        );
        assert!(matches!(
            choose(EngineArg::Host, &probes, "busybox", true),
            Ok(Choice::Host { .. })
        ));
    }

    #[test]
    fn container_arguments_follow_the_pod() {
        let dj = DataJob::new(
            "a",
            DataJobSpec {
                image: "busybox:1.36".into(),
                resources: datajob_api::DataJobResources {
                    cpu: Some("500m".into()),
                    memory: Some("64Mi".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let r = resolve(&dj, &Limits::default()).unwrap();
        let a = run_args(
            Engine::Docker,
            "datajob-a-1",
            &r,
            &[("DATAJOB_NAME".into(), "a".into())],
            &["sh".into(), "-c".into()],
            &["echo hi".into()],
            Mounts {
                scratch: Path::new("/tmp/run/scratch"),
                home: Path::new("/tmp/run/home"),
                data: &[(Path::new("/tmp/out"), false), (Path::new("/tmp/in"), true)],
            },
        );
        let s = a.join(" ");
        assert!(
            s.starts_with("run --name datajob-a-1 --cpus 0.5 --memory 67108864"),
            "{s}"
        );
        assert!(s.contains("--env DATAJOB_NAME=a"));
        assert!(s.contains("--volume /tmp/out:/tmp/out "), "{s}");
        assert!(s.contains("--volume /tmp/in:/tmp/in:ro"), "{s}");
        // As the pod: never root, a writable scratch and home.
        assert!(s.contains("--user 65532:65532"), "{s}");
        assert!(s.contains("--volume /tmp/run/scratch:/scratch"), "{s}");
        assert!(s.contains("--volume /tmp/run/home:/home/datajob"), "{s}");
        if let Some((files, _)) = hard_limits() {
            assert!(
                s.contains(&format!("--ulimit nofile={files}:{files}")),
                "{s}"
            );
        }
        assert!(
            s.ends_with("--entrypoint sh busybox:1.36 -c echo hi"),
            "{s}"
        );
    }
}

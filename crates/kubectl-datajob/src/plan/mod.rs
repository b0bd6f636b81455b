//! `kubectl datajob plan -f job.yaml`: what applying a DataJob would do, without doing it.
//! The checks are admission's own ([`datajob_core::validation::resolve`]), the objects are the
//! operator's own ([`datajob_core::decide::children`]); only the server-side dry run talks to a cluster.
mod assess;
mod render;

pub use assess::{
    DryRun, Groups, NextRun, Placement, Plan, ProblemView, Summary, malformed, placement, plan,
};
pub(crate) use render::render;

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::cluster::{self, Cluster, ClusterArgs};
use super::error::{CliError, Result};
use super::manifest::{self, Document};
use super::terminal::{self, Format, Style};
use datajob_api::{DataJob, NodeGroup};
use datajob_core::decide::children::Guards;
use datajob_core::decide::nodegroup;
use datajob_core::units;
use datajob_core::validation::Limits;

/// The field manager of the server-side dry run.
const FIELD_MANAGER: &str = "kubectl-datajob";

fn duration(s: &str) -> std::result::Result<Duration, String> {
    units::parse_duration(s).map_err(|e| format!("{s:?} {e}"))
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The DataJob file (YAML; several documents allowed; `-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Do not contact the cluster: skip the server-side dry run.
    #[arg(long)]
    pub offline: bool,

    /// The longest deadline the cluster allows (the operator's --max-deadline).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub max_deadline: Duration,

    /// How many upcoming run times to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub next: usize,

    /// Show the run times after this time (RFC 3339) rather than after now, e.g. the
    /// day clocks change: `--from 2026-11-01T00:00:00-04:00`.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
}

/// Asks the cluster to validate the DataJob (schema, admission webhook) without storing it.
async fn server_dry_run(cluster: &Cluster, dj: &DataJob) -> DryRun {
    let name = dj.name_any();
    let ns = dj.namespace().unwrap_or_else(|| cluster.namespace.clone());
    let api: Api<DataJob> = Api::namespaced(cluster.client.clone(), &ns);
    let exists = match api.get_metadata_opt(&name).await {
        Ok(m) => m.is_some(),
        Err(e) => {
            return DryRun::Skipped {
                reason: cluster::classify(e, &cluster.url, &ns, format!("get DataJob {name}"))
                    .to_string()
                    .replace('\n', " "),
            };
        }
    };
    let mut body = dj.clone();
    body.metadata.namespace = Some(ns.clone());
    body.status = None;
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    match api.patch(&name, &params, &Patch::Apply(&body)).await {
        Ok(_) => DryRun::Accepted {
            cluster: cluster.url.clone(),
            namespace: ns,
            would: if exists { "update" } else { "create" }.into(),
        },
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 409 | 422) => DryRun::Refused {
            cluster: cluster.url.clone(),
            message: s.message.clone(),
        },
        Err(e) => DryRun::Skipped {
            reason: cluster::classify(e, &cluster.url, &ns, format!("dry-run DataJob {name}"))
                .to_string()
                .replace('\n', " "),
        },
    }
}

/// `plan`: prints the plans; fails (exit 1) when any DataJob is invalid.
pub(crate) async fn run(args: &PlanArgs, conn: &ClusterArgs, format: Format) -> Result<()> {
    let (label, docs) = manifest::read(&args.file)?;
    let now = Utc::now();
    let from = crate::flags::time_or_now("--from", args.from.as_deref())?;
    let (cluster, unreachable) = connect(args, conn).await;
    let namespace = conn
        .namespace
        .clone()
        .or_else(|| cluster.as_ref().map(|c| c.namespace.clone()))
        .unwrap_or_else(|| "default".into());
    let checks = Checks {
        limits: Limits {
            max_deadline: args.max_deadline,
            ..Limits::default()
        },
        guards: Guards::default(),
        groups: node_groups(cluster.as_ref()).await,
        graph: graph(cluster.as_ref(), &namespace, &docs).await,
        // Any registry: here the user's own machine connects, as `docker pull` would; the
        // operator's allow-list guards the cluster's network (docs/operations.md).
        preflight: cluster.as_ref().map(|c| {
            datajob_preflight::Preflight::new(
                c.client.clone(),
                datajob_preflight::Registries::anywhere(),
            )
        }),
        cluster: cluster.as_ref(),
        unreachable,
        namespace,
        now,
        next: (from, args.next),
    };
    let mut plans = Vec::new();
    for doc in docs {
        match doc {
            Document::DataJob(dj) => plans.push(checks.plan(&dj).await),
            Document::Malformed { name, problem } => {
                plans.push(malformed(&name, &checks.namespace, &problem));
            }
            Document::Other { kind, name } => {
                eprintln!("skipping {kind} {name}: not a DataJob");
            }
        }
    }
    if plans.is_empty() {
        return Err(CliError::Manifest {
            path: label,
            message: "has no DataJob in it".into(),
        });
    }
    match format {
        Format::Human => {
            let style = Style::stdout();
            let texts: Vec<String> = plans.iter().map(|p| render(p, style, now)).collect();
            print!("{}", texts.join("\n---\n\n"));
        }
        _ if plans.len() == 1 => terminal::print_data(format, &plans[0])?,
        _ => terminal::print_data(format, &plans)?,
    }
    if plans.iter().all(|p| p.valid) {
        Ok(())
    } else {
        Err(CliError::Reported("the DataJob is invalid"))
    }
}

/// The cluster of the kubeconfig, when there is one and `--offline` is not given; plan
/// works without (the text says why it did not ask).
async fn connect(args: &PlanArgs, conn: &ClusterArgs) -> (Option<Cluster>, String) {
    if args.offline {
        return (None, "--offline".to_string());
    }
    match Cluster::connect(conn).await {
        Ok(c) => (Some(c), String::new()),
        Err(CliError::Kubeconfig(e)) => (None, format!("no cluster configured: {e}")),
        Err(e) => (None, e.to_string().replace('\n', " ")),
    }
}

/// The cluster's usable node groups, or why they are not known.
async fn node_groups(cluster: Option<&Cluster>) -> Groups {
    match cluster {
        None => Err("node groups live in the cluster, which this plan did not ask".into()),
        Some(c) => Api::<NodeGroup>::all(c.client.clone())
            .list(&Default::default())
            .await
            .map(|l| nodegroup::usable_groups(l.items.iter()))
            .map_err(|e| {
                cluster::classify(e, &c.url, &c.namespace, "list NodeGroups".into())
                    .to_string()
                    .replace('\n', " ")
            }),
    }
}

/// Every DataJob of the namespace with its inputs: the cluster's, with the file's in
/// place of those of the same name. `None` when the cluster's DataJobs cannot be read.
async fn graph(
    cluster: Option<&Cluster>,
    namespace: &str,
    docs: &[Document],
) -> Option<Vec<(String, Vec<String>)>> {
    let in_file: Vec<(String, Vec<String>)> = docs
        .iter()
        .filter_map(|d| match d {
            Document::DataJob(dj) => Some((dj.name_any(), dj.spec.inputs.clone())),
            _ => None,
        })
        .collect();
    let listed = Api::<DataJob>::namespaced(cluster?.client.clone(), namespace)
        .list(&Default::default())
        .await
        .ok()?;
    let mut g: Vec<(String, Vec<String>)> = listed
        .items
        .iter()
        .map(|d| (d.name_any(), d.spec.inputs.clone()))
        .filter(|(n, _)| !in_file.iter().any(|(f, _)| f == n))
        .collect();
    g.extend(in_file);
    Some(g)
}

/// What every DataJob of the file is checked against.
struct Checks<'a> {
    namespace: String,
    limits: Limits,
    guards: Guards,
    groups: Groups,
    /// The namespace's DataJobs and inputs (see [`graph`]).
    graph: Option<Vec<(String, Vec<String>)>>,
    cluster: Option<&'a Cluster>,
    /// Why the cluster was not asked, when it was not.
    unreachable: String,
    preflight: Option<datajob_preflight::Preflight>,
    now: chrono::DateTime<Utc>,
    /// The run times to show: how many, after when.
    next: (chrono::DateTime<Utc>, usize),
}

impl Checks<'_> {
    /// The plan of one DataJob: admission's checks, then (when valid) its inputs as a
    /// graph (admission's check: inputs are DataJobs of the namespace and make no cycle),
    /// the server-side dry run and the preflight's warnings.
    async fn plan(&self, dj: &DataJob) -> Plan {
        let mut p = plan(
            dj,
            &self.namespace,
            &self.limits,
            &self.guards,
            &self.groups,
            self.now,
            self.next,
        );
        if let Some(g) = &self.graph {
            let problems = datajob_core::decide::dataflow::check_graph(
                &p.name,
                &p.namespace,
                &dj.spec.inputs,
                g,
            );
            if !problems.is_empty() {
                p.valid = false;
                p.problems.extend(problems.iter().map(ProblemView::from));
            }
        }
        if !p.valid {
            return p;
        }
        p.server_dry_run = match self.cluster {
            Some(c) => {
                let mut dj = dj.clone();
                dj.metadata.namespace = Some(p.namespace.clone());
                server_dry_run(c, &dj).await
            }
            None => DryRun::Skipped {
                reason: self.unreachable.clone(),
            },
        };
        if matches!(p.server_dry_run, DryRun::Refused { .. }) {
            p.valid = false;
        }
        if let Some(pf) = &self.preflight {
            p.warnings = pf.warnings(&p.namespace, &dj.spec).await;
        }
        p
    }
}

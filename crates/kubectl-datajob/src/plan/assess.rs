//! What `plan` decides about one DataJob, from plain values: admission's checks (with the
//! cluster's node groups when known), the next run times, the operator's objects and the
//! node group that would run it.
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::Serialize;

use crate::terminal;
use datajob_api::DataJob;
use datajob_core::decide::children::{self, Guards};
use datajob_core::decide::nodegroup::{self, Group};
use datajob_core::labels;
use datajob_core::units::{self, format_bytes, format_cpu};
use datajob_core::validation::{Limits, Problem, Resolved};

/// One problem, as admission words it (`message`), and in parts.
#[derive(Serialize, Debug, Clone)]
pub struct ProblemView {
    pub field: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
    pub message: String,
}

impl From<&Problem> for ProblemView {
    fn from(p: &Problem) -> Self {
        ProblemView {
            field: p.field.clone(),
            value: p.value.clone(),
            problem: p.problem.clone(),
            fix: p.fix.clone(),
            message: p.to_string(),
        }
    }
}

/// The spec with every default applied, as the operator will read it.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub time_zone: String,
    pub cpu: String,
    pub memory: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    pub gpu: u32,
    pub deadline: String,
    pub retries: i32,
    pub history: i32,
    pub suspend: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The parameters a trigger may give, with their defaults.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: datajob_core::params::Args,
}

impl Summary {
    /// What a run asks for, in words: `cpu 2, memory 4Gi, disk 100Gi, gpu 1`.
    pub fn resources(&self) -> String {
        let mut res = format!("cpu {}, memory {}", self.cpu, self.memory);
        if let Some(d) = &self.disk {
            res.push_str(&format!(", disk {d}"));
        }
        if self.gpu > 0 {
            res.push_str(&format!(", gpu {}", self.gpu));
        }
        res
    }
}

impl From<&Resolved> for Summary {
    fn from(r: &Resolved) -> Self {
        Summary {
            image: r.image.clone(),
            command: r.command.clone(),
            args: r.args.clone(),
            schedule: r.schedule.as_ref().map(|s| s.expression.clone()),
            time_zone: r.time_zone.name().to_string(),
            cpu: format_cpu(r.cpu_millis),
            memory: format_bytes(r.memory_bytes),
            disk: r.disk_bytes.map(format_bytes),
            gpu: r.gpu,
            deadline: units::format_duration(r.deadline),
            retries: r.retries,
            history: r.history,
            suspend: r.suspend,
            inputs: r.inputs.clone(),
            output: r.output.as_ref().map(|o| o.url()),
            owner: r.owner.clone(),
            params: r.params.clone(),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct NextRun {
    /// RFC 3339, UTC.
    pub utc: String,
    /// In the DataJob's time zone.
    pub local: String,
}

/// Which node group would run the DataJob.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(
    tag = "status",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Placement {
    /// The cheapest group whose node fits a run, as the operator picks it.
    Placed {
        group: String,
        /// What one node of the group offers.
        node: String,
        price_per_hour: f64,
        /// A run's share of a node for its whole deadline: the most a run costs.
        max_cost_per_run: f64,
    },
    /// The cluster has no node groups: any node that fits runs it.
    NoGroups { message: String },
    /// Not known: node groups live in the cluster, which did not answer.
    Unknown { message: String },
}

/// The node groups `plan` places against: those of the cluster, or why they are unknown.
pub type Groups = std::result::Result<Vec<Group>, String>;

/// Where the operator would run `r`, given the cluster's node groups.
pub fn placement(r: &Resolved, guards: &Guards, groups: &Groups) -> Placement {
    let groups = match groups {
        Err(why) => {
            return Placement::Unknown {
                message: format!("not known ({why})"),
            };
        }
        Ok(g) if g.is_empty() => {
            return Placement::NoGroups {
                message: "the cluster has no node groups; the run goes to any node that fits"
                    .into(),
            };
        }
        Ok(g) => g,
    };
    let request = children::run_request(r, guards);
    match r
        .placement
        .as_ref()
        .or_else(|| nodegroup::place(&request, groups))
    {
        Some(g) => Placement::Placed {
            group: g.name.clone(),
            node: g.shape.to_string(),
            price_per_hour: g.price_per_hour,
            max_cost_per_run: nodegroup::run_cost(&request, g, r.deadline),
        },
        None => Placement::Unknown {
            message: "no node group fits".into(),
        },
    }
}

/// What the cluster said about the DataJob in a server-side dry run.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum DryRun {
    Skipped {
        reason: String,
    },
    Accepted {
        cluster: String,
        namespace: String,
        would: String,
    },
    Refused {
        cluster: String,
        message: String,
    },
}

/// Everything `plan` says about one DataJob.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub valid: bool,
    pub problems: Vec<ProblemView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Summary>,
    pub next_runs: Vec<NextRun>,
    /// The CronJob (scheduled) or Job (one-off) the operator would create.
    pub objects: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_group: Option<Placement>,
    pub server_dry_run: DryRun,
    /// What the preflight found (the image, Secrets, ConfigMaps, the service account):
    /// warnings, not refusals, as `kubectl apply` shows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The plan for one DataJob, checked as admission checks it: against `groups`, the
/// cluster's node groups (none known offline). `namespace` applies when the file names none.
/// `next`: how many run times to show (`next.1`) after when (`next.0`: now, or `--from`).
pub fn plan(
    dj: &DataJob,
    namespace: &str,
    limits: &Limits,
    guards: &Guards,
    groups: &Groups,
    now: DateTime<Utc>,
    next: (DateTime<Utc>, usize),
) -> Plan {
    let mut dj = dj.clone();
    if dj.metadata.namespace.is_none() {
        dj.metadata.namespace = Some(namespace.to_string());
    }
    let mut plan = Plan {
        name: dj.name_any(),
        namespace: dj.namespace().unwrap_or_default(),
        valid: false,
        problems: Vec::new(),
        spec: None,
        next_runs: Vec::new(),
        objects: Vec::new(),
        node_group: None,
        warnings: Vec::new(),
        server_dry_run: DryRun::Skipped {
            reason: "not tried".into(),
        },
    };
    let known: &[Group] = groups.as_deref().unwrap_or_default();
    let r = match datajob_core::admission::resolve_and_place(&dj, limits, guards, known) {
        Ok(r) => r,
        Err(problems) => {
            plan.problems = problems.0.iter().map(ProblemView::from).collect();
            return plan;
        }
    };
    plan.valid = true;
    plan.spec = Some(Summary::from(&r));
    if let Some(s) = &r.schedule {
        plan.next_runs = s
            .upcoming(next.0, next.1)
            .into_iter()
            .map(|t| NextRun {
                utc: labels::rfc3339(t),
                local: terminal::local_time_with_day(t, r.time_zone),
            })
            .collect();
    }
    let object = match children::cronjob(&dj, &r, guards) {
        Some(cj) => serde_json::to_value(cj),
        None => serde_json::to_value(children::job(
            &dj,
            &r,
            guards,
            labels::truncate_to_minute(now),
            false,
        )),
    };
    plan.objects = object.into_iter().collect();
    plan.node_group = Some(placement(&r, guards, groups));
    plan
}

/// A one-problem plan for a document that does not even have a DataJob's shape.
pub fn malformed(name: &str, namespace: &str, problem: &Problem) -> Plan {
    Plan {
        name: name.to_string(),
        namespace: namespace.to_string(),
        valid: false,
        problems: vec![ProblemView::from(problem)],
        spec: None,
        next_runs: Vec::new(),
        objects: Vec::new(),
        node_group: None,
        warnings: Vec::new(),
        server_dry_run: DryRun::Skipped {
            reason: "the file does not parse as a DataJob".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::render;
    use crate::terminal::Style;
    use datajob_api::DataJobSpec;

    fn dj(spec: DataJobSpec) -> DataJob {
        DataJob::new("churn-features", spec)
    }

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }

    fn offline() -> Groups {
        Err("node groups live in the cluster, which this plan did not ask".into())
    }

    fn group(name: &str, cpu: u64, memory_gi: u64, price: f64) -> Group {
        Group {
            name: name.into(),
            shape: datajob_core::resources::Request {
                cpu_millis: cpu * 1000,
                memory: memory_gi << 30,
                ephemeral: 100 << 30,
                gpu: 0,
            },
            labels: [(nodegroup::GROUP_LABEL.to_string(), name.to_string())].into(),
            taints: Vec::new(),
            min_size: 0,
            max_size: 10,
            price_per_hour: price,
            scale_down_after: Duration::from_secs(120),
            provisioning_timeout: Duration::from_secs(600),
            warm_up_before: None,
            provider: nodegroup::ProviderKind::Static,
            ..Default::default()
        }
    }

    #[test]
    fn the_cheapest_node_group_that_fits_runs_it_as_admission_decides() {
        let groups: Groups = Ok(vec![group("small", 2, 8, 0.1), group("large", 16, 64, 0.8)]);
        let d = dj(DataJobSpec {
            image: "busybox".into(),
            deadline: Some("2h".into()),
            resources: datajob_api::DataJobResources {
                cpu: Some("4".into()),
                memory: Some("16Gi".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let p = plan(
            &d,
            "default",
            &Limits::default(),
            &Guards::default(),
            &groups,
            now(),
            (now(), 5),
        );
        let Some(Placement::Placed {
            group,
            max_cost_per_run,
            ..
        }) = &p.node_group
        else {
            panic!("{:?}", p.node_group)
        };
        assert_eq!(group, "large");
        assert!(
            (max_cost_per_run - 0.4).abs() < 1e-9,
            "a quarter of a node for 2h"
        );
        assert_eq!(
            p.objects[0]["spec"]["template"]["spec"]["nodeSelector"][nodegroup::GROUP_LABEL],
            "large"
        );
        let text = render(&p, Style { color: false }, now());
        assert!(text.contains("Node group: large (a node: cpu 16, memory 64Gi, disk 100Gi; 0.80 an hour); a run costs at most 0.40 ("), "{text}");
        assert!(
            text.contains("runs only on nodes datajob.dev/node-group=large"),
            "{text}"
        );

        let huge = dj(DataJobSpec {
            image: "busybox".into(),
            resources: datajob_api::DataJobResources {
                memory: Some("500Gi".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let p = plan(
            &huge,
            "default",
            &Limits::default(),
            &Guards::default(),
            &groups,
            now(),
            (now(), 5),
        );
        assert!(!p.valid);
        assert!(
            p.problems[0]
                .message
                .contains("is more than any node group offers (largest: large"),
            "{:?}",
            p.problems
        );

        let p = plan(
            &huge,
            "default",
            &Limits::default(),
            &Guards::default(),
            &Ok(vec![]),
            now(),
            (now(), 5),
        );
        assert!(p.valid);
        assert!(matches!(p.node_group, Some(Placement::NoGroups { .. })));
        let p = plan(
            &huge,
            "default",
            &Limits::default(),
            &Guards::default(),
            &offline(),
            now(),
            (now(), 5),
        );
        assert!(matches!(p.node_group, Some(Placement::Unknown { .. })));
    }

    #[test]
    fn a_scheduled_datajob_plans_a_cronjob_and_five_runs_in_its_zone() {
        let d = dj(DataJobSpec {
            image: "ghcr.io/acme/churn:1.4.2".into(),
            schedule: Some("0 3 * * *".into()),
            time_zone: Some("Europe/London".into()),
            ..Default::default()
        });
        let p = plan(
            &d,
            "analytics",
            &Limits::default(),
            &Guards::default(),
            &offline(),
            now(),
            (now(), 5),
        );
        assert!(p.valid);
        assert_eq!(p.namespace, "analytics");
        assert_eq!(p.next_runs.len(), 5);
        assert_eq!(p.next_runs[0].utc, "2026-11-26T03:00:00Z");
        assert_eq!(p.next_runs[0].local, "Thu 2026-11-26 03:00 GMT");
        assert_eq!(p.objects.len(), 1);
        assert_eq!(p.objects[0]["kind"], "CronJob");
        assert_eq!(p.objects[0]["spec"]["concurrencyPolicy"], "Forbid");
        let text = render(&p, Style { color: false }, now());
        assert!(text.contains("Thu 2026-11-26 03:00 GMT   in 17h"), "{text}");
        assert!(
            text.contains("CronJob churn-features: schedule \"0 3 * * *\" in Europe/London"),
            "{text}"
        );
        assert!(text.contains("Nothing was changed."));
    }

    #[test]
    fn a_one_off_datajob_plans_its_job_now() {
        let d = dj(DataJobSpec {
            image: "busybox".into(),
            ..Default::default()
        });
        let p = plan(
            &d,
            "default",
            &Limits::default(),
            &Guards::default(),
            &offline(),
            now(),
            (now(), 5),
        );
        assert!(p.next_runs.is_empty());
        assert_eq!(p.objects[0]["kind"], "Job");
        assert_eq!(p.objects[0]["metadata"]["name"], "churn-features-29926680");
    }

    #[test]
    fn problems_are_admissions_words() {
        let d = dj(DataJobSpec {
            image: "busybox".into(),
            schedule: Some("61 * * * *".into()),
            deadline: Some("2 hours".into()),
            ..Default::default()
        });
        let p = plan(
            &d,
            "default",
            &Limits::default(),
            &Guards::default(),
            &offline(),
            now(),
            (now(), 5),
        );
        assert!(!p.valid);
        let expected = datajob_core::validation::resolve(&d, &Limits::default()).unwrap_err();
        let text = render(&p, Style { color: false }, now());
        for problem in &expected.0 {
            assert!(text.contains(&problem.to_string()), "{text}");
        }
        assert!(text.contains("is invalid: 2 problems"));
    }
}

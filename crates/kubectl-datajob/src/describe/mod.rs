//! `kubectl datajob describe NAME`: what the DataJob is, what it created, and in plain
//! words why it is in its state and what to do next.
mod explain;
mod render;

pub(crate) use explain::{Facts, explain};
pub(crate) use render::{children, render};

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;

use super::cluster::Cluster;
use super::error::Result;
use super::history;
use super::plan::Summary;
use super::status;
use super::terminal::zone_of;
use super::terminal::{self, Format, Style};
use datajob_api::RunRecord;
use datajob_core::labels::{self, NAME};
use datajob_core::validation::{self, Limits};

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The DataJob.
    pub name: String,
}

/// One object the DataJob owns.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Child {
    pub kind: String,
    pub name: String,
    pub state: String,
    pub detail: String,
}

#[derive(Serialize, Debug, Clone)]
pub(crate) struct EventLine {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// Everything `describe` says.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Description {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Summary>,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it is in its state and what to do, in sentences.
    pub why: Vec<String>,
    pub children: Vec<Child>,
    pub runs: Vec<RunRecord>,
    pub events: Vec<EventLine>,
}

fn event_time(e: &Event) -> Option<DateTime<Utc>> {
    e.last_timestamp
        .as_ref()
        .or(e.first_timestamp.as_ref())
        .and_then(labels::from_k8s_time)
        .or_else(|| {
            e.event_time
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
        })
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(labels::from_k8s_time)
        })
}

/// The CapacityBuffers the operator keeps for the DataJob's next run (warm-up and keep
/// on a karpenter node group). None when the cluster has no CapacityBuffer API or the
/// user may not list them: they are a detail, not worth failing `describe` for.
async fn capacity_buffers(cluster: &Cluster, name: &str) -> Vec<DynamicObject> {
    let gvk = GroupVersionKind::gvk("autoscaling.x-k8s.io", "v1beta1", "CapacityBuffer");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "capacitybuffers");
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &ar);
    api.list(&ListParams::default().labels(&format!("{NAME}={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub(crate) async fn run(args: &DescribeArgs, cluster: &Cluster, format: Format) -> Result<()> {
    let dj = cluster.datajob(&args.name).await?;
    let name = dj.name_any();
    let jobs = history::jobs_of(cluster, &name).await?;
    let runs = history::runs_from(&dj, &jobs);
    let cronjob = cluster
        .api::<CronJob>()
        .get_opt(&name)
        .await
        .map_err(cluster.error(format!("get CronJob {name}")))?
        .filter(|cj| cj.labels().get(NAME) == Some(&name));
    let pods = cluster
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{NAME}={name}")))
        .await
        .map_err(cluster.error(format!("list the pods of DataJob {name}")))?
        .items;
    let buffers = capacity_buffers(cluster, &name).await;
    let mut events: Vec<Event> = cluster
        .api::<Event>()
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={name},involvedObject.kind=DataJob"
        )))
        .await
        .map_err(cluster.error(format!("list the events of DataJob {name}")))?
        .items;
    events.sort_by_key(event_time);
    let now = Utc::now();
    let facts = Facts {
        dj: &dj,
        runs: &runs,
        pods: &pods,
        now,
    };
    let lenient = Limits {
        max_deadline: Duration::from_secs(u64::from(u32::MAX)),
        mesh_opt_out: true,
        ..Limits::default()
    };
    let description = Description {
        name: name.clone(),
        namespace: dj.namespace().unwrap_or_default(),
        spec: validation::resolve(&dj, &lenient)
            .ok()
            .map(|r| Summary::from(&r)),
        state: status::state_of(&dj),
        reason: dj.status.as_ref().and_then(|s| s.reason.clone()),
        why: explain(&facts),
        children: children(&name, cronjob.as_ref(), &jobs, &pods, now)
            .into_iter()
            .chain(render::buffer_children(&buffers))
            .collect(),
        runs: runs.iter().take(5).cloned().collect(),
        events: events
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|e| EventLine {
                time: event_time(e).map(labels::rfc3339).unwrap_or_default(),
                type_: e.type_.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default().replace('\n', " "),
            })
            .collect(),
    };
    if format != Format::Human {
        return terminal::print_data(format, &description);
    }
    print!(
        "{}",
        render(&description, zone_of(&dj), now, Style::stdout())
    );
    Ok(())
}

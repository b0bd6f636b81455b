//! The watchdog controller: for every run's Job, reads its pods and the nodes, asks
//! [`datajob_core::decide::watchdog::assess`] what to do, and does it: ends the run (the Job fails,
//! its pods go, no retry) or records what happened to an attempt.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::{info, warn};

use super::Context;
use crate::metrics::ReasonLabels;
use crate::{Error, Result};
use datajob_api::NodeGroup;
use datajob_core::decide::nodegroup::NODEPOOL_LABEL;
use datajob_core::decide::watchdog::{self, GroupView, JobChange, Settings, Verdict};
use datajob_core::labels::{JOB_NAME, NAME};

const CONTROLLER: &str = "watchdog";

pub(crate) struct WatchdogContext {
    pub base: Context,
    pub settings: Settings,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub groups: Store<NodeGroup>,
}

/// Runs the watchdog until `shutdown` resolves. The pod store is shared with the clean-up,
/// the Job store with the DataJob controller: the watchdog has no watch of its own.
pub async fn run(
    base: Context,
    settings: Settings,
    caches: WatchdogCaches,
    job_events: impl futures::Stream<Item = Job> + Send + 'static,
    pod_events: impl futures::Stream<Item = Pod> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let jobs = caches.jobs;
    let ctx = Arc::new(WatchdogContext {
        base,
        settings,
        pods: caches.pods,
        nodes: caches.nodes,
        groups: caches.groups,
    });
    Controller::for_stream(job_events.map(Ok::<_, watcher::Error>), jobs)
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .watches_stream(pod_events.map(Ok::<_, watcher::Error>), |pod| {
            let ns = pod.namespace()?;
            let job = pod.labels().get(JOB_NAME)?.clone();
            Some(ObjectRef::<Job>::new(&job).within(&ns))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::report(CONTROLLER, result))
        .await;
}

/// The caches the watchdog reads (filled by streams polled elsewhere).
pub struct WatchdogCaches {
    /// The managed-Job cache that the Job events passed to [`run`] fill.
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub groups: Store<NodeGroup>,
}

const RETRY: Duration = Duration::from_secs(10);

fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<WatchdogContext>) -> Action {
    // Told on the run's DataJob, where its user looks.
    let ns = job.namespace().unwrap_or_default();
    let reference = job
        .labels()
        .get(NAME)
        .map(|datajob| Context::datajob_ref(&ns, datajob));
    ctx.base.failed(CONTROLLER, reference, error, RETRY)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<WatchdogContext>) -> Result<Action> {
    let _timer = ctx.base.metrics.reconcile(CONTROLLER);
    let ns = job
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(job.name_any()))?;
    let id = job.name_any();
    let now = Utc::now();
    let verdict = assess(&ctx, &job, &ns, &id, now);
    let verdict = if matches!(verdict, Verdict::End { reason, .. } if reason == watchdog::UNSCHEDULABLE)
    {
        let words = autoscaler_words(&ctx, &ns, &id).await;
        watchdog::with_autoscaler_words(verdict, words.as_deref())
    } else {
        verdict
    };
    if let Verdict::Fine { recheck_at } = verdict {
        return Ok(match recheck_at {
            Some(t) => {
                Action::requeue((t - now).to_std().unwrap_or_default() + Duration::from_millis(500))
            }
            None => Action::await_change(),
        });
    }
    if let Some(change) = watchdog::job_change(&job, &id, &verdict, now) {
        let datajob = job.labels().get(NAME).cloned().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(ctx.base.client.clone(), &ns);
        let act = Act {
            api: &api,
            ns: &ns,
            id: &id,
            datajob: &datajob,
            owner: job
                .annotations()
                .get(datajob_core::labels::OWNER)
                .map(String::as_str),
        };
        act.apply(&ctx, change).await?;
    }
    Ok(Action::await_change())
}

/// The pods of the run `id` in `ns`, from the cache.
fn run_pods(ctx: &WatchdogContext, ns: &str, id: &str) -> Vec<Arc<Pod>> {
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns)
                && p.labels().get(JOB_NAME).map(String::as_str) == Some(id)
        })
        .collect()
}

/// Karpenter's words on why it made no node for the run's unschedulable pods on a
/// NodePool (read only when the run ends as unschedulable: events are not cached). A failed read
/// leaves them out: the run still ends, with the scheduler's words.
async fn autoscaler_words(ctx: &WatchdogContext, ns: &str, id: &str) -> Option<String> {
    let api: Api<Event> = Api::namespaced(ctx.base.client.clone(), ns);
    let mut events = Vec::new();
    for pod in run_pods(ctx, ns, id) {
        let on_pool = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .is_some_and(|s| s.contains_key(NODEPOOL_LABEL));
        if !on_pool || watchdog::unschedulable_condition(&pod).is_none() {
            continue;
        }
        let Some(uid) = pod.uid() else { continue };
        let params = ListParams::default().fields(&format!(
            // Its reasons are filtered by the pure function (a field selector cannot say
            // "one of").
            "involvedObject.uid={uid},source={}",
            watchdog::KARPENTER
        ));
        match api.list(&params).await {
            Ok(list) => events.extend(list.items),
            Err(error) => {
                warn!(run = id, %error, "cannot read the autoscaler's events of the run's pod; ending it with the scheduler's words");
            }
        }
    }
    watchdog::autoscaler_words(&events)
}

/// [`watchdog::assess`] of the run `id`, with its pods, the nodes and the node groups
/// from the caches.
fn assess(ctx: &WatchdogContext, job: &Job, ns: &str, id: &str, now: DateTime<Utc>) -> Verdict {
    let pods = run_pods(ctx, ns, id);
    let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let nodes = ctx.nodes.state();
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let groups: Vec<GroupView> = ctx
        .groups
        .state()
        .iter()
        .filter_map(|g| GroupView::of(g))
        .collect();
    watchdog::assess(job, &pods, &nodes, &groups, &ctx.settings, now)
}

/// One watchdog action on a run's Job, told as a log line, a metric and an event.
struct Act<'a> {
    api: &'a Api<Job>,
    ns: &'a str,
    id: &'a str,
    datajob: &'a str,
    /// The DataJob's owner, from the Job (named in the event).
    owner: Option<&'a str>,
}

impl Act<'_> {
    async fn apply(&self, ctx: &WatchdogContext, change: JobChange) -> Result<()> {
        let JobChange {
            patch,
            reason,
            action,
            note,
            ends,
        } = change;
        self.api
            .patch(self.id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api("annotate", "Job", self.ns, self.id))?;
        info!(run = %self.id, datajob = %self.datajob, namespace = %self.ns, %reason, %note, "{action}");
        let m = &ctx.base.metrics;
        let counter = if ends {
            &m.runs_ended
        } else {
            &m.attempts_failed
        };
        counter
            .get_or_create(&ReasonLabels {
                namespace: self.ns.into(),
                datajob: m.datajob(self.datajob),
                reason: reason.into(),
            })
            .inc();
        let r = Context::datajob_ref(self.ns, self.datajob);
        let note = datajob_core::labels::with_owner(
            &note,
            self.owner,
            datajob_core::decide::datajob::NOTE_LIMIT,
        );
        ctx.base.event(&r, true, reason, action, note).await;
        Ok(())
    }
}

/// The exact calls one watchdog reconcile makes, against kube's mocked client.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::metrics::Metrics;
    use serde_json::json;

    fn ago(secs: i64) -> String {
        (Utc::now() - chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn run() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly-29934840", "namespace": "data", "labels": {NAME: "nightly"}},
            "status": {"startTime": ago(120), "active": 1},
        }))
        .expect("a Job")
    }

    fn pod_of_run(container_state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly-29934840-abcde", "namespace": "data",
                "labels": {JOB_NAME: "nightly-29934840", NAME: "nightly"}},
            "spec": {"nodeName": "n", "containers": [{"name": "main", "image": "registry.example/etl:1.0"}]},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(120)}],
                "containerStatuses": [{"name": "main", "image": "registry.example/etl:1.0", "imageID": "",
                    "ready": false, "restartCount": 0, "state": container_state}],
            },
        }))
        .expect("a Pod")
    }

    async fn calls_of_one_reconcile(pods: Vec<Pod>) -> Vec<String> {
        let (client, calls) = crate::controller::mock::client(json!({}));
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4", "memory": "16Gi"}}}),
        )
        .expect("a Node");
        let ctx = Arc::new(WatchdogContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            settings: Settings::default(),
            pods: crate::controller::mock::store_of(pods),
            nodes: crate::controller::mock::store_of(vec![node]),
            groups: crate::controller::mock::store_of(Vec::new()),
        });
        let action = reconcile(Arc::new(run()), ctx).await;
        assert!(action.is_ok(), "the reconcile failed: {:?}", action.err());
        calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_run_whose_image_cannot_be_pulled_is_ended_with_one_patch_and_a_warning_event() {
        let stuck = pod_of_run(json!({"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"registry.example/etl:1.0\""}}));
        assert_eq!(
            calls_of_one_reconcile(vec![stuck]).await,
            [
                // activeDeadlineSeconds shrunk and the reason annotated: the Job fails.
                "PATCH /apis/batch/v1/namespaces/data/jobs/nightly-29934840",
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
            ]
        );
    }

    #[tokio::test]
    async fn a_running_run_costs_no_call() {
        let running = pod_of_run(json!({"running": {"startedAt": ago(60)}}));
        assert_eq!(
            calls_of_one_reconcile(vec![running]).await,
            Vec::<String>::new()
        );
    }
}

//! The DataJob reconciler: reads what the caches say of one DataJob, asks
//! [`datajob_core::decide::datajob::plan`] what to do, and applies the plan
//! ([`apply`]): the guarded CronJob or Job, the runs' steps (admit, revive, publish,
//! catch up, prune), the status, its events and metrics. It decides nothing itself.
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info_span};

use super::{Context, jobs};
use crate::{Error, Result};
use datajob_api::{DataJob, NodeGroup};
use datajob_core::decide::datajob::{self, Observed, Settings};
use datajob_core::decide::nodegroup::usable_groups;
use datajob_core::labels::{self, JOB_NAME, NAME};

mod apply;
mod context;

pub(crate) use context::{DataJobContext, MissedCounted};

const CONTROLLER: &str = "datajob";

/// The caches the DataJob controller reads, and the change streams that fill the ones
/// it alone follows.
pub struct DataJobCaches<D, J, G, U> {
    /// The managed-Job cache that `job_events` fills.
    pub jobs: Store<Job>,
    pub job_events: J,
    pub groups: Store<NodeGroup>,
    /// Ticks when a NodeGroup was created, deleted or its spec changed.
    pub group_events: G,
    /// Filled by the watchdog's pod stream.
    pub pods: Store<Pod>,
    /// Every DataJob, kept by every replica: the controller's own store, with no watch
    /// of its own.
    pub datajobs: Store<DataJob>,
    /// Every DataJob of `datajobs` once, then each one that changed
    /// (`controller::all_then_changes`).
    pub datajob_events: D,
    /// DataJobs whose inputs changed (an input published, failed, was created).
    pub input_changes: U,
}

/// Runs the controller until `shutdown` resolves.
/// At most `concurrency` DataJobs are reconciled at once.
pub async fn run<D, J, G, U>(
    base: Context,
    caches: DataJobCaches<D, J, G, U>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    J: futures::Stream<Item = Job> + Send + 'static,
    G: futures::Stream<Item = ()> + Send + 'static,
    U: futures::Stream<Item = ObjectRef<DataJob>> + Send + 'static,
    D: futures::Stream<Item = Arc<DataJob>> + Send + 'static,
{
    let DataJobCaches {
        jobs,
        job_events,
        groups,
        group_events,
        pods,
        datajobs,
        datajob_events,
        input_changes,
    } = caches;
    let client = base.client.clone();
    let managed = super::watch_config().labels(&labels::managed_selector());
    let job_stream = job_events.map(Ok::<_, watcher::Error>);
    let metrics = base.metrics.clone();
    let ctx = Arc::new(DataJobContext {
        base,
        missed_counted: Mutex::new(MissedCounted::default()),
        jobs: jobs.clone(),
        groups,
        pods,
        datajobs: datajobs.clone(),
    });
    // A watch that lists afresh after losing the apiserver (see `relisting_watcher`), of
    // the CronJobs' metadata only: their owner is all the controller reads of them.
    let cronjobs = kube::runtime::WatchStreamExt::touched_objects(super::relisting_watcher::<
        kube::core::PartialObjectMeta<CronJob>,
    >(client.clone(), managed));
    let controller = Controller::for_shared_stream(datajob_events, datajobs)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_stream(cronjobs)
        .watches_stream(job_stream, |job| {
            let ns = job.namespace()?;
            let name = job.labels().get(NAME)?.clone();
            Some(ObjectRef::<DataJob>::new(&name).within(&ns))
        })
        // A NodeGroup change can move every DataJob: place them all again.
        .reconcile_all_on(group_events)
        // An input that published (or failed) lets its readers' waiting runs go (or end).
        .reconcile_on(input_changes)
        .graceful_shutdown_on(shutdown);
    // The gauges of active runs and last outcomes read this cache while we lead.
    let _served = metrics.caches.datajobs.serve(controller.store());
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::report(CONTROLLER, result))
        .await;
}

fn error_policy(dj: Arc<DataJob>, error: &Error, ctx: Arc<DataJobContext>) -> Action {
    // Told on the DataJob, so its user sees it without logs.
    ctx.base.failed(
        CONTROLLER,
        Some(dj.object_ref(&())),
        error,
        Duration::from_secs(15),
    )
}

/// Reads, plans and applies. A child the apiserver refuses (400, 403, 422) is something
/// observed, not an error: the plan is made again with it, and the status says
/// `ChildRejected` until the spec or the cluster changes, instead of a retry every 15 s
/// in silence.
async fn reconcile(dj: Arc<DataJob>, ctx: Arc<DataJobContext>) -> Result<Action> {
    let ns = dj
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(dj.name_any()))?;
    let span = info_span!("reconcile", datajob = %dj.name_any(), namespace = %ns);
    async move {
        let _timer = ctx.base.metrics.reconcile(CONTROLLER);
        let now = Utc::now();
        let settings = Settings {
            limits: &ctx.base.limits,
            guards: &ctx.base.guards,
        };
        let mut observed = read(&dj, &ns, &ctx, now);
        let mut plan = datajob::plan(&dj, &observed, &settings, now);
        if let Some(refusal) = apply::children(&plan.children, &dj, &ctx, &ns).await? {
            observed.rejected = Some(refusal);
            plan = datajob::plan(&dj, &observed, &settings, now);
        }
        apply::rest(plan, &dj, &ctx, &ns).await
    }
    .instrument(span)
    .await
}

/// What the caches hold of `dj` in `ns`, as plain values for the plan.
fn read(dj: &DataJob, ns: &str, ctx: &DataJobContext, now: DateTime<Utc>) -> Observed {
    let name = dj.name_any();
    let mut jobs = Vec::new();
    let mut job_names = BTreeSet::new();
    for job in ctx.jobs.state() {
        if job.namespace().as_deref() != Some(ns) {
            continue;
        }
        job_names.insert(job.name_any());
        if job.labels().get(NAME) == Some(&name) {
            jobs.push(job);
        }
    }
    let runs: HashSet<String> = jobs.iter().map(|j| j.name_any()).collect();
    let pods = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns)
                && p.labels().get(JOB_NAME).is_some_and(|j| runs.contains(j))
        })
        .collect();
    let input_runs = dj
        .spec
        .inputs
        .iter()
        .map(|input| (input.clone(), jobs::job_runs(&ctx.jobs, ns, input)))
        .collect();
    let key = (ns.to_string(), name.clone());
    let missed_counted = ctx
        .missed_counted
        .lock()
        .ok()
        .and_then(|c| c.peek(&key, dj.metadata.generation, now));
    Observed {
        groups: usable_groups(ctx.groups.state().iter().map(|g| g.as_ref())),
        namespace: jobs::namespace_datajobs(&ctx.datajobs, ns, &name),
        jobs,
        job_names,
        input_runs,
        pods,
        missed_counted,
        rejected: None,
    }
}

/// The exact calls one reconcile makes, against kube's mocked client: no cluster, every
/// request recorded and answered as the apiserver would.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::metrics::Metrics;
    use datajob_api::{DataJobResources, DataJobSpec};
    use kube::runtime::reflector;

    fn mocked(answer_for_status: DataJob) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        crate::controller::mock::client(serde_json::to_value(answer_for_status).unwrap_or_default())
    }

    fn datajob(schedule: Option<&str>, cpu: &str) -> DataJob {
        let mut d = DataJob::new(
            "nightly",
            DataJobSpec {
                image: "registry.example/acme/etl:1.0".into(),
                schedule: schedule.map(Into::into),
                resources: DataJobResources {
                    cpu: Some(cpu.into()),
                    memory: Some("1Gi".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        d.metadata.namespace = Some("data".into());
        d.metadata.uid = Some("uid-1".into());
        d.metadata.generation = Some(1);
        d.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-01T02:00:30Z".parse().expect("a time"),
        ));
        d
    }

    async fn calls_of_one_reconcile(dj: DataJob) -> Vec<String> {
        let (client, calls) = mocked(dj.clone());
        let ctx = Arc::new(DataJobContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            missed_counted: Mutex::new(MissedCounted::default()),
            groups: reflector::store().0,
            jobs: reflector::store().0,
            pods: reflector::store().0,
            datajobs: reflector::store().0,
        });
        let action = reconcile(Arc::new(dj), ctx).await;
        assert!(action.is_ok(), "the reconcile failed: {:?}", action.err());
        calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The requests one reconcile makes, with their bodies, while the Job cache holds
    /// `jobs` (the mocked cluster holds none of them).
    async fn calls_with_jobs(dj: DataJob, jobs: Vec<Job>) -> Vec<crate::controller::mock::Call> {
        let answer = serde_json::to_value(&dj).unwrap_or_default();
        let (client, calls) = crate::controller::mock::client_holding(answer, vec![]);
        let ctx = Arc::new(DataJobContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            missed_counted: Mutex::new(MissedCounted::default()),
            groups: reflector::store().0,
            jobs: crate::controller::mock::store_of(jobs),
            pods: reflector::store().0,
            datajobs: reflector::store().0,
        });
        let action = reconcile(Arc::new(dj), ctx).await;
        assert!(action.is_ok(), "the reconcile failed: {:?}", action.err());
        calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// A suspended Job of `nightly`'s CronJob for `at`, as the CronJob controller makes it.
    fn cronjob_run(at: chrono::DateTime<Utc>) -> Job {
        let id = labels::run_id("nightly", at);
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": id,
                "namespace": "data",
                "uid": "job-uid-1",
                "labels": {NAME: "nightly"},
                "annotations": {labels::CRONJOB_SCHEDULED: labels::rfc3339(at)},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cj-uid"}],
            },
            "spec": {"suspend": true, "template": {}},
        }))
        .unwrap_or_default()
    }

    fn calls_of(calls: &[crate::controller::mock::Call]) -> Vec<&str> {
        calls.iter().map(|c| c.call.as_str()).collect()
    }

    #[tokio::test]
    async fn a_run_its_cronjob_made_is_stamped_and_started_in_one_merge_patch() {
        let at = labels::truncate_to_minute(Utc::now());
        let id = labels::run_id("nightly", at);
        let mut dj = datajob(Some("* * * * *"), "1");
        // Every missed time may start: the test holds whatever second it starts at.
        dj.spec.catch_up = Some(datajob_api::CatchUp::All);
        let calls = calls_with_jobs(dj, vec![cronjob_run(at)]).await;
        assert_eq!(
            calls_of(&calls),
            [
                "PATCH /apis/batch/v1/namespaces/data/cronjobs/nightly",
                &format!("PATCH /apis/batch/v1/namespaces/data/jobs/{id}"),
                "PATCH /apis/datajob.dev/v1alpha1/namespaces/data/datajobs/nightly/status",
                // RunStarted: the status lists the run for the first time.
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
            ]
        );
        let start = &calls[1].body;
        assert_eq!(start["spec"]["suspend"], serde_json::json!(false));
        assert_eq!(
            start["metadata"]["labels"][labels::RUN_ID],
            serde_json::json!(id)
        );
        assert_eq!(
            start["spec"]["template"]["metadata"]["annotations"][labels::LOGICAL_TIME],
            serde_json::json!(labels::rfc3339(at))
        );
    }

    #[tokio::test]
    async fn a_run_too_late_to_start_is_deleted_exactly_and_told_once() {
        // Made three hours ago while the operator was down; hourly, catchUp: latest.
        let at = labels::truncate_to_minute(Utc::now()) - chrono::Duration::hours(3);
        let id = labels::run_id("nightly", at);
        let mut dj = datajob(Some(&format!("{} * * * *", at.format("%M"))), "1");
        dj.spec.catch_up = Some(datajob_api::CatchUp::Latest);
        let calls = calls_with_jobs(dj, vec![cronjob_run(at)]).await;
        assert_eq!(
            calls_of(&calls),
            [
                "PATCH /apis/batch/v1/namespaces/data/cronjobs/nightly",
                &format!("DELETE /apis/batch/v1/namespaces/data/jobs/{id}"),
                // RunSkipped
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
                "PATCH /apis/datajob.dev/v1alpha1/namespaces/data/datajobs/nightly/status",
            ]
        );
        // Exactly this Job, not a newer one of the same name.
        assert_eq!(
            calls[1].body["preconditions"]["uid"],
            serde_json::json!("job-uid-1")
        );
        assert_eq!(calls[2].body["reason"], serde_json::json!("RunSkipped"));
        // The skipped run leaves no record.
        assert_eq!(
            calls[3].body["status"]["recentRuns"],
            serde_json::Value::Null,
            "{}",
            calls[3].body
        );
    }

    #[tokio::test]
    async fn a_new_one_off_datajob_gets_one_job_for_its_creation_minute_and_a_status() {
        let calls = calls_of_one_reconcile(datajob(None, "1")).await;
        assert_eq!(
            calls,
            [
                // A DataJob that lost its schedule loses its CronJob: is there one?
                "GET /apis/batch/v1/namespaces/data/cronjobs/nightly",
                // Its one run, named for the minute it was created (02:00 UTC).
                "PATCH /apis/batch/v1/namespaces/data/jobs/nightly-29934840",
                "PATCH /apis/datajob.dev/v1alpha1/namespaces/data/datajobs/nightly/status",
            ]
        );
    }

    #[tokio::test]
    async fn a_scheduled_datajob_gets_its_cronjob_and_a_status_and_no_job() {
        let calls = calls_of_one_reconcile(datajob(Some("0 2 * * *"), "1")).await;
        assert_eq!(
            calls,
            [
                "PATCH /apis/batch/v1/namespaces/data/cronjobs/nightly",
                "PATCH /apis/datajob.dev/v1alpha1/namespaces/data/datajobs/nightly/status",
            ]
        );
    }

    #[tokio::test]
    async fn an_invalid_datajob_gets_no_child_only_its_status_and_a_warning_event() {
        let calls = calls_of_one_reconcile(datajob(Some("0 2 * * *"), "lots")).await;
        assert_eq!(
            calls,
            [
                "PATCH /apis/datajob.dev/v1alpha1/namespaces/data/datajobs/nightly/status",
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
            ]
        );
    }

    /// Issue 25 item 8: with `history: 0`, the reconcile that first sees a run finished
    /// writes its outcome and deletes nothing; only one that reads the outcome on the
    /// stored status prunes the Job. A stop between the two writes (the prune, then the
    /// status) can no longer lose the run, or make it again.
    #[tokio::test]
    async fn a_finished_run_is_pruned_only_once_the_stored_status_holds_it() {
        let at = labels::truncate_to_minute(Utc::now()) - chrono::Duration::minutes(2);
        let id = labels::run_id("nightly", at);
        let mut dj = datajob(Some("* * * * *"), "1");
        dj.spec.history = Some(0);
        let mut job = cronjob_run(at);
        let done = labels::rfc3339(at + chrono::Duration::seconds(30));
        if let Some(s) = job.spec.as_mut() {
            s.suspend = Some(false);
        }
        job.labels_mut().insert(labels::RUN_ID.into(), id.clone());
        job.status = serde_json::from_value(serde_json::json!({
            "startTime": labels::rfc3339(at + chrono::Duration::seconds(1)),
            "completionTime": done,
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": done}],
        }))
        .unwrap_or_default();
        let deletes = |calls: &[crate::controller::mock::Call]| {
            calls
                .iter()
                .filter(|c| c.call.starts_with("DELETE"))
                .map(|c| c.call.clone())
                .collect::<Vec<_>>()
        };
        let first = calls_with_jobs(dj.clone(), vec![job.clone()]).await;
        assert_eq!(
            deletes(&first),
            Vec::<String>::new(),
            "{:?}",
            calls_of(&first)
        );
        let status = first
            .iter()
            .find(|c| c.call.ends_with("/datajobs/nightly/status"))
            .map(|c| c.body["status"].clone())
            .unwrap_or_default();
        dj.status = serde_json::from_value(status).ok();
        assert!(
            dj.status
                .as_ref()
                .is_some_and(|s| s.recent_runs.iter().any(|r| r.name == id)),
            "the first status write records the run"
        );
        let second = calls_with_jobs(dj, vec![job]).await;
        assert_eq!(
            deletes(&second),
            [format!("DELETE /apis/batch/v1/namespaces/data/jobs/{id}")]
        );
    }
}

//! The Backfill reconciler (leader only): for each Backfill, plans its times
//! ([`datajob_core::decide::backfill::plan`]), takes one step ([`datajob_core::decide::backfill::step`]): starts the runs it
//! says, oldest first and a few at a time, and writes how far it got. The runs are the
//! DataJobs' own (owned by them, named by their logical time), so starting one twice is
//! refused by the apiserver, and a restart carries on from the status.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span};

use super::Context;
use super::jobs;
use crate::{Error, Result};
use datajob_api::{Backfill, BackfillState, BackfillStatus, DataJob, NodeGroup};
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::backfill::{self, Member};
use datajob_core::decide::children;
use datajob_core::decide::dataflow::{self, Upstream};
use datajob_core::decide::nodegroup::usable_groups;
use datajob_core::labels::{self, BACKFILL, FIELD_MANAGER};

const CONTROLLER: &str = "backfill";
/// How often a Backfill that is under way looks at its runs.
const POLL: Duration = Duration::from_secs(3);

pub(crate) struct BackfillContext {
    pub base: Context,
    pub jobs: Store<Job>,
    pub datajobs: Store<DataJob>,
    pub groups: Store<NodeGroup>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    base: Context,
    jobs: Store<Job>,
    datajobs: Store<DataJob>,
    groups: Store<NodeGroup>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = base.client.clone();
    let ctx = Arc::new(BackfillContext {
        base,
        jobs,
        datajobs,
        groups,
    });
    Controller::new(Api::<Backfill>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::report(CONTROLLER, result))
        .await;
}

fn error_policy(bf: Arc<Backfill>, error: &Error, ctx: Arc<BackfillContext>) -> Action {
    // Told on the Backfill, so its user sees it without logs.
    ctx.base.failed(
        CONTROLLER,
        Some(bf.object_ref(&())),
        error,
        Duration::from_secs(15),
    )
}

/// A DataJob as a Backfill plans with it.
fn member(dj: &DataJob) -> Member {
    let view = Upstream::of(dj, Vec::new());
    Member {
        name: dj.name_any(),
        schedule: view.schedule,
        inputs: dj.spec.inputs.clone(),
    }
}

async fn reconcile(bf: Arc<Backfill>, ctx: Arc<BackfillContext>) -> Result<Action> {
    let ns = bf
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(bf.name_any()))?;
    let span = info_span!("backfill", backfill = %bf.name_any(), namespace = %ns);
    async move {
        let _timer = ctx.base.metrics.reconcile(CONTROLLER);
        if bf.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let now = Utc::now();
        let generation = bf.metadata.generation;
        let previous = backfill::starting_status(bf.status.as_ref(), generation);
        let all: Vec<Arc<DataJob>> = ctx
            .datajobs
            .state()
            .into_iter()
            .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        let members: Vec<Member> = all.iter().map(|d| member(d)).collect();
        let mut status = match backfill::plan(&bf.spec, &ns, &members, now, backfill::SPEC) {
            Err(problems) => BackfillStatus {
                state: Some(BackfillState::Invalid),
                message: Some(problems.to_string()),
                ..previous.clone()
            },
            Ok(plan) => {
                let (mut status, starts) = step(&bf, &ctx, &ns, &all, &plan, &previous, now);
                for start in &starts {
                    if let Err(why) = start_run(&bf, &ctx, &ns, &all, start).await? {
                        status.message = Some(why);
                    }
                }
                status
            }
        };
        status.observed_generation = generation;
        status.conditions = backfill::conditions(&previous.conditions, &status, generation, now);
        let state = status.state.unwrap_or_default();
        write_status(&bf, &ctx, &ns, status).await?;
        Ok(match state {
            BackfillState::Running => Action::requeue(POLL),
            // The DataJob may be created or given a schedule: look again.
            BackfillState::Invalid => Action::requeue(Duration::from_secs(60)),
            BackfillState::Complete => Action::await_change(),
        })
    }
    .instrument(span)
    .await
}

/// The next step of a valid Backfill ([`backfill::step`]), with what each planned DataJob
/// says now (its runs, from the Job cache) and every DataJob's inputs.
fn step(
    bf: &Backfill,
    ctx: &BackfillContext,
    ns: &str,
    all: &[Arc<DataJob>],
    plan: &backfill::Plan,
    previous: &BackfillStatus,
    now: chrono::DateTime<Utc>,
) -> (BackfillStatus, Vec<backfill::Start>) {
    let views: BTreeMap<String, Upstream> = plan
        .iter()
        .filter_map(|(name, _)| {
            let dj = all.iter().find(|d| d.name_any() == *name)?;
            let runs = jobs::job_runs(&ctx.jobs, ns, name);
            Some((name.clone(), Upstream::of(dj, runs)))
        })
        .collect();
    let inputs_of: BTreeMap<String, Vec<String>> = all
        .iter()
        .map(|d| (d.name_any(), d.spec.inputs.clone()))
        .collect();
    backfill::step(&bf.spec, plan, &views, &inputs_of, previous, now)
}

/// Starts one run a step asked for; `Ok(Err(why))` when its DataJob cannot run now.
async fn start_run(
    bf: &Backfill,
    ctx: &BackfillContext,
    ns: &str,
    all: &[Arc<DataJob>],
    start: &backfill::Start,
) -> Result<std::result::Result<(), String>> {
    let Some(dj) = all.iter().find(|d| d.name_any() == start.datajob) else {
        return Ok(Err(format!("DataJob {} is gone", start.datajob)));
    };
    let groups = usable_groups(ctx.groups.state().iter().map(|g| g.as_ref()));
    let mut r = match resolve_and_place(dj, &ctx.base.limits, &ctx.base.guards, &groups) {
        Ok(r) => r,
        Err(problems) => {
            return Ok(Err(format!(
                "DataJob {} is invalid, so its runs cannot start; fix it and the backfill carries on: {problems}",
                start.datajob
            )));
        }
    };
    let upstreams = jobs::upstreams(&ctx.jobs, ns, &r.inputs, all);
    r.input_claims = dataflow::input_claims(&r.inputs, &upstreams);
    let api: Api<Job> = Api::namespaced(ctx.base.client.clone(), ns);
    let id = labels::run_id(&r.name, start.logical_time);
    if start.rerun
        && let Some(old) = ctx.jobs.get(&ObjectRef::new(&id).within(ns))
    {
        jobs::delete_job(&api, &id, &old.uid().unwrap_or_default(), ns).await?;
    }
    // A run with inputs waits (suspended) for them: the DataJob's reconciler starts it.
    let job = children::job(
        dj,
        &r,
        &ctx.base.guards,
        start.logical_time,
        !r.inputs.is_empty(),
    );
    let extra = BTreeMap::from([(BACKFILL.to_string(), bf.name_any())]);
    let job = children::with_inputs(job, &[], &extra);
    if jobs::create_job(&api, &job, ns).await? {
        info!(run = %id, logical_time = %labels::rfc3339(start.logical_time), rerun = start.rerun, "backfill started a run");
    }
    Ok(Ok(()))
}

/// Writes the status when it changed, and says so in an event when it completed.
async fn write_status(
    bf: &Backfill,
    ctx: &BackfillContext,
    ns: &str,
    status: BackfillStatus,
) -> Result<()> {
    let previous = bf.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    let name = bf.name_any();
    let api: Api<Backfill> = Api::namespaced(ctx.base.client.clone(), ns);
    let patch = json!({"apiVersion": "datajob.dev/v1alpha1", "kind": "Backfill", "status": status});
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::api("update status of", "Backfill", ns, &name)(e)),
    }
    let became = |s: BackfillState| status.state == Some(s) && previous.state != Some(s);
    let event = if became(BackfillState::Complete) {
        Some((
            status.failed > 0,
            "BackfillComplete",
            status.message.clone().unwrap_or_default(),
        ))
    } else if became(BackfillState::Invalid) {
        Some((true, "Invalid", status.message.clone().unwrap_or_default()))
    } else {
        None
    };
    if let Some((warning, reason, note)) = event {
        ctx.base
            .event(&bf.object_ref(&()), warning, reason, "Backfill", note)
            .await;
    }
    Ok(())
}

/// The exact calls one Backfill reconcile makes, against kube's mocked client.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::controller::mock::{self, Call};
    use crate::metrics::Metrics;

    const STATUS: &str = "/apis/datajob.dev/v1alpha1/namespaces/data/backfills/november/status";
    const JOBS: &str = "/apis/batch/v1/namespaces/data/jobs";

    fn backfill(datajob: &str) -> Backfill {
        serde_json::from_value(json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "Backfill",
            "metadata": {"name": "november", "namespace": "data", "generation": 1, "uid": "bf-uid"},
            "spec": {"dataJob": datajob, "from": "2026-11-01T00:00:00Z",
                "to": "2026-11-01T01:00:00Z", "parallel": 2},
        }))
        .expect("a Backfill")
    }

    /// A DataJob that runs hourly.
    fn hourly() -> DataJob {
        serde_json::from_value(json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": "hourly", "namespace": "data", "uid": "dj-uid",
                "creationTimestamp": "2026-10-01T00:00:00Z"},
            "spec": {"image": "registry.example/etl:1.0", "schedule": "0 * * * *"},
        }))
        .expect("a DataJob")
    }

    async fn one_reconcile(bf: Backfill, datajobs: Vec<DataJob>) -> (Action, Vec<Call>) {
        let answer = serde_json::to_value(&bf).unwrap_or_default();
        let (client, calls) = mock::client_holding(answer, Vec::new());
        let ctx = Arc::new(BackfillContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            jobs: mock::store_of(Vec::new()),
            datajobs: mock::store_of(datajobs),
            groups: mock::store_of(Vec::new()),
        });
        let action = reconcile(Arc::new(bf), ctx).await;
        let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
        match action {
            Ok(a) => (a, calls),
            Err(e) => panic!("the reconcile failed: {e}; calls: {calls:#?}"),
        }
    }

    fn methods_and_paths(calls: &[Call]) -> Vec<&str> {
        calls.iter().map(|c| c.call.as_str()).collect()
    }

    #[tokio::test]
    async fn a_new_backfill_starts_its_first_times_and_writes_how_far_it_got() {
        let (action, calls) = one_reconcile(backfill("hourly"), vec![hourly()]).await;
        assert_eq!(
            methods_and_paths(&calls),
            [
                format!("POST {JOBS}").as_str(),
                format!("POST {JOBS}").as_str(),
                format!("PATCH {STATUS}").as_str(),
            ]
        );
        // The two times of the range, each a run named by its logical time.
        let names: Vec<&str> = calls[..2]
            .iter()
            .filter_map(|c| c.body["metadata"]["name"].as_str())
            .collect();
        // 2026-11-01T00:00Z and 01:00Z in minutes since the epoch.
        assert_eq!(names, ["hourly-29891520", "hourly-29891580"]);
        for c in &calls[..2] {
            assert_eq!(c.body["metadata"]["labels"][BACKFILL], "november");
        }
        assert_eq!(calls[2].body["status"]["state"], "Running");
        assert_eq!(action, Action::requeue(POLL));
    }

    #[tokio::test]
    async fn a_backfill_of_an_unknown_datajob_is_invalid_told_once_and_starts_nothing() {
        let (action, calls) = one_reconcile(backfill("nope"), vec![hourly()]).await;
        assert_eq!(
            methods_and_paths(&calls),
            [
                format!("PATCH {STATUS}").as_str(),
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
            ]
        );
        assert_eq!(calls[0].body["status"]["state"], "Invalid");
        assert_eq!(calls[1].body["reason"], "Invalid");
        assert_eq!(calls[1].body["type"], "Warning");
        assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    }
}

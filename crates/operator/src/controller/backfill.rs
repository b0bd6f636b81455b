//! The Backfill reconciler (leader only): for each Backfill, counts its times once
//! ([`datajob_core::decide::backfill::times`]), asks whether it has a place
//! ([`datajob_core::decide::backfill::turns`]: at most [`MAX_RUNNING`] Backfills start
//! runs at once), takes one step from its cursor
//! ([`datajob_core::decide::backfill::step_in_turn`]): starts the runs it says, oldest
//! first and a few at a time, and writes how far it got. The runs are the DataJobs' own
//! (owned by them, named by their logical time), so starting one twice is refused by the
//! apiserver, and a restart carries on from the status. It wakes on its Backfills, on the
//! Jobs they started and the DataJobs they run (when [`run_on`] is given their
//! changes), and when a place frees up.
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
use datajob_core::decide::backfill::turns::{self, Contender, Turn};
use datajob_core::decide::backfill::{self, Member};
use datajob_core::decide::children;
use datajob_core::decide::dataflow::{self, Upstream};
use datajob_core::decide::nodegroup::usable_groups;
use datajob_core::labels::{self, BACKFILL, FIELD_MANAGER};

const CONTROLLER: &str = "backfill";
/// How often a Backfill that is under way looks at its runs when nothing tells it of
/// their changes ([`run`]).
const POLL: Duration = Duration::from_secs(3);
/// How often it looks when the changes of its Jobs and DataJobs wake it ([`run_on`]): a
/// fallback only (issue 25 item 7: every Backfill re-planned every 3 s).
const FALLBACK: Duration = Duration::from_secs(60);
/// How often a Backfill waiting for a place looks (a Backfill that finishes wakes the
/// next at once; one deleted does not).
const WAITING: Duration = Duration::from_secs(15);
/// The most Backfills that start runs at once across the operator; the others wait,
/// oldest first (issue 25 item 7).
pub const MAX_RUNNING: usize = 8;
/// How many wake-ups of waiting Backfills may queue; beyond, [`WAITING`] covers.
const WAKE_BUFFER: usize = 64;

pub(crate) struct BackfillContext {
    pub base: Context,
    pub jobs: Store<Job>,
    pub datajobs: Store<DataJob>,
    pub groups: Store<NodeGroup>,
    /// The Backfills (the controller's own cache), for the limit.
    pub backfills: Store<Backfill>,
    /// At most this many start runs at once.
    pub limit: usize,
    /// The requeue of a Backfill under way.
    pub poll: Duration,
    /// Reconciles a Backfill that a freed place lets go.
    pub wake: tokio::sync::mpsc::Sender<ObjectRef<Backfill>>,
    /// The Backfills that gave their place up, with the status they wrote, until the
    /// cache shows it ([`contenders`]).
    pub released: std::sync::Mutex<std::collections::HashMap<ObjectRef<Backfill>, BackfillStatus>>,
}

/// The changes that wake a Backfill before its fallback requeue: its Jobs' (labelled
/// with its name) and its DataJobs' (their status records runs and publications).
pub struct BackfillEvents<J, D> {
    pub jobs: J,
    pub datajobs: D,
}

type Never<K> = futures::stream::Pending<K>;

/// Runs the controller until `shutdown` resolves, looking at a Backfill under way every
/// [`POLL`] (nothing wakes it on its runs' changes: [`run_on`] does).
pub async fn run(
    base: Context,
    jobs: Store<Job>,
    datajobs: Store<DataJob>,
    groups: Store<NodeGroup>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let none: Option<BackfillEvents<Never<Job>, Never<DataJob>>> = None;
    run_on(base, jobs, datajobs, groups, none, MAX_RUNNING, shutdown).await
}

/// [`run`], woken by `events` (then only every [`FALLBACK`] without them), with at most
/// `limit` Backfills starting runs at once ([`MAX_RUNNING`] by default).
pub async fn run_on<J, D>(
    base: Context,
    jobs: Store<Job>,
    datajobs: Store<DataJob>,
    groups: Store<NodeGroup>,
    events: Option<BackfillEvents<J, D>>,
    limit: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    J: futures::Stream<Item = Job> + Send + 'static,
    D: futures::Stream<Item = DataJob> + Send + 'static,
{
    let client = base.client.clone();
    let mut controller = Controller::new(Api::<Backfill>::all(client), watcher::Config::default());
    let backfills = controller.store();
    let poll = match events {
        Some(BackfillEvents {
            jobs: job_events,
            datajobs: datajob_events,
        }) => {
            let of_job = |job: Job| {
                let ns = job.namespace()?;
                let name = job.labels().get(BACKFILL)?.clone();
                Some(ObjectRef::<Backfill>::new(&name).within(&ns))
            };
            let store = backfills.clone();
            let of_datajob = move |dj: DataJob| running_on(&store, &dj);
            controller = controller
                .watches_stream(job_events.map(Ok::<_, watcher::Error>), of_job)
                .watches_stream(datajob_events.map(Ok::<_, watcher::Error>), of_datajob);
            FALLBACK
        }
        None => POLL,
    };
    let (wake, woken) = tokio::sync::mpsc::channel(WAKE_BUFFER);
    let woken = futures::stream::unfold(
        woken,
        |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
    );
    let ctx = Arc::new(BackfillContext {
        base,
        jobs,
        datajobs,
        groups,
        backfills,
        limit: limit.max(1),
        poll,
        wake,
        released: Default::default(),
    });
    controller
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::report(CONTROLLER, result))
        .await;
}

/// The Backfills with times left that run DataJob `dj` (the one they name, or one
/// downstream their status follows).
fn running_on(backfills: &Store<Backfill>, dj: &DataJob) -> Vec<ObjectRef<Backfill>> {
    let (ns, name) = (dj.namespace(), dj.name_any());
    backfills
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && contender(b, b.status.as_ref()).is_some())
        .filter(|b| {
            b.spec.data_job == name
                || b.status
                    .iter()
                    .flat_map(|s| &s.data_jobs)
                    .any(|p| p.data_job == name)
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// `bf` as the limit sees it with `status` ([`Contender::of`]).
fn contender(bf: &Backfill, status: Option<&BackfillStatus>) -> Option<Contender> {
    if bf.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Contender::of(
        &bf.namespace().unwrap_or_default(),
        &bf.name_any(),
        bf.metadata
            .creation_timestamp
            .as_ref()
            .and_then(labels::from_k8s_time),
        bf.metadata.generation,
        status,
    )
}

/// Every Backfill with times left, `bf` with `status` (it may be newer than the cache's),
/// and those that gave their place up with the status they wrote until the cache shows
/// it (a Backfill it woke would otherwise still see it going, and wait).
fn contenders(ctx: &BackfillContext, bf: &Backfill, status: &BackfillStatus) -> Vec<Contender> {
    let me = ObjectRef::from_obj(bf);
    let all = ctx.backfills.state();
    let Ok(mut released) = ctx.released.lock() else {
        return Vec::new();
    };
    released.retain(|r, written| {
        all.iter()
            .any(|b| ObjectRef::from_obj(b.as_ref()) == *r && b.status.as_ref() != Some(written))
    });
    all.iter()
        .filter(|b| ObjectRef::from_obj(b.as_ref()) != me)
        .filter_map(|b| {
            let written = released.get(&ObjectRef::from_obj(b.as_ref()));
            contender(b, written.or(b.status.as_ref()))
        })
        .chain(contender(bf, Some(status)))
        .collect()
}

/// Wakes the Backfills that now have a place but start nothing yet (not `bf`, which
/// just gave its place up).
fn wake_next(ctx: &BackfillContext, bf: &Backfill, status: &BackfillStatus) {
    if let Ok(mut released) = ctx.released.lock() {
        released.insert(ObjectRef::from_obj(bf), status.clone());
    }
    let all = contenders(ctx, bf, status);
    for c in turns::placed(&all, ctx.limit) {
        let me = c.namespace == bf.namespace().unwrap_or_default() && c.name == bf.name_any();
        if !c.going && !me {
            // A full queue drops it: its WAITING requeue comes anyway.
            let _ = ctx
                .wake
                .try_send(ObjectRef::new(&c.name).within(&c.namespace));
        }
    }
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
        let planned = backfill::times(&bf.spec, &ns, &members, now, backfill::SPEC, &previous);
        let mut turn = Turn::Go;
        let mut status = match planned {
            Err(problems) => BackfillStatus {
                state: Some(BackfillState::Invalid),
                message: Some(problems.to_string()),
                ..previous.clone()
            },
            Ok(plan) => {
                let all_contenders = contenders(&ctx, &bf, &previous);
                turn = turns::turn(&ns, &bf.name_any(), &all_contenders, ctx.limit);
                let (mut status, starts) = step(&bf, &ctx, &all, &plan, &previous, now, turn);
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
        let gave_up_a_place = previous.active > 0 && status.active == 0;
        let finished = state != BackfillState::Running;
        let wake = gave_up_a_place || (finished && previous.state == Some(BackfillState::Running));
        let written = wake.then(|| status.clone());
        write_status(&bf, &ctx, &ns, status).await?;
        if let Some(status) = written {
            wake_next(&ctx, &bf, &status);
        }
        Ok(match state {
            BackfillState::Running if turn != Turn::Go => Action::requeue(WAITING),
            BackfillState::Running => Action::requeue(ctx.poll),
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
    all: &[Arc<DataJob>],
    plan: &[backfill::Times],
    previous: &BackfillStatus,
    now: chrono::DateTime<Utc>,
    turn: Turn,
) -> (BackfillStatus, Vec<backfill::Start>) {
    let ns = bf.namespace().unwrap_or_default();
    let views: BTreeMap<String, Upstream> = plan
        .iter()
        .filter_map(|times| {
            let name = &times.datajob;
            let dj = all.iter().find(|d| d.name_any() == *name)?;
            let runs = jobs::job_runs(&ctx.jobs, &ns, name);
            Some((name.clone(), Upstream::of(dj, runs)))
        })
        .collect();
    let inputs_of: BTreeMap<String, Vec<String>> = all
        .iter()
        .map(|d| (d.name_any(), d.spec.inputs.clone()))
        .collect();
    backfill::step_in_turn(&bf.spec, plan, &views, &inputs_of, previous, now, turn)
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
        one_reconcile_among(bf, datajobs, Vec::new(), MAX_RUNNING).await
    }

    /// One reconcile of `bf` while the cache holds `others` too, at most `limit` at once.
    /// The controller's context on the mocked `client`, with these caches.
    fn test_context(
        client: kube::Client,
        datajobs: Vec<DataJob>,
        backfills: Vec<Backfill>,
        limit: usize,
        wake: tokio::sync::mpsc::Sender<ObjectRef<Backfill>>,
    ) -> BackfillContext {
        BackfillContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            jobs: mock::store_of(Vec::new()),
            datajobs: mock::store_of(datajobs),
            groups: mock::store_of(Vec::new()),
            backfills: mock::store_of(backfills),
            limit,
            poll: POLL,
            wake,
            released: Default::default(),
        }
    }

    async fn one_reconcile_among(
        bf: Backfill,
        datajobs: Vec<DataJob>,
        others: Vec<Backfill>,
        limit: usize,
    ) -> (Action, Vec<Call>) {
        let answer = serde_json::to_value(&bf).unwrap_or_default();
        let mut cached = others;
        cached.push(bf.clone());
        let (wake, _woken) = tokio::sync::mpsc::channel(WAKE_BUFFER);
        let (client, calls) = mock::client_holding(answer, Vec::new());
        let ctx = Arc::new(test_context(client, datajobs, cached, limit, wake));
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

    /// A Backfill created at `minute` past 2026-11-30T00:00Z, with runs going or not.
    fn other(name: &str, minute: u32, active: i32) -> Backfill {
        let mut b: Backfill = serde_json::from_value(json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "Backfill",
            "metadata": {"name": name, "namespace": "data", "generation": 1, "uid": name,
                "creationTimestamp": format!("2026-11-30T00:{minute:02}:00Z")},
            "spec": {"dataJob": "hourly", "from": "2026-10-01T00:00:00Z",
                "to": "2026-10-31T00:00:00Z"},
            "status": {"observedGeneration": 1, "state": "Running", "active": active},
        }))
        .expect("a Backfill");
        b.metadata.generation = Some(1);
        b
    }

    #[tokio::test]
    async fn a_backfill_waits_for_a_place_while_the_limit_runs_and_says_so() {
        let mut november = backfill("hourly");
        november.metadata.creation_timestamp = other("x", 30, 0).metadata.creation_timestamp;
        // Limit 2: "older" waits too but was created first, "going" has runs.
        let others = vec![other("going", 50, 2), other("older", 10, 0)];
        let (action, calls) =
            one_reconcile_among(november.clone(), vec![hourly()], others.clone(), 2).await;
        assert_eq!(
            methods_and_paths(&calls),
            [format!("PATCH {STATUS}").as_str()],
            "no Job is created"
        );
        let status = &calls[0].body["status"];
        assert_eq!(status["state"], "Running");
        assert_eq!(status["active"], 0);
        assert_eq!(
            status["message"],
            "waiting: 2 Backfills are running (the operator runs at most 2 at once); 0 of 2 times done, it carries on when one finishes"
        );
        let complete = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Complete"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(complete["reason"], "WaitingForPlace");
        assert_eq!(action, Action::requeue(WAITING));
        // With a third place, it starts its times.
        let (action, calls) = one_reconcile_among(november, vec![hourly()], others, 3).await;
        assert_eq!(calls.len(), 3, "{calls:#?}");
        assert_eq!(action, Action::requeue(POLL));
    }

    #[tokio::test]
    async fn a_backfill_that_gives_its_place_up_wakes_the_oldest_waiting_and_its_datajob_wakes_it()
    {
        let (client, _) = mock::client_holding(json!({}), Vec::new());
        let (wake, mut woken) = tokio::sync::mpsc::channel(WAKE_BUFFER);
        // Its runs were going as the cache still says.
        let done = other("done", 5, 2);
        let older = other("older", 10, 0);
        let backfills = vec![done.clone(), other("newer", 40, 0), other("older", 10, 0)];
        let ctx = test_context(client, Vec::new(), backfills, 1, wake);
        let complete = BackfillStatus {
            observed_generation: Some(1),
            state: Some(BackfillState::Complete),
            ..Default::default()
        };
        wake_next(&ctx, &done, &complete);
        assert_eq!(
            woken.try_recv().ok(),
            Some(ObjectRef::new("older").within("data"))
        );
        assert!(woken.try_recv().is_err(), "only the one with the place");
        // Woken, it takes the place before the cache shows that "done" gave it up.
        let seen = contenders(&ctx, &older, older.status.as_ref().unwrap_or(&complete));
        assert_eq!(turns::turn("data", "older", &seen, 1), Turn::Go);
        // A change of the DataJob wakes the Backfills with times left that run it.
        let mut names: Vec<String> = running_on(&ctx.backfills, &hourly())
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["done", "newer", "older"],
            "its cached status still says Running"
        );
    }
}

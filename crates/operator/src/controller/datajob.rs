//! The DataJob reconciler: validates, writes the guarded CronJob or Job, admits runs
//! the CronJob created, and writes the status from what the Jobs say.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use super::datajob_context::{DataJobContext, MissedCounted};
use super::lifecycle::{self, Flow};
use super::{Context, truncate};
use crate::metrics::{RunLabels, StateLabels};
use crate::{Error, Result};
use datajob_api::{DataJob, DataJobStatus, NodeGroup, RunState};
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::nodegroups::usable_groups;
use datajob_core::decide::runs::{self, Observed};
use datajob_core::decide::{children, dataflow};
use datajob_core::labels::{self, FIELD_MANAGER, JOB_NAME, NAME, TRIGGER};
use datajob_core::validation::{Problems, Resolved};

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
    let retry = Duration::from_secs(15);
    warn!(datajob = %dj.name_any(), namespace = dj.namespace().unwrap_or_default(), %error, "reconcile failed; retrying in 15s");
    ctx.base.metrics.reconcile_failure(CONTROLLER, error);
    // A Warning event on the DataJob (rate-limited), so the user sees it without logs.
    ctx.base
        .error_event(dj.object_ref(&()), CONTROLLER, error, retry);
    Action::requeue(retry)
}

async fn reconcile(dj: Arc<DataJob>, ctx: Arc<DataJobContext>) -> Result<Action> {
    let ns = dj
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(dj.name_any()))?;
    let span = info_span!("reconcile", datajob = %dj.name_any(), namespace = %ns);
    async move {
        let _timer = ctx.base.metrics.reconcile(CONTROLLER);
        if dj.metadata.deletion_timestamp.is_some() {
            // Children carry owner references: the garbage collector removes them.
            return Ok(Action::await_change());
        }
        let groups = usable_groups(ctx.groups.state().iter().map(|g| g.as_ref()));
        let mut resolved = resolve_and_place(&dj, &ctx.base.limits, &ctx.base.guards, &groups);
        // Dataflow: its inputs exist and make no cycle (admission's words), and what they
        // published decides when its runs start.
        let name = dj.name_any();
        let namespace = lifecycle::namespace_datajobs(&ctx.datajobs, &ns, &name);
        let mut upstreams = BTreeMap::new();
        if let Ok(r) = &mut resolved
            && !r.inputs.is_empty()
        {
            let Some(all) = &namespace else {
                // The DataJob cache is still filling: decide with it, not without.
                return Ok(Action::requeue(Duration::from_secs(2)));
            };
            let problems = lifecycle::graph_problems(&dj, &ns, all);
            if problems.is_empty() {
                upstreams = lifecycle::upstreams(&ctx.jobs, &ns, &r.inputs, all);
                r.input_claims = dataflow::input_claims(&r.inputs, &upstreams);
            } else {
                resolved = Err(Problems(problems));
            }
        }
        // A child the apiserver refuses is not retried every 15 s in silence: the
        // DataJob says so (ChildRejected) until its spec or the cluster changes.
        let mut rejected = None;
        if let Ok(r) = &resolved {
            match apply_children(&dj, r, &ctx, &ns).await {
                Ok(()) => {}
                // Invalid (422), or refused by an admission policy or a quota (403), or a
                // request the apiserver cannot take (400).
                Err(Error::Api { kind, source, .. })
                    if matches!(source.as_ref(), kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422)) =>
                {
                    if let kube::Error::Api(s) = source.as_ref() {
                        warn!(%kind, error = %s.message, "the apiserver refused a child");
                        rejected = Some(children::rejection(kind, s));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let jobs: Vec<Arc<Job>> = ctx
            .jobs
            .state()
            .into_iter()
            .filter(|j| {
                j.namespace().as_deref() == Some(ns.as_str()) && j.labels().get(NAME) == Some(&name)
            })
            .collect();
        let now = Utc::now();
        let history = dj
            .status
            .as_ref()
            .map(|s| s.recent_runs.clone())
            .unwrap_or_default();
        // Runs that could not start in time after downtime are deleted: no run, and no
        // record of one.
        let mut skipped = Vec::new();
        // A valid spec's run steps (admission, publishing, catch-up) share one view.
        let flow = resolved.as_ref().ok().map(|r| Flow {
            ctx: &ctx,
            dj: &dj,
            r,
            ns: &ns,
            jobs: &jobs,
            upstreams: &upstreams,
            now,
        });
        if let Some(flow) = &flow {
            skipped = lifecycle::admit(flow).await?;
            lifecycle::revive(flow, &history).await?;
        }
        let run_jobs: Vec<Arc<Job>> = jobs
            .iter()
            .filter(|j| !lifecycle::is_publish_job(j))
            .cloned()
            .collect();
        let mut current: Vec<_> = run_jobs
            .iter()
            .filter_map(|j| runs::run_of(j, &name))
            .filter(|r| !skipped.contains(&r.name))
            .collect();
        // Runs the CronJob made: only their start is measured against the schedule.
        let scheduled: HashSet<String> = jobs
            .iter()
            .filter(|j| j.owner_references().iter().any(|o| o.kind == "CronJob"))
            .map(|j| j.name_any())
            .collect();
        let schedule = resolved
            .as_ref()
            .ok()
            .filter(|r| !r.suspend)
            .and_then(|r| r.schedule.as_ref());
        init_series(&ctx, &ns, &name, schedule.is_some());
        let next_check = count_missed(&dj, schedule, &current, &ctx, &ns, now);
        for run in current.iter_mut() {
            // The Job controller may fail a Job before the watchdog has recorded why its
            // last attempt died: read it from the pods, so the status and the RunFailed
            // event say it the first time.
            if runs::needs_attempt_reason(run) {
                let pods = ctx.pods.state();
                let pods: Vec<&Pod> = pods
                    .iter()
                    .map(|p| p.as_ref())
                    .filter(|p| {
                        p.namespace().as_deref() == Some(ns.as_str())
                            && p.labels().get(JOB_NAME) == Some(&run.name)
                    })
                    .collect();
                runs::set_attempt_reason(run, datajob_core::decide::watchdog::attempt_failure(&pods));
            }
        }
        let mut previous = dj.status.clone().unwrap_or_default();
        previous.recent_runs.retain(|r| !skipped.contains(&r.name));
        let (mut published, mut catch_up) =
            (previous.published.clone(), previous.catch_up.clone());
        if let Some(flow) = &flow {
            // A succeeded run counts once its output is published.
            let new = lifecycle::publish(flow, &mut current).await?;
            published = dataflow::merge_publications(&published, new);
            catch_up = lifecycle::catch_up(flow, &current, catch_up.as_ref()).await?;
            // Runs still being published are not pruned (their publish Job goes with them).
            let busy: HashSet<&str> = current
                .iter()
                .filter(|r| !r.state.is_finished())
                .map(|r| r.name.as_str())
                .collect();
            let prunable: Vec<Arc<Job>> = run_jobs
                .iter()
                .filter(|j| !busy.contains(j.name_any().as_str()))
                .cloned()
                .collect();
            prune_history(flow.r, &prunable, &ctx, &ns).await?;
        }
        let waiting = current.iter().any(|r| {
            r.state == RunState::Waiting || r.reason.as_deref() == Some(dataflow::PUBLISHING)
        });
        let mut status = runs::desired_status(Observed {
            generation: dj.metadata.generation,
            spec: resolved.as_ref(),
            previous: Some(&previous),
            runs: current,
            now,
            rejected: rejected.as_deref(),
        });
        let mut new_cost = None;
        if let Ok(r) = &resolved
            && let Some(group) = &r.placement
        {
            let request = children::run_request(r, &ctx.base.guards);
            let mut runs = std::mem::take(&mut status.recent_runs);
            let cost: f64 = runs::estimate_costs(&mut runs, &request, group)
                .into_iter()
                .map(|(_, c)| c)
                .sum();
            new_cost = Some((group.name.clone(), cost));
            status.last_run = runs.first().cloned();
            status.recent_runs = runs;
        }
        if resolved.is_ok() {
            status.last_trigger = dj.annotations().get(TRIGGER).cloned();
        } else {
            status.last_trigger = dj.status.as_ref().and_then(|s| s.last_trigger.clone());
        }
        status.published = published;
        status.catch_up = catch_up;
        write_status(&dj, status, &ctx, &ns, &scheduled).await?;
        // Counted once the estimates are on the status, so a failed write that is
        // retried does not count them twice.
        if let Some((nodegroup, cost)) = new_cost.filter(|(_, c)| *c > 0.0) {
            let labels = crate::metrics::CostLabels {
                namespace: ns.clone(),
                datajob: ctx.base.metrics.datajob(&name),
                nodegroup,
            };
            ctx.base
                .metrics
                .run_cost
                .get_or_create(&labels)
                .inc_by(cost);
        }
        // Refresh nextRun after the next scheduled time has passed, and look for a missed
        // schedule when the slot without a run runs out of time.
        let next = resolved
            .as_ref()
            .ok()
            .and_then(|r| r.schedule.as_ref())
            .and_then(|s| s.next_after(now))
            .into_iter()
            .chain(next_check)
            .min()
            .map(|t| (t - now).to_std().unwrap_or_default() + Duration::from_secs(1));
        // Runs waiting for inputs or being published are looked at again soon, whatever
        // wakes them (an input's change, a Job's) was missed.
        let most = match waiting {
            true => Duration::from_secs(30),
            false => Duration::from_secs(300),
        };
        Ok(Action::requeue(next.unwrap_or(most).min(most)))
    }
    .instrument(span)
    .await
}

/// Creates the series of a DataJob at zero, so that its first run, failure or missed
/// schedule shows as an increase (a series that first appears with 1 shows none).
fn init_series(ctx: &DataJobContext, ns: &str, name: &str, scheduled: bool) {
    let m = &ctx.base.metrics;
    let labels = m.datajob_labels(ns, name);
    drop(m.runs_started.get_or_create(&labels));
    // Durations of failed runs get their series with the first failure: a DataJob that
    // never fails costs 19 series fewer.
    drop(m.run_duration.get_or_create(&StateLabels {
        namespace: ns.into(),
        datajob: labels.datajob.clone(),
        state: RunState::Succeeded.to_string(),
    }));
    if scheduled {
        drop(m.schedule_lag.get_or_create(&labels));
        drop(m.schedule_missed.get_or_create(&labels));
    }
}

/// Counts the DataJob's scheduled times that got no run ([`runs::missed_slots`]) since
/// the last reconcile; returns when to look again. `schedule` is `None` for a DataJob
/// without a schedule, suspended or invalid: nothing is missed then.
fn count_missed(
    dj: &DataJob,
    schedule: Option<&datajob_core::schedule::Schedule>,
    current: &[datajob_api::RunRecord],
    ctx: &DataJobContext,
    ns: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let name = dj.name_any();
    let generation = dj.metadata.generation;
    let Ok(mut counted) = ctx.missed_counted.lock() else {
        return None;
    };
    let followed = counted.advance((ns.to_string(), name.clone()), generation, now);
    let schedule = schedule?;
    // First seen, or its spec changed: slots due from now on count.
    let (since, from) = followed.unwrap_or((now, now));
    let ran: BTreeSet<DateTime<Utc>> = current
        .iter()
        .chain(dj.status.iter().flat_map(|s| s.recent_runs.iter()))
        .filter_map(|r| labels::parse_rfc3339(&r.logical_time))
        .collect();
    let deadline = runs::starting_deadline(schedule, now);
    let missed = runs::missed_slots(schedule, deadline, &ran, since, from, now);
    if !missed.slots.is_empty() {
        for slot in &missed.slots {
            info!(logical_time = %labels::rfc3339(*slot), deadline_seconds = deadline.num_seconds(), "scheduled run missed: no run before the starting deadline");
        }
        let m = &ctx.base.metrics;
        m.schedule_missed
            .get_or_create(&m.datajob_labels(ns, &name))
            .inc_by(missed.slots.len() as u64);
    }
    missed.next_check
}

/// The metrics of what a status write says happened to runs.
fn count_runs(ctx: &DataJobContext, ns: &str, name: &str, changes: &runs::RunChanges) {
    let m = &ctx.base.metrics;
    let labels = m.datajob_labels(ns, name);
    m.runs_started
        .get_or_create(&labels)
        .inc_by(changes.appeared);
    for f in &changes.finished {
        m.runs_finished
            .get_or_create(&RunLabels {
                namespace: ns.into(),
                datajob: labels.datajob.clone(),
                state: f.state.to_string(),
                reason: f.reason.clone(),
            })
            .inc();
        if let Some(seconds) = f.seconds {
            m.run_duration
                .get_or_create(&StateLabels {
                    namespace: ns.into(),
                    datajob: labels.datajob.clone(),
                    state: f.state.to_string(),
                })
                .observe(seconds);
        }
    }
    for lag in &changes.lags {
        m.schedule_lag.get_or_create(&labels).observe(*lag);
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The CronJob (scheduled) or the Job of the one-off run, plus any triggered run.
async fn apply_children(dj: &DataJob, r: &Resolved, ctx: &DataJobContext, ns: &str) -> Result<()> {
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.base.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.base.client.clone(), ns);
    let name = dj.name_any();
    let job_exists = |id: &str| ctx.jobs.get(&ObjectRef::new(id).within(ns)).is_some();
    let cronjob = children::cronjob(dj, r, &ctx.base.guards);
    let wanted = runs::runs_to_create(dj, cronjob.is_none(), &job_exists, Utc::now());
    match cronjob {
        Some(cj) => {
            cronjobs
                .patch(&name, &apply_params(), &Patch::Apply(&cj))
                .await
                .map_err(Error::api("apply", "CronJob", ns, &name))?;
        }
        None => {
            // A DataJob that lost its schedule loses its CronJob.
            let existing = cronjobs
                .get_opt(&name)
                .await
                .map_err(Error::api("get", "CronJob", ns, &name))?;
            if existing.is_some_and(|cj| {
                cj.owner_references()
                    .iter()
                    .any(|o| o.uid == dj.uid().unwrap_or_default())
            }) {
                cronjobs
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map_err(Error::api("delete", "CronJob", ns, &name))?;
            }
        }
    }
    for t in wanted {
        let id = labels::run_id(&name, t);
        // A run with inputs waits (suspended) until they published: admission starts it.
        let job = children::job(dj, r, &ctx.base.guards, t, !r.inputs.is_empty());
        jobs.patch(&id, &apply_params(), &Patch::Apply(&job))
            .await
            .map_err(Error::api("create", "Job", ns, &id))?;
        info!(run = %id, logical_time = %labels::rfc3339(t), "run created");
    }
    Ok(())
}

/// Deletes finished Jobs beyond the DataJob's history (their pods go with them); their
/// outcome stays in `status.recentRuns`.
async fn prune_history(
    r: &Resolved,
    jobs: &[Arc<Job>],
    ctx: &DataJobContext,
    ns: &str,
) -> Result<()> {
    let refs: Vec<&Job> = jobs.iter().map(Arc::as_ref).collect();
    let api: Api<Job> = Api::namespaced(ctx.base.client.clone(), ns);
    for job in
        datajob_core::decide::cleanup::jobs_beyond_history(&r.name, &refs, r.history as usize)
    {
        let id = job.name_any();
        match api.delete(&id, &DeleteParams::background()).await {
            Ok(_) => {
                info!(run = %id, history = r.history, "pruned finished run beyond history");
                ctx.base.metrics.jobs_pruned.inc();
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::api("delete", "Job", ns, &id)(e)),
        }
    }
    Ok(())
}

/// Patches the status only when it changed, then tells the story in events.
async fn write_status(
    dj: &DataJob,
    status: DataJobStatus,
    ctx: &DataJobContext,
    ns: &str,
    scheduled: &HashSet<String>,
) -> Result<()> {
    let previous = dj.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    let name = dj.name_any();
    let api: Api<DataJob> = Api::namespaced(ctx.base.client.clone(), ns);
    let patch =
        json!({ "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "status": status });
    match api
        .patch_status(&name, &apply_params(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => {}
        // Deleted while we were reconciling: nothing left to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::api("update status of", "DataJob", ns, &name)(e)),
    }

    let reference = dj.object_ref(&());
    let mut events: Vec<Event> = runs::run_events(&previous.recent_runs, &status.recent_runs)
        .into_iter()
        .map(|e| Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.into(),
            note: Some(truncate(&e.note, 1000)),
            action: "Run".into(),
            secondary: None,
        })
        .collect();
    // Counted from the change between the status read and the one written, so a
    // retried reconcile (whose write failed) or a new leader counts nothing twice.
    let start_of = |run: &str| {
        let pods = ctx.pods.state();
        let pods: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| {
                p.namespace().as_deref() == Some(ns)
                    && p.labels().get(JOB_NAME).map(String::as_str) == Some(run)
            })
            .collect();
        runs::Start {
            scheduled: scheduled.contains(run),
            container_started: runs::container_started(&pods),
        }
    };
    let changes = runs::run_changes(
        &previous.recent_runs,
        &status.recent_runs,
        start_of,
        Utc::now(),
    );
    count_runs(ctx, ns, &name, &changes);
    if dj.metadata.generation.is_some() && dj.metadata.generation != previous.observed_generation {
        ctx.base.metrics.spec_changes.inc();
    }
    let became_invalid = status.state == Some(datajob_api::RunState::Invalid)
        && (previous.state != status.state
            || previous.reason != status.reason
            || previous.message != status.message);
    if became_invalid {
        let rejected = status.reason.as_deref() == Some(runs::CHILD_REJECTED);
        events.push(Event {
            type_: EventType::Warning,
            reason: match rejected {
                true => runs::CHILD_REJECTED.into(),
                false => "Invalid".into(),
            },
            note: status.message.as_deref().map(|m| truncate(m, 1000)),
            action: match rejected {
                true => "Apply".into(),
                false => "Validate".into(),
            },
            secondary: None,
        });
    }
    for e in events {
        if let Err(err) = ctx.base.recorder.publish(&e, &reference).await {
            warn!(error = %err, reason = %e.reason, "could not publish event");
        }
    }
    Ok(())
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
}

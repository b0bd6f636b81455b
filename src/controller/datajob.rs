//! The DataJob reconciler: validates, writes the guarded CronJob or Job, admits runs
//! the CronJob created, and writes the status from what the Jobs say.
use std::collections::{BTreeSet, HashMap, HashSet};
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

use super::Context;
use crate::api::{DataJob, DataJobStatus, NodeGroup, RunState};
use crate::labels::{self, FIELD_MANAGER, JOB_NAME, LOGICAL_TIME, NAME, RUN_ID, TRIGGER};
use crate::metrics::{RunLabels, StateLabels};
use crate::nodegroups::{resolve_and_place, usable_groups};
use crate::runs::{self, Observed};
use crate::validation::Resolved;
use crate::{Error, Result, children};

const CONTROLLER: &str = "datajob";

/// The DataJob controller with its shared Job cache.
pub struct DataJobController {
    pub ctx: Arc<DataJobContext>,
}

pub struct DataJobContext {
    pub base: Context,
    /// How far each DataJob's missed schedules were counted.
    pub missed_counted: Mutex<MissedCounted>,
    /// Every NodeGroup, for placement.
    pub groups: Store<NodeGroup>,
    /// Every Job DataJob manages, trimmed of managed fields.
    pub jobs: Store<Job>,
    /// Every pod of a run, to say why a failed run's last attempt died.
    pub pods: Store<Pod>,
}

/// Per DataJob, which generation of its spec this process follows, since when, and up to
/// when its missed schedules were counted. A spec change (a new schedule, `suspend`)
/// starts afresh. In memory: a new leader counts the slots due after it started
/// following them that run out of time while it leads.
#[derive(Default)]
pub struct MissedCounted {
    followed: HashMap<(String, String), Followed>,
    pruned: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy)]
struct Followed {
    generation: Option<i64>,
    since: DateTime<Utc>,
    counted_to: DateTime<Utc>,
}

impl MissedCounted {
    /// Records that `key` is counted up to `now`; returns (since, counted up to before),
    /// or `None` when this generation is seen for the first time.
    fn advance(
        &mut self,
        key: (String, String),
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        // Every DataJob is reconciled at least every 5 minutes: entries older than an
        // hour belong to deleted DataJobs.
        let hour = chrono::Duration::hours(1);
        if self.pruned.is_none_or(|t| now - t > hour) {
            self.followed.retain(|_, f| now - f.counted_to < hour);
            self.pruned = Some(now);
        }
        let previous = self
            .followed
            .get(&key)
            .copied()
            .filter(|f| f.generation == generation);
        let since = previous.map_or(now, |f| f.since);
        self.followed.insert(
            key,
            Followed {
                generation,
                since,
                counted_to: now,
            },
        );
        previous.map(|f| (f.since, f.counted_to))
    }
}

/// The caches the DataJob controller reads, and the change streams that fill the ones
/// it alone follows.
pub struct DataJobCaches<J, G> {
    /// The managed-Job cache that `job_events` fills.
    pub jobs: Store<Job>,
    pub job_events: J,
    pub groups: Store<NodeGroup>,
    /// Ticks when a NodeGroup was created, deleted or its spec changed.
    pub group_events: G,
    /// Filled by the watchdog's pod stream.
    pub pods: Store<Pod>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run<J, G>(
    base: Context,
    caches: DataJobCaches<J, G>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    J: futures::Stream<Item = Job> + Send + 'static,
    G: futures::Stream<Item = ()> + Send + 'static,
{
    let DataJobCaches {
        jobs,
        job_events,
        groups,
        group_events,
        pods,
    } = caches;
    let client = base.client.clone();
    let managed = watcher::Config::default().labels(&labels::managed_selector());
    let job_stream = job_events.map(Ok::<_, watcher::Error>);
    let metrics = base.metrics.clone();
    let ctx = Arc::new(DataJobContext {
        base,
        missed_counted: Mutex::new(MissedCounted::default()),
        jobs: jobs.clone(),
        groups,
        pods,
    });
    let controller = Controller::new(
        Api::<DataJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<CronJob>::all(client.clone()), managed)
    .watches_stream(job_stream, |job| {
        let ns = job.namespace()?;
        let name = job.labels().get(NAME)?.clone();
        Some(ObjectRef::<DataJob>::new(&name).within(&ns))
    })
    // A NodeGroup change can move every DataJob: place them all again.
    .reconcile_all_on(group_events)
    .graceful_shutdown_on(shutdown);
    // The gauges of active runs and last outcomes read this cache while we lead.
    let _served = metrics.caches.datajobs.serve(controller.store());
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(datajob = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

fn error_policy(dj: Arc<DataJob>, error: &Error, ctx: Arc<DataJobContext>) -> Action {
    warn!(datajob = %dj.name_any(), namespace = dj.namespace().unwrap_or_default(), %error, "reconcile failed; retrying in 15s");
    ctx.base.metrics.reconcile_failure(CONTROLLER, error);
    Action::requeue(Duration::from_secs(15))
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
        let resolved = resolve_and_place(&dj, &ctx.base.limits, &ctx.base.guards, &groups);
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
        let name = dj.name_any();
        let jobs: Vec<Arc<Job>> = ctx
            .jobs
            .state()
            .into_iter()
            .filter(|j| {
                j.namespace().as_deref() == Some(ns.as_str()) && j.labels().get(NAME) == Some(&name)
            })
            .collect();
        if let Ok(r) = &resolved {
            admit_runs(r, &jobs, &ctx, &ns).await?;
            prune_history(r, &jobs, &ctx, &ns).await?;
        }
        let now = Utc::now();
        let mut current: Vec<_> = jobs.iter().filter_map(|j| runs::run_of(j, &name)).collect();
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
                runs::set_attempt_reason(run, crate::watchdog::attempt_failure(&pods));
            }
        }
        let mut status = runs::desired_status(Observed {
            generation: dj.metadata.generation,
            spec: resolved.as_ref(),
            previous: dj.status.as_ref(),
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
        Ok(Action::requeue(
            next.unwrap_or(Duration::from_secs(300))
                .min(Duration::from_secs(300)),
        ))
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
    schedule: Option<&crate::schedule::Schedule>,
    current: &[crate::api::RunRecord],
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
    let mut wanted = Vec::new();
    match children::cronjob(dj, r, &ctx.base.guards) {
        Some(cj) => {
            cronjobs
                .patch(&name, &apply_params(), &Patch::Apply(&cj))
                .await
                .map_err(Error::api("apply", "CronJob", ns, &name))?;
        }
        None => {
            // One run, now: its logical time is when the DataJob was created.
            let created = dj
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(labels::from_k8s_time)
                .unwrap_or_else(Utc::now);
            let t = labels::truncate_to_minute(created);
            let id = labels::run_id(&name, t);
            if !job_exists(&id) && !runs::already_ran(dj.status.as_ref(), &id, t) {
                wanted.push(t);
            }
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
    let trigger = dj.annotations().get(TRIGGER).map(String::as_str);
    if let Some(t) = runs::pending_trigger(trigger, dj.status.as_ref()) {
        // Acted on once; a time that has a Job or is in the history has run.
        let id = labels::run_id(&name, t);
        let recorded = dj
            .status
            .as_ref()
            .is_some_and(|s| s.recent_runs.iter().any(|r| r.name == id));
        if !job_exists(&id) && !recorded && !wanted.contains(&t) {
            wanted.push(t);
        }
    }
    for t in wanted {
        let id = labels::run_id(&name, t);
        let job = children::job(dj, r, &ctx.base.guards, t, false);
        jobs.patch(&id, &apply_params(), &Patch::Apply(&job))
            .await
            .map_err(Error::api("create", "Job", ns, &id))?;
        info!(run = %id, logical_time = %labels::rfc3339(t), "run created");
    }
    Ok(())
}

/// Starts the suspended Jobs the CronJob created: stamps run id and logical time on the
/// Job and its pod template (so the container reads them), then unsuspends it.
async fn admit_runs(r: &Resolved, jobs: &[Arc<Job>], ctx: &DataJobContext, ns: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(ctx.base.client.clone(), ns);
    for job in jobs {
        let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let from_cronjob = job
            .owner_references()
            .iter()
            .any(|o| o.kind == "CronJob" && o.name == r.name);
        if !suspended || !from_cronjob || job.labels().contains_key(RUN_ID) {
            continue;
        }
        let id = job.name_any();
        let Some(run) = runs::run_of(job, &r.name) else {
            continue;
        };
        let patch = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": id,
                "labels": { RUN_ID: id },
                "annotations": { LOGICAL_TIME: run.logical_time },
            },
            "spec": {
                "suspend": false,
                "template": { "metadata": {
                    "labels": { RUN_ID: id },
                    "annotations": { LOGICAL_TIME: run.logical_time },
                }},
            },
        });
        api.patch(&id, &apply_params(), &Patch::Apply(&patch))
            .await
            .map_err(Error::api("start", "Job", ns, &id))?;
        info!(run = %id, logical_time = %run.logical_time, "scheduled run started");
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
    for job in crate::cleanup::jobs_beyond_history(&r.name, &refs, r.history as usize) {
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
    let became_invalid = status.state == Some(crate::api::RunState::Invalid)
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

//! Applies a DataJob's [`Plan`]: every write it lists, in its order, and nothing else.
//! What to write was decided by [`datajob_core::decide::datajob::plan`].
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::DataJobContext;
use crate::controller::jobs::{create_job, delete_job};
use crate::metrics::{CostLabels, RunLabels, StateLabels};
use crate::{Error, Result};
use datajob_api::{DataJob, RunState};
use datajob_core::decide::children;
use datajob_core::decide::datajob::{Note, Plan, StatusWrite, Step};
use datajob_core::decide::runs::RunChanges;
use datajob_core::labels::{self, FIELD_MANAGER};

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Applies the DataJob's children. Returns the apiserver's refusal of one (invalid,
/// 422; refused by an admission policy or a quota, 403; a request it cannot take, 400)
/// in the DataJob's words; the children after it are not applied.
pub(crate) async fn children(
    steps: &[Step],
    dj: &DataJob,
    ctx: &DataJobContext,
    ns: &str,
) -> Result<Option<String>> {
    for step in steps {
        match one(step, dj, ctx, ns).await {
            Ok(()) => {}
            Err(Error::Api { kind, source, .. }) if refused(&source).is_some() => {
                if let Some(status) = refused(&source) {
                    warn!(%kind, error = %status.message, "the apiserver refused a child");
                    return Ok(Some(children::rejection(kind, status)));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The apiserver's answer when it refused a request for what it is, not for a passing
/// reason.
fn refused(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => Some(s),
        _ => None,
    }
}

/// Applies the rest of the plan: the runs' steps, the status (with its events and
/// metrics), the cost; returns when to look again.
pub(crate) async fn rest(
    plan: Plan,
    dj: &DataJob,
    ctx: &DataJobContext,
    ns: &str,
) -> Result<Action> {
    for step in &plan.steps {
        one(step, dj, ctx, ns).await?;
    }
    if let Some(write) = plan.status {
        write_status(write, dj, ctx, ns).await?;
    }
    // Counted once the estimates are on the status, so a failed write that is retried
    // does not count them twice.
    if let Some((nodegroup, cost)) = plan.cost {
        let m = &ctx.base.metrics;
        let labels = CostLabels {
            namespace: ns.to_string(),
            datajob: m.datajob(&dj.name_any()),
            nodegroup,
        };
        m.run_cost.get_or_create(&labels).inc_by(cost);
    }
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// One step.
async fn one(step: &Step, dj: &DataJob, ctx: &DataJobContext, ns: &str) -> Result<()> {
    let client = ctx.base.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    match step {
        Step::ApplyCronJob(cj) => {
            let name = cj.name_any();
            Api::<CronJob>::namespaced(client, ns)
                .patch(&name, &apply_params(), &Patch::Apply(cj.as_ref()))
                .await
                .map_err(Error::api("apply", "CronJob", ns, &name))?;
        }
        Step::RemoveCronJob { name, owner_uid } => {
            remove_cronjob(&Api::namespaced(client, ns), name, owner_uid, ns).await?;
        }
        Step::ApplyRun { job, logical_time } => {
            let id = job.name_any();
            jobs.patch(&id, &apply_params(), &Patch::Apply(job.as_ref()))
                .await
                .map_err(Error::api("create", "Job", ns, &id))?;
            info!(run = %id, logical_time = %labels::rfc3339(*logical_time), "run created");
        }
        Step::CreateJob { job, said, then } => {
            if create_job(&jobs, job, ns).await? {
                info!(run = %job.name_any(), "{said}");
                if let Some(note) = then {
                    publish(note, dj, ctx).await;
                }
            }
        }
        Step::PatchJob {
            name,
            patch,
            verb,
            said,
        } => {
            jobs.patch(name, &merge_params(), &Patch::Merge(patch))
                .await
                .map_err(Error::api(verb, "Job", ns, name))?;
            if let Some(said) = said {
                info!(run = %name, "{said}");
            }
        }
        Step::DeleteJob {
            name,
            uid,
            said,
            then,
        } => {
            delete_job(&jobs, name, uid, ns).await?;
            if let Some(said) = said {
                info!(run = %name, "{said}");
            }
            if let Some(note) = then {
                publish(note, dj, ctx).await;
            }
        }
        Step::Prune { name, history } => prune(&jobs, name, *history, ctx, ns).await?,
        Step::Event(note) => publish(note, dj, ctx).await,
        Step::InitSeries { scheduled } => init_series(ctx, ns, &dj.name_any(), *scheduled),
        Step::CountMissed {
            generation,
            counted_to,
            slots,
            deadline_seconds,
        } => count_missed(
            ctx,
            dj,
            ns,
            (*generation, *counted_to),
            slots,
            *deadline_seconds,
        ),
    }
    Ok(())
}

/// Deletes the CronJob `name` if the DataJob (`owner_uid`) owns it.
async fn remove_cronjob(api: &Api<CronJob>, name: &str, owner_uid: &str, ns: &str) -> Result<()> {
    let existing = api
        .get_opt(name)
        .await
        .map_err(Error::api("get", "CronJob", ns, name))?;
    if existing.is_some_and(|cj| cj.owner_references().iter().any(|o| o.uid == owner_uid)) {
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(Error::api("delete", "CronJob", ns, name))?;
    }
    Ok(())
}

/// Deletes a finished Job beyond the history; one already gone is fine.
async fn prune(
    api: &Api<Job>,
    name: &str,
    history: i32,
    ctx: &DataJobContext,
    ns: &str,
) -> Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(run = %name, history, "pruned finished run beyond history");
            ctx.base.metrics.jobs_pruned.inc();
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::api("delete", "Job", ns, name)(e)),
    }
}

async fn publish(note: &Note, dj: &DataJob, ctx: &DataJobContext) {
    ctx.base
        .event(
            &dj.object_ref(&()),
            note.warning,
            &note.reason,
            &note.action,
            datajob_core::labels::with_owner(
                &note.note,
                dj.spec.owner.as_deref(),
                datajob_core::decide::datajob::NOTE_LIMIT,
            ),
        )
        .await;
}

/// Patches the status, then tells the story in events and metrics; a DataJob deleted
/// while it was reconciled has nothing left to report on.
async fn write_status(
    write: StatusWrite,
    dj: &DataJob,
    ctx: &DataJobContext,
    ns: &str,
) -> Result<()> {
    let name = dj.name_any();
    let api: Api<DataJob> = Api::namespaced(ctx.base.client.clone(), ns);
    let patch =
        json!({ "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "status": write.status });
    match api
        .patch_status(&name, &apply_params(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::api("update status of", "DataJob", ns, &name)(e)),
    }
    count_runs(ctx, ns, &name, &write.changes);
    if write.spec_changed {
        ctx.base.metrics.spec_changes.inc();
    }
    for note in &write.events {
        publish(note, dj, ctx).await;
    }
    Ok(())
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

/// Records how far the DataJob's missed schedules are counted, and counts these.
fn count_missed(
    ctx: &DataJobContext,
    dj: &DataJob,
    ns: &str,
    (generation, counted_to): (Option<i64>, DateTime<Utc>),
    slots: &[DateTime<Utc>],
    deadline_seconds: i64,
) {
    let name = dj.name_any();
    if let Ok(mut counted) = ctx.missed_counted.lock() {
        counted.advance((ns.to_string(), name.clone()), generation, counted_to);
    }
    if slots.is_empty() {
        return;
    }
    for slot in slots {
        info!(logical_time = %labels::rfc3339(*slot), deadline_seconds, "scheduled run missed: no run before the starting deadline");
    }
    let m = &ctx.base.metrics;
    m.schedule_missed
        .get_or_create(&m.datajob_labels(ns, &name))
        .inc_by(slots.len() as u64);
}

/// The metrics of what a status write says happened to runs.
fn count_runs(ctx: &DataJobContext, ns: &str, name: &str, changes: &RunChanges) {
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

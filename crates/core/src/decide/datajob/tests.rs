//! Unit tests of [`super::plan`]: each decision one reconcile of a DataJob makes, from
//! plain values, without a cluster (the operator's mocked-API tests check the calls
//! that apply a plan).
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datajob_api::{
    CatchUp, DataJob, DataJobResources, DataJobSpec, DataJobStatus, NodeGroup, RunState,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::core::ObjectMeta;
use serde_json::json;

use super::*;
use crate::decide::children::Guards;
use crate::decide::nodegroup::usable_groups;
use crate::labels::{CRONJOB_SCHEDULED, NAME};
use crate::validation::Limits;

fn t(s: &str) -> DateTime<Utc> {
    labels::parse_rfc3339(s).unwrap()
}

fn k8s(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn datajob(schedule: Option<&str>) -> DataJob {
    let mut d = DataJob::new(
        "nightly",
        DataJobSpec {
            image: "registry.example/acme/etl:1.0".into(),
            schedule: schedule.map(Into::into),
            resources: DataJobResources {
                cpu: Some("1".into()),
                memory: Some("1Gi".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    d.metadata.namespace = Some("data".into());
    d.metadata.uid = Some("uid-1".into());
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp = Some(k8s("2026-12-01T02:00:30Z"));
    d
}

fn plan_at(dj: &DataJob, o: &Observed, now: &str) -> Plan {
    plan_with(dj, o, now, Guards::default())
}

fn plan_with(dj: &DataJob, o: &Observed, now: &str, guards: Guards) -> Plan {
    let limits = Limits::default();
    let settings = Settings {
        limits: &limits,
        guards: &guards,
    };
    plan(dj, o, &settings, t(now))
}

/// A Job of `nightly` for logical time `at`, made by its CronJob.
fn scheduled_job(at: &str) -> Job {
    let id = labels::run_id("nightly", t(at));
    Job {
        metadata: ObjectMeta {
            name: Some(id),
            namespace: Some("data".into()),
            uid: Some(format!("job-{at}")),
            labels: Some([(NAME.to_string(), "nightly".to_string())].into()),
            annotations: Some([(CRONJOB_SCHEDULED.to_string(), at.to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                kind: "CronJob".into(),
                name: "nightly".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            suspend: Some(true),
            ..Default::default()
        }),
        status: None,
    }
}

/// The same Job, finished `Complete` after running from `start` to `end`.
fn succeeded(mut job: Job, start: &str, end: &str) -> Job {
    if let Some(s) = job.spec.as_mut() {
        s.suspend = Some(false);
    }
    job.status = Some(JobStatus {
        start_time: Some(k8s(start)),
        completion_time: Some(k8s(end)),
        conditions: Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            last_transition_time: Some(k8s(end)),
            ..Default::default()
        }]),
        ..Default::default()
    });
    job
}

fn observed(jobs: Vec<Job>) -> Observed {
    Observed {
        job_names: jobs.iter().map(|j| j.name_any()).collect(),
        jobs: jobs.into_iter().map(Arc::new).collect(),
        namespace: Some(Vec::new()),
        ..Observed::default()
    }
}

fn priced_group(name: &str, price: &str) -> NodeGroup {
    serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {
            "node": {"cpu": "4", "memory": "16Gi"},
            "maxSize": 3,
            "pricePerHour": price,
            "provider": {"kwok": {}},
        },
    }))
    .unwrap()
}

fn kinds(steps: &[Step]) -> Vec<&'static str> {
    steps
        .iter()
        .map(|s| match s {
            Step::ApplyCronJob(_) => "ApplyCronJob",
            Step::RemoveCronJob { .. } => "RemoveCronJob",
            Step::ApplyRun { .. } => "ApplyRun",
            Step::CreateJob { .. } => "CreateJob",
            Step::PatchJob { verb, .. } => verb,
            Step::DeleteJob { .. } => "DeleteJob",
            Step::Prune { .. } => "Prune",
            Step::Event(_) => "Event",
            Step::InitSeries { .. } => "InitSeries",
            Step::CountMissed { .. } => "CountMissed",
        })
        .collect()
}

fn missed_slots(p: &Plan) -> Vec<DateTime<Utc>> {
    p.steps
        .iter()
        .find_map(|s| match s {
            Step::CountMissed { slots, .. } => Some(slots.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn a_datajob_being_deleted_is_left_to_the_garbage_collector() {
    let mut dj = datajob(Some("0 2 * * *"));
    dj.metadata.deletion_timestamp = Some(k8s("2026-12-01T03:00:00Z"));
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:00Z");
    assert_eq!(p, Plan::default(), "no write, and no requeue but a change");
}

#[test]
fn a_datajob_with_inputs_waits_for_the_datajob_cache_before_it_decides() {
    let mut dj = datajob(Some("0 2 * * *"));
    dj.spec.inputs = vec!["raw".into()];
    let mut o = observed(vec![]);
    o.namespace = None;
    let p = plan_at(&dj, &o, "2026-12-01T03:00:00Z");
    assert_eq!(p.requeue, Some(CACHE_FILLING));
    assert!(p.children.is_empty() && p.steps.is_empty() && p.status.is_none());
    // Without inputs the cache is not needed.
    let p = plan_at(&datajob(Some("0 2 * * *")), &o, "2026-12-01T03:00:00Z");
    assert_eq!(kinds(&p.children), ["ApplyCronJob"]);
}

#[test]
fn a_scheduled_datajob_gets_its_cronjob_and_a_one_off_its_run_once() {
    let p = plan_at(
        &datajob(Some("0 2 * * *")),
        &observed(vec![]),
        "2026-12-01T03:00:00Z",
    );
    assert_eq!(kinds(&p.children), ["ApplyCronJob"]);
    let one_off = datajob(None);
    let p = plan_at(&one_off, &observed(vec![]), "2026-12-01T02:01:00Z");
    assert_eq!(kinds(&p.children), ["RemoveCronJob", "ApplyRun"]);
    let Step::ApplyRun { job, logical_time } = &p.children[1] else {
        panic!("{:?}", p.children)
    };
    // Its logical time is the minute the DataJob was made.
    assert_eq!(*logical_time, t("2026-12-01T02:00:00Z"));
    assert_eq!(job.name_any(), "nightly-29934840");
    // Its Job exists: it is not made again.
    let mut o = observed(vec![]);
    o.job_names.insert("nightly-29934840".into());
    let p = plan_at(&one_off, &o, "2026-12-01T02:01:00Z");
    assert_eq!(kinds(&p.children), ["RemoveCronJob"]);
}

#[test]
fn the_requeue_is_just_after_the_next_run_and_at_most_five_minutes() {
    // Hourly: the next run at 04:00, 10 s away: look again 1 s after it.
    let p = plan_at(
        &datajob(Some("0 * * * *")),
        &observed(vec![]),
        "2026-12-01T03:59:50Z",
    );
    assert_eq!(p.requeue, Some(Duration::from_secs(11)));
    // Nightly, hours away: every 5 minutes at least.
    let p = plan_at(
        &datajob(Some("0 2 * * *")),
        &observed(vec![]),
        "2026-12-01T03:00:00Z",
    );
    assert_eq!(p.requeue, Some(MOST));
    // A one-off DataJob has no next run.
    let p = plan_at(&datajob(None), &observed(vec![]), "2026-12-01T03:00:00Z");
    assert_eq!(p.requeue, Some(MOST));
}

#[test]
fn runs_waiting_for_inputs_are_looked_at_again_within_30_seconds() {
    let mut dj = datajob(Some("0 2 * * *"));
    dj.spec.inputs = vec!["raw".into()];
    let mut raw = datajob(Some("0 2 * * *"));
    raw.metadata.name = Some("raw".into());
    let mut o = observed(vec![scheduled_job("2026-12-01T02:00:00Z")]);
    o.namespace = Some(vec![Arc::new(dj.clone()), Arc::new(raw)]);
    let p = plan_at(&dj, &o, "2026-12-01T02:00:05Z");
    // Its input has not published 02:00: the run waits, and its Job says why.
    assert_eq!(kinds(&p.steps), ["annotate", "InitSeries", "CountMissed"]);
    let Step::PatchJob { patch, .. } = &p.steps[0] else {
        panic!("{:?}", p.steps)
    };
    // Once the Job says so, it is looked at again within 30 s, and not annotated again.
    let mut waiting = scheduled_job("2026-12-01T02:00:00Z");
    let said = patch["metadata"]["annotations"].as_object().unwrap();
    let annotations = waiting.metadata.annotations.get_or_insert_default();
    for (k, v) in said {
        annotations.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
    o.jobs = vec![Arc::new(waiting)];
    let p = plan_at(&dj, &o, "2026-12-01T02:00:06Z");
    assert_eq!(kinds(&p.steps), ["InitSeries", "CountMissed"]);
    assert_eq!(p.requeue, Some(MOST_WHILE_WAITING));
}

#[test]
fn a_missed_slot_is_counted_once_it_runs_out_of_time_and_only_while_followed() {
    let dj = datajob(Some("0 * * * *"));
    let mut o = observed(vec![]);
    // First look: nothing before it is counted.
    let p = plan_at(&dj, &o, "2026-12-01T05:30:00Z");
    assert!(missed_slots(&p).is_empty());
    // Followed since 03:30 and counted to 04:30: the 04:00 slot (hourly: a 1 h starting
    // deadline, plus 10 s) ran out of time at 05:00:10, with no run.
    o.missed_counted = Some((t("2026-12-01T03:30:00Z"), t("2026-12-01T04:30:00Z")));
    let p = plan_at(&dj, &o, "2026-12-01T05:30:00Z");
    assert_eq!(missed_slots(&p), [t("2026-12-01T04:00:00Z")]);
    let Some(Step::CountMissed {
        deadline_seconds,
        counted_to,
        ..
    }) = p
        .steps
        .iter()
        .find(|s| matches!(s, Step::CountMissed { .. }))
    else {
        panic!("{:?}", p.steps)
    };
    assert_eq!(
        (*deadline_seconds, *counted_to),
        (3600, t("2026-12-01T05:30:00Z"))
    );
    // The 05:00 slot runs out at 06:00:10: the requeue is no later than that.
    assert!(p.requeue <= Some(Duration::from_secs(30 * 60 + 11)));
    // A slot that has a run is not missed.
    let mut ran = o.clone();
    ran.jobs = vec![Arc::new(succeeded(
        scheduled_job("2026-12-01T04:00:00Z"),
        "2026-12-01T04:00:01Z",
        "2026-12-01T04:01:00Z",
    ))];
    assert!(missed_slots(&plan_at(&dj, &ran, "2026-12-01T05:30:00Z")).is_empty());
    // A suspended DataJob misses nothing.
    let mut suspended = dj.clone();
    suspended.spec.suspend = Some(true);
    assert!(missed_slots(&plan_at(&suspended, &o, "2026-12-01T05:30:00Z")).is_empty());
}

#[test]
fn a_finished_run_on_a_priced_group_gets_its_cost_counted_once() {
    let dj = datajob(Some("0 2 * * *"));
    let job = succeeded(
        scheduled_job("2026-12-01T02:00:00Z"),
        "2026-12-01T02:00:00Z",
        "2026-12-01T03:00:00Z",
    );
    let mut o = observed(vec![job]);
    o.groups = usable_groups([&priced_group("small", "0.40")]);
    let p = plan_at(&dj, &o, "2026-12-01T03:00:10Z");
    let Some((group, cost)) = p.cost.clone() else {
        panic!("no cost: {:?}", p.cost)
    };
    assert_eq!(group, "small");
    // One hour of a quarter of the node's CPU and 1/16 of its memory at 0.40 an hour.
    assert!(cost > 0.0 && cost <= 0.40, "{cost}");
    let status = p.status.map(|w| w.status).unwrap_or_default();
    let run = &status.recent_runs[0];
    assert_eq!(
        run.estimated_cost.as_deref(),
        Some(format!("{cost:.4}").as_str())
    );
    assert_eq!(status.last_run.as_ref(), Some(run));
    // Once the estimate is on the status, nothing is counted again.
    let mut again = dj.clone();
    again.status = Some(status);
    let p = plan_at(&again, &o, "2026-12-01T03:00:20Z");
    assert_eq!(p.cost, None);
    // Without node groups there is no price.
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:10Z");
    assert_eq!(p.cost, None);
}

#[test]
fn the_last_trigger_is_recorded_once_valid_and_kept_while_invalid() {
    let mut dj = datajob(Some("0 2 * * *"));
    dj.metadata.annotations =
        Some([(TRIGGER.to_string(), "2026-12-01T03:00:00Z".to_string())].into());
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:05Z");
    let status = p.status.map(|w| w.status).unwrap_or_default();
    assert_eq!(status.last_trigger.as_deref(), Some("2026-12-01T03:00:00Z"));
    assert!(
        kinds(&p.children).contains(&"ApplyRun"),
        "{:?}",
        kinds(&p.children)
    );
    // Invalid: no run, and the trigger recorded before stays.
    let mut invalid = dj.clone();
    invalid.spec.resources.cpu = Some("lots".into());
    invalid.status = Some(DataJobStatus {
        last_trigger: Some("2026-11-30T00:00:00Z".into()),
        ..Default::default()
    });
    let p = plan_at(&invalid, &observed(vec![]), "2026-12-01T03:00:05Z");
    assert!(p.children.is_empty());
    let status = p.status.map(|w| w.status).unwrap_or_default();
    assert_eq!(status.last_trigger.as_deref(), Some("2026-11-30T00:00:00Z"));
    assert_eq!(status.state, Some(RunState::Invalid));
}

#[test]
fn an_invalid_datajob_gets_no_child_and_one_warning_until_its_problems_change() {
    let mut dj = datajob(Some("0 2 * * *"));
    dj.spec.resources.cpu = Some("lots".into());
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:00Z");
    assert!(p.children.is_empty());
    let write = p.status.unwrap();
    assert_eq!(
        write
            .events
            .iter()
            .map(|e| (e.warning, e.reason.as_str()))
            .collect::<Vec<_>>(),
        [(true, "Invalid")]
    );
    // The same problems again: the status is as it should be, nothing is written.
    dj.status = Some(write.status);
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:30Z");
    assert_eq!(p.status, None);
}

#[test]
fn a_child_the_apiserver_refused_is_not_applied_again_and_the_status_says_so() {
    let dj = datajob(Some("0 2 * * *"));
    let mut o = observed(vec![]);
    o.rejected = Some("the apiserver refused the CronJob: forbidden; fix spec.image".into());
    let p = plan_at(&dj, &o, "2026-12-01T03:00:00Z");
    assert!(p.children.is_empty());
    let write = p.status.unwrap();
    assert_eq!(write.status.reason.as_deref(), Some(runs::CHILD_REJECTED));
    assert_eq!(write.events[0].reason, runs::CHILD_REJECTED);
    assert_eq!(write.events[0].action, "Apply");
}

#[test]
fn a_scheduled_run_too_late_to_start_is_deleted_and_leaves_no_record() {
    let mut dj = datajob(Some("0 * * * *"));
    dj.spec.catch_up = Some(CatchUp::Latest);
    let late = scheduled_job("2026-12-01T03:00:00Z");
    let on_time = scheduled_job("2026-12-01T06:00:00Z");
    let p = plan_at(&dj, &observed(vec![late, on_time]), "2026-12-01T06:00:20Z");
    assert_eq!(
        kinds(&p.steps),
        ["DeleteJob", "start", "InitSeries", "CountMissed"]
    );
    let Step::DeleteJob {
        name, uid, then, ..
    } = &p.steps[0]
    else {
        panic!("{:?}", p.steps)
    };
    assert_eq!(
        (name.as_str(), uid.as_str()),
        ("nightly-29934900", "job-2026-12-01T03:00:00Z")
    );
    assert_eq!(then.as_ref().map(|n| n.reason.as_str()), Some("RunSkipped"));
    let status = p.status.map(|w| w.status).unwrap_or_default();
    let names: Vec<&str> = status.recent_runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["nightly-29935080"]);
}

#[test]
fn a_run_whose_inputs_published_is_stamped_and_started() {
    let dj = datajob(Some("0 2 * * *"));
    let p = plan_at(
        &dj,
        &observed(vec![scheduled_job("2026-12-01T02:00:00Z")]),
        "2026-12-01T02:00:03Z",
    );
    let Step::PatchJob {
        name, patch, verb, ..
    } = &p.steps[0]
    else {
        panic!("{:?}", p.steps)
    };
    assert_eq!((name.as_str(), *verb), ("nightly-29934840", "start"));
    assert_eq!(patch["spec"]["suspend"], json!(false));
    assert_eq!(
        patch["metadata"]["labels"][crate::labels::RUN_ID],
        json!("nightly-29934840")
    );
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"][crate::labels::LOGICAL_TIME],
        json!("2026-12-01T02:00:00Z")
    );
}

#[test]
fn finished_runs_beyond_the_history_are_pruned_oldest_first_once_their_outcome_is_stored() {
    let mut dj = datajob(Some("0 * * * *"));
    dj.spec.history = Some(1);
    let old = succeeded(
        scheduled_job("2026-12-01T01:00:00Z"),
        "2026-12-01T01:00:01Z",
        "2026-12-01T01:01:00Z",
    );
    let new = succeeded(
        scheduled_job("2026-12-01T02:00:00Z"),
        "2026-12-01T02:00:01Z",
        "2026-12-01T02:01:00Z",
    );
    let o = observed(vec![old, new]);
    let prunes = |p: &Plan| -> Vec<Step> {
        p.steps
            .iter()
            .filter(|s| matches!(s, Step::Prune { .. }))
            .cloned()
            .collect()
    };
    // The first pass writes the outcomes and prunes nothing: the prune comes before
    // the status write, and a stop in between must not lose a run.
    let first = plan_at(&dj, &o, "2026-12-01T02:30:00Z");
    assert_eq!(prunes(&first), []);
    let status = first.status.map(|w| w.status).unwrap_or_default();
    assert_eq!(status.recent_runs.len(), 2);
    assert!(
        status
            .recent_runs
            .iter()
            .all(|r| r.state == RunState::Succeeded)
    );
    // Once the status holds them, the oldest beyond the history goes; its outcome stays.
    dj.status = Some(status);
    let second = plan_at(&dj, &o, "2026-12-01T02:30:05Z");
    assert_eq!(
        prunes(&second),
        [Step::Prune {
            name: "nightly-29934780".into(),
            history: 1
        }]
    );
    let status = second
        .status
        .map(|w| w.status)
        .or(dj.status)
        .unwrap_or_default();
    assert_eq!(status.recent_runs.len(), 2);
}

/// Issue 25 item 8: with `history: 0`, a finished Job whose outcome is not on the
/// stored status yet (the write after the prune never happened) is kept, so the run is
/// neither lost nor made again.
#[test]
fn with_no_history_a_finished_run_is_kept_until_the_status_holds_its_outcome() {
    let mut dj = datajob(Some("0 * * * *"));
    dj.spec.history = Some(0);
    let job = succeeded(
        scheduled_job("2026-12-01T01:00:00Z"),
        "2026-12-01T01:00:01Z",
        "2026-12-01T01:01:00Z",
    );
    let name = job.metadata.name.clone().unwrap_or_default();
    let o = observed(vec![job]);
    let first = plan_at(&dj, &o, "2026-12-01T01:02:00Z");
    assert!(
        !first.steps.iter().any(|s| matches!(s, Step::Prune { .. })),
        "pruned before its outcome was stored: {:?}",
        first.steps
    );
    // A stored status that holds it only as running is not enough either.
    let mut stored = first.status.map(|w| w.status).unwrap_or_default();
    assert!(stored.recent_runs.iter().any(|r| r.name == name));
    let mut running = stored.clone();
    for r in &mut running.recent_runs {
        r.state = RunState::Running;
    }
    dj.status = Some(running);
    let again = plan_at(&dj, &o, "2026-12-01T01:02:05Z");
    assert!(!again.steps.iter().any(|s| matches!(s, Step::Prune { .. })));
    stored.recent_runs.retain(|r| r.name == name);
    dj.status = Some(stored);
    let last = plan_at(&dj, &o, "2026-12-01T01:02:10Z");
    assert_eq!(
        last.steps
            .iter()
            .filter(|s| matches!(s, Step::Prune { .. }))
            .count(),
        1
    );
}

/// A finished run older than every run of a full stored history never gets into
/// `recentRuns`; its Job is still pruned, because the history already tells that the
/// run is not to be made again ([`runs::already_ran`]).
#[test]
fn a_finished_run_that_fell_out_of_a_full_history_is_pruned() {
    let mut dj = datajob(Some("0 * * * *"));
    dj.spec.history = Some(1);
    let newer: Vec<RunRecord> = (0..runs::RECENT_RUNS as i64)
        .map(|h| {
            let t = "2026-12-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
                + chrono::Duration::hours(h);
            RunRecord {
                name: labels::run_id("nightly", t),
                logical_time: labels::rfc3339(t),
                state: RunState::Succeeded,
                ..Default::default()
            }
        })
        .collect();
    dj.status = Some(DataJobStatus {
        recent_runs: newer,
        ..Default::default()
    });
    let old = succeeded(
        scheduled_job("2026-12-01T01:00:00Z"),
        "2026-12-01T01:00:01Z",
        "2026-12-01T01:01:00Z",
    );
    let newest = || {
        succeeded(
            scheduled_job("2026-12-01T19:00:00Z"),
            "2026-12-01T19:00:01Z",
            "2026-12-01T19:01:00Z",
        )
    };
    let p = plan_at(&dj, &observed(vec![old, newest()]), "2026-12-01T20:30:00Z");
    let prunes: Vec<&Step> = p
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Prune { .. }))
        .collect();
    assert_eq!(
        prunes,
        [&Step::Prune {
            name: "nightly-29934780".into(),
            history: 1
        }]
    );
    // With room left in the history it waits for its outcome to be stored instead.
    if let Some(s) = dj.status.as_mut() {
        s.recent_runs.truncate(runs::RECENT_RUNS - 1);
    }
    let old = succeeded(
        scheduled_job("2026-12-01T01:00:00Z"),
        "2026-12-01T01:00:01Z",
        "2026-12-01T01:01:00Z",
    );
    let p = plan_at(&dj, &observed(vec![old, newest()]), "2026-12-01T20:30:00Z");
    assert!(!p.steps.iter().any(|s| matches!(s, Step::Prune { .. })));
}

/// With the log archive on, a finished run's Job stays until the stored status also
/// says where its logs went: the archive tells it on the Job, which must be there.
#[test]
fn with_the_log_archive_on_a_run_is_pruned_once_its_logs_are_accounted_for() {
    let mut dj = datajob(Some("0 * * * *"));
    dj.spec.history = Some(0);
    let job = succeeded(
        scheduled_job("2026-12-01T01:00:00Z"),
        "2026-12-01T01:00:01Z",
        "2026-12-01T01:01:00Z",
    );
    let archive = Guards {
        log_archive: true,
        ..Guards::default()
    };
    let prunes = |p: &Plan| {
        p.steps
            .iter()
            .filter(|s| matches!(s, Step::Prune { .. }))
            .count()
    };
    let first = plan_with(
        &dj,
        &observed(vec![job.clone()]),
        "2026-12-01T01:02:00Z",
        archive.clone(),
    );
    dj.status = first.status.map(|w| w.status);
    let held = plan_with(
        &dj,
        &observed(vec![job.clone()]),
        "2026-12-01T01:02:05Z",
        archive.clone(),
    );
    assert_eq!(
        prunes(&held),
        0,
        "outcome stored, logs not yet: {:?}",
        held.steps
    );
    assert!(
        held.requeue.is_some_and(|d| d <= Duration::from_secs(3)),
        "a Job waiting to be pruned is looked at again soon: {:?}",
        held.requeue
    );
    // Without the archive the same stored outcome is enough.
    let plain = plan_at(&dj, &observed(vec![job.clone()]), "2026-12-01T01:02:05Z");
    assert_eq!(prunes(&plain), 1);
    // The archive marked the Job; once the status holds that, the Job goes.
    let mut marked = job;
    marked
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(crate::decide::archive::LOGS.into(), "Archived".into());
    let told = plan_with(
        &dj,
        &observed(vec![marked.clone()]),
        "2026-12-01T01:02:10Z",
        archive.clone(),
    );
    let stored = told
        .status
        .map(|w| w.status)
        .expect("the logs' outcome is written");
    assert_eq!(stored.recent_runs[0].logs.as_deref(), Some("Archived"));
    dj.status = Some(stored);
    let last = plan_with(
        &dj,
        &observed(vec![marked]),
        "2026-12-01T01:02:15Z",
        archive,
    );
    assert_eq!(prunes(&last), 1);
}

#[test]
fn a_status_write_says_which_runs_started_and_finished_once() {
    let dj = datajob(Some("0 2 * * *"));
    let job = succeeded(
        scheduled_job("2026-12-01T02:00:00Z"),
        "2026-12-01T02:00:01Z",
        "2026-12-01T02:10:00Z",
    );
    let p = plan_at(&dj, &observed(vec![job.clone()]), "2026-12-01T02:10:05Z");
    let write = p.status.unwrap();
    let reasons: Vec<&str> = write.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["RunStarted", "RunSucceeded"]);
    assert_eq!(write.changes.appeared, 1);
    assert_eq!(write.changes.finished.len(), 1);
    assert!(write.spec_changed, "generation 1 was never observed");
    // Written: the next reconcile has nothing to tell.
    let mut seen = dj.clone();
    seen.status = Some(write.status);
    let p = plan_at(&seen, &observed(vec![job]), "2026-12-01T02:10:10Z");
    assert_eq!(p.status, None);
}

#[test]
fn a_trigger_with_arguments_runs_beside_the_scheduled_run_of_its_time() {
    let mut dj = datajob(Some("0 3 * * *"));
    dj.spec.params = [("day".to_string(), "yesterday".to_string())].into();
    dj.spec.args = vec!["--day=$(DATAJOB_ARG_DAY)".into()];
    let at = "2026-12-01T03:00:00Z";
    let args = r#"{"day":"2026-11-01"}"#;
    dj.metadata.annotations = Some(
        [
            (TRIGGER.to_string(), at.to_string()),
            (labels::TRIGGER_ARGS.to_string(), args.to_string()),
        ]
        .into(),
    );
    // The scheduled run of that time exists: the run with arguments is another one.
    let mut o = observed(vec![]);
    o.job_names.insert(labels::run_id("nightly", t(at)));
    let p = plan_at(&dj, &o, "2026-12-01T03:00:05Z");
    let jobs: Vec<&Job> = p
        .children
        .iter()
        .filter_map(|s| match s {
            Step::ApplyRun { job, .. } => Some(job.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 1, "{:?}", kinds(&p.children));
    let job = jobs[0];
    let id = job.name_any();
    let scheduled = labels::run_id("nightly", t(at));
    assert!(
        id.starts_with(&format!("{scheduled}-")) && id.len() == scheduled.len() + 9,
        "{id}"
    );
    assert_eq!(job.labels().get(labels::RUN_ID), Some(&id));
    assert_eq!(
        job.annotations().get(labels::PARAMS).map(String::as_str),
        Some(args)
    );
    let template = &job.spec.as_ref().unwrap().template;
    let pod_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(pod_labels.get(labels::RUN_ID), Some(&id));
    let c = &template.spec.as_ref().unwrap().containers[0];
    let day = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "DATAJOB_ARG_DAY")
        .and_then(|e| e.value.clone());
    assert_eq!(day.as_deref(), Some("2026-11-01"));
    // The scheduled run gets the default.
    let cj = p
        .children
        .iter()
        .find_map(|s| match s {
            Step::ApplyCronJob(cj) => Some(cj.clone()),
            _ => None,
        })
        .unwrap();
    let spec = cj.spec.job_template.spec.unwrap().template.spec.unwrap();
    let env = spec.containers[0].env.clone().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "DATAJOB_ARG_DAY" && e.value.as_deref() == Some("yesterday"))
    );
    let status = p.status.map(|w| w.status).unwrap_or_default();
    assert_eq!(status.last_trigger, Some(runs::trigger_key(at, Some(args))));
    // Acted on: the next reconcile makes nothing more.
    let mut again = dj.clone();
    again.status = Some(status);
    let p = plan_at(&again, &o, "2026-12-01T03:00:10Z");
    assert!(!kinds(&p.children).contains(&"ApplyRun"));
}

#[test]
fn a_trigger_with_an_undeclared_argument_is_refused_with_an_event() {
    let mut dj = datajob(Some("0 3 * * *"));
    dj.spec.params = [("day".to_string(), String::new())].into();
    dj.metadata.annotations = Some(
        [
            (TRIGGER.to_string(), "2026-12-01T03:00:00Z".to_string()),
            (
                labels::TRIGGER_ARGS.to_string(),
                r#"{"region":"eu"}"#.to_string(),
            ),
        ]
        .into(),
    );
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T03:00:05Z");
    assert!(!kinds(&p.children).contains(&"ApplyRun"));
    let refused = p.children.iter().find_map(|s| match s {
        Step::Event(n) if n.reason == "TriggerRefused" => Some(n.note.clone()),
        _ => None,
    });
    let note = refused.expect("a TriggerRefused event");
    assert!(
        note.contains("parameter region") && note.contains("day"),
        "{note}"
    );
    // Recorded as handled, so it is refused once.
    let status = p.status.map(|w| w.status).unwrap_or_default();
    assert!(status.last_trigger.is_some());
}

#[test]
fn a_run_not_done_by_its_expected_time_makes_the_datajob_late_once() {
    let mut dj = datajob(Some("0 3 * * *"));
    dj.spec.expect_by = Some("06:00".into());
    dj.metadata.creation_timestamp = Some(k8s("2026-11-30T12:00:00Z"));
    let job = |state: &str| {
        let mut j = scheduled_job("2026-12-01T03:00:00Z");
        j.spec.as_mut().unwrap().suspend = Some(false);
        j.status = Some(JobStatus {
            ready: Some(1),
            conditions: (state == "Complete").then(|| {
                vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        Arc::new(j)
    };
    let mut o = observed(vec![]);
    o.jobs = vec![job("Running")];
    let late = |p: &Plan| {
        p.status.as_ref().and_then(|w| {
            w.status
                .conditions
                .iter()
                .find(|c| c.type_ == "Late")
                .cloned()
        })
    };
    // Before 06:00: on time, and it looks again at 06:00.
    let p = plan_at(&dj, &o, "2026-12-01T05:00:00Z");
    assert_eq!(late(&p).unwrap().status, "False");
    assert!(
        p.requeue.unwrap() <= Duration::from_secs(3601),
        "{:?}",
        p.requeue
    );
    // At 06:00 still running: Late, with one RunLate event.
    let p = plan_at(&dj, &o, "2026-12-01T06:00:00Z");
    let c = late(&p).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Late"));
    assert!(c.message.contains("expected by 06:00 UTC"), "{}", c.message);
    let write = p.status.clone().unwrap();
    assert!(
        write
            .events
            .iter()
            .any(|e| e.reason == "RunLate" && e.warning)
    );
    // Told once.
    let mut again = dj.clone();
    again.status = Some(write.status);
    let p = plan_at(&again, &o, "2026-12-01T06:01:00Z");
    let events = p.status.map(|w| w.events).unwrap_or_default();
    assert!(!events.iter().any(|e| e.reason == "RunLate"), "{events:?}");
    // It succeeds: on time again; Late never ended it.
    o.jobs = vec![job("Complete")];
    let p = plan_at(&again, &o, "2026-12-01T06:30:00Z");
    assert_eq!(late(&p).unwrap().status, "False");
    assert!(!kinds(&p.steps).contains(&"end"), "{:?}", kinds(&p.steps));
    // Without expectBy there is no Late condition at all.
    let plain = datajob(Some("0 3 * * *"));
    assert!(late(&plan_at(&plain, &o, "2026-12-01T06:00:00Z")).is_none());
}

#[test]
fn an_expected_by_time_the_schedule_cannot_keep_is_refused() {
    let mut dj = datajob(Some("0 3 * * *"));
    dj.spec.expect_by = Some("02:00".into());
    let p = plan_at(&dj, &observed(vec![]), "2026-12-01T01:00:00Z");
    let status = p.status.unwrap().status;
    assert_eq!(status.state, Some(RunState::Invalid));
    let m = status.message.unwrap_or_default();
    assert!(
        m.contains("spec.expectBy \"02:00\" is earlier in the day than the run"),
        "{m}"
    );
}

/// Issue 25 item 8: the operator's clock 70 s ahead of the CronJob controller's. While
/// it follows the DataJob, a new Job is judged at its creation (the apiserver's clock):
/// every run of an every-minute DataJob starts. On the first look after a start it is
/// judged at the operator's now, as after downtime.
#[test]
fn a_clock_ahead_of_the_cronjob_controllers_does_not_skip_new_runs() {
    let dj = datajob(Some("* * * * *"));
    let mut job = scheduled_job("2026-12-01T01:00:00Z");
    job.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-01T01:00:01Z".parse().unwrap(),
    ));
    let skipped = |p: &Plan| {
        p.steps.iter().any(
            |s| matches!(s, Step::DeleteJob { said: Some(said), .. } if said.contains("skipped")),
        )
    };
    let mut o = observed(vec![job]);
    o.missed_counted = Some((t("2026-12-01T00:50:00Z"), t("2026-12-01T01:00:30Z")));
    let followed = plan_at(&dj, &o, "2026-12-01T01:01:10Z");
    assert!(!skipped(&followed), "skipped: {:?}", followed.steps);
    o.missed_counted = None;
    let after_start = plan_at(&dj, &o, "2026-12-01T01:01:10Z");
    assert!(skipped(&after_start), "{:?}", after_start.steps);
}

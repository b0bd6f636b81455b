//! Which scheduled runs a node group should expect soon: what the warm-up makes nodes
//! for and what the `Schedule` policy keeps empty nodes for. Pure: the NodeGroup
//! controller passes what its caches hold.
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::decide::children::{Guards, run_request};
use crate::decide::nodegroup::{self, DueRun, Group, ScaleDownPolicy, Scheduled};
use crate::labels::{self, NAME};
use crate::validation::{self, Limits};
use datajob_api::{DataJob, RunState};

/// A pod that still holds (or waits for) room: not finished, not being deleted.
pub fn active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, "Succeeded" | "Failed")
}

/// The next run of each scheduled, unsuspended DataJob placed on `group`
/// ([`nodegroup::next_runs`]). DataJobs with an active pod (on any group) are left
/// out: their pods count as they are. A run whose pod came, even one that finished
/// before the DataJob's status says so, is not on its way any more (else a node would
/// be made for a run that already ran). Only the `Idle` policy without `warmUpBefore`
/// has no use for them.
pub fn due_runs(
    group: &Group,
    datajobs: &[&DataJob],
    pods: &[&Pod],
    limits: &Limits,
    guards: &Guards,
    now: DateTime<Utc>,
) -> Vec<DueRun> {
    if group.warm_up_before.is_none() && group.scale_down_policy == ScaleDownPolicy::Idle {
        return Vec::new();
    }
    let with_pods: HashSet<(String, String)> = pods
        .iter()
        .filter(|p| active(p))
        .filter_map(|p| Some((p.namespace()?, p.labels().get(NAME)?.clone())))
        .collect();
    let came: HashSet<(String, String, DateTime<Utc>)> = pods
        .iter()
        .filter_map(|p| {
            let t = labels::parse_rfc3339(p.annotations().get(labels::LOGICAL_TIME)?)?;
            Some((p.namespace()?, p.labels().get(NAME)?.clone(), t))
        })
        .collect();
    let resolved: Vec<_> = datajobs
        .iter()
        .filter(|dj| {
            dj.status.as_ref().and_then(|s| s.node_group.as_deref()) == Some(group.name.as_str())
        })
        .filter(|dj| !with_pods.contains(&(dj.namespace().unwrap_or_default(), dj.name_any())))
        .filter_map(|dj| {
            let last = dj.status.as_ref().and_then(|s| s.last_run.as_ref());
            let last_run = last.and_then(|r| labels::parse_rfc3339(&r.logical_time));
            let key = |t| (dj.namespace().unwrap_or_default(), dj.name_any(), t);
            let in_flight = last.is_some_and(|r| {
                matches!(r.state, RunState::Pending | RunState::Running)
                    && last_run.is_none_or(|t| !came.contains(&key(t)))
            });
            let since = dj
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(labels::from_k8s_time);
            // A DataJob that does not validate has no runs to wait for.
            let r = validation::resolve(dj, limits).ok()?;
            (!r.suspend).then_some((r, last_run, in_flight, since))
        })
        .collect();
    let scheduled: Vec<Scheduled<'_>> = resolved
        .iter()
        .filter_map(|(r, last_run, in_flight, since)| {
            Some(Scheduled {
                datajob: format!("{}/{}", r.namespace, r.name),
                request: run_request(r, guards),
                schedule: r.schedule.as_ref()?,
                last_run: *last_run,
                last_run_in_flight: *in_flight,
                since: *since,
            })
        })
        .collect();
    nodegroup::next_runs(&scheduled, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJobStatus, RunRecord};
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).expect("a time")
    }

    fn group() -> Group {
        Group {
            name: "batch".into(),
            scale_down_policy: ScaleDownPolicy::Schedule,
            ..Default::default()
        }
    }

    /// An hourly DataJob on `batch` whose last run (at 10:00) is in the given state.
    fn hourly(last: RunState) -> DataJob {
        let mut dj: DataJob = serde_json::from_value(json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": "etl", "namespace": "data",
                "creationTimestamp": "2026-12-01T08:00:00Z"},
            "spec": {"image": "busybox", "schedule": "0 * * * *",
                "resources": {"cpu": "1", "memory": "1Gi"}},
        }))
        .expect("a DataJob");
        let run = RunRecord {
            name: labels::run_id("etl", t("2026-12-01T10:00:00Z")),
            logical_time: "2026-12-01T10:00:00Z".into(),
            state: last,
            ..Default::default()
        };
        dj.status = Some(DataJobStatus {
            node_group: Some("batch".into()),
            last_run: Some(run.clone()),
            recent_runs: vec![run],
            ..Default::default()
        });
        dj
    }

    /// A pod of etl's run at 10:00 in `phase`.
    fn pod(phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "etl-x", "namespace": "data",
                "labels": {NAME: "etl"},
                "annotations": {labels::LOGICAL_TIME: "2026-12-01T10:00:00Z"}},
            "status": {"phase": phase},
        }))
        .expect("a pod")
    }

    fn due(dj: &DataJob, pods: &[&Pod], now: &str) -> Vec<DateTime<Utc>> {
        due_runs(
            &group(),
            &[dj],
            pods,
            &Limits::default(),
            &Guards::default(),
            t(now),
        )
        .into_iter()
        .map(|d| d.due)
        .collect()
    }

    #[test]
    fn a_run_whose_pod_finished_before_the_status_said_so_is_not_still_coming() {
        let dj = hourly(RunState::Running);
        // No pod yet: the 10:00 run is on its way, its time still counts.
        assert_eq!(
            due(&dj, &[], "2026-12-01T10:00:20Z"),
            [t("2026-12-01T10:00:00Z")]
        );
        // Its pod came and finished, the status not updated yet: the next due run is
        // 11:00, not a phantom 10:00 that would make a node for a run that ran.
        let done = pod("Succeeded");
        assert_eq!(
            due(&dj, &[&done], "2026-12-01T10:00:20Z"),
            [t("2026-12-01T11:00:00Z")]
        );
    }

    #[test]
    fn a_datajob_with_an_active_pod_counts_by_its_pod_not_by_its_schedule() {
        let dj = hourly(RunState::Running);
        let running = pod("Running");
        assert!(due(&dj, &[&running], "2026-12-01T10:00:20Z").is_empty());
    }

    #[test]
    fn the_idle_policy_without_warm_up_needs_no_due_runs() {
        let dj = hourly(RunState::Succeeded);
        let idle = Group {
            scale_down_policy: ScaleDownPolicy::Idle,
            ..group()
        };
        let due = due_runs(
            &idle,
            &[&dj],
            &[],
            &Limits::default(),
            &Guards::default(),
            t("2026-12-01T10:30:00Z"),
        );
        assert!(due.is_empty());
    }
}

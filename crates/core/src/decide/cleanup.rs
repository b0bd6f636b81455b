//! What to clean up: PVCs that outlived their runs, and finished Jobs beyond a
//! DataJob's history. Pure functions; `controller::cleanup` and the DataJob
//! reconciler act on them.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::decide::runs;
use crate::labels::{self, MANAGED_BY, MANAGED_BY_VALUE, NAME, RUN_ID};

/// A PVC to delete, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub namespace: String,
    pub name: String,
    pub datajob: String,
    pub why: String,
}

fn pod_uses(pod: &Pod, claim: &str) -> bool {
    let pod_name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
                || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == claim)
        })
}

fn job_finished_at(job: &Job) -> Option<Option<DateTime<Utc>>> {
    let cs = job.status.as_ref()?.conditions.as_ref()?;
    let c = cs
        .iter()
        .find(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))?;
    Some(
        c.last_transition_time
            .as_ref()
            .and_then(labels::from_k8s_time),
    )
}

/// PVCs DataJob created whose run is gone or finished for at least `grace`, and that no
/// existing pod uses. PVCs without DataJob's labels are never touched.
pub fn orphaned_pvcs<P>(
    pvcs: &[&PartialObjectMeta<P>],
    pods: &[&Pod],
    jobs: &[&Job],
    grace: Duration,
    now: DateTime<Utc>,
) -> Vec<Orphan>
where
    P: kube::Resource,
{
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    for pvc in pvcs {
        let l = pvc.labels();
        if l.get(MANAGED_BY).map(String::as_str) != Some(MANAGED_BY_VALUE)
            || pvc.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(datajob) = l.get(NAME).cloned() else {
            continue;
        };
        let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
        if pods
            .iter()
            .any(|p| p.namespace().as_deref() == Some(ns.as_str()) && pod_uses(p, &name))
        {
            continue;
        }
        let created = pvc
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(labels::from_k8s_time)
            .unwrap_or(now);
        let owner_pod_gone = pvc.owner_references().iter().any(|o| {
            o.kind == "Pod"
                && !pods
                    .iter()
                    .any(|p| p.uid().as_deref() == Some(o.uid.as_str()))
        });
        let run = l.get(RUN_ID);
        let job = run.and_then(|id| {
            jobs.iter()
                .find(|j| j.namespace().as_deref() == Some(ns.as_str()) && j.name_any() == *id)
        });
        let (why, since) = match (run, job) {
            (Some(id), None) => (format!("its run {id} no longer exists"), created),
            (Some(id), Some(j)) => match job_finished_at(j) {
                Some(at) => (
                    format!("its run {id} has finished"),
                    at.unwrap_or(created).max(created),
                ),
                None => continue,
            },
            (None, _) if owner_pod_gone => (
                "the pod it belonged to no longer exists".to_string(),
                created,
            ),
            (None, _) => continue,
        };
        if now - since >= grace {
            out.push(Orphan {
                namespace: ns,
                name,
                datajob,
                why,
            });
        }
    }
    out
}

/// Finished Jobs of one DataJob beyond the newest `history`, oldest last.
pub(crate) fn jobs_beyond_history<'a>(
    datajob: &str,
    jobs: &[&'a Job],
    history: usize,
) -> Vec<&'a Job> {
    let mut finished: Vec<(String, &Job)> = jobs
        .iter()
        .filter_map(|j| {
            let run = runs::run_of(j, datajob)?;
            run.state.is_finished().then_some((run.logical_time, *j))
        })
        .collect();
    finished.sort_by(|a, b| b.0.cmp(&a.0));
    finished.into_iter().skip(history).map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }
    fn pvc(
        name: &str,
        labels: serde_json::Value,
        age_secs: i64,
    ) -> PartialObjectMeta<PersistentVolumeClaim> {
        serde_json::from_value(
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {
                "name": name, "namespace": "ns", "labels": labels,
                "creationTimestamp": labels::rfc3339(now() - chrono::Duration::seconds(age_secs)),
            }}),
        )
        .unwrap()
    }
    fn ours(run: &str) -> serde_json::Value {
        json!({MANAGED_BY: MANAGED_BY_VALUE, NAME: "dj", RUN_ID: run})
    }
    fn job(name: &str, finished_secs_ago: Option<i64>) -> Job {
        let conditions: Vec<serde_json::Value> = finished_secs_ago
            .map(|s| json!({"type": "Complete", "status": "True", "lastTransitionTime": labels::rfc3339(now() - chrono::Duration::seconds(s))}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "status": {"conditions": conditions}})).unwrap()
    }
    fn pod_with_claim(claim: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
        .unwrap()
    }

    #[test]
    fn only_our_orphans_after_the_grace() {
        let g = Duration::from_secs(300);
        let gone = pvc("gone", ours("dj-1"), 400);
        let young = pvc("young", ours("dj-1"), 100);
        let foreign = pvc("foreign", json!({"app": "db"}), 4000);
        let in_use = pvc("in-use", ours("dj-1"), 4000);
        let running = pvc("running", ours("dj-2"), 4000);
        let done = pvc("done", ours("dj-3"), 4000);
        let pods = [pod_with_claim("in-use")];
        let jobs = [job("dj-2", None), job("dj-3", Some(600))];
        let out = orphaned_pvcs(
            &[&gone, &young, &foreign, &in_use, &running, &done],
            &pods.iter().collect::<Vec<_>>(),
            &jobs.iter().collect::<Vec<_>>(),
            g,
            now(),
        );
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, vec!["gone", "done"]);
    }

    #[test]
    fn history_keeps_the_newest_finished_runs() {
        let jobs: Vec<Job> = (1..=4)
            .map(|m| job(&format!("dj-{m}"), Some(10)))
            .chain([job("dj-5", None)])
            .collect();
        let refs: Vec<&Job> = jobs.iter().collect();
        let prune: Vec<String> = jobs_beyond_history("dj", &refs, 2)
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(prune, vec!["dj-2", "dj-1"]);
    }
}

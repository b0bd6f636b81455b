//! The reads and writes of Jobs that the DataJob and Backfill reconcilers share: the
//! runs of a DataJob as its Jobs say now, the DataJobs of a namespace, what a DataJob's
//! inputs say, which DataJobs read one, and creating and deleting a run's Job exactly.
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::{Error, Result};
use datajob_api::{DataJob, RunRecord};
use datajob_core::decide::dataflow::Upstream;
use datajob_core::decide::datajob::{lifecycle::is_publish_job, upstreams_of};
use datajob_core::decide::runs;
use datajob_core::labels::NAME;

/// The runs of DataJob `name` in `ns` as their Jobs say now.
pub(crate) fn job_runs(jobs: &Store<Job>, ns: &str, name: &str) -> Vec<RunRecord> {
    jobs.state()
        .iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(ns)
                && j.labels().get(NAME).map(String::as_str) == Some(name)
                && !is_publish_job(j)
        })
        .filter_map(|j| runs::run_of(j, name))
        .collect()
}

/// The DataJobs of namespace `ns` in the shared cache; `None` before it has synced (it
/// then does not even hold the DataJob being reconciled).
pub(crate) fn namespace_datajobs(
    datajobs: &Store<DataJob>,
    ns: &str,
    name: &str,
) -> Option<Vec<Arc<DataJob>>> {
    let all: Vec<Arc<DataJob>> = datajobs
        .state()
        .into_iter()
        .filter(|d| d.namespace().as_deref() == Some(ns))
        .collect();
    all.iter().any(|d| d.name_any() == name).then_some(all)
}

/// What each input of `inputs` says now: its status, refreshed with its Jobs.
pub(crate) fn upstreams(
    jobs: &Store<Job>,
    ns: &str,
    inputs: &[String],
    all: &[Arc<DataJob>],
) -> BTreeMap<String, Upstream> {
    let input_runs = inputs
        .iter()
        .map(|input| (input.clone(), job_runs(jobs, ns, input)))
        .collect();
    upstreams_of(inputs, all, &input_runs)
}

/// The DataJobs to reconcile when `changed` changed: those that read it.
pub fn downstream_refs(changed: &DataJob, all: &[Arc<DataJob>]) -> Vec<ObjectRef<DataJob>> {
    let (name, ns) = (changed.name_any(), changed.namespace());
    all.iter()
        .filter(|d| d.namespace() == ns && d.spec.inputs.contains(&name))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn delete_exactly(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

/// Creates `job`; one that exists already (the same run, or one still being deleted) is
/// left to the next reconcile. Returns whether it was created.
pub(crate) async fn create_job(api: &Api<Job>, job: &Job, ns: &str) -> Result<bool> {
    let name = job.name_any();
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::api("create", "Job", ns, &name)(e)),
    }
}

/// Deletes the Job with this uid (not a newer one of the same name); gone is fine.
pub(crate) async fn delete_job(api: &Api<Job>, name: &str, uid: &str, ns: &str) -> Result<()> {
    match api.delete(name, &delete_exactly(uid)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(Error::api("delete", "Job", ns, name)(e)),
    }
}

/// The exact calls of the shared Job helpers, against kube's mocked client.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::controller::mock;
    use serde_json::json;

    const JOBS: &str = "/apis/batch/v1/namespaces/data/jobs";

    fn run_job() -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "nightly-29934840", "namespace": "data", "labels": {NAME: "nightly"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "registry.example/etl:1.0"}]}}},
        }))
        .expect("a Job")
    }

    #[tokio::test]
    async fn a_run_is_created_with_one_post_of_its_job() {
        let (client, calls) = mock::client_holding(json!({}), Vec::new());
        let api: Api<Job> = Api::namespaced(client, "data");
        let created = create_job(&api, &run_job(), "data").await;
        assert!(matches!(created, Ok(true)), "{created:?}");
        let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls.len(), 1, "{calls:#?}");
        assert_eq!(calls[0].call, format!("POST {JOBS}"));
        assert_eq!(calls[0].body["metadata"]["name"], "nightly-29934840");
        assert_eq!(calls[0].body["metadata"]["labels"][NAME], "nightly");
    }

    #[tokio::test]
    async fn a_run_is_deleted_only_as_the_object_it_was_with_its_pods() {
        let held = serde_json::to_value(run_job()).unwrap_or_default();
        let path = format!("{JOBS}/nightly-29934840");
        let (client, calls) = mock::client_holding(json!({}), vec![(path.clone(), held)]);
        let api: Api<Job> = Api::namespaced(client, "data");
        let deleted = delete_job(&api, "nightly-29934840", "uid-1", "data").await;
        assert!(deleted.is_ok(), "{deleted:?}");
        let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls.len(), 1, "{calls:#?}");
        assert_eq!(calls[0].call, format!("DELETE {path}"));
        // A Job made again under the same name (a new uid) is not the one deleted.
        assert_eq!(calls[0].body["preconditions"]["uid"], "uid-1");
        assert_eq!(calls[0].body["propagationPolicy"], "Background");
    }

    #[tokio::test]
    async fn a_run_already_gone_is_not_an_error() {
        let (client, calls) = mock::client_holding(json!({}), Vec::new());
        let api: Api<Job> = Api::namespaced(client, "data");
        let deleted = delete_job(&api, "nightly-29934840", "uid-1", "data").await;
        assert!(deleted.is_ok(), "a 404 is done: {deleted:?}");
        let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls.len(), 1, "one DELETE, no retry: {calls:#?}");
    }
}

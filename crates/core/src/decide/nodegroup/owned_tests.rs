use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::run_of_datajob;

fn meta(name: &str, owner: Option<(&str, &str, &str, &str)>) -> ObjectMeta {
    let refs = owner.map(|(api, kind, name, uid)| {
        json!([{"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": true}])
    });
    serde_json::from_value(json!({
        "name": name, "namespace": "team-a", "uid": format!("{name}-uid"),
        "ownerReferences": refs,
    }))
    .expect("ObjectMeta")
}

fn job(name: &str, owner: Option<(&str, &str, &str, &str)>) -> (String, Arc<Job>) {
    let job = Job {
        metadata: meta(name, owner),
        ..Job::default()
    };
    (name.to_string(), Arc::new(job))
}

/// Whether `pod` counts with these Jobs and the DataJob `nightly` (UID `dj-uid`) in
/// `team-a`, for a group serving `team-a`.
fn counts(pod: &ObjectMeta, jobs: &[(String, Arc<Job>)]) -> bool {
    let jobs: HashMap<String, Arc<Job>> = jobs.iter().cloned().collect();
    run_of_datajob(
        pod,
        |ns| ns == "team-a",
        |name| jobs.get(name).cloned(),
        |name| (name == "nightly").then(|| "dj-uid".to_string()),
    )
}

const DATAJOB: (&str, &str, &str, &str) = ("datajob.dev/v1alpha1", "DataJob", "nightly", "dj-uid");
const CRONJOB: (&str, &str, &str, &str) = ("batch/v1", "CronJob", "nightly", "cj-uid");

#[test]
fn pods_of_a_datajobs_jobs_count_directly_through_its_cronjob_or_its_publish_step() {
    let one_off = job("nightly-manual-1", Some(DATAJOB));
    let scheduled = job("nightly-29934840", Some(CRONJOB));
    let publish = job(
        "nightly-29934840-publish",
        Some((
            "batch/v1",
            "Job",
            "nightly-29934840",
            "nightly-29934840-uid",
        )),
    );
    let jobs = [one_off, scheduled, publish];
    for (name, _) in &jobs {
        let pod = meta("p", Some(("batch/v1", "Job", name, &format!("{name}-uid"))));
        assert!(counts(&pod, &jobs), "{name}");
    }
}

#[test]
fn a_bare_pod_a_forged_owner_another_namespace_or_another_owner_does_not_count() {
    let run = job("nightly-manual-1", Some(DATAJOB));
    let jobs = [run.clone()];
    let ok = meta(
        "p",
        Some((
            "batch/v1",
            "Job",
            "nightly-manual-1",
            "nightly-manual-1-uid",
        )),
    );
    assert!(counts(&ok, &jobs), "the control");
    // No owner at all: a bare pod with DataJob's labels.
    assert!(!counts(&meta("p", None), &jobs));
    // The right Job's name with another UID.
    let forged = meta(
        "p",
        Some(("batch/v1", "Job", "nightly-manual-1", "guessed")),
    );
    assert!(!counts(&forged, &jobs));
    // A Job the cache does not hold.
    let unknown = meta("p", Some(("batch/v1", "Job", "other-1", "other-1-uid")));
    assert!(!counts(&unknown, &jobs));
    // A namespace the group does not serve.
    let mut elsewhere = ok.clone();
    elsewhere.namespace = Some("team-b".into());
    assert!(!counts(&elsewhere, &jobs));
    // Owned by something else than a Job (a ReplicaSet, a DataJob directly).
    let rs = meta(
        "p",
        Some((
            "apps/v1",
            "ReplicaSet",
            "nightly-manual-1",
            "nightly-manual-1-uid",
        )),
    );
    assert!(!counts(&rs, &jobs));
    // A Job that no DataJob owns: its own, another CronJob, a DataJob with another UID.
    for owner in [
        None,
        Some(("batch/v1", "CronJob", "someone-elses", "x")),
        Some(("datajob.dev/v1alpha1", "DataJob", "nightly", "old-uid")),
        Some(("datajob.dev/v1alpha1", "DataJob", "ghost", "ghost-uid")),
    ] {
        let jobs = [job("nightly-manual-1", owner)];
        assert!(!counts(&ok, &jobs), "{owner:?}");
    }
    // A Job owned by a Job that no DataJob owns.
    let jobs = [
        job("loose", None),
        job(
            "nightly-manual-1",
            Some(("batch/v1", "Job", "loose", "loose-uid")),
        ),
    ];
    assert!(!counts(&ok, &jobs));
}

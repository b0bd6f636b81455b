//! Which pods a group counts and touches: runs of a DataJob that the group serves, and
//! no others. A pod that merely carries DataJob's labels and a group's node selector
//! (anyone who can make a pod can write those) makes no node and is never patched.
//!
//! A run's pod is owned (as the controller) by a Job whose UID matches, and that Job by
//! a DataJob of the same namespace: directly (a one-off or backfill run, matched by
//! UID), through the DataJob's CronJob (a scheduled run: the CronJob has its DataJob's
//! name, and names are unique per kind in a namespace), or through a run's Job (the
//! step that publishes a run's staged output).
use std::ops::Deref;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Whether `pod` (in a namespace `serves`) is the pod of a DataJob's run. `job` finds a
/// Job of the pod's namespace by name, `datajob_uid` the UID of a DataJob of that
/// namespace by name.
pub fn run_of_datajob<J: Deref<Target = Job>>(
    meta: &ObjectMeta,
    serves: impl Fn(&str) -> bool,
    job: impl Fn(&str) -> Option<J>,
    datajob_uid: impl Fn(&str) -> Option<String>,
) -> bool {
    if !meta.namespace.as_deref().is_some_and(serves) {
        return false;
    }
    let Some(owner) = controller(meta).filter(|o| is_job(o)) else {
        return false;
    };
    let Some(run) = job(&owner.name).filter(|j| j.metadata.uid.as_deref() == Some(&owner.uid))
    else {
        return false;
    };
    match controller(&run.metadata) {
        Some(o) if is_job(o) => job(&o.name)
            .filter(|j| j.metadata.uid.as_deref() == Some(&o.uid))
            .is_some_and(|parent| owned_by_datajob(&parent.metadata, &datajob_uid)),
        _ => owned_by_datajob(&run.metadata, &datajob_uid),
    }
}

/// Whether a Job's controller is a DataJob (by UID) or a DataJob's CronJob (by name).
fn owned_by_datajob(job: &ObjectMeta, datajob_uid: impl Fn(&str) -> Option<String>) -> bool {
    match controller(job) {
        Some(o) if o.kind == "DataJob" && o.api_version.starts_with("datajob.dev/") => {
            datajob_uid(&o.name).is_some_and(|uid| uid == o.uid)
        }
        Some(o) if o.kind == "CronJob" && o.api_version.starts_with("batch/") => {
            datajob_uid(&o.name).is_some()
        }
        _ => false,
    }
}

fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn is_job(o: &OwnerReference) -> bool {
    o.kind == "Job" && o.api_version.starts_with("batch/")
}

#[cfg(test)]
#[path = "owned_tests.rs"]
mod tests;

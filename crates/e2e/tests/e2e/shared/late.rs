//! End-to-end: `spec.expectBy` on the real control plane. A run still going past its
//! expected-by time makes the DataJob `Late` (condition, `kubectl get` column, one
//! `RunLate` event) and goes on; its success clears it. An expected-by time the schedule
//! cannot keep is refused at apply.

use crate::common;

use std::time::Duration;

use common::kubectl::kubectl;
use common::{client, kwok, test_namespace, wait_for_event, wait_for_object};
use datajob_api::{DataJob, RunState};
use datajob_core::labels;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn late(d: &DataJob) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Late")
        .map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn a_run_past_its_expected_time_makes_the_datajob_late_and_goes_on() {
    let client = client().await;
    let ns = test_namespace(&client, "late").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());

    // 02:00 for a run at 03:00 would be the next day: refused, saying so.
    let bad: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "early"},
        "spec": {"image": "busybox", "schedule": "0 3 * * *", "expectBy": "02:00"},
    }));
    let e = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("an expectBy before the run is refused");
    assert!(
        e.to_string().contains("spec.expectBy \"02:00\" is earlier in the day than the run it is for, which starts at 03:00"),
        "{e}"
    );

    // A one-off run that takes 100 s, expected within a minute of its logical time.
    common::datajob(
        &client,
        ns.name(),
        "slow-report",
        json!({"image": "busybox", "expectBy": "1m", "deadline": "10m", "owner": "team-growth",
               "podAnnotations": {kwok::DURATION: "100s"}}),
    )
    .await;
    let dj = wait_for_object(
        &api,
        "slow-report",
        "Late",
        Duration::from_secs(120),
        |d: &DataJob| late(d).is_some_and(|(s, _)| s == "True"),
    )
    .await
    .unwrap();
    let (_, message) = late(&dj).unwrap();
    assert!(
        message.contains("was expected by 1m after the logical time")
            && message.contains("is Running"),
        "{message}"
    );
    // Late tells; it does not end the run.
    assert_eq!(
        dj.status.as_ref().and_then(|s| s.state),
        Some(RunState::Running)
    );
    let listed = kubectl(&["get", "datajobs", "-n", ns.name()], None);
    assert!(listed.ok, "{listed}");
    let header = listed.stdout.lines().next().unwrap_or_default().to_string();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("slow-report"))
        .unwrap_or_default()
        .to_string();
    let col = header.find("LATE").expect("a LATE column");
    assert_eq!(row.get(col..col + 4), Some("True"), "{listed}");
    let events = wait_for_event(
        &client,
        ns.name(),
        "slow-report",
        "RunLate",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("RunLate"))
            .count(),
        1,
        "told once: {events:?}"
    );
    // The event and the run's Job and pod name the owner.
    let told = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RunLate"))
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    assert!(told.ends_with(" Owner: team-growth."), "{told}");
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let run = jobs
        .list(&ListParams::default().labels(&format!("{}=slow-report", labels::NAME)))
        .await
        .unwrap();
    let job = run.items.first().expect("the run's Job");
    assert_eq!(
        job.annotations().get(labels::OWNER).map(String::as_str),
        Some("team-growth")
    );
    let pod_owner = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(labels::OWNER).cloned());
    assert_eq!(pod_owner.as_deref(), Some("team-growth"));

    // The run succeeds: on time again.
    let dj = wait_for_object(
        &api,
        "slow-report",
        "succeeded",
        Duration::from_secs(150),
        |d: &DataJob| {
            d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded)
                && late(d).is_some_and(|(s, _)| s == "False")
        },
    )
    .await
    .unwrap();
    assert!(
        late(&dj).unwrap().1.contains("succeeded"),
        "{:?}",
        late(&dj)
    );
}

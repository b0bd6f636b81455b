//! End-to-end: the DataJob resource on the real control plane, reconciled by the
//! operator that `e2e/with-operator.sh` runs (`make e2e`).

use crate::common;

use std::time::Duration;

use chrono::{TimeZone, Timelike, Utc};
use common::{Result, client, test_namespace, wait_for, wait_for_event, wait_for_object};
use datajob_api::{DataJob, RunState};
use datajob_core::labels::{self, LOGICAL_TIME, NAME, RUN_ID};
use datajob_operator::webhook::tls::CONFIGURATION_NAME;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;

fn datajob(name: &str, spec: serde_json::Value) -> DataJob {
    common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name}, "spec": spec,
    }))
}

async fn create(api: &Api<DataJob>, dj: &DataJob) -> DataJob {
    api.create(&PostParams::default(), dj)
        .await
        .expect("create DataJob")
}

fn selector(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{NAME}={name}"))
}

async fn state_is(
    api: &Api<DataJob>,
    name: &str,
    state: RunState,
    timeout: Duration,
) -> Result<DataJob> {
    wait_for_object(
        api,
        name,
        &format!("DataJob {name} {state}"),
        timeout,
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(state),
    )
    .await
}

#[tokio::test]
async fn one_off_datajob_creates_one_guarded_job_that_succeeds() {
    let client = client().await;
    let ns = test_namespace(&client, "one-off").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let dj = create(&api, &datajob("report", json!({"image": "busybox:1.36", "command": ["true"], "deadline": "10m", "retries": 2, "resources": {"cpu": "500m", "memory": "256Mi"}}))).await;

    let done = state_is(&api, "report", RunState::Succeeded, Duration::from_secs(60))
        .await
        .unwrap();
    let status = done.status.unwrap();
    let last = status.last_run.expect("lastRun");
    assert!(
        last.start_time.is_some() && last.finish_time.is_some(),
        "{last:?}"
    );
    let created = labels::from_k8s_time(dj.metadata.creation_timestamp.as_ref().unwrap()).unwrap();
    assert_eq!(
        last.logical_time,
        labels::rfc3339(labels::truncate_to_minute(created))
    );
    assert_eq!(status.observed_generation, dj.metadata.generation);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let list = jobs.list(&selector("report")).await.unwrap().items;
    assert_eq!(list.len(), 1, "exactly one Job");
    let job = &list[0];
    assert_eq!(job.labels()[RUN_ID], last.name);
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(
        spec.active_deadline_seconds,
        Some(600 + 15 * 60),
        "deadline plus the startup allowance"
    );
    assert!(spec.ttl_seconds_after_finished.is_some());
    assert!(spec.pod_failure_policy.is_some());
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("DataJob", "report", Some(true))
    );
    let pod_spec = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
    let res = pod_spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(res.requests, res.limits);

    let evs = wait_for_event(
        &client,
        ns.name(),
        "report",
        "RunSucceeded",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("RunStarted"))
    );
}

#[tokio::test]
async fn scheduled_datajob_gets_a_guarded_cronjob_with_the_right_next_run() {
    let client = client().await;
    let ns = test_namespace(&client, "nightly").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &datajob(
            "nightly",
            json!({"image": "busybox", "schedule": "0 3 * * *", "timeZone": "Europe/London"}),
        ),
    )
    .await;

    let dj = wait_for_object(
        &api,
        "nightly",
        "nextRun",
        Duration::from_secs(30),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.next_run.as_ref())
                .is_some()
        },
    )
    .await
    .unwrap();
    let status = dj.status.unwrap();
    assert_eq!(status.state, Some(RunState::Scheduled));
    // The next 03:00 in London, computed independently of the operator's code.
    let london = chrono_tz::Europe::London;
    let now = Utc::now().with_timezone(&london);
    let mut day = now.date_naive();
    if now.hour() >= 3 {
        day = day.succ_opt().unwrap();
    }
    let expected = london
        .from_local_datetime(&day.and_hms_opt(3, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        status.next_run.as_deref(),
        Some(labels::rfc3339(expected).as_str())
    );

    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let cj = cronjobs.get("nightly").await.unwrap();
    let spec = cj.spec;
    assert_eq!(spec.schedule, "0 3 * * *");
    assert_eq!(spec.time_zone.as_deref(), Some("Europe/London"));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert!(spec.starting_deadline_seconds.is_some_and(|s| s > 0));
    assert!(
        spec.successful_jobs_history_limit.is_some() && spec.failed_jobs_history_limit.is_some()
    );
    assert_eq!(cj.metadata.owner_references.unwrap()[0].kind, "DataJob");

    // A spec change updates the CronJob (and the next run).
    let patch = json!({"spec": {"schedule": "30 4 * * *", "timeZone": "UTC", "deadline": "3h"}});
    api.patch("nightly", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let cj = wait_for_object(
        &cronjobs,
        "nightly",
        "CronJob follows the spec",
        Duration::from_secs(30),
        |c: &CronJob| c.spec.schedule == "30 4 * * *" && c.spec.time_zone.as_deref() == Some("UTC"),
    )
    .await
    .unwrap();
    let job_spec = cj.spec.job_template.spec.unwrap();
    assert_eq!(job_spec.active_deadline_seconds, Some(3 * 3600 + 15 * 60));
    let dj = wait_for_object(
        &api,
        "nightly",
        "nextRun follows",
        Duration::from_secs(30),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.next_run.as_deref())
                .is_some_and(|n| n.ends_with("T04:30:00Z"))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dj.status.unwrap().observed_generation,
        dj.metadata.generation
    );
}

#[tokio::test]
async fn every_minute_datajob_runs_within_its_minute_and_status_follows() {
    let client = client().await;
    let ns = test_namespace(&client, "minutely").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &datajob(
            "tick",
            json!({"image": "busybox", "schedule": "* * * * *", "retries": 0}),
        ),
    )
    .await;

    let dj = wait_for_object(
        &api,
        "tick",
        "a scheduled run that succeeded",
        Duration::from_secs(100),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == RunState::Succeeded)
        },
    )
    .await
    .unwrap();
    let run = dj.status.unwrap().last_run.unwrap();
    let logical = labels::parse_rfc3339(&run.logical_time).unwrap();
    assert_eq!(logical.second(), 0);
    assert_eq!(
        run.name,
        labels::run_id("tick", logical),
        "the run id derives from the logical time"
    );

    // The operator admitted the run: it stamped the pod with run id and logical time.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pod = pods
        .list(&ListParams::default().labels(&format!("{RUN_ID}={}", run.name)))
        .await
        .unwrap()
        .items;
    assert!(!pod.is_empty(), "the run's pod carries the run id label");
    assert_eq!(pod[0].annotations()[LOGICAL_TIME], run.logical_time);
}

#[tokio::test]
async fn bad_datajobs_are_refused_at_apply_naming_the_field_and_value() {
    let client = client().await;
    let ns = test_namespace(&client, "refused").await;
    let _guard = ADMISSION.lock().await;
    let ar = ApiResource::erase::<DataJob>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
    let fixtures = std::fs::read_to_string(concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "/crates/e2e/tests/fixtures/bad-datajobs.yaml"
    ))
    .unwrap();
    let mut checked = 0;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&fixtures).unwrap();
    for value in docs {
        let obj: DynamicObject = serde_json::from_value(value).unwrap();
        let (field, want) = (
            obj.annotations()["test.datajob.dev/field"].clone(),
            obj.annotations()["test.datajob.dev/value"].clone(),
        );
        let name = obj.name_any();
        match api
            .patch(&name, &PatchParams::apply("e2e"), &Patch::Apply(&obj))
            .await
        {
            Ok(_) => panic!("{name}: accepted, but {field} {want:?} must be refused"),
            Err(kube::Error::Api(e)) => {
                assert!(
                    e.message.contains(&field) && e.message.contains(&want),
                    "{name}: the refusal must name {field} and {want:?}: {}",
                    e.message
                );
            }
            Err(e) => panic!("{name}: unexpected error {e}"),
        }
        checked += 1;
    }
    assert!(
        checked >= 12,
        "every bad input in the fixture was tried ({checked})"
    );
    // Nothing was created.
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Tests that change or depend on the shared webhook registration run one at a time.
static ADMISSION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_datajob_that_slipped_past_admission_is_marked_invalid_and_gets_no_children() {
    // The webhook is unreachable (an operator outage; failurePolicy Ignore lets the
    // DataJob in): the reconciler must still refuse to create anything for it.
    let client = client().await;
    let ns = test_namespace(&client, "invalid").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    {
        let _guard = ADMISSION.lock().await;
        let mut vwc = vwcs
            .get(CONFIGURATION_NAME)
            .await
            .expect("the operator registered its webhook");
        let original = vwc.webhooks.clone();
        for w in vwc.webhooks.iter_mut().flatten() {
            w.client_config.url = Some("https://127.0.0.1:1/unreachable".into());
            w.client_config.service = None;
        }
        vwcs.replace(CONFIGURATION_NAME, &PostParams::default(), &vwc)
            .await
            .unwrap();
        // The apiserver reads webhook configurations from its own cache: wait for it.
        let created = wait_for(
            "the bad DataJob to get past admission",
            Duration::from_secs(20),
            || {
                let api = api.clone();
                async move {
                    let dj = datajob(
                        "slow",
                        json!({"image": "busybox", "deadline": "30d", "schedule": "0 1 * * *"}),
                    );
                    Ok(api.create(&PostParams::default(), &dj).await.ok())
                }
            },
        )
        .await;
        let mut vwc = vwcs.get(CONFIGURATION_NAME).await.unwrap();
        vwc.webhooks = original;
        vwcs.replace(CONFIGURATION_NAME, &PostParams::default(), &vwc)
            .await
            .unwrap();
        created.unwrap();
        // Hold the lock until the apiserver calls the webhook again, so the next
        // admission test does not meet the outage.
        wait_for(
            "the webhook to refuse again",
            Duration::from_secs(20),
            || {
                let api = api.clone();
                async move {
                    let dj = datajob(
                        "probe",
                        json!({"image": "busybox", "schedule": "0 1 * * *", "timeZone": "Mars/Olympus"}),
                    );
                    let dry_run = PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    };
                    Ok(match api.create(&dry_run, &dj).await {
                        Err(kube::Error::Api(e)) if e.message.contains("Mars/Olympus") => Some(()),
                        _ => None,
                    })
                }
            },
        )
        .await
        .unwrap();
    }
    let dj = state_is(&api, "slow", RunState::Invalid, Duration::from_secs(30))
        .await
        .unwrap();
    let status = dj.status.unwrap();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("spec.deadline"),
        "{status:?}"
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Invalid" && c.status == "True")
    );
    assert_eq!(status.reason.as_deref(), Some("Invalid"));
    wait_for_event(
        &client,
        ns.name(),
        "slow",
        "Invalid",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    assert!(
        cronjobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no CronJob"
    );
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no Job"
    );
}

#[tokio::test]
async fn reconciling_twice_or_restarting_never_creates_a_second_job() {
    let client = client().await;
    let ns = test_namespace(&client, "idempotent").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    // A second operator races the first one over the same DataJobs from the start:
    // without leader election, so both act (idempotency must not rest on the Lease).
    const ALONE: &[(&str, &str)] = &[("DATAJOB_LEADER_ELECT", "false")];
    let mut second = common::operator::spawn(ALONE).await;
    create(&api, &datajob("once", json!({"image": "busybox"}))).await;
    create(
        &api,
        &datajob(
            "every",
            json!({"image": "busybox", "schedule": "* * * * *"}),
        ),
    )
    .await;
    state_is(&api, "once", RunState::Succeeded, Duration::from_secs(60))
        .await
        .unwrap();
    // Restart it mid-life and poke the DataJobs so both reconcile again and again.
    second.stop().await;
    let mut second = common::operator::spawn(ALONE).await;
    for i in 0..5 {
        for name in ["once", "every"] {
            let patch =
                json!({"metadata": {"annotations": {"e2e.datajob.dev/poke": i.to_string()}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_object(
        &api,
        "every",
        "a scheduled run",
        Duration::from_secs(100),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == RunState::Succeeded)
        },
    )
    .await
    .unwrap();
    second.stop().await;

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let once = jobs.list(&selector("once")).await.unwrap().items;
    assert_eq!(
        once.len(),
        1,
        "one-off DataJob has exactly one Job: {:?}",
        once.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    let every = jobs.list(&selector("every")).await.unwrap().items;
    let mut times: Vec<String> = every
        .iter()
        .map(|j| {
            j.annotations()
                .get(LOGICAL_TIME)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let n = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), n, "one Job per logical time");
    let dj = api.get("once").await.unwrap();
    assert_eq!(dj.status.unwrap().recent_runs.len(), 1);
}

#[tokio::test]
async fn deleting_a_datajob_removes_its_cronjob_jobs_and_pods() {
    let client = client().await;
    let ns = test_namespace(&client, "delete").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &datajob("gone", json!({"image": "busybox", "schedule": "* * * * *"})),
    )
    .await;
    create(&api, &datajob("gone-once", json!({"image": "busybox"}))).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    wait_for("a Job of each DataJob", Duration::from_secs(100), || {
        let jobs = jobs.clone();
        async move {
            let a = jobs.list(&selector("gone")).await?.items.len();
            let b = jobs.list(&selector("gone-once")).await?.items.len();
            Ok((a > 0 && b > 0).then_some(()))
        }
    })
    .await
    .unwrap();
    for name in ["gone", "gone-once"] {
        api.delete(name, &DeleteParams::background()).await.unwrap();
    }
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    wait_for(
        "CronJob, Jobs and pods gone",
        Duration::from_secs(60),
        || {
            let (cronjobs, jobs, pods) = (cronjobs.clone(), jobs.clone(), pods.clone());
            async move {
                let left = cronjobs.list(&ListParams::default()).await?.items.len()
                    + jobs.list(&ListParams::default()).await?.items.len()
                    + pods.list(&ListParams::default()).await?.items.len();
                Ok((left == 0).then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

/// DataJob's docs allow 7 for Sunday, as standard cron does; Kubernetes' CronJob
/// validation does not. The CronJob gets 0, and the DataJob is scheduled.
#[tokio::test]
async fn a_sunday_written_as_seven_is_scheduled() {
    let client = client().await;
    let ns = test_namespace(&client, "sunday").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &datajob(
            "weekly",
            json!({"image": "busybox", "schedule": "0 12 * * 7"}),
        ),
    )
    .await;
    let dj = state_is(&api, "weekly", RunState::Scheduled, Duration::from_secs(30))
        .await
        .unwrap();
    let next = dj.status.unwrap().next_run.unwrap();
    let next = labels::parse_rfc3339(&next).unwrap();
    assert_eq!(next.format("%a %H:%M").to_string(), "Sun 12:00");
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let cj = cronjobs.get("weekly").await.unwrap();
    assert_eq!(cj.spec.schedule, "0 12 * * 0");
}

/// A child the apiserver refuses (here an admission policy of the cluster, as a platform
/// team would write one) shows on the DataJob with the apiserver's words, in
/// `kubectl get datajobs` and as a Warning event; once allowed, the run goes.
#[tokio::test]
async fn a_child_the_apiserver_refuses_shows_on_the_datajob() {
    use common::kubectl::kubectl;
    let client = client().await;
    let ns = test_namespace(&client, "refused").await;
    let policy = common::unique_name("e2e-freeze-batch");
    let policies = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
        )),
    );
    let bindings = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
        )),
    );
    let p: DynamicObject = common::from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs", "cronjobs"]}]},
            "validations": [{"expression": "false", "message": "batch work is frozen in this namespace"}]
        }
    }));
    policies.create(&PostParams::default(), &p).await.unwrap();
    let b: DynamicObject = common::from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {
            "policyName": policy, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name()}}}
        }
    }));
    bindings.create(&PostParams::default(), &b).await.unwrap();
    // The apiserver starts enforcing a new policy within a second or so.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    wait_for("the policy is enforced", Duration::from_secs(30), || async {
        let probe: Job = common::from_json(json!({
            "metadata": {"name": "probe"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }));
        let dry = PostParams { dry_run: true, ..Default::default() };
        Ok(jobs.create(&dry, &probe).await.is_err().then_some(()))
    })
    .await
    .unwrap();

    create(
        &api_in(&client, ns.name()),
        &datajob("report", json!({"image": "busybox"})),
    )
    .await;
    let api = api_in(&client, ns.name());
    let dj = wait_for_object(
        &api,
        "report",
        "ChildRejected",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("ChildRejected"),
    )
    .await
    .unwrap();
    let status = dj.status.unwrap();
    assert_eq!(status.state, Some(RunState::Invalid));
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("the apiserver refused the Job")
            && message.contains("batch work is frozen in this namespace"),
        "{message}"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ChildRejected")
    );
    wait_for_event(
        &client,
        ns.name(),
        "report",
        "ChildRejected",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let listed = kubectl(&["get", "datajobs", "-n", ns.name()], None);
    assert!(
        listed.ok && listed.stdout.contains("ChildRejected"),
        "{listed}"
    );

    // The platform team lifts the policy; the next reconcile (here: a change) runs it.
    bindings
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the policy is lifted", Duration::from_secs(30), || async {
        let probe: Job = common::from_json(json!({
            "metadata": {"name": "probe"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }));
        let dry = PostParams { dry_run: true, ..Default::default() };
        Ok(jobs.create(&dry, &probe).await.is_ok().then_some(()))
    })
    .await
    .unwrap();
    let poke = json!({"metadata": {"annotations": {"e2e.datajob.dev/poke": "1"}}});
    api.patch("report", &PatchParams::default(), &Patch::Merge(&poke))
        .await
        .unwrap();
    state_is(&api, "report", RunState::Succeeded, Duration::from_secs(60))
        .await
        .unwrap();
}

fn api_in(client: &kube::Client, ns: &str) -> Api<DataJob> {
    Api::namespaced(client.clone(), ns)
}

/// The same 2 MB env value at `kubectl apply`: refused by the webhook with the field and
/// the limit, not by etcd with an HTTP 500 (the review is larger than axum's default
/// body limit, so the webhook must read it). It needs the webhook registered as the
/// operator wrote it, so it waits while another test points it elsewhere.
#[tokio::test]
async fn an_oversized_datajob_is_refused_at_apply_with_the_field_and_the_limit() {
    let _guard = ADMISSION.lock().await;
    let client = client().await;
    let ns = test_namespace(&client, "oversized").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let dj = datajob(
        "big",
        json!({"image": "busybox", "env": [{"name": "BLOB", "value": "x".repeat(2_000_000)}]}),
    );
    let err = api
        .create(&PostParams::default(), &dj)
        .await
        .expect_err("refused");
    let kube::Error::Api(status) = err else {
        panic!("not an API refusal: {err}")
    };
    assert!(
        status.code == 400 || status.code == 403 || status.code == 422,
        "a refusal, not a server error: {status:?}"
    );
    assert!(
        status.message.contains("spec.env[0].value")
            && status.message.contains("32 KiB")
            && status.message.contains("valueFrom"),
        "{}",
        status.message
    );
}

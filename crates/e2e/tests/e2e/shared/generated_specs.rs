//! End-to-end: a sample of the generated specs of the property tests (tests/strategies),
//! on a real apiserver. Every spec the operator's validation admits has its CronJob or
//! Job built as the reconciler builds it and created with a server-side dry run, and so
//! has the pod the Job controller would make from it, in a namespace that enforces the
//! `restricted` Pod Security profile: big scratch disks (generic ephemeral volumes) and
//! node-group placement (node selector, tolerations) included. A refusal fails the test
//! and names the spec. crates/e2e/tests/e2e/shared/spellings.rs does the same for hand-made spellings.
//!
//! The sample is drawn with a fixed seed (`DATAJOB_SPECS_SEED` to change it;
//! `DATAJOB_SPECS_SAMPLE` for its size, default 400).

use crate::common;
use datajob_e2e::strategies;

use chrono::{TimeZone, Utc};
use common::{client, test_namespace};
use datajob_api::DataJob;
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::children::{self, Guards};
use datajob_core::decide::nodegroup::usable_groups;
use datajob_core::validation::Limits;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn seed() -> [u8; 32] {
    let n: u64 = std::env::var("DATAJOB_SPECS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

/// The pod the Job controller would create from `template` (its name is the Job's plus a
/// suffix; the operator's labels and annotations come along).
fn pod_of(job: &str, template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Pod {
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(format!("{job}-x7k2p"));
    Pod {
        metadata: meta,
        spec: template.spec.clone(),
        status: None,
    }
}

/// A DNS-1123 subdomain, the names the apiserver accepts for DataJobs.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[tokio::test]
async fn a_sample_of_generated_admitted_specs_and_their_pods_are_accepted_by_the_apiserver() {
    let client = client().await;
    let ns = test_namespace(&client, "generated").await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns.name());
    let dry = PostParams {
        dry_run: true,
        field_manager: Some("datajob-operator".into()),
    };
    let sample: usize = std::env::var("DATAJOB_SPECS_SAMPLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed()),
    );
    let specs = strategies::datajob(true);
    let node_groups = proptest::collection::vec(strategies::node_group(), 0..3);
    let (limits, guards) = (Limits::default(), Guards::default());
    let t = Utc
        .with_ymd_and_hms(2026, 11, 25, 3, 0, 0)
        .single()
        .expect("a time");
    let (mut tried, mut admitted, mut scheduled, mut placed, mut scratch_volumes) = (0, 0, 0, 0, 0);
    let mut refused = Vec::new();
    while admitted < sample && tried < sample * 20 {
        tried += 1;
        let mut dj: DataJob = specs.new_tree(&mut runner).expect("a spec").current();
        dj.metadata.namespace = Some(ns.name().to_string());
        let groups = node_groups.new_tree(&mut runner).expect("groups").current();
        let groups = usable_groups(groups.iter());
        // The apiserver hands the operator only DataJobs whose names it accepts.
        if !dns_subdomain(&dj.name_any()) {
            continue;
        }
        let Ok(r) = resolve_and_place(&dj, &limits, &guards, &groups) else {
            continue;
        };
        admitted += 1;
        // A service account the pod names must exist for the pod to be admitted (the
        // preflight warns at apply when it does not): make it, as its user would.
        if let Some(sa) = &r.service_account {
            let account: ServiceAccount =
                common::from_json(serde_json::json!({"metadata": {"name": sa}}));
            let _ = accounts.create(&PostParams::default(), &account).await;
        }
        placed += usize::from(r.placement.is_some());
        let what = serde_json::to_string(&dj.spec).unwrap_or_default();
        let job = children::job(&dj, &r, &guards, t, false);
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        if template
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.ephemeral.is_some()))
        {
            scratch_volumes += 1;
        }
        let result = match children::cronjob(&dj, &r, &guards) {
            Some(cj) => {
                scheduled += 1;
                cronjobs.create(&dry, &cj).await.map(|_| ())
            }
            None => jobs.create(&dry, &job).await.map(|_| ()),
        };
        if let Err(e) = result {
            refused.push(format!("{what}: {e}"));
            continue;
        }
        let job_name = job.metadata.name.clone().unwrap_or_default();
        if let Err(e) = pods.create(&dry, &pod_of(&job_name, &template)).await {
            refused.push(format!("the pod of {what}: {e}"));
        }
    }
    eprintln!(
        "generated specs: {tried} drawn, {admitted} admitted ({scheduled} scheduled, {placed} placed on a node group, {scratch_volumes} with a scratch volume), each CronJob or Job and its pod dry-run created in a restricted namespace; {} refused by the apiserver",
        refused.len()
    );
    assert!(
        admitted >= sample,
        "the generator admits enough: {admitted} of {tried}"
    );
    assert!(
        scratch_volumes > 0 && placed > 0 && scheduled > 0,
        "the sample covers scratch volumes, placement and schedules"
    );
    assert!(
        refused.is_empty(),
        "admitted, then refused by the apiserver:\n{}",
        refused.join("\n")
    );
}

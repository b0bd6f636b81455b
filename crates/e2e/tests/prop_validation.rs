//! Property tests of the whole validation, on generated DataJobs and NodeGroups
//! (proptest, see tests/strategies):
//!
//! * nothing panics, whatever the spec;
//! * `kubectl datajob plan` and the admission webhook give the same answer (valid or not,
//!   and the same words), and so does the reconciler's own check (`resolve_and_place`);
//! * every problem names a DataJob field;
//! * every admitted spec gets children Kubernetes would accept, as far as a pure check can
//!   tell: names and labels within Kubernetes' limits, the pod within the `restricted` Pod
//!   Security profile, and resources that read back exactly as resolved.
//!   `crates/e2e/tests/e2e/shared/generated_specs.rs` sends a sample of the same specs to a real apiserver.
//!
//! `PROPTEST_CASES=N` sets the number of cases (default below); `make fuzz` runs it long.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datajob_e2e::strategies;

use chrono::{TimeZone, Utc};
use datajob_api::DataJob;
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::children::{self, Guards};
use datajob_core::decide::nodegroup::{Group, usable_groups};
use datajob_core::resources::parse_quantity;
use datajob_core::validation::{Limits, resolve};
use datajob_operator::webhook::review_datajob;
use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kubectl_datajob::plan::plan;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::atomic::{AtomicUsize, Ordering};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The request the apiserver sends the webhook for creating `dj`.
fn admission_request(dj: &DataJob) -> AdmissionRequest<DataJob> {
    let review: AdmissionReview<DataJob> = serde_json::from_value(serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "datajob.dev", "version": "v1alpha1", "kind": "DataJob"},
            "resource": {"group": "datajob.dev", "version": "v1alpha1", "resource": "datajobs"},
            "name": dj.metadata.name,
            "namespace": dj.metadata.namespace,
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": dj,
            "dryRun": false,
        }
    }))
    .expect("an admission review of a generated DataJob");
    review.try_into().expect("a request in the review")
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .single()
        .expect("a valid time")
}

/// Runs `check` over `strategy` with [`cases`]; counts the cases it says `true` for.
fn run<S: Strategy>(
    strategy: S,
    default_cases: u32,
    check: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> (u32, usize) {
    let config = cases(default_cases);
    let total = config.cases;
    let counted = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        if check(v)? {
            counted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    (total, counted.into_inner())
}

#[test]
fn plan_admission_and_the_reconciler_always_give_the_same_answer() {
    let strategy = (
        prop_oneof![strategies::datajob(false), strategies::datajob(true)],
        proptest::collection::vec(strategies::node_group(), 0..3),
        1u64..48,
    );
    let (cases, allowed) = run(strategy, 1000, |(dj, node_groups, max_deadline_hours)| {
        let limits = Limits {
            max_deadline: std::time::Duration::from_secs(max_deadline_hours * 3600),
            ..Limits::default()
        };
        let guards = Guards::default();
        let groups: Vec<Group> = usable_groups(node_groups.iter());
        let admission = review_datajob(&admission_request(&dj), &limits, &guards, &groups);
        let planned = plan(
            &dj,
            "analytics",
            &limits,
            &guards,
            &Ok::<_, String>(groups.clone()),
            now(),
            (now(), 3),
        );
        let reconciler = resolve_and_place(&dj, &limits, &guards, &groups);
        prop_assert_eq!(admission.allowed, planned.valid);
        prop_assert_eq!(reconciler.is_ok(), planned.valid);
        if !admission.allowed {
            let plan_words: Vec<&str> = planned
                .problems
                .iter()
                .map(|p| p.message.as_str())
                .collect();
            prop_assert_eq!(&admission.result.message, &plan_words.join("\n"));
            let reconciler_words = reconciler.err().map(|p| p.to_string()).unwrap_or_default();
            prop_assert_eq!(&admission.result.message, &reconciler_words);
            for p in &planned.problems {
                prop_assert!(
                    p.field == "spec"
                        || p.field.starts_with("spec.")
                        || p.field.starts_with("metadata."),
                    "a problem names a DataJob field: {:?}",
                    p
                );
                prop_assert!(!p.problem.is_empty(), "{:?}", p);
            }
        }
        Ok(admission.allowed)
    });
    eprintln!(
        "plan = admission = reconciler: {cases} generated specs, {allowed} admitted, {} refused, the same words each time",
        cases as usize - allowed
    );
    assert!(
        allowed > 0 && allowed < cases as usize,
        "both answers were seen"
    );
}

#[test]
fn every_admitted_spec_gets_children_kubernetes_accepts() {
    let strategy = (
        strategies::datajob(true),
        proptest::collection::vec(strategies::node_group(), 0..3),
        0i64..(50 * 365 * 24 * 60),
    );
    let (cases, admitted) = run(strategy, 1000, |(dj, node_groups, minute)| {
        let (limits, guards) = (Limits::default(), Guards::default());
        // The apiserver hands the operator only DataJobs whose names it accepts.
        if !dns_subdomain(&dj.name_any()) {
            return Ok(false);
        }
        let groups = usable_groups(node_groups.iter());
        let Ok(r) = resolve_and_place(&dj, &limits, &guards, &groups) else {
            return Ok(false);
        };
        let t = Utc
            .timestamp_opt(minute * 60, 0)
            .single()
            .unwrap_or_else(now);
        let job = children::job(&dj, &r, &guards, t, false);
        let name = job.metadata.name.clone().unwrap_or_default();
        prop_assert!(
            name.len() <= 63 && dns_subdomain(&name),
            "Job name {:?}",
            name
        );
        check_labels(job.metadata.labels.as_ref())?;
        let spec = job.spec.as_ref().expect("a Job spec");
        let template = &spec.template;
        check_labels(template.metadata.as_ref().and_then(|m| m.labels.as_ref()))?;
        for key in template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            prop_assert!(qualified_key(key), "annotation key {:?}", key);
        }
        let pod = template.spec.as_ref().expect("a pod spec");
        for t in pod.tolerations.iter().flatten() {
            prop_assert!(
                matches!(
                    t.effect.as_deref(),
                    None | Some("NoSchedule" | "PreferNoSchedule" | "NoExecute")
                ),
                "toleration {:?}",
                t
            );
        }
        let violations = restricted_violations(pod);
        prop_assert!(
            violations.is_empty(),
            "restricted refuses the pod of {:?}: {:?}",
            dj.spec,
            violations
        );
        // The pod asks for exactly what was resolved (placement and cost count that).
        let requests = pod.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        prop_assert_eq!(
            parse_quantity(&requests["cpu"].0),
            Ok(i128::from(r.cpu_millis) * 1_000_000)
        );
        prop_assert_eq!(
            parse_quantity(&requests["memory"].0),
            Ok(i128::from(r.memory_bytes) * 1_000_000_000)
        );
        // The pod, its Job and the DataJob each carry the spec: well under etcd's limit.
        let size = serde_json::to_vec(&job)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        prop_assert!(size < 1_000_000, "a Job of {} bytes", size);
        if let Some(cj) = children::cronjob(&dj, &r, &guards) {
            let name = cj.metadata.name.clone().unwrap_or_default();
            prop_assert!(
                name.len() <= 52 && dns_subdomain(&name),
                "CronJob name {:?}",
                name
            );
            prop_assert!(
                cj.spec.schedule.split_whitespace().count() == 5
                    || cj.spec.schedule.starts_with('@')
            );
            let deadline = cj.spec.starting_deadline_seconds.unwrap_or_default();
            prop_assert!((60..=3600).contains(&deadline), "{}", deadline);
            let pod = cj
                .spec
                .job_template
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("a pod spec");
            prop_assert!(restricted_violations(pod).is_empty());
        }
        Ok(true)
    });
    eprintln!(
        "children: {cases} generated specs, {admitted} admitted, each one's Job (and CronJob) within Kubernetes' limits and the restricted profile"
    );
    assert!(
        admitted * 5 >= cases as usize,
        "the generator gets specs admitted: {admitted} of {cases}"
    );
}

/// The fastest of three runs of `f`: the cost of the work, not of a busy machine.
fn fastest<T>(mut f: impl FnMut() -> T) -> std::time::Duration {
    (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            std::hint::black_box(f());
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Issue 25 ("expensive input"): validating any DataJob the CRD admits, and the webhook's
/// answer (validation, placement and the inputs against a namespace of 2000 DataJobs
/// named one edit from them), each take under 50 ms in a release build (`make unit` runs
/// this test with `--release`). A debug build runs it too, with 2 s (10× slower code, and
/// what matters there is that it ends). Before the bounds, linear checks and the bounded
/// suggestions, 64 inputs against 1000 near-miss names took 650 ms.
#[test]
fn validating_a_datajob_at_the_crds_bounds_takes_under_50_ms() {
    use datajob_api::bounds;
    let bound = match cfg!(debug_assertions) {
        false => std::time::Duration::from_millis(50),
        true => std::time::Duration::from_secs(2),
    };
    let slowest = std::sync::Mutex::new((std::time::Duration::ZERO, std::time::Duration::ZERO));
    let (cases, _) = run(strategies::maximal_datajob(), 32, |(dj, namespace)| {
        // What the CRD admits: every list within its maxItems.
        let spec = &dj.spec;
        prop_assert!(
            spec.env.len() <= bounds::MAX_ENV_ITEMS && spec.inputs.len() <= bounds::MAX_INPUTS
        );
        prop_assert!(
            spec.args.len() <= bounds::MAX_ARGS_ITEMS
                && spec.command.len() <= bounds::MAX_COMMAND_ITEMS
        );
        prop_assert!(
            spec.pod_annotations.len() <= bounds::MAX_POD_ANNOTATIONS
                && spec.params.len() <= bounds::MAX_PARAMS
        );
        let (limits, guards) = (Limits::default(), Guards::default());
        let others: Vec<(String, Vec<String>)> = namespace
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), namespace[i.saturating_sub(2)..i].to_vec()))
            .collect();
        let request = admission_request(&dj);
        let validated = fastest(|| resolve(&dj, &limits));
        let answered = fastest(|| {
            let answer = review_datajob(&request, &limits, &guards, &[]);
            let graph = datajob_core::decide::dataflow::check_graph(
                "maximal",
                "analytics",
                &dj.spec.inputs,
                &others,
            );
            (answer, graph)
        });
        if let Ok(mut s) = slowest.lock() {
            *s = (s.0.max(validated), s.1.max(answered));
        }
        prop_assert!(validated < bound, "validation took {:?}", validated);
        prop_assert!(answered < bound, "the webhook's answer took {:?}", answered);
        Ok(true)
    });
    let (validated, answered) = slowest.into_inner().unwrap_or_default();
    eprintln!(
        "{cases} DataJobs at the CRD's bounds: validation at most {validated:?}, the webhook's answer at most {answered:?} (bound {bound:?})"
    );
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn validation_never_panics_on_anything(dj in strategies::datajob(false)) {
        let _ = resolve(&dj, &Limits::default());
    }
}

/// A DNS-1123 label: what every part of a Kubernetes object name is.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name 1–63
/// characters of `[A-Za-z0-9._-]` starting and ending alphanumeric.
fn qualified_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let b = name.as_bytes();
    let name_ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(dns_subdomain)
}

/// A DNS-1123 subdomain: the names the apiserver accepts for DataJobs, Jobs and CronJobs.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

fn check_labels(
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), TestCaseError> {
    for (k, v) in labels.into_iter().flatten() {
        let value_ok = v.len() <= 63
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && (v.is_empty()
                || (v.as_bytes()[0].is_ascii_alphanumeric()
                    && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric()));
        prop_assert!(value_ok, "label {k}={v:?}");
    }
    Ok(())
}

/// What the `restricted` Pod Security profile (Kubernetes 1.36, "latest") refuses in a pod,
/// checked without an apiserver: the volume types, privilege escalation, capabilities,
/// running as non-root (not as uid 0), the seccomp profile, host namespaces and ports.
fn restricted_violations(pod: &PodSpec) -> Vec<String> {
    let mut v = Vec::new();
    let psc = pod.security_context.as_ref();
    for vol in pod.volumes.iter().flatten() {
        let allowed = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        if !allowed {
            v.push(format!("volume {} of a restricted type", vol.name));
        }
    }
    if pod.host_network == Some(true) || pod.host_pid == Some(true) || pod.host_ipc == Some(true) {
        v.push("host namespaces".into());
    }
    let pod_non_root = psc.and_then(|s| s.run_as_non_root);
    let pod_seccomp = psc
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.clone());
    if psc.and_then(|s| s.run_as_user) == Some(0) {
        v.push("pod runAsUser 0".into());
    }
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for c in containers {
        let sc = c.security_context.as_ref();
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            v.push(format!("{}: allowPrivilegeEscalation is not false", c.name));
        }
        if sc.and_then(|s| s.privileged) == Some(true) {
            v.push(format!("{}: privileged", c.name));
        }
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        if !caps
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        {
            v.push(format!("{}: capabilities do not drop ALL", c.name));
        }
        if caps
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"))
        {
            v.push(format!("{}: adds capabilities", c.name));
        }
        let non_root = sc.and_then(|s| s.run_as_non_root).or(pod_non_root);
        if non_root != Some(true) {
            v.push(format!("{}: runAsNonRoot is not true", c.name));
        }
        if sc.and_then(|s| s.run_as_user) == Some(0) {
            v.push(format!("{}: runAsUser 0", c.name));
        }
        let seccomp = sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.clone())
            .or(pod_seccomp.clone());
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{}: seccomp profile {seccomp:?}", c.name));
        }
        for p in c.ports.iter().flatten() {
            if p.host_port.is_some_and(|h| h != 0) {
                v.push(format!("{}: hostPort", c.name));
            }
        }
    }
    v
}

//! End-to-end tests of the Helm chart (`charts/datajob`) on the local control plane:
//! it lints, what it renders is accepted by the real apiserver, bad values are refused
//! with the value's name, install + upgrade + uninstall leave nothing behind (and an
//! upgrade keeps what the operator wrote at run time), and its ServiceAccount has the
//! operator's permissions and no more. Run with
//!   bash e2e/run-e2e.sh cargo test -p datajob-e2e --features e2e --test e2e -- alone::chart:: --test-threads=2
//! Helm comes from `$HELM` or `bash e2e/tools.sh`; kubectl from `$KUBECTL` or the PATH
//! (e2e/run-e2e.sh puts the cluster's kubectl there).
//!
//! Releases get unique names and their own webhook configuration name, so they never
//! touch the `datajob.dev` configuration of the operator the other tests run; their
//! webhook points at `https://127.0.0.1:1` (refused at once), so while a release exists
//! other tests' DataJobs are admitted without waiting for a timeout.

use crate::common;

/// CRD upgrades through the datajob-crds chart.
mod crd_upgrade;
/// What Argo CD and Flux do: `helm template` applied with server-side apply.
mod gitops;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{client, test_namespace, unique_name};
use datajob_operator::webhook::tls::{Endpoint, configuration};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// A webhook address that refuses connections at once (see the module doc).
const NOWHERE: &str = "https://127.0.0.1:1";

// ---- running helm and kubectl ---------------------------------------------------------

fn chart() -> String {
    format!("{ROOT}/charts/datajob")
}

/// `$HELM`, or the helm that `e2e/tools.sh` builds (once, cached).
fn helm() -> &'static str {
    static HELM: OnceLock<String> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Ok(h) = std::env::var("HELM") {
            return h;
        }
        let out = Command::new("bash")
            .arg(format!("{ROOT}/e2e/tools.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run e2e/tools.sh");
        assert!(out.status.success(), "e2e/tools.sh failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let bin = stdout
            .lines()
            .last()
            .expect("tools.sh prints its bin directory");
        format!("{}/helm", bin.trim())
    })
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run_with(program: &str, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_string();
        // From a thread: a large input must not block against a full stdout pipe.
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let out = child.wait_with_output().expect("wait for the command");
    if let Some(w) = writer {
        let _ = w.join();
    }
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Out {
    run_with(program, args, stdin, &[])
}

fn helm_run(args: &[&str]) -> Out {
    run(helm(), args, None)
}

fn kubectl_run(args: &[&str], stdin: Option<&str>) -> Out {
    run(&kubectl(), args, stdin)
}

/// The command's stdout; panics with its output when it failed.
fn must(out: Out, what: &str) -> String {
    assert!(
        out.ok,
        "{what} failed:\n--- stderr\n{}\n--- stdout\n{}",
        out.stderr, out.stdout
    );
    out.stdout
}

/// `helm template <release> <chart> -n <ns> <args…>`.
fn template(release: &str, ns: &str, args: &[&str]) -> Out {
    let (chart, version) = (chart(), common::kube_version());
    let mut all = vec!["template", release, chart.as_str(), "--namespace", ns];
    all.extend_from_slice(&["--kube-version", version.as_str()]);
    all.extend_from_slice(args);
    helm_run(&all)
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("the chart renders valid YAML");
    docs.into_iter().filter(|v| !v.is_null()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The name prefix the chart gives a release that does not contain "datajob".
fn fullname(release: &str) -> String {
    format!("{release}-datajob")
}

/// Values every release of these tests gets: its own webhook configuration (reached at
/// an address that refuses at once), and pods on the kwok nodes.
fn isolated(configuration: &str) -> Vec<String> {
    vec![
        "--set-string".into(),
        format!("webhook.configurationName={configuration}"),
        "--set-string".into(),
        format!("webhook.url={NOWHERE}"),
        "--set-string".into(),
        "nodeSelector.type=kwok".into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Labels a namespace so that the restricted Pod Security Standard is enforced (pods
/// that break it are refused) and warned about (workloads that would break it).
fn restrict(ns: &str) {
    must(
        kubectl_run(
            &[
                "label",
                "namespace",
                ns,
                "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted",
                "--overwrite",
            ],
            None,
        ),
        "kubectl label namespace",
    );
}

/// A Helm release that is uninstalled, and whose cluster-scoped objects are deleted,
/// when the test ends, also when it fails (declare it after the namespace guard, so it
/// goes first).
struct Release {
    name: String,
    ns: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm_run(&["uninstall", &self.name, "--namespace", &self.ns]);
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let _ = kubectl_run(
            &[
                "delete",
                "clusterrole,clusterrolebinding,validatingwebhookconfiguration",
                "-l",
                &selector,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}

// ---- what is in the cluster ---------------------------------------------------------------

/// Every object in the cluster (every kind that can be listed, every namespace) that
/// carries the release's `app.kubernetes.io/instance` label, or whose name contains the
/// release name or is one of `names`, as `Kind namespace/name`. Events are left out:
/// they are reports about objects, not objects anyone installed, and go with their
/// namespace.
fn objects_of(release: &str, names: &[&str]) -> BTreeSet<String> {
    let listable = must(
        kubectl_run(&["api-resources", "--verbs=list", "-o", "name"], None),
        "kubectl api-resources",
    );
    let kinds: Vec<&str> = listable
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty() && *k != "events" && *k != "events.events.k8s.io")
        .collect();
    let out = kubectl_run(&["get", &kinds.join(","), "-A", "-o", "json"], None);
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kubectl get of every kind printed no JSON ({e}):\n{}",
            out.stderr
        )
    });
    list["items"]
        .as_array()
        .expect("a List")
        .iter()
        .filter(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            o["metadata"]["labels"]["app.kubernetes.io/instance"] == release
                || name.contains(release)
                || names.contains(&name)
        })
        .map(|o| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn get_json(args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = must(
        kubectl_run(&all, None),
        &format!("kubectl {}", all.join(" ")),
    );
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

/// `kubectl auth can-i <args> --as <user>`: true for "yes".
fn can(user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--as", user]);
    let out = kubectl_run(&all, None);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl {} answered {other:?}: {}",
            all.join(" "),
            out.stderr
        ),
    }
}

/// Checks (question, expected answer) for `user`; fails listing every wrong answer.
fn assert_permissions(user: &str, checks: &[(Vec<&str>, bool)]) {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(args, want)| can(user, args) != *want)
        .map(|(args, want)| {
            format!(
                "can-i {} should be {}",
                args.join(" "),
                if *want { "yes" } else { "no" }
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{user} has wrong permissions:\n  {}",
        wrong.join("\n  ")
    );
}

/// A SubjectAccessReview: may `user` (a ServiceAccount) do `verb` on `group`
/// `resource`/`subresource` in `ns`? For kinds the cluster does not serve (Cluster API),
/// where `kubectl auth can-i` cannot resolve the resource and answers "no".
fn review(
    user: &str,
    ns: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    verb: &str,
) -> bool {
    let sa_ns = user.split(':').nth(2).unwrap_or_default();
    let request = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{sa_ns}"), "system:authenticated"],
            "resourceAttributes": {"group": group, "resource": resource, "subresource": subresource,
                                   "verb": verb, "namespace": ns},
        },
    });
    let out = must(
        kubectl_run(
            &["create", "-o", "json", "-f", "-"],
            Some(&request.to_string()),
        ),
        "a SubjectAccessReview",
    );
    let answer: Value = serde_json::from_str(&out).expect("the review in JSON");
    answer["status"]["allowed"] == true
}

/// get and patch of the scale of MachineDeployments and MachinePools; list and patch of
/// Machines (the delete-machine mark before a scale-down).
fn cluster_api(user: &str, ns: &str) -> [bool; 6] {
    let g = "cluster.x-k8s.io";
    [
        review(user, ns, g, "machinedeployments", "scale", "get"),
        review(user, ns, g, "machinedeployments", "scale", "patch"),
        review(user, ns, g, "machinepools", "scale", "get"),
        review(user, ns, g, "machinepools", "scale", "patch"),
        review(user, ns, g, "machines", "", "list"),
        review(user, ns, g, "machines", "", "patch"),
    ]
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_in_every_mode() {
    let modes: [(&str, &[&str]); 6] = [
        ("defaults", &[]),
        (
            "ServiceMonitor",
            &["--set", "metrics.serviceMonitor.enabled=true"],
        ),
        (
            "cert-manager, self-signed",
            &["--set", "webhook.certManager.enabled=true"],
        ),
        (
            "cert-manager, given issuer",
            &[
                "--set",
                "webhook.certManager.enabled=true",
                "--set",
                "webhook.certManager.issuerRef.name=platform-ca",
                "--set",
                "webhook.certManager.issuerRef.kind=ClusterIssuer",
            ],
        ),
        (
            "kwok and Cluster API providers, webhook by URL",
            &[
                "--set",
                "rbac.kwokNodes=true",
                "--set",
                "rbac.clusterAPI=true",
                "--set",
                "webhook.url=https://10.0.0.1:9443",
            ],
        ),
        (
            "one replica, no leader election, no webhook",
            &[
                "--set",
                "replicas=1",
                "--set",
                "leaderElection.enabled=false",
                "--set",
                "webhook.enabled=false",
            ],
        ),
    ];
    let (chart, version) = (chart(), common::kube_version());
    for (mode, args) in modes {
        let mut all = vec![
            "lint",
            "--strict",
            chart.as_str(),
            "--kube-version",
            &version,
        ];
        all.extend_from_slice(args);
        let out = must(helm_run(&all), &format!("helm lint ({mode})"));
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint ({mode}) did not pass:\n{out}"
        );
    }
}

#[tokio::test]
async fn rendered_chart_is_accepted_by_the_apiserver() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-dry-run").await;
    restrict(ns.name());
    let release = unique_name("djd");
    let configuration = format!("{release}.datajob.dev");
    // helm's own --dry-run=server does not validate (helm#12510): kubectl's does.
    let modes: Vec<(&str, Vec<String>)> = vec![
        (
            "defaults (webhook through its Service)",
            vec![
                "--set-string".into(),
                format!("webhook.configurationName={configuration}"),
            ],
        ),
        ("kwok and Cluster API providers, webhook by URL", {
            let mut v = isolated(&configuration);
            v.extend(
                [
                    "--set",
                    "rbac.kwokNodes=true",
                    "--set",
                    "rbac.clusterAPI=true",
                ]
                .map(String::from),
            );
            v
        }),
        ("one replica, no leader election", {
            let mut v = isolated(&configuration);
            v.extend(
                [
                    "--set",
                    "replicas=1",
                    "--set",
                    "leaderElection.enabled=false",
                ]
                .map(String::from),
            );
            v
        }),
        ("no webhook", {
            let mut v = isolated(&configuration);
            v.extend(["--set", "webhook.enabled=false"].map(String::from));
            v
        }),
        ("every pod option", {
            let mut v = isolated(&configuration);
            v.extend(
                [
                    "--set", "image.repository=registry.example.com/platform/datajob-operator",
                    "--set", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "--set", "image.pullPolicy=Always",
                    "--set", "image.pullSecrets[0]=regcred",
                    "--set", "tolerations[0].key=dedicated,tolerations[0].operator=Equal,tolerations[0].value=platform,tolerations[0].effect=NoSchedule",
                    "--set", "podAnnotations.team=platform",
                    "--set", "podLabels.team=platform",
                    "--set", "extraEnv[0].name=EXTRA,extraEnv[0].value=on",
                    "--set", "extraArgs[0]=--log-json",
                    "--set-string", "settings.scratchStorageClass=fast",
                    "--set", "logging.json=true",
                    "--set", "terminationGracePeriodSeconds=45",
                    "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
                    "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=type",
                    "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=Exists",
                ]
                .map(String::from),
            );
            v
        }),
    ];
    let full = fullname(&release);
    for (mode, args) in modes {
        let manifest = must(
            template(&release, ns.name(), &strs(&args)),
            &format!("helm template ({mode})"),
        );
        let docs = documents(&manifest);
        assert!(
            kinds(&docs).contains("Deployment"),
            "{mode}: no Deployment rendered"
        );
        let out = kubectl_run(
            &[
                "apply",
                "--dry-run=server",
                "--namespace",
                ns.name(),
                "-f",
                "-",
            ],
            Some(&manifest),
        );
        assert!(
            out.ok,
            "{mode}: the apiserver refused the rendered chart:\n{}\n{}",
            out.stderr, out.stdout
        );
        assert!(
            out.stdout
                .contains(&format!("deployment.apps/{full} created (server dry run)")),
            "{mode}: the Deployment was not part of the dry run:\n{}",
            out.stdout
        );
        // The namespace warns about the restricted Pod Security Standard.
        assert!(
            !out.stderr.contains("PodSecurity"),
            "{mode}: the pods would break the restricted Pod Security Standard:\n{}",
            out.stderr
        );
        assert_eq!(
            out.stdout.lines().count(),
            docs.len(),
            "{mode}: every rendered object is in the dry run:\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn bad_values_are_refused_with_the_name_of_the_value() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-bad-values").await;
    let release = unique_name("djb");
    let _guard = Release {
        name: release.clone(),
        ns: ns.name().into(),
    };
    let cases: [(&[&str], &str); 8] = [
        (&["--set", "replicas=0"], "/replicas"),
        (
            &["--set-string", "leaderElection.leaseDuration=15 seconds"],
            "/leaderElection/leaseDuration",
        ),
        (
            &["--set-string", "settings.pvcGrace=0s"],
            "/settings/pvcGrace",
        ),
        (&["--set", "replicaCount=3"], "replicaCount"),
        (&["--set", "webhook.certManager.enbled=true"], "enbled"),
        (
            &["--set", "webhook.failurePolicy=Sometimes"],
            "/webhook/failurePolicy",
        ),
        (
            &["--set-string", "leaderElection.renewDeadline=20s"],
            "renewDeadline (20s)",
        ),
        (
            &["--set", "leaderElection.enabled=false"],
            "leaderElection.enabled",
        ),
    ];
    let chart = chart();
    for (args, named) in cases {
        let rendered = template(&release, ns.name(), args);
        assert!(!rendered.ok, "helm template {args:?} was accepted");
        assert!(
            rendered.stderr.contains(named),
            "helm template {args:?} failed without naming {named}:\n{}",
            rendered.stderr
        );
        let mut install = vec![
            "install",
            &release,
            chart.as_str(),
            "--namespace",
            ns.name(),
        ];
        install.extend_from_slice(args);
        let installed = helm_run(&install);
        assert!(!installed.ok, "helm install {args:?} was accepted");
        assert!(
            installed.stderr.contains(named),
            "helm install {args:?} failed without naming {named}:\n{}",
            installed.stderr
        );
        let releases = must(
            helm_run(&["list", "--all", "--short", "--namespace", ns.name()]),
            "helm list",
        );
        assert!(
            releases.trim().is_empty(),
            "after the failed install {args:?} a release exists: {releases}"
        );
        // Helm installs crds/ before it checks values (the CRDs may stay); nothing else.
        let left = objects_of(&release, &[]);
        assert!(
            left.is_empty(),
            "after the failed install {args:?} these exist: {left:?}"
        );
    }
}

#[tokio::test]
async fn install_upgrade_and_uninstall_leave_nothing_behind() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-install").await;
    // Pods are admitted only if they meet the restricted Pod Security Standard.
    restrict(ns.name());
    let release = unique_name("dji");
    let guard = Release {
        name: release.clone(),
        ns: ns.name().into(),
    };
    let configuration = format!("{release}.datajob.dev");
    let full = fullname(&release);
    let secret = format!("{full}-webhook-cert");
    let lease = "datajob-operator";
    let n = ns.name();

    let before = objects_of(&release, &[&configuration]);
    assert!(before.is_empty(), "before the install: {before:?}");

    let chart = chart();
    let values = isolated(&configuration);
    let mut install = vec![
        "install",
        &release,
        chart.as_str(),
        "--namespace",
        n,
        "--wait",
        "--timeout",
        "180s",
    ];
    install.extend(strs(&values));
    must(helm_run(&install), "helm install");

    let installed = objects_of(&release, &[&configuration]);
    let expected = [
        format!("Deployment {n}/{full}"),
        format!("ServiceAccount {n}/{full}"),
        format!("ClusterRole /{full}"),
        format!("ClusterRole /{full}-view"),
        format!("ClusterRole /{full}-edit"),
        format!("ClusterRoleBinding /{full}"),
        format!("Role {n}/{full}"),
        format!("RoleBinding {n}/{full}"),
        format!("Service {n}/{full}-webhook"),
        format!("Service {n}/{full}-metrics"),
        format!("PodDisruptionBudget {n}/{full}"),
        format!("NetworkPolicy {n}/{full}"),
        format!("ValidatingWebhookConfiguration /{configuration}"),
        format!("Secret {n}/{secret}"),
        format!("Lease {n}/{lease}"),
        format!("Secret {n}/sh.helm.release.v1.{release}.v1"),
    ];
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !installed.contains(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "not installed: {missing:?}; installed: {installed:?}"
    );

    // Namespace users get DataJob rights through Kubernetes' own roles: `view` reads,
    // `edit` writes, neither touches status or NodeGroups. The controller-manager
    // aggregates the chart's roles into them within seconds.
    for (user, role) in [("ana-viewer", "view"), ("ben-editor", "edit")] {
        must(
            kubectl_run(
                &[
                    "create",
                    "rolebinding",
                    user,
                    "--clusterrole",
                    role,
                    "--user",
                    user,
                    "-n",
                    n,
                ],
                None,
            ),
            "kubectl create rolebinding",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(can("ana-viewer", &["list", "datajobs.datajob.dev", "-n", n])
        && can("ben-editor", &["create", "datajobs.datajob.dev", "-n", n]))
    {
        assert!(
            Instant::now() < deadline,
            "view and edit did not get the chart's DataJob rules in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ask = |verb: &'static str, what: &'static str| vec![verb, what, "-n", n];
    assert_permissions(
        "ana-viewer",
        &[
            (ask("get", "datajobs.datajob.dev"), true),
            (ask("watch", "backfills.datajob.dev"), true),
            (ask("create", "datajobs.datajob.dev"), false),
            (ask("delete", "backfills.datajob.dev"), false),
            (ask("list", "nodegroups.datajob.dev"), false),
        ],
    );
    assert_permissions(
        "ben-editor",
        &[
            (ask("create", "datajobs.datajob.dev"), true),
            (ask("patch", "datajobs.datajob.dev"), true),
            (ask("delete", "backfills.datajob.dev"), true),
            (
                vec![
                    "patch",
                    "datajobs.datajob.dev",
                    "--subresource=status",
                    "-n",
                    n,
                ],
                false,
            ),
            (ask("create", "nodegroups.datajob.dev"), false),
        ],
    );

    // Two replicas, on two nodes (the cluster has two untainted kwok nodes).
    let pods = get_json(&[
        "pods",
        "-n",
        n,
        "-l",
        "app.kubernetes.io/component=operator",
    ]);
    let nodes: BTreeSet<&str> = pods["items"]
        .as_array()
        .expect("pods")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(nodes.len(), 2, "the two replicas share a node: {pods}");

    // What the operator writes at run time, as it writes it: the certificate into the
    // Secret, its identity into the Lease, and the webhook configuration by server-side
    // apply (the same fields as the chart, plus the CA bundle: crates/operator/src/webhook/tls.rs).
    let cert = json!({"data": {"ca.crt": "Q0E=", "tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}});
    must(
        kubectl_run(
            &[
                "patch",
                "secret",
                &secret,
                "-n",
                n,
                "--type",
                "merge",
                "--field-manager",
                "datajob-operator",
                "-p",
                &cert.to_string(),
            ],
            None,
        ),
        "write the certificate",
    );
    let holder = json!({"spec": {"holderIdentity": "operator-0_1", "leaseDurationSeconds": 15}});
    must(
        kubectl_run(
            &[
                "patch",
                "lease",
                lease,
                "-n",
                n,
                "--type",
                "merge",
                "--field-manager",
                "datajob-operator",
                "-p",
                &holder.to_string(),
            ],
            None,
        ),
        "take the Lease",
    );
    let chart_webhook =
        get_json(&["validatingwebhookconfiguration", &configuration])["webhooks"][0].clone();
    // Exactly what the operator applies (crates/operator/src/webhook/tls.rs `configuration`), CA "CA".
    let applied = serde_json::to_value(self::configuration(
        &configuration,
        &Endpoint::Url(NOWHERE.into()),
        "CA",
        "Ignore",
    ))
    .expect("the configuration serializes");
    must(
        kubectl_run(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "datajob-operator",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&applied.to_string()),
        ),
        "apply the webhook configuration as the operator does",
    );
    let mut operator_webhook =
        get_json(&["validatingwebhookconfiguration", &configuration])["webhooks"][0].clone();
    assert_eq!(operator_webhook["clientConfig"]["caBundle"], "Q0E=");
    if let Some(c) = operator_webhook["clientConfig"].as_object_mut() {
        c.remove("caBundle");
    }
    assert_eq!(
        operator_webhook, chart_webhook,
        "the operator's apply changed the chart's webhook beyond the CA bundle"
    );

    // An upgrade changes what it should (a pod annotation) and keeps what the operator
    // wrote: Helm's three-way merge leaves the caBundle and the Lease's spec alone, and
    // the Secret template renders no data.
    let mut upgrade = vec![
        "upgrade",
        &release,
        chart.as_str(),
        "--namespace",
        n,
        "--reuse-values",
        "--set-string",
        "podAnnotations.upgraded=yes",
        "--wait",
        "--timeout",
        "180s",
    ];
    upgrade.extend(strs(&values));
    must(helm_run(&upgrade), "helm upgrade");
    let deployment = get_json(&["deployment", &full, "-n", n]);
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["upgraded"], "yes",
        "the upgrade did not reach the Deployment"
    );
    let kept = get_json(&["secret", &secret, "-n", n]);
    assert_eq!(
        kept["data"], cert["data"],
        "the upgrade changed the certificate Secret"
    );
    let kept = get_json(&["lease", lease, "-n", n]);
    assert_eq!(
        kept["spec"]["holderIdentity"], "operator-0_1",
        "the upgrade changed the Lease: {kept}"
    );
    let kept = get_json(&["validatingwebhookconfiguration", &configuration]);
    assert_eq!(
        kept["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=",
        "the upgrade dropped the CA bundle: {kept}"
    );

    must(
        helm_run(&[
            "uninstall",
            &release,
            "--namespace",
            n,
            "--wait",
            "--timeout",
            "120s",
        ]),
        "helm uninstall",
    );
    // ReplicaSets, pods and endpoint slices go through the garbage collector: wait.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut left = objects_of(&release, &[&configuration]);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = objects_of(&release, &[&configuration]);
    }
    assert!(left.is_empty(), "left behind by helm uninstall: {left:?}");
    drop(guard);
}

#[tokio::test]
async fn service_account_has_the_operators_permissions_and_no_more() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-rbac").await;
    let release = unique_name("djr");
    let _guard = Release {
        name: release.clone(),
        ns: ns.name().into(),
    };
    let configuration = format!("{release}.datajob.dev");
    let full = fullname(&release);
    let n = ns.name();
    let chart = chart();
    let values = isolated(&configuration);
    let mut install = vec!["install", &release, chart.as_str(), "--namespace", n];
    install.extend(strs(&values));
    must(helm_run(&install), "helm install");

    let user = format!("system:serviceaccount:{n}:{full}");
    let secret = format!("secrets/{full}-webhook-cert");
    let vwc = format!("validatingwebhookconfigurations/{configuration}");
    let never: Vec<(Vec<&str>, bool)> = vec![
        // No Secret outside its own, anywhere.
        (vec!["get", "secrets", "-n", "default"], false),
        (vec!["list", "secrets", "-n", "default"], false),
        (vec!["watch", "secrets", "-n", "default"], false),
        (vec!["get", "secrets", "-A"], false),
        (vec!["list", "secrets", "-A"], false),
        (vec!["watch", "secrets", "-A"], false),
        (vec!["list", "secrets", "-n", n], false),
        (vec!["get", "secrets/another", "-n", n], false),
        // Preflight (on by default): ConfigMaps and service accounts by name only.
        (vec!["get", "configmaps", "-A"], true),
        (vec!["list", "configmaps", "-A"], false),
        (vec!["watch", "configmaps", "-A"], false),
        (vec!["get", "serviceaccounts", "-A"], true),
        (vec!["list", "serviceaccounts", "-A"], false),
        // Its own certificate Secret and Lease, by name.
        (vec!["get", &secret, "-n", n], true),
        (vec!["update", &secret, "-n", n], true),
        (vec!["create", "secrets", "-n", n], true),
        (vec!["get", "leases/datajob-operator", "-n", n], true),
        (vec!["update", "leases/datajob-operator", "-n", n], true),
        (vec!["update", "leases/another", "-n", n], false),
        (vec!["delete", "leases/datajob-operator", "-n", n], false),
        // The webhook configuration: the chart creates it, the operator patches it.
        (vec!["create", "validatingwebhookconfigurations"], false),
        (vec!["patch", &vwc], true),
        (vec!["get", &vwc], true),
        (vec!["delete", &vwc], false),
        (
            vec!["patch", "validatingwebhookconfigurations/another"],
            false,
        ),
        // DataJobs: read, status written; never changed or deleted.
        (vec!["list", "datajobs.datajob.dev", "-A"], true),
        (vec!["get", "datajobs.datajob.dev", "-A"], false),
        (vec!["watch", "datajobs.datajob.dev", "-A"], true),
        (
            vec![
                "patch",
                "datajobs.datajob.dev",
                "--subresource=status",
                "-A",
            ],
            true,
        ),
        (vec!["patch", "datajobs.datajob.dev", "-A"], false),
        (vec!["delete", "datajobs.datajob.dev", "-A"], false),
        // Backfills: read from a watch, status written; never changed, created or deleted.
        (vec!["list", "backfills.datajob.dev", "-A"], true),
        (vec!["watch", "backfills.datajob.dev", "-A"], true),
        (
            vec![
                "patch",
                "backfills.datajob.dev",
                "--subresource=status",
                "-A",
            ],
            true,
        ),
        (vec!["patch", "backfills.datajob.dev", "-A"], false),
        (vec!["create", "backfills.datajob.dev", "-A"], false),
        (vec!["delete", "backfills.datajob.dev", "-A"], false),
        (
            vec!["patch", "nodegroups.datajob.dev", "--subresource=status"],
            true,
        ),
        (vec!["delete", "nodegroups.datajob.dev"], false),
        // Children: applied (patch), deleted; pods and PVCs only read, PVCs deleted.
        (vec!["create", "cronjobs.batch", "-A"], true),
        (vec!["patch", "cronjobs.batch", "-A"], true),
        (vec!["update", "cronjobs.batch", "-A"], false),
        (vec!["delete", "cronjobs.batch", "-A"], true),
        (vec!["create", "jobs.batch", "-A"], true),
        (vec!["patch", "jobs.batch", "-A"], true),
        (vec!["get", "jobs.batch", "-A"], false),
        (vec!["delete", "jobs.batch", "-A"], true),
        (vec!["list", "pods", "-A"], true),
        (vec!["delete", "pods", "-A"], false),
        (vec!["create", "pods", "-A"], false),
        (vec!["patch", "pods", "-A"], false),
        (vec!["delete", "persistentvolumeclaims", "-A"], true),
        (vec!["create", "events.events.k8s.io", "-A"], true),
        // Nodes and Cluster API only when their value is on.
        (vec!["list", "nodes"], true),
        (vec!["get", "nodes"], false),
        (vec!["create", "nodes"], false),
        (vec!["patch", "nodes"], false),
        (vec!["delete", "nodes"], false),
    ];
    assert_permissions(&user, &never);
    assert_eq!(
        cluster_api(&user, n),
        [false; 6],
        "Cluster API scale without rbac.clusterAPI"
    );

    // What the operator does with its children, with the same requests, as the chart's
    // ServiceAccount: a server-side apply that creates a CronJob and a Job (for which the
    // apiserver wants `create` as well as `patch`), an apply that changes one, the
    // watchdog's merge patch, the deletes of clean-up and pruning.
    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.auth_info.impersonate = Some(user.clone());
    let as_chart = kube::Client::try_from(config).expect("an impersonating client");
    let apply = PatchParams::apply("datajob-operator").force();
    let template = json!({"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox:1.36"}],
    }});
    let labels = json!({"app.kubernetes.io/managed-by": "datajob-operator"});
    let mut cronjob = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "scheduled", "labels": labels},
        "spec": {"schedule": "0 3 * * *", "suspend": true,
                 "jobTemplate": {"spec": {"template": template}}},
    });
    let cronjobs: Api<CronJob> = Api::namespaced(as_chart.clone(), n);
    cronjobs
        .patch("scheduled", &apply, &Patch::Apply(&cronjob))
        .await
        .expect("the chart's identity creates a CronJob by server-side apply");
    cronjob["spec"]["schedule"] = json!("0 4 * * *");
    cronjobs
        .patch("scheduled", &apply, &Patch::Apply(&cronjob))
        .await
        .expect("the chart's identity changes a CronJob by server-side apply");
    let jobs: Api<Job> = Api::namespaced(as_chart.clone(), n);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "one-off", "labels": labels},
        "spec": {"suspend": true, "template": template},
    });
    jobs.patch("one-off", &apply, &Patch::Apply(&job))
        .await
        .expect("the chart's identity creates a Job by server-side apply");
    let annotate = json!({"metadata": {"annotations": {"datajob.dev/reason": "DeadlineExceeded"}}});
    jobs.patch("one-off", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("the chart's identity annotates a Job (merge patch)");
    jobs.delete("one-off", &DeleteParams::background())
        .await
        .expect("the chart's identity deletes a Job");
    cronjobs
        .delete("scheduled", &DeleteParams::background())
        .await
        .expect("the chart's identity deletes a CronJob");

    // The provider values add exactly their permissions.
    let mut upgrade = vec![
        "upgrade",
        &release,
        chart.as_str(),
        "--namespace",
        n,
        "--reuse-values",
        "--set",
        "rbac.kwokNodes=true",
        "--set",
        "rbac.clusterAPI=true",
    ];
    upgrade.extend(strs(&values));
    must(
        helm_run(&upgrade),
        "helm upgrade with rbac.kwokNodes and rbac.clusterAPI",
    );
    let providers: Vec<(Vec<&str>, bool)> = vec![
        (vec!["create", "nodes"], true),
        (vec!["patch", "nodes"], true),
        (vec!["get", "nodes"], true),
        (vec!["delete", "nodes"], true),
        // The reservation toleration of a kwok node on the runs it is for.
        (vec!["patch", "pods", "-A"], true),
        (vec!["get", "secrets", "-A"], false),
    ];
    assert_permissions(&user, &providers);
    assert_eq!(
        cluster_api(&user, n),
        [true; 6],
        "Cluster API scale with rbac.clusterAPI"
    );
    assert!(
        !review(
            &user,
            n,
            "cluster.x-k8s.io",
            "machinedeployments",
            "",
            "patch"
        ),
        "rbac.clusterAPI grants more than the scale subresource"
    );
}

#[test]
fn rbac_has_no_wildcards_and_reads_no_secret_beyond_its_own() {
    let release = "datajob";
    let manifest = must(
        template(
            release,
            "datajob-system",
            &[
                "--set",
                "rbac.kwokNodes=true",
                "--set",
                "rbac.clusterAPI=true",
            ],
        ),
        "helm template",
    );
    let docs = documents(&manifest);
    let cluster_role = find(&docs, "ClusterRole", "datajob").expect("a ClusterRole");
    let role = find(&docs, "Role", "datajob").expect("a Role");
    for (what, doc) in [("ClusterRole", cluster_role), ("Role", role)] {
        for rule in doc["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                let values = rule[field].as_array().cloned().unwrap_or_default();
                assert!(
                    !values
                        .iter()
                        .any(|v| v.as_str().is_some_and(|s| s.contains('*'))),
                    "{what} has a wildcard in {field}: {rule}"
                );
            }
        }
    }
    let touches = |rule: &Value, resource: &str| {
        rule["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|v| v == resource))
    };
    // Cluster-wide: no Secret at all by default; ConfigMaps only `get` (preflight).
    let rules = cluster_role["rules"].as_array().expect("rules");
    assert!(
        !rules.iter().any(|r| touches(r, "secrets")),
        "the ClusterRole grants Secrets: {cluster_role}"
    );
    for r in rules.iter().filter(|r| touches(r, "configmaps")) {
        assert_eq!(
            r["verbs"],
            json!(["get"]),
            "ConfigMaps are only read by name: {r}"
        );
    }
    // `preflight.secrets` adds `get` on Secrets, and nothing more; `preflight.enabled:
    // false` takes the ConfigMap rule away too.
    for (flags, secrets, configmaps) in [
        (
            vec!["--set", "preflight.secrets=true"],
            Some(json!(["get"])),
            true,
        ),
        (vec!["--set", "preflight.enabled=false"], None, false),
    ] {
        let docs = documents(&must(
            template(release, "datajob-system", &flags),
            "helm template",
        ));
        let role = find(&docs, "ClusterRole", "datajob").expect("a ClusterRole");
        let rules = role["rules"].as_array().expect("rules");
        let secret_verbs = rules
            .iter()
            .find(|r| touches(r, "secrets"))
            .map(|r| r["verbs"].clone());
        assert_eq!(secret_verbs, secrets, "{flags:?}: {role}");
        assert_eq!(
            rules.iter().any(|r| touches(r, "configmaps")),
            configmaps,
            "{flags:?}: {role}"
        );
    }
    for rule in role["rules"].as_array().expect("rules") {
        let reads = rule["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .any(|v| v == "get" || v == "list" || v == "watch");
        if touches(rule, "secrets") && reads {
            assert_eq!(
                rule["resourceNames"],
                json!(["datajob-webhook-cert"]),
                "the Role reads Secrets beyond the webhook's: {rule}"
            );
            assert!(
                !rule["verbs"]
                    .as_array()
                    .expect("verbs")
                    .iter()
                    .any(|v| v == "list" || v == "watch"),
                "list or watch cannot be limited by name: {rule}"
            );
        }
    }
}

#[test]
fn every_operator_setting_is_passed_as_its_environment_variable() {
    let ns = "platform";
    let manifest = must(
        template(
            "datajob",
            ns,
            &[
                "--set-string",
                "settings.maxDeadline=7h",
                "--set-string",
                "settings.ttlAfterFinished=2d",
                "--set-string",
                "settings.startupAllowance=20m",
                "--set-string",
                "settings.imagePullGrace=61s",
                "--set-string",
                "settings.configGrace=62s",
                "--set-string",
                "settings.unschedulableGrace=11m",
                "--set-string",
                "settings.pvcGrace=6m",
                "--set-string",
                "settings.cleanupInterval=31s",
                "--set-string",
                "settings.scratchVolumeAbove=60Gi",
                "--set-string",
                "settings.scratchStorageClass=fast",
                "--set",
                "settings.allowMeshOptOut=true",
                "--set",
                "logging.json=true",
                "--set-string",
                "logging.filter=debug",
                "--set",
                "webhook.failurePolicy=Fail",
                "--set-string",
                "webhook.secretName=my-cert",
                "--set-string",
                "webhook.configurationName=my.datajob.dev",
                "--set-string",
                "webhook.certificate.validity=90d",
                "--set-string",
                "webhook.certificate.renewBefore=10d",
                "--set-string",
                "webhook.certificate.checkInterval=5m",
                "--set-string",
                "leaderElection.leaseName=my-lease",
                "--set-string",
                "leaderElection.leaseDuration=30s",
                "--set-string",
                "leaderElection.renewDeadline=20s",
                "--set-string",
                "leaderElection.retryPeriod=2s",
            ],
        ),
        "helm template",
    );
    let docs = documents(&manifest);
    let deployment = find(&docs, "Deployment", "datajob").expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env: std::collections::BTreeMap<String, Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let value = match e.get("value") {
                Some(v) => v.clone(),
                None => e["valueFrom"].clone(),
            };
            (e["name"].as_str().expect("env name").to_string(), value)
        })
        .collect();

    // Every variable the operator reads (its --help lists them) is set by the chart;
    // DATAJOB_WEBHOOK_URL only with webhook.url (it excludes DATAJOB_WEBHOOK_SERVICE).
    let help = std::process::Command::new(common::bin("datajob-operator"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("datajob-operator --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let read: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        // `[env: NAME=value]`, or `[env: NAME]` for a value --help hides (a secret).
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect();
    assert!(
        read.contains("DATAJOB_MAX_DEADLINE"),
        "no env names in --help:\n{help}"
    );
    let missing: Vec<&String> = read
        .iter()
        .filter(|name| !env.contains_key(*name) && *name != "DATAJOB_WEBHOOK_URL")
        .collect();
    assert!(
        missing.is_empty(),
        "the chart does not set {missing:?} (read by the operator)"
    );

    let expect = [
        ("DATAJOB_MAX_DEADLINE", "7h"),
        ("DATAJOB_TTL_AFTER_FINISHED", "2d"),
        ("DATAJOB_STARTUP_ALLOWANCE", "20m"),
        ("DATAJOB_IMAGE_PULL_GRACE", "61s"),
        ("DATAJOB_CONFIG_GRACE", "62s"),
        ("DATAJOB_UNSCHEDULABLE_GRACE", "11m"),
        ("DATAJOB_PVC_GRACE", "6m"),
        ("DATAJOB_CLEANUP_INTERVAL", "31s"),
        ("DATAJOB_SCRATCH_VOLUME_ABOVE", "60Gi"),
        ("DATAJOB_SCRATCH_STORAGE_CLASS", "fast"),
        ("DATAJOB_ALLOW_MESH_OPT_OUT", "true"),
        ("DATAJOB_LOG_JSON", "true"),
        ("RUST_LOG", "debug"),
        ("DATAJOB_WEBHOOK_FAILURE_POLICY", "Fail"),
        ("DATAJOB_WEBHOOK_SECRET", "my-cert"),
        ("DATAJOB_WEBHOOK_CONFIGURATION", "my.datajob.dev"),
        ("DATAJOB_WEBHOOK_SERVICE", "platform/datajob-webhook:443"),
        ("DATAJOB_WEBHOOK_CERT", "operator"),
        ("DATAJOB_WEBHOOK_CERT_VALIDITY", "90d"),
        ("DATAJOB_WEBHOOK_CERT_RENEW_BEFORE", "10d"),
        ("DATAJOB_WEBHOOK_CERT_CHECK_INTERVAL", "5m"),
        ("DATAJOB_LEADER_ELECT", "true"),
        ("DATAJOB_LEASE_NAME", "my-lease"),
        ("DATAJOB_LEASE_DURATION", "30s"),
        ("DATAJOB_LEASE_RENEW_DEADLINE", "20s"),
        ("DATAJOB_LEASE_RETRY_PERIOD", "2s"),
    ];
    for (name, value) in expect {
        assert_eq!(env.get(name), Some(&json!(value)), "env {name}");
    }
    // Outputs on volumes are staged and published by the operator's own image.
    assert_eq!(
        env.get("DATAJOB_PUBLISHER_IMAGE"),
        Some(&container["image"]),
        "the publisher image is the operator's"
    );
    assert_eq!(env["POD_NAME"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(
        env["POD_NAMESPACE"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    // The pod: restricted, probed, spread, two replicas.
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "admin", "containerPort": 8080, "protocol": "TCP"},
               {"name": "webhook", "containerPort": 9443, "protocol": "TCP"}])
    );
    assert_eq!(container["image"], "datajob-operator:0.1.0");
    assert!(
        container["resources"]["requests"].is_object()
            && container["resources"]["limits"].is_object()
    );
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "datajob").expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    // Only the operator's ports take traffic; the webhook's from whom the values say.
    let policy = find(&docs, "NetworkPolicy", "datajob").expect("a NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": "webhook", "protocol": "TCP"}]},
               {"ports": [{"port": "admin", "protocol": "TCP"}]}])
    );
    let narrowed = must(
        template(
            "datajob",
            ns,
            &[
                "--set",
                "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24",
            ],
        ),
        "helm template networkPolicy.webhookFrom",
    );
    let narrowed = documents(&narrowed);
    let policy = find(&narrowed, "NetworkPolicy", "datajob").expect("a NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "10.0.0.0/24"}}])
    );
    let off = must(
        template("datajob", ns, &["--set", "networkPolicy.enabled=false"]),
        "helm template networkPolicy.enabled=false",
    );
    assert!(!kinds(&documents(&off)).contains("NetworkPolicy"));

    // One replica: no PodDisruptionBudget (it would block every drain).
    let single = must(
        template("datajob", ns, &["--set", "replicas=1"]),
        "helm template replicas=1",
    );
    assert!(!kinds(&documents(&single)).contains("PodDisruptionBudget"));
}

#[test]
fn webhook_configuration_matches_what_the_operator_applies() {
    let ns = "platform";
    let by_service = documents(&must(template("datajob", ns, &[]), "helm template"));
    let vwc = find(&by_service, "ValidatingWebhookConfiguration", "datajob.dev")
        .expect("the webhook configuration");
    // What the operator applies (crates/operator/src/webhook/tls.rs `configuration`), without the CA
    // bundle: the chart must render the same webhook, field for field.
    let operator = |endpoint: &Endpoint, policy: &str| {
        let mut v = serde_json::to_value(configuration("datajob.dev", endpoint, "CA", policy))
            .expect("the configuration serializes");
        let client_config = &mut v["webhooks"][0]["clientConfig"];
        assert_eq!(
            client_config["caBundle"], "Q0E=",
            "the operator sets the CA bundle"
        );
        client_config
            .as_object_mut()
            .expect("clientConfig")
            .remove("caBundle");
        v
    };
    let service_endpoint =
        Endpoint::parse_service("platform/datajob-webhook:443").expect("an endpoint");
    let by_operator = operator(&service_endpoint, "Ignore");
    assert_eq!(vwc["metadata"]["name"], by_operator["metadata"]["name"]);
    assert_eq!(
        vwc["webhooks"], by_operator["webhooks"],
        "the chart's webhook differs from the operator's"
    );
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"]["service"],
        json!({"namespace": ns, "name": "datajob-webhook", "path": "/validate-datajob", "port": 443})
    );
    let service = find(&by_service, "Service", "datajob-webhook").expect("the webhook Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    let metrics = find(&by_service, "Service", "datajob-metrics").expect("the metrics Service");
    assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(metrics["spec"]["ports"][0]["port"], 8080);

    let by_url = documents(&must(
        template(
            "datajob",
            ns,
            &[
                "--set-string",
                "webhook.url=https://10.1.2.3:9443/",
                "--set",
                "webhook.failurePolicy=Fail",
            ],
        ),
        "helm template with webhook.url",
    ));
    let vwc =
        find(&by_url, "ValidatingWebhookConfiguration", "datajob.dev").expect("configuration");
    let by_operator = operator(&Endpoint::Url("https://10.1.2.3:9443/".into()), "Fail");
    assert_eq!(
        vwc["webhooks"], by_operator["webhooks"],
        "with webhook.url, the chart's webhook differs from the operator's"
    );
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"],
        json!({"url": "https://10.1.2.3:9443/validate-datajob"})
    );
    let env = &find(&by_url, "Deployment", "datajob").expect("Deployment")["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    let names: Vec<&str> = env
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"DATAJOB_WEBHOOK_URL") && !names.contains(&"DATAJOB_WEBHOOK_SERVICE"));
}

#[test]
fn cert_manager_mode_issues_the_webhook_secret_and_the_operator_only_reads_it() {
    let ns = "platform";
    let docs = documents(&must(
        template(
            "datajob",
            ns,
            &["--set", "webhook.certManager.enabled=true"],
        ),
        "helm template (cert-manager)",
    ));
    let certificate = find(&docs, "Certificate", "datajob-webhook").expect("a Certificate");
    assert_eq!(certificate["spec"]["secretName"], "datajob-webhook-cert");
    assert_eq!(
        certificate["spec"]["dnsNames"],
        json!([
            "datajob-webhook.platform.svc",
            "datajob-webhook.platform.svc.cluster.local"
        ])
    );
    assert_eq!(
        certificate["spec"]["issuerRef"]["name"],
        "datajob-selfsigned"
    );
    let issuer = find(&docs, "Issuer", "datajob-selfsigned").expect("a selfSigned Issuer");
    assert_eq!(issuer["spec"], json!({"selfSigned": {}}));
    assert!(
        !kinds(&docs).contains("Secret"),
        "the chart renders a Secret in cert-manager mode"
    );
    let vwc = find(&docs, "ValidatingWebhookConfiguration", "datajob.dev").expect("configuration");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "platform/datajob-webhook"
    );
    let deployment = find(&docs, "Deployment", "datajob").expect("Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "DATAJOB_WEBHOOK_CERT" && e["value"] == "external")
    );
    let role = find(&docs, "Role", "datajob").expect("Role");
    let secret_rules: Vec<&Value> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["resources"] == json!(["secrets"]))
        .collect();
    assert_eq!(
        secret_rules,
        vec![&json!({"apiGroups": [""], "resources": ["secrets"],
                     "resourceNames": ["datajob-webhook-cert"], "verbs": ["get"]})],
        "with cert-manager the operator only reads its Secret"
    );

    let given = documents(&must(
        template(
            "datajob",
            ns,
            &[
                "--set",
                "webhook.certManager.enabled=true",
                "--set",
                "webhook.certManager.issuerRef.name=platform-ca",
                "--set",
                "webhook.certManager.issuerRef.kind=ClusterIssuer",
            ],
        ),
        "helm template (cert-manager, given issuer)",
    ));
    assert!(
        !kinds(&given).contains("Issuer"),
        "an Issuer is made although one is given"
    );
    let certificate = find(&given, "Certificate", "datajob-webhook").expect("a Certificate");
    assert_eq!(
        certificate["spec"]["issuerRef"],
        json!({"name": "platform-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
}

#[tokio::test]
async fn chart_identity_script_writes_a_kubeconfig_for_the_chart_service_account() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-identity").await;
    let release = unique_name("djs");
    let _guard = Release {
        name: release.clone(),
        ns: ns.name().into(),
    };
    let configuration = format!("{release}.datajob.dev");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("chart.kubeconfig");
    let path_str = path.to_string_lossy().into_owned();
    let out = run_with(
        "bash",
        &[&format!("{ROOT}/e2e/chart-identity.sh")],
        None,
        &[
            ("POD_NAMESPACE", ns.name()),
            ("DATAJOB_RELEASE", &release),
            ("DATAJOB_WEBHOOK_URL", NOWHERE),
            ("DATAJOB_WEBHOOK_CONFIGURATION", &configuration),
            ("DATAJOB_CHART_KUBECONFIG", &path_str),
            ("HELM", helm()),
        ],
    );
    let stdout = must(out, "e2e/chart-identity.sh");
    assert_eq!(
        stdout.lines().last(),
        Some(path_str.as_str()),
        "the last line is the path"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path)
            .expect("the kubeconfig exists")
            .permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "the kubeconfig holds a token: only its owner may read it"
    );

    let full = fullname(&release);
    let as_chart = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", path_str.as_str()];
        all.extend_from_slice(args);
        kubectl_run(&all, None)
    };
    let who = must(
        as_chart(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]),
        "kubectl auth whoami",
    );
    assert_eq!(who, format!("system:serviceaccount:{}:{full}", ns.name()));
    must(
        as_chart(&["get", "nodes"]),
        "list nodes with the chart's identity",
    );
    let secrets = as_chart(&["get", "secrets", "-A"]);
    assert!(
        !secrets.ok && secrets.stderr.contains("forbidden"),
        "the chart's identity lists Secrets: {}{}",
        secrets.stdout,
        secrets.stderr
    );
    // Its own Secret may be read (the script does not create it: not found, not forbidden).
    let own = as_chart(&[
        "get",
        "secret",
        &format!("{full}-webhook-cert"),
        "-n",
        ns.name(),
    ]);
    assert!(
        !own.ok && own.stderr.contains("NotFound"),
        "reading its own Secret: {}",
        own.stderr
    );
    let kwok = must(
        as_chart(&["auth", "can-i", "create", "nodes"]),
        "can-i create nodes",
    );
    assert_eq!(kwok.trim(), "yes", "the script turns rbac.kwokNodes on");
    let vwc = get_json(&["validatingwebhookconfiguration", &configuration]);
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"]["url"],
        format!("{NOWHERE}/validate-datajob")
    );
}

#[test]
fn security_contexts_and_the_architecture_come_from_values() {
    let pod_of = |args: &[&str]| {
        let docs = documents(&must(
            template("datajob", "platform", args),
            "helm template",
        ));
        let deployment = find(&docs, "Deployment", "datajob").expect("a Deployment");
        deployment["spec"]["template"]["spec"].clone()
    };
    // By default: restricted, and on nodes of the image's architecture.
    let pod = pod_of(&[]);
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/arch": "amd64"}));
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));
    // Each is a value: another user, another architecture, or none.
    let pod = pod_of(&[
        "--set",
        "podSecurityContext.runAsUser=1001",
        "--set",
        "securityContext.readOnlyRootFilesystem=false",
        "--set-string",
        "nodeSelector.kubernetes\\.io/arch=arm64",
    ]);
    assert_eq!(pod["securityContext"]["runAsUser"], 1001);
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "the rest stays"
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        false
    );
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/arch": "arm64"}));
    let pod = pod_of(&["--set", "nodeSelector.kubernetes\\.io/arch=null"]);
    assert!(pod["nodeSelector"].is_null(), "{}", pod["nodeSelector"]);
}

#[test]
fn secure_metrics_are_https_for_the_metrics_reader_role_and_the_service_monitor_relabels() {
    let relabelings =
        json!([{"action": "replace", "targetLabel": "cluster", "replacement": "prod"}]);
    let metric_relabelings =
        json!([{"action": "drop", "sourceLabels": ["__name__"], "regex": "process_.*"}]);
    let (relabel_arg, metric_arg) = (
        format!("metrics.serviceMonitor.relabelings={relabelings}"),
        format!("metrics.serviceMonitor.metricRelabelings={metric_relabelings}"),
    );
    let render = |extra: &[&str]| {
        let mut args = vec!["--set", "metrics.serviceMonitor.enabled=true"];
        args.extend_from_slice(extra);
        documents(&must(
            template("datajob", "platform", &args),
            "helm template",
        ))
    };
    let endpoint = |docs: &[Value]| {
        find(docs, "ServiceMonitor", "datajob").expect("a ServiceMonitor")["spec"]["endpoints"][0]
            .clone()
    };
    let container = |docs: &[Value]| {
        find(docs, "Deployment", "datajob").expect("a Deployment")["spec"]["template"]["spec"]
            ["containers"][0]
            .clone()
    };
    let env = |docs: &[Value], name: &str| {
        container(docs)["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    let service_ports = |docs: &[Value]| {
        find(docs, "Service", "datajob-metrics").expect("the metrics Service")["spec"]["ports"]
            .clone()
    };
    let review_rules = |docs: &[Value]| -> Vec<Value> {
        find(docs, "ClusterRole", "datajob").expect("the ClusterRole")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| {
                r["apiGroups"] == json!(["authentication.k8s.io"])
                    || r["apiGroups"] == json!(["authorization.k8s.io"])
            })
            .cloned()
            .collect()
    };
    let reviews = vec![
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}),
    ];

    // By default: plain HTTP on the admin port, nothing to review, no reader role; the
    // relabelings, when given, pass through as written, and none are there otherwise.
    let plain = render(&["--set-json", &relabel_arg, "--set-json", &metric_arg]);
    let ep = endpoint(&plain);
    assert_eq!(ep["scheme"], "http");
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["relabelings"], relabelings);
    assert_eq!(ep["metricRelabelings"], metric_relabelings);
    for absent in ["tlsConfig", "bearerTokenFile", "authorization"] {
        assert!(
            ep.get(absent).is_none(),
            "{absent} without metrics.secure: {ep}"
        );
    }
    assert!(find(&plain, "ClusterRole", "datajob-metrics-reader").is_none());
    // No TokenReviews without secure metrics; SubjectAccessReviews for the webhook,
    // which tells a review only what its user may read.
    assert_eq!(review_rules(&plain), reviews[1..]);
    assert_eq!(
        service_ports(&plain),
        json!([{"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}])
    );
    assert_eq!(env(&plain, "DATAJOB_METRICS_SECURE"), Some(json!("false")));
    let bare = endpoint(&render(&[]));
    assert!(ep.get("relabelings").is_some() && bare.get("relabelings").is_none());
    assert!(bare.get("metricRelabelings").is_none());

    // metrics.secure.enabled: HTTPS on a port of its own with the token of Prometheus'
    // ServiceAccount, a self-signed certificate (not verified), the review permissions
    // and a ClusterRole for scrapers to bind; the probes stay on the admin port.
    let secure = render(&[
        "--set",
        "metrics.secure.enabled=true",
        "--set-json",
        &relabel_arg,
        "--set-json",
        &metric_arg,
    ]);
    let ep = endpoint(&secure);
    assert_eq!(ep["scheme"], "https");
    assert_eq!(ep["port"], "metrics");
    assert_eq!(
        ep["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(ep["tlsConfig"], json!({"insecureSkipVerify": true}));
    assert_eq!(ep["relabelings"], relabelings);
    assert_eq!(ep["metricRelabelings"], metric_relabelings);
    assert_eq!(review_rules(&secure), reviews);
    let reader = find(&secure, "ClusterRole", "datajob-metrics-reader").expect("the reader role");
    assert_eq!(
        reader["rules"],
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    );
    assert_eq!(
        reader["metadata"]["labels"]["app.kubernetes.io/instance"],
        "datajob"
    );
    assert!(
        !secure.iter().any(|d| d["kind"] == "ClusterRoleBinding"
            && d["roleRef"]["name"] == "datajob-metrics-reader"),
        "the chart binds the reader role to nobody"
    );
    assert_eq!(
        service_ports(&secure),
        json!([{"name": "metrics", "port": 8443, "targetPort": "metrics", "protocol": "TCP",
                "appProtocol": "https"}])
    );
    let c = container(&secure);
    assert_eq!(
        c["ports"],
        json!([{"name": "admin", "containerPort": 8080, "protocol": "TCP"},
               {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
               {"name": "metrics", "containerPort": 8443, "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(env(&secure, "DATAJOB_METRICS_SECURE"), Some(json!("true")));
    assert_eq!(
        env(&secure, "DATAJOB_METRICS_SECURE_ADDR"),
        Some(json!("0.0.0.0:8443"))
    );
    assert_eq!(env(&secure, "DATAJOB_METRICS_CERT_DIR"), Some(json!("")));
    assert!(c.get("volumeMounts").is_none());

    // A certificate from a Secret (cert-manager's): mounted, passed as the directory,
    // verified by the ServiceMonitor with the Secret's CA and the Service's name.
    let from_secret = render(&[
        "--set",
        "metrics.secure.enabled=true",
        "--set",
        "metrics.secure.port=9444",
        "--set-string",
        "metrics.secure.certSecret=datajob-metrics-tls",
    ]);
    let ep = endpoint(&from_secret);
    assert_eq!(
        ep["tlsConfig"],
        json!({"ca": {"secret": {"name": "datajob-metrics-tls", "key": "ca.crt"}},
               "serverName": "datajob-metrics.platform.svc"})
    );
    assert_eq!(service_ports(&from_secret)[0]["port"], 9444);
    assert_eq!(
        env(&from_secret, "DATAJOB_METRICS_SECURE_ADDR"),
        Some(json!("0.0.0.0:9444"))
    );
    assert_eq!(
        env(&from_secret, "DATAJOB_METRICS_CERT_DIR"),
        Some(json!("/etc/datajob/metrics-tls"))
    );
    let c = container(&from_secret);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "metrics-tls", "mountPath": "/etc/datajob/metrics-tls", "readOnly": true}])
    );
    let pod = &find(&from_secret, "Deployment", "datajob").expect("a Deployment")["spec"]["template"]
        ["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "metrics-tls", "secret": {"secretName": "datajob-metrics-tls"}}])
    );

    // The scrape's TLS and credentials can be given instead.
    let tls_config =
        json!({"ca": {"configMap": {"name": "my-ca", "key": "ca.crt"}}, "serverName": "metrics"});
    let authorization =
        json!({"type": "Bearer", "credentials": {"name": "prometheus-token", "key": "token"}});
    let given = render(&[
        "--set",
        "metrics.secure.enabled=true",
        "--set-json",
        &format!("metrics.secure.tlsConfig={tls_config}"),
        "--set-json",
        &format!("metrics.secure.authorization={authorization}"),
    ]);
    let ep = endpoint(&given);
    assert_eq!(ep["tlsConfig"], tls_config);
    assert_eq!(ep["authorization"], authorization);
    assert!(ep.get("bearerTokenFile").is_none(), "{ep}");

    // The HTTPS port cannot be the admin port (the probes are there).
    let clash = template(
        "datajob",
        "platform",
        &[
            "--set",
            "metrics.secure.enabled=true",
            "--set",
            "metrics.secure.port=8080",
        ],
    );
    assert!(!clash.ok);
    assert!(
        clash.stderr.contains("metrics.secure.port") && clash.stderr.contains("ports.admin"),
        "{}",
        clash.stderr
    );
}

//! CRD upgrades: Helm installs a chart's `crds/` once and never upgrades them, so the
//! `datajob-crds` chart holds the same CRDs as templates. The test starts from CRDs as an
//! older release left them (without `spec.owner`), adopts them into a release of an older
//! `datajob-crds` chart, upgrades to this one, and checks that the new field is accepted,
//! and that uninstalling keeps the CRDs and the DataJobs.

use super::*;

const DATAJOBS_CRD: &str = "crds/datajob.dev_datajobs.yaml";

/// Puts this checkout's CRDs back when the test ends (also when it fails): the other
/// suites need them as they are.
struct RestoreCrds(String);

impl Drop for RestoreCrds {
    fn drop(&mut self) {
        let _ = helm_run(&["uninstall", &self.0, "--namespace", "default"]);
        let _ = kubectl_run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &format!("{ROOT}/crds/"),
            ],
            None,
        );
    }
}

/// The DataJob CRD of this checkout without `spec.owner`: the CRD of an older release.
fn old_datajobs_crd() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/{DATAJOBS_CRD}")).expect("read the CRD");
    without_owner(serde_saphyr::from_str(&text).expect("the CRD is YAML"))
}

fn without_owner(mut crd: Value) -> Value {
    let props =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object_mut()
            .expect("spec properties");
    assert!(props.remove("owner").is_some(), "the CRD has spec.owner");
    crd
}

/// The datajob-crds chart as an older version shipped it: version 0.0.9, whose DataJob
/// CRD has no `spec.owner`.
fn old_crds_chart(dir: &std::path::Path) -> String {
    let chart = dir.join("datajob-crds");
    must(
        run(
            "cp",
            &[
                "-r",
                &format!("{ROOT}/charts/datajob-crds"),
                &chart.to_string_lossy(),
            ],
            None,
        ),
        "copy the crds chart",
    );
    let meta = chart.join("Chart.yaml");
    let text = std::fs::read_to_string(&meta).expect("Chart.yaml");
    std::fs::write(&meta, text.replace("version: 0.1.0", "version: 0.0.9")).expect("write");
    // JSON is YAML: the template reads it with fromYaml.
    std::fs::write(
        chart.join("files/datajob.dev_datajobs.yaml"),
        old_datajobs_crd().to_string(),
    )
    .expect("write the old CRD");
    chart.to_string_lossy().into_owned()
}

fn owned(ns: &str, name: &str) -> String {
    json!({
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": "busybox:1.36", "command": ["true"], "owner": "team-growth",
                 "resources": {"cpu": "100m", "memory": "64Mi"}, "deadline": "10m"}
    })
    .to_string()
}

/// A server-side dry-run create of a DataJob with `spec.owner`, strictly validated:
/// `Ok(owner as stored)` or `Err(stderr)`.
fn create_with_owner(ns: &str) -> Result<String, String> {
    let out = kubectl_run(
        &[
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&owned(ns, "with-owner")),
    );
    if !out.ok {
        return Err(out.stderr);
    }
    let obj: Value = serde_json::from_str(&out.stdout).expect("kubectl prints JSON");
    Ok(obj["spec"]["owner"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The DataJob CRD's schema accepts `spec.owner` (`true`) or refuses it (`false`); the
/// apiserver takes a moment to serve a changed schema.
async fn wait_owner_accepted(ns: &str, want: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = create_with_owner(ns);
        match (&got, want) {
            (Ok(owner), true) if owner == "team-growth" => return,
            (Err(e), false) if e.contains("unknown field \"spec.owner\"") => return,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what}: spec.owner {} after 30 s: {got:?}",
            if want {
                "is still refused"
            } else {
                "is accepted"
            }
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_crds_chart_upgrades_the_crds_and_keeps_them_on_uninstall() {
    let client = client().await;
    let ns = test_namespace(&client, "chart-crds").await;
    let n = ns.name().to_string();
    let release = unique_name("djc");
    let _restore = RestoreCrds(release.clone());
    let crds_chart = chart().replace("charts/datajob", "charts/datajob-crds");
    let lint = must(
        helm_run(&["lint", "--strict", &crds_chart]),
        "helm lint datajob-crds",
    );
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let old_chart = old_crds_chart(dir.path());

    // The CRDs as an older release of the datajob chart installed them (its crds/: Helm
    // created them once and owns nothing).
    // A whole update (the live object, its resourceVersion, without the field): whoever
    // manages the field now, it is gone.
    let live = without_owner(get_json(&["crd", "datajobs.datajob.dev"]));
    must(
        kubectl_run(&["replace", "-f", "-"], Some(&live.to_string())),
        "put back the old DataJob CRD",
    );
    wait_owner_accepted(&n, false, "the old CRD").await;

    // The older datajob-crds chart adopts them.
    must(
        helm_run(&[
            "install",
            &release,
            &old_chart,
            "--namespace",
            "default",
            "--take-ownership",
            "--wait",
        ]),
        "helm install of the older datajob-crds chart (taking over the CRDs)",
    );
    wait_owner_accepted(&n, false, "the older datajob-crds chart").await;
    let crd = get_json(&["crd", "datajobs.datajob.dev"]);
    assert_eq!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-name"], release,
        "the release did not take the CRD over: {}",
        crd["metadata"]
    );

    // The upgrade adds the field.
    must(
        helm_run(&[
            "upgrade",
            &release,
            &crds_chart,
            "--namespace",
            "default",
            "--wait",
        ]),
        "helm upgrade to this datajob-crds chart",
    );
    wait_owner_accepted(&n, true, "after the upgrade").await;
    let crd = get_json(&["crd", "datajobs.datajob.dev"]);
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "{}",
        crd["metadata"]
    );
    assert_eq!(
        crd["metadata"]["labels"]["helm.sh/chart"],
        "datajob-crds-0.1.0"
    );

    // Uninstalling keeps the CRDs, so no DataJob is lost.
    must(
        kubectl_run(&["create", "-f", "-"], Some(&owned(&n, "kept"))),
        "create a DataJob",
    );
    must(
        helm_run(&["uninstall", &release, "--namespace", "default", "--wait"]),
        "helm uninstall of datajob-crds",
    );
    for crd in ["datajobs", "backfills", "nodegroups"] {
        must(
            kubectl_run(&["get", "crd", &format!("{crd}.datajob.dev")], None),
            &format!("the {crd} CRD after helm uninstall"),
        );
    }
    let kept = get_json(&["datajob", "kept", "-n", &n]);
    assert_eq!(kept["spec"]["owner"], "team-growth");
}

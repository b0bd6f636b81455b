//! End-to-end: data on the cluster, on the real node. A chain of three DataJobs
//! (raw → clean → report) publishes to a volume (`pvc://`, a hostPath PersistentVolume
//! on the real node): `kubectl datajob backfill` runs 6 hours of raw, and clean and
//! report follow; raw fails for one hour, so its readers end `UpstreamFailed` and nothing
//! is published for it; a re-run fixes it and its readers follow. Every script checks the
//! manifest of the input it reads (a run that read unpublished data fails), the volume
//! holds exactly one published version per hour and DataJob, and the same scenario
//! through `kubectl datajob run --local` publishes the same files. Also: a run waits for
//! an input that has not published yet (`Waiting`, `WaitingForInput`) and goes when it
//! has; unknown inputs and cycles are refused at apply and by `plan` with the same words;
//! bad backfill ranges are refused with the field, the value and the fix.
//!
//! Needs the operator's image (`make image`): e2e/with-operator.sh pushes it to the
//! cluster's registry and gives the shared operator `DATAJOB_PUBLISHER_IMAGE`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use common::plugin::plugin;
use common::{realnode, unique_name, wait_for_object};
use datajob_api::{Backfill, DataJob, RunState};
use datajob_core::labels::{self, NAME};
use datajob_core::output::MANIFEST;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const RAW: &str = r#"set -e
if [ -n "$FAIL_AT" ] && [ "$DATAJOB_LOGICAL_TIME" = "$FAIL_AT" ]; then echo "raw fails $FAIL_AT on purpose"; exit 3; fi
printf 'event,%s\nevent,%s-late\n' "$DATAJOB_LOGICAL_TIME" "$DATAJOB_LOGICAL_TIME" > "$DATAJOB_STAGING/events.csv"
echo "raw staged $DATAJOB_LOGICAL_TIME""#;

/// Reads input `$1` (a directory) only when its manifest says it is the publication of
/// this run's logical time; fails otherwise.
const CHECK: &str = r#"check() {
  test -f "$1/_DATAJOB.json" || { echo "UNPUBLISHED: $1 has no manifest"; exit 4; }
  grep -q "\"logicalTime\": \"$DATAJOB_LOGICAL_TIME\"" "$1/_DATAJOB.json" || { echo "WRONG TIME: $1"; cat "$1/_DATAJOB.json"; exit 5; }
  case "$1" in */_versions/*) ;; *) echo "NOT A VERSION: $1"; exit 6;; esac
}
"#;

fn clean_script() -> String {
    format!(
        r#"set -e
{CHECK}check "$DATAJOB_INPUT_RAW"
sed 's/^event/clean/' "$DATAJOB_INPUT_RAW/events.csv" > "$DATAJOB_STAGING/clean.csv"
echo "clean read $DATAJOB_INPUT_RAW""#
    )
}

fn report_script() -> String {
    format!(
        r#"set -e
{CHECK}check "$DATAJOB_INPUT_CLEAN"
mkdir "$DATAJOB_STAGING/summary"
echo "rows $(wc -l < "$DATAJOB_INPUT_CLEAN/clean.csv" | tr -d ' ')" > "$DATAJOB_STAGING/summary/report.txt"
cat "$DATAJOB_INPUT_CLEAN/clean.csv" >> "$DATAJOB_STAGING/summary/report.txt"
echo "report read $DATAJOB_INPUT_CLEAN""#
    )
}

/// The three DataJobs. Suspended: only the backfill and triggers run them.
fn chain(image: &str, claim: &str) -> Vec<Value> {
    let dj = |name: &str, inputs: &[&str], script: String| {
        json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": name},
            "spec": {
                "image": image,
                "command": ["sh", "-c", script],
                "schedule": "0 * * * *",
                "suspend": true,
                "retries": 0,
                "deadline": "2m",
                "history": 10,
                "resources": {"cpu": "50m", "memory": "32Mi"},
                "inputs": inputs,
                "output": format!("pvc://{claim}/{name}"),
                "env": [{"name": "FAIL_AT", "valueFrom": {"configMapKeyRef": {
                    "name": "dataflow-control", "key": "fail-at", "optional": true}}}],
            },
        })
    };
    vec![
        dj("raw", &[], RAW.to_string()),
        dj("clean", &["raw"], clean_script()),
        dj("report", &["clean"], report_script()),
    ]
}

/// A hostPath PersistentVolume on this machine (the real node is this machine) bound to
/// a claim of the namespace; deleted with the guard.
struct Volume {
    pv: String,
    dir: tempfile::TempDir,
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime is busy right here: delete from a
        // private runtime with a fresh client (as `TestNamespace` does).
        let pv = self.pv.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(client) = Client::try_default().await {
                        let api: Api<PersistentVolume> = Api::all(client);
                        let _ = tokio::time::timeout(
                            Duration::from_secs(10),
                            api.delete(&pv, &DeleteParams::default()),
                        )
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

async fn volume(client: &Client, ns: &str, claim: &str) -> Volume {
    let dir = tempfile::Builder::new()
        .prefix("datajob-dataflow-")
        .tempdir_in("/tmp")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let pv = unique_name("dataflow-pv");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let volume: PersistentVolume = common::from_json(json!({
        "metadata": {"name": pv, "labels": {"datajob.dev/e2e": "true"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": pv,
            "hostPath": {"path": dir.path().to_str().unwrap(), "type": "Directory"},
        },
    }));
    pvs.create(&PostParams::default(), &volume).await.unwrap();
    let guard = Volume {
        pv: pv.clone(),
        dir,
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc: PersistentVolumeClaim = common::from_json(json!({
        "metadata": {"name": claim},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": pv,
            "volumeName": pv,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }));
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    wait_for_object(
        &pvcs,
        claim,
        "the claim is bound",
        Duration::from_secs(60),
        |c: &PersistentVolumeClaim| {
            c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
        },
    )
    .await
    .unwrap();
    guard
}

/// Every published partition under `root`: logical time → (file → content), with the
/// manifest's run id, logical time and files (not when or where it was published).
fn published(root: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(at) = name.strip_prefix("logical_time=") else {
            continue;
        };
        let link = std::fs::read_link(e.path()).expect("a partition is a symlink");
        assert!(
            link.starts_with("_versions"),
            "{name} points into _versions: {link:?}"
        );
        let dir = e.path();
        let mut files = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for f in std::fs::read_dir(dir.join(&rel)).unwrap().flatten() {
                let path = rel.join(f.file_name());
                if f.file_type().unwrap().is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(dir.join(&path)).unwrap();
                let text = match path == Path::new(MANIFEST) {
                    true => {
                        let m: Value = serde_json::from_str(&text).unwrap();
                        json!({"runId": m["runId"], "logicalTime": m["logicalTime"], "files": m["files"]})
                            .to_string()
                    }
                    false => text,
                };
                files.insert(path.to_string_lossy().to_string(), text);
            }
        }
        out.insert(at.to_string(), files);
    }
    out
}

fn hour(t: DateTime<Utc>) -> String {
    labels::rfc3339(t)
}

async fn datajob(api: &Api<DataJob>, name: &str) -> DataJob {
    api.get(name).await.unwrap()
}

/// The names of the run Jobs of the namespace, with their uids.
async fn run_jobs(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(NAME))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| (j.name_any(), j.uid().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_chain_is_backfilled_published_rerun_and_matches_a_local_run() {
    let client = common::client().await;
    let Some((ns, node)) = realnode::namespace(&client, "dataflow").await else {
        return;
    };
    let ns = ns; // dropped last: the namespace goes after the volume
    let publisher = std::env::var("DATAJOB_PUBLISHER_IMAGE").expect(
        "the shared operator has no DATAJOB_PUBLISHER_IMAGE: build the operator's image with `make image` (make test does) and run under e2e/with-operator.sh",
    );
    assert!(!publisher.is_empty());
    let claim = "lake";
    let vol = volume(&client, ns.name(), claim).await;
    let root = vol.dir.path().to_path_buf();
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let control: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());

    // Six whole hours, the oldest 6 h ago; raw fails for the third.
    let now = Utc::now();
    let last = now.duration_trunc(Span::hours(1)).unwrap() - Span::hours(1);
    let slots: Vec<DateTime<Utc>> = (0..6).rev().map(|i| last - Span::hours(i)).collect();
    let (from, to, failing) = (hour(slots[0]), hour(slots[5]), hour(slots[2]));
    let cm: ConfigMap = common::from_json(json!({
        "metadata": {"name": "dataflow-control"}, "data": {"fail-at": failing},
    }));
    control.create(&PostParams::default(), &cm).await.unwrap();

    let docs = chain(&node.image_nonroot, claim);
    // Inputs are checked at apply: clean cannot come before raw.
    let clean: DataJob = common::from_json(docs[1].clone());
    let refused = api
        .create(&PostParams::default(), &clean)
        .await
        .expect_err("an unknown input is refused at apply");
    let words = format!(
        "spec.inputs[0] \"raw\" is not a DataJob in namespace {}",
        ns.name()
    );
    assert!(refused.to_string().contains(&words), "{refused}");
    // plan says the same.
    let dir = tempfile::tempdir().unwrap();
    let clean_file = dir.path().join("clean.yaml");
    std::fs::write(&clean_file, serde_saphyr::to_string(&docs[1]).unwrap()).unwrap();
    let out = plugin(ns.name(), &["plan", "-f", clean_file.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(&words), "{out}");
    for doc in &docs {
        let dj: DataJob = common::from_json(doc.clone());
        api.create(&PostParams::default(), &dj).await.unwrap();
    }
    // A cycle is refused too: raw reading report.
    let cycle = api
        .patch(
            "raw",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"inputs": ["report"]}})),
        )
        .await
        .expect_err("a cycle is refused at apply");
    assert!(
        cycle
            .to_string()
            .contains("spec.inputs[0] \"report\" makes a cycle: raw → report → clean → raw"),
        "{cycle}"
    );

    // Bad backfills are refused before anything is applied, with the field, the value
    // and the fix.
    let bad = [
        (
            vec!["backfill", "rwa", "--from", &from, "--to", &to],
            3,
            "no DataJob named rwa".to_string(),
        ),
        (
            vec!["backfill", "raw", "--from", &to, "--to", &from],
            2,
            format!("--from \"{to}\" is after --to \"{from}\"; swap them"),
        ),
        (
            vec![
                "backfill", "raw", "--from", "2026-01-01T00:10:00Z", "--to",
                "2026-01-01T00:20:00Z",
            ],
            2,
            "holds no time of raw's schedule \"0 * * * *\" (UTC) up to now; widen the range"
                .to_string(),
        ),
        (
            vec!["backfill", "raw", "--from", &from, "--to", &to, "--max-slots", "10"],
            2,
            "holds more than 10 scheduled times (its DataJob's and those of the DataJobs downstream together); narrow the range, or raise --max-slots".to_string(),
        ),
    ];
    for (args, code, words) in bad {
        let out = plugin(ns.name(), &args).await;
        assert_eq!(out.code, code, "{args:?}: {out}");
        assert!(out.stderr.contains(&words), "{args:?}: {out}");
    }

    // A Backfill applied without the plugin (GitOps) is refused at apply in the same words.
    let backfills: Api<Backfill> = Api::namespaced(client.clone(), ns.name());
    let reversed: Backfill = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "Backfill",
        "metadata": {"name": "reversed"},
        "spec": {"dataJob": "raw", "from": to, "to": from},
    }));
    let refused = backfills
        .create(&PostParams::default(), &reversed)
        .await
        .expect_err("from after to is refused at apply");
    let words = format!(
        "spec.from \"{to}\" is after spec.to \"{from}\"; swap them: spec.from is the first time, spec.to the last"
    );
    assert!(refused.to_string().contains(&words), "{refused}");

    // The backfill: 6 hours of raw, clean and report following, 2 at a time each.
    let out = plugin(
        ns.name(),
        &[
            "backfill",
            "raw",
            "--from",
            &from,
            "--to",
            &to,
            "--parallel",
            "2",
            "--timeout",
            "8m",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "one hour failed: {out}");
    assert!(
        out.stderr
            .contains(": 18 time(s), 15 succeeded, 0 had succeeded before, 3 failed"),
        "{out}"
    );
    for line in [
        format!("✗ raw {failing} RetriesExhausted"),
        format!("✗ clean {failing} UpstreamFailed"),
        format!("✗ report {failing} UpstreamFailed"),
    ] {
        assert!(out.stderr.contains(&line), "{line}: {out}");
    }
    // Nothing is published for the failed hour, on the volume or in the status; the failed
    // run's staging stays where no reader looks.
    let failed_id = labels::run_id("raw", labels::parse_rfc3339(&failing).unwrap());
    assert!(
        root.join("raw/_runs").join(&failed_id).is_dir(),
        "the failed run had its staging"
    );
    for name in ["raw", "clean", "report"] {
        let parts = published(&root.join(name));
        let hours: Vec<&String> = parts.keys().collect();
        assert_eq!(hours.len(), 5, "{name}: {hours:?}");
        assert!(!parts.contains_key(&failing), "{name} published {failing}");
        let status = datajob(&api, name).await.status.unwrap();
        assert_eq!(status.published.len(), 5, "{name}: {:?}", status.published);
        let failed = status
            .recent_runs
            .iter()
            .find(|r| r.logical_time == failing)
            .unwrap();
        assert_eq!(failed.state, RunState::Failed, "{name}: {failed:?}");
    }
    let clean_failed = datajob(&api, "clean")
        .await
        .status
        .unwrap()
        .recent_runs
        .into_iter()
        .find(|r| r.logical_time == failing)
        .unwrap();
    assert!(
        clean_failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("input raw's run") && m.contains("failed")),
        "{clean_failed:?}"
    );

    // The same command again creates nothing: every time has its outcome.
    let before = run_jobs(&client, ns.name()).await;
    let out = plugin(
        ns.name(),
        &[
            "backfill",
            "raw",
            "--from",
            &from,
            "--to",
            &to,
            "--parallel",
            "2",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let after = run_jobs(&client, ns.name()).await;
    let new: Vec<&String> = after
        .iter()
        .filter(|(n, uid)| before.get(*n) != Some(uid))
        .map(|(n, _)| n)
        .collect();
    assert!(new.is_empty(), "running it again created {new:?}");

    // Fix the cause, run the failed hour again: its readers follow.
    control
        .patch(
            "dataflow-control",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"fail-at": ""}})),
        )
        .await
        .unwrap();
    let out = plugin(
        ns.name(),
        &[
            "backfill",
            "raw",
            "--from",
            &from,
            "--to",
            &to,
            "--parallel",
            "2",
            "--rerun-failed",
            "--timeout",
            "6m",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains(" 0 failed"), "{out}");

    // A run waits for an input that has not published its time yet, and goes once it has.
    // (This hour: its inputs' runs may still start, so the run waits rather than fails.)
    // Too close to the next hour, this hour's starting deadline could pass while the run
    // waits: wait for the next one.
    let next_hour = Utc::now().duration_trunc(Span::hours(1)).unwrap() + Span::hours(1);
    if next_hour - Utc::now() < Span::minutes(3) {
        let wait = (next_hour - Utc::now() + Span::seconds(5))
            .to_std()
            .unwrap_or_default();
        eprintln!("waiting {wait:?} for the next hour");
        tokio::time::sleep(wait).await;
    }
    let current = hour(Utc::now().duration_trunc(Span::hours(1)).unwrap());
    let out = plugin(ns.name(), &["trigger", "report", "--at", &current]).await;
    assert_eq!(out.code, 0, "{out}");
    let waiting = wait_for_object(
        &api,
        "report",
        "report waits for clean",
        Duration::from_secs(60),
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.recent_runs.iter().find(|r| r.logical_time == current))
                .is_some_and(|r| r.state == RunState::Waiting)
        },
    )
    .await
    .unwrap();
    let run = waiting
        .status
        .unwrap()
        .recent_runs
        .into_iter()
        .find(|r| r.logical_time == current)
        .unwrap();
    assert_eq!(run.reason.as_deref(), Some("WaitingForInput"), "{run:?}");
    assert!(
        run.message
            .as_deref()
            .is_some_and(|m| m.contains("input clean")),
        "{run:?}"
    );
    for name in ["clean", "raw"] {
        let out = plugin(ns.name(), &["trigger", name, "--at", &current]).await;
        assert_eq!(out.code, 0, "{out}");
    }
    let mut hours: Vec<String> = slots.iter().map(|t| hour(*t)).collect();
    hours.push(current.clone());
    for name in ["raw", "clean", "report"] {
        let dj = wait_for_object(
            &api,
            name,
            &format!("{name} has published every hour"),
            Duration::from_secs(180),
            |d: &DataJob| d.status.as_ref().is_some_and(|s| s.published.len() == 7),
        )
        .await
        .unwrap();
        let status = dj.status.unwrap();
        // Exactly one succeeded run per hour: one publication per logical time, by the
        // run of that time (the run id is the time's).
        let mut at: Vec<String> = status
            .published
            .iter()
            .map(|p| p.logical_time.clone())
            .collect();
        at.sort();
        assert_eq!(at, hours, "{name}");
        for p in &status.published {
            let t = labels::parse_rfc3339(&p.logical_time).unwrap();
            assert_eq!(p.run_id, labels::run_id(name, t), "{name}: {p:?}");
            assert_eq!(
                p.location,
                format!("pvc://{claim}/{name}/logical_time={}", p.logical_time)
            );
            let run = status
                .recent_runs
                .iter()
                .find(|r| r.name == p.run_id)
                .unwrap_or_else(|| panic!("{name}: no run {}", p.run_id));
            assert_eq!(run.state, RunState::Succeeded, "{name}: {run:?}");
        }
        let on_volume = published(&root.join(name));
        assert_eq!(
            on_volume.keys().cloned().collect::<Vec<_>>(),
            hours,
            "{name}"
        );
        for (at, files) in &on_volume {
            let m: Value = serde_json::from_str(&files[MANIFEST]).unwrap();
            let t = labels::parse_rfc3339(at).unwrap();
            assert_eq!(m["runId"], labels::run_id(name, t), "{name} {at}");
        }
        // One version per hour (a second success of an hour would have left a second,
        // replaced one), and no staging left: the failed hour's was published by its re-run.
        let entries = |dir: &str| -> Vec<String> {
            std::fs::read_dir(root.join(name).join(dir))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            entries("_versions").len(),
            7,
            "{name}: {:?}",
            entries("_versions")
        );
        assert!(
            entries("_runs").is_empty(),
            "{name}: {:?}",
            entries("_runs")
        );
    }
    // The hour that failed: clean started only after raw's new run was published.
    let raw = datajob(&api, "raw").await.status.unwrap();
    let clean = datajob(&api, "clean").await.status.unwrap();
    let raw_published = raw
        .published
        .iter()
        .find(|p| p.logical_time == failing)
        .and_then(|p| p.published_at.clone())
        .unwrap();
    let clean_started = clean
        .recent_runs
        .iter()
        .find(|r| r.logical_time == failing)
        .and_then(|r| r.start_time.clone())
        .unwrap();
    assert!(
        clean_started >= raw_published,
        "clean started {clean_started}, raw was published {raw_published}"
    );
    let report_hour = published(&root.join("report"));
    assert_eq!(
        report_hour[&failing]["summary/report.txt"],
        format!("rows 2\nclean,{failing}\nclean,{failing}-late\n")
    );

    // The same scenario on this machine: the same published files.
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("chain.yaml");
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_saphyr::to_string(d).unwrap())
        .collect();
    std::fs::write(&file, yaml.join("---\n")).unwrap();
    let state = local.path().join("state");
    let run_local = |name: &str, at: &str, fail_at: &str| {
        let out = Command::new(common::bin("kubectl-datajob"))
            .args(["run", "--local", "-f"])
            .arg(&file)
            .args(["--name", name, "--engine", "host", "--logical-time", at])
            .args(["-n", ns.name(), "-e", &format!("FAIL_AT={fail_at}")])
            .arg("--state-dir")
            .arg(&state)
            .current_dir(local.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run kubectl-datajob");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for name in ["raw", "clean", "report"] {
        for at in &hours {
            let (code, stderr) = run_local(name, at, &failing);
            let fails = *at == failing;
            assert_eq!(
                code,
                Some(if fails { 1 } else { 0 }),
                "{name} {at}: {stderr}"
            );
            if fails && name != "raw" {
                assert!(
                    stderr.contains("✗ not started: WaitingForInput"),
                    "{stderr}"
                );
            }
        }
    }
    for name in ["raw", "clean", "report"] {
        let (code, stderr) = run_local(name, &failing, "");
        assert_eq!(code, Some(0), "{name}: {stderr}");
    }
    for name in ["raw", "clean", "report"] {
        let here = published(&state.join("pvc").join(claim).join(name));
        let there = published(&root.join(name));
        assert_eq!(here.len(), 7, "{name}");
        assert_eq!(here, there, "{name}: the local run published other files");
    }
    drop(vol);
}

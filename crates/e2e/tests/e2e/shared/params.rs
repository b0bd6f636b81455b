//! End-to-end: runs with parameters on the real node. `kubectl datajob trigger --arg`
//! gives a run its arguments as `DATAJOB_ARG_<KEY>` and through `$(DATAJOB_ARG_<KEY>)` in
//! its args; the run has a run id of its own beside the run of the same logical time
//! without arguments; both are on the status and in `runs`; names the DataJob does not
//! declare, and declarations that are not valid, are refused.

use crate::common;

use std::time::Duration;

use common::plugin::plugin;
use common::realnode;
use common::{client, wait_for_object};
use datajob_api::DataJob;
use datajob_core::labels::{self, TRIGGER_ARGS};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn datajob(name: &str, spec: Value) -> DataJob {
    common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name}, "spec": spec,
    }))
}

#[tokio::test]
async fn a_run_with_arguments_runs_beside_the_run_of_its_time_and_says_what_it_was_given() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "params").await else {
        return;
    };
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let spec = json!({
        "image": node.image_nonroot,
        // Once a year: only triggered runs happen during the test.
        "schedule": "0 0 1 1 *",
        "command": ["sh", "-c", "echo day=$1 mode=$DATAJOB_ARG_MODE at=$DATAJOB_LOGICAL_TIME id=$DATAJOB_RUN_ID", "x"],
        "args": ["$(DATAJOB_ARG_DAY)"],
        "params": {"day": "yesterday", "mode": "full"},
        "resources": {"cpu": "100m", "memory": "64Mi"},
    });

    // A declaration that is not valid is refused at apply, naming the field.
    let mut bad = spec.clone();
    bad["params"] = json!({"1day": ""});
    let e = api
        .create(&PostParams::default(), &datajob("bad-params", bad))
        .await
        .expect_err("an invalid parameter name is refused");
    assert!(
        e.to_string()
            .contains("spec.params \"1day\" is not a valid parameter name"),
        "{e}"
    );

    api.create(&PostParams::default(), &datajob("daily", spec))
        .await
        .expect("create DataJob");
    let at = "2026-11-25T03:00:00Z";
    let with = plugin(
        ns.name(),
        &[
            "trigger",
            "daily",
            "--logical-time",
            at,
            "--arg",
            "day=2026-11-01",
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(with.code, 0, "{with}");
    let report: Value = serde_json::from_str(&with.stdout).expect("trigger -o json");
    let plain_id = labels::run_id("daily", labels::parse_rfc3339(at).unwrap());
    let id = report["runId"].as_str().unwrap_or_default().to_string();
    assert!(
        id.starts_with(&format!("{plain_id}-")) && id.len() == plain_id.len() + 9,
        "a run with arguments has a run id of its own: {with}"
    );
    assert_eq!(report["params"], json!({"day": "2026-11-01"}), "{with}");

    // The same logical time without arguments is another run, with the defaults.
    let without = plugin(
        ns.name(),
        &["trigger", "daily", "--at", at, "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(without.code, 0, "{without}");
    let report: Value = serde_json::from_str(&without.stdout).expect("trigger -o json");
    assert_eq!(report["runId"], json!(plain_id), "{without}");

    // What each run really printed, on the real node.
    let logs = plugin(ns.name(), &["logs", "daily", "--run", &id]).await;
    assert_eq!(logs.code, 0, "{logs}");
    assert!(
        logs.stdout
            .contains(&format!("day=2026-11-01 mode=full at={at} id={id}")),
        "{logs}"
    );
    let logs = plugin(ns.name(), &["logs", "daily", "--run", &plain_id]).await;
    assert!(
        logs.stdout
            .contains(&format!("day=yesterday mode=full at={at} id={plain_id}")),
        "{logs}"
    );

    // Both are on the status, the run with arguments with them.
    let dj = wait_for_object(
        &api,
        "daily",
        "both runs recorded",
        Duration::from_secs(60),
        |d: &DataJob| d.status.as_ref().is_some_and(|s| s.recent_runs.len() == 2),
    )
    .await
    .unwrap();
    let recent = dj.status.unwrap().recent_runs;
    let run = recent
        .iter()
        .find(|r| r.name == id)
        .expect("the run with arguments");
    assert_eq!(
        run.params.get("day").map(String::as_str),
        Some("2026-11-01")
    );
    assert!(
        recent
            .iter()
            .any(|r| r.name == plain_id && r.params.is_empty())
    );
    let runs = plugin(ns.name(), &["runs", "daily"]).await;
    assert_eq!(runs.code, 0, "{runs}");
    assert!(
        runs.stdout.lines().next().unwrap_or("").ends_with("PARAMS"),
        "{runs}"
    );
    assert!(
        runs.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("day=2026-11-01")),
        "{runs}"
    );

    // A name the DataJob does not declare is refused with the ones it does, and nothing
    // is asked of the operator.
    let refused = plugin(ns.name(), &["trigger", "daily", "--arg", "region=eu"]).await;
    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.stderr.contains("parameter region \"eu\" is not declared in the DataJob's spec.params; use one of the declared parameters: day, mode"),
        "{refused}"
    );
    let dj = api.get("daily").await.expect("get DataJob");
    assert!(
        !dj.annotations().contains_key(TRIGGER_ARGS),
        "the last trigger had no arguments, and the refused one wrote none: {:?}",
        dj.annotations()
    );
}

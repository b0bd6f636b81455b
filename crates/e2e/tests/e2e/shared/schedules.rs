//! Schedules on the days clocks change, against the real thing: Kubernetes' CronJob
//! controller computes run times with robfig/cron v3 (`schedule.Next`, the zone as a
//! `TZ=` prefix); `e2e/cron-oracle.sh` builds that library's answer from the Go module
//! proxy. On both daylight-saving days of three zones (two northern, one southern), for
//! schedules inside, around and across the changed hour, `kubectl datajob plan --from`
//! must list exactly the controller's run times (spring forward skips the missing hour's
//! runs; fall back runs the repeated hour's twice, in time order), and DataJob's own
//! look-back (`recent`, used for missed and late runs) must see the same times backwards.
//! No cluster is needed.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use datajob_core::labels::{parse_rfc3339, rfc3339};
use datajob_core::schedule::Schedule;
use serde_json::Value;

/// (zone, a time before the spring-forward day, before the fall-back day), 2026.
const ZONES: [(&str, &str, &str); 3] = [
    (
        "America/New_York",
        "2026-03-07T20:00:00Z",
        "2026-10-31T20:00:00Z",
    ),
    (
        "Europe/London",
        "2026-03-28T20:00:00Z",
        "2026-10-24T20:00:00Z",
    ),
    // Southern: clocks go back on 5 April and forward on 4 October.
    (
        "Australia/Sydney",
        "2026-10-03T08:00:00Z",
        "2026-04-04T08:00:00Z",
    ),
];

/// Inside the changed hour (New York and Sydney change at 02:00, London at 01:00 and
/// 02:00), around it, every hour, and every 15 minutes across it.
const SCHEDULES: [&str; 6] = [
    "30 2 * * *",
    "30 1 * * *",
    "0 3 * * *",
    "0 * * * *",
    "*/15 1-3 * * *",
    "45 2 * * 0",
];

/// How many run times to compare from each start: a day and a half of hourly runs.
const COUNT: usize = 36;

fn oracle(lines: &[String]) -> Vec<Vec<String>> {
    let out = Command::new("bash")
        .arg(format!("{}/e2e/cron-oracle.sh", common::ROOT))
        .output()
        .expect("run e2e/cron-oracle.sh");
    assert!(
        out.status.success(),
        "e2e/cron-oracle.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answers: Vec<Vec<String>> = text
        .lines()
        .map(|l| {
            assert!(!l.starts_with("error"), "the oracle: {l}");
            l.split_whitespace().map(str::to_string).collect()
        })
        .collect();
    assert_eq!(
        answers.len(),
        lines.len(),
        "one answer per question: {text}"
    );
    answers
}

/// `kubectl datajob plan --offline --from FROM --next N -o json` of a DataJob with this
/// schedule and zone: its next run times, UTC.
fn planned(schedule: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dst.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {{name: dst}}\n\
             spec: {{image: busybox, schedule: '{schedule}', timeZone: {zone}}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(common::bin("kubectl-datajob"))
        .args(["plan", "--offline", "-n", "default", "-o", "json", "--next"])
        .arg(n.to_string())
        .args(["--from", from, "-f"])
        .arg(&file)
        .output()
        .expect("run kubectl-datajob plan");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan {schedule} {zone}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_str(&text).unwrap();
    plan["nextRuns"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .map(|r| r["utc"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn plan_agrees_with_the_cronjob_controller_on_daylight_saving_days() {
    let mut cases = Vec::new();
    for (zone, spring, fall) in ZONES {
        for from in [spring, fall] {
            for schedule in SCHEDULES {
                cases.push((schedule, zone, from));
            }
        }
    }
    let questions: Vec<String> = cases
        .iter()
        .map(|(s, z, f)| format!("{s}|{z}|{f}|{COUNT}"))
        .collect();
    let answers = oracle(&questions);
    let mut skipped = 0;
    let mut doubled = 0;
    for ((schedule, zone, from), want) in cases.iter().zip(&answers) {
        let got = planned(schedule, zone, from, COUNT);
        assert_eq!(
            &got, want,
            "plan of {schedule:?} in {zone} from {from} differs from the CronJob controller's"
        );
        let tz = datajob_core::schedule::parse_time_zone(zone).unwrap();
        let s = Schedule::parse(schedule, tz).unwrap();
        // One run after the other, as the operator and the late check ask.
        let mut at = parse_rfc3339(from).unwrap();
        let mut chain = Vec::new();
        for _ in 0..want.len() {
            at = s.next_after(at).unwrap();
            chain.push(rfc3339(at));
        }
        assert_eq!(
            &chain, want,
            "next_after() of {schedule:?} in {zone} from {from}, one by one"
        );
        // Backwards, as the missed and late runs are found: the same times.
        let last = parse_rfc3339(want.last().unwrap()).unwrap();
        let mut back: Vec<String> = s.recent(last, COUNT).into_iter().map(rfc3339).collect();
        back.reverse();
        assert_eq!(
            &back, want,
            "recent() of {schedule:?} in {zone} up to {last} differs from the controller's"
        );
        // What the days did, to show the tests cover both rules.
        let local: Vec<String> = want
            .iter()
            .map(|t| {
                parse_rfc3339(t)
                    .unwrap()
                    .with_timezone(&tz)
                    .format("%F %H:%M")
                    .to_string()
            })
            .collect();
        let unique: std::collections::BTreeSet<&String> = local.iter().collect();
        doubled += local.len() - unique.len();
        // A daily 02:30 the day after `from` that never came: the skipped run.
        let start = parse_rfc3339(from).unwrap().with_timezone(&tz).date_naive();
        let first = parse_rfc3339(&want[0])
            .unwrap()
            .with_timezone(&tz)
            .date_naive();
        if *schedule == "30 2 * * *" && (first - start).num_days() > 1 {
            skipped += 1;
        }
    }
    assert!(
        doubled > 0,
        "some fall-back run times repeat on the local clock"
    );
    assert!(skipped > 0, "some spring-forward day has no 02:30 run");
    eprintln!(
        "{} schedules × zones × days agree with robfig/cron v3; {doubled} repeated local times, {skipped} skipped 02:30 days",
        cases.len()
    );
}

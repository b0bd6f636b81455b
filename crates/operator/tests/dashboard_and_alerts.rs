//! The shipped Grafana dashboard and Prometheus alerts, without a cluster: the rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), every alert is
//! shown firing and not firing there and links, by an absolute URL, a runbook section that
//! exists, every aggregation of an alert keeps the labels of the installation (`cluster`,
//! `job`, `namespace`), the dashboard is a well-formed Grafana model whose queries use the
//! data source variable and select the cluster and the installation (`$cluster`, `$job`),
//! and every metric the two use is one the operator documents (and so, by the unit test
//! in crates/operator/src/metrics.rs, exposes). `crates/e2e/tests/e2e/alone/observability.rs` runs them against a real
//! Prometheus. promtool comes with Debian's `prometheus` package (`.ci/run` installs it),
//! or from `$PROMTOOL`.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(format!("{ROOT}/charts/datajob/alerts"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's prometheus package (it has promtool), or set PROMTOOL",
                promtool()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every alerting rule of the rules file.
fn alerts() -> Vec<Value> {
    let rules = yaml("charts/datajob/alerts/datajob.rules.yaml");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// The dashboard's panels (rows included, in order).
fn panels() -> Vec<Value> {
    let dash: Value = serde_json::from_str(&read("charts/datajob/dashboards/datajob.json"))
        .expect("the dashboard is JSON");
    dash["panels"].as_array().cloned().expect("panels")
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    read(doc)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The `datajob_…` metric names in a PromQL expression, and `up{…}`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
            i += 1;
        }
        if i > start {
            let word: String = bytes[start..i].iter().collect();
            let quoted = start > 0 && bytes[start - 1] == '"';
            // `up` is Prometheus' own, for the scrape of the operator.
            let up = word == "up" && bytes.get(i) == Some(&'{');
            if !quoted && (word.starts_with("datajob_") || up) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Metric names and types in the table of docs/operations.md#metrics.
fn documented() -> BTreeMap<String, String> {
    read("docs/operations.md")
        .lines()
        .filter(|l| l.starts_with("| `datajob_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect()
}

/// Whether `name` (as a query writes it) is a documented metric: itself, or a
/// histogram's `_bucket`, `_count` or `_sum` series.
fn is_documented(name: &str, docs: &BTreeMap<String, String>) -> bool {
    name == "up"
        || docs.contains_key(name)
        || ["_bucket", "_count", "_sum"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| docs.get(base).map(String::as_str) == Some("histogram"))
        })
}

/// The words of a PromQL expression (runs of letters, digits and `_`), with where each
/// starts and ends (in chars).
fn words(chars: &[char]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            i += 1;
        } else {
            out.push((start, i, chars[start..i].iter().collect()));
        }
    }
    out
}

/// The series selectors of a PromQL expression: each metric name (`datajob_…`,
/// `process_…`, `up`, not inside quotes) with the matchers in its braces (`None`
/// without braces).
fn selectors(expr: &str) -> Vec<(String, Option<String>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    for (start, i, word) in words(&chars) {
        let quoted = start > 0 && chars[start - 1] == '"';
        let metric = word.starts_with("datajob_") || word.starts_with("process_") || word == "up";
        if quoted || !metric {
            continue;
        }
        let matchers = (chars.get(i) == Some(&'{')).then(|| {
            let close = chars[i..]
                .iter()
                .position(|c| *c == '}')
                .map_or(chars.len(), |p| i + p);
            chars[i + 1..close].iter().collect()
        });
        // `up` is a metric only as `up{…}` (else a word of a label list or a string).
        if word != "up" || matchers.is_some() {
            out.push((word, matchers));
        }
    }
    out
}

/// Whether every series selector of `expr` selects the dashboard's cluster and
/// installation: `cluster=~"$cluster"` and `job=~"$job"` in its braces.
fn selects_the_installation(expr: &str) -> bool {
    let sels = selectors(expr);
    !sels.is_empty()
        && sels.iter().all(|(_, m)| {
            m.as_deref().is_some_and(|m| {
                let m: Vec<&str> = m.split(',').map(str::trim).collect();
                m.contains(&r#"cluster=~"$cluster""#) && m.contains(&r#"job=~"$job""#)
            })
        })
}

/// The label lists of `expr` after `keyword` (`by`, `on`, `without`, `ignoring`), as a
/// word followed by `(`.
fn label_lists(expr: &str, keyword: &str) -> Vec<Vec<String>> {
    let mut lists = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(keyword) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + keyword.len()..].trim_start();
        let word_start = before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if word_start && let Some(list) = after.strip_prefix('(') {
            let close = list.find(')').unwrap_or(list.len());
            lists.push(
                list[..close]
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect(),
            );
        }
        rest = &rest[at + keyword.len()..];
    }
    lists
}

/// The aggregation operators of `expr` not followed by `by (…)`: `sum(…)`,
/// `max without (…)`, … (functions such as `max_over_time` are other words).
fn aggregations_without_by(expr: &str) -> Vec<String> {
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    for (start, i, word) in words(&chars) {
        if AGGREGATIONS.contains(&word.as_str()) {
            let rest: String = chars[i..].iter().collect();
            if !rest.trim_start().starts_with("by") {
                found.push(format!("{word}@{start}"));
            }
        }
    }
    found
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let out = run_promtool(&["check", "rules", "datajob.rules.yaml"]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts().len())),
        "{out}"
    );
    let out = run_promtool(&["test", "rules", "tests.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let tests = yaml("charts/datajob/alerts/tests.yaml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_array().expect("tests") {
        for case in t["alert_rule_test"].as_array().cloned().unwrap_or_default() {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let fired = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            match fired {
                true => firing.insert(name),
                false => quiet.insert(name),
            };
        }
    }
    for alert in alerts() {
        let name = alert["alert"].as_str().expect("alert name");
        assert!(firing.contains(name), "no test shows {name} firing");
        assert!(quiet.contains(name), "no test shows {name} not firing");
    }
}

#[test]
fn every_alert_links_a_runbook_section_that_exists() {
    // The file's runbook URLs are absolute, on the chart's default runbookBaseURL, which
    // the template replaces by the value.
    let values = yaml("charts/datajob/values.yaml");
    let base = values["metrics"]["prometheusRule"]["runbookBaseURL"]
        .as_str()
        .expect("metrics.prometheusRule.runbookBaseURL")
        .to_string();
    assert!(
        base.starts_with("https://") && base.ends_with('/'),
        "the default runbookBaseURL {base} is an absolute URL ending in /"
    );
    let template = read("charts/datajob/templates/prometheusrule.yaml");
    assert!(
        template.contains(&format!("$fileBase := \"{base}\"")),
        "templates/prometheusrule.yaml replaces {base}, the default runbookBaseURL"
    );
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{}", alerts.len());
    for alert in alerts {
        let name = alert["alert"].as_str().expect("alert name");
        assert!(
            alert["labels"]["severity"].is_string(),
            "{name} has a severity"
        );
        for key in ["summary", "description"] {
            assert!(alert["annotations"][key].is_string(), "{name} has a {key}");
        }
        let runbook = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has a runbook_url annotation"));
        let path = runbook
            .strip_prefix(base.as_str())
            .unwrap_or_else(|| panic!("{name}: {runbook} does not start with {base}"));
        let (doc, anchor) = path
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: {runbook} has no #anchor"));
        assert!(
            doc.starts_with("docs/") && doc.ends_with(".md"),
            "{name}: {runbook}"
        );
        assert!(
            anchors(doc).contains(anchor),
            "{name}: {doc} has no heading for #{anchor}"
        );
    }
}

/// Two installations in one Prometheus (or Thanos, Mimir) get their own alerts: every
/// aggregation and every vector match keeps `cluster` (where a label gives it), `job`
/// and `namespace` (Prometheus groups `by` a label a series lacks as by its empty
/// value). tests.yaml shows two installations firing separately.
#[test]
fn every_alert_aggregation_keeps_the_installation() {
    let installation = ["cluster", "job", "namespace"];
    for alert in alerts() {
        let name = alert["alert"].as_str().expect("alert name");
        let expr = alert["expr"].as_str().expect("expr");
        assert_eq!(
            aggregations_without_by(expr),
            Vec::<String>::new(),
            "{name}: an aggregation without `by` merges installations: {expr}"
        );
        for keyword in ["without", "ignoring"] {
            assert!(
                label_lists(expr, keyword).is_empty(),
                "{name}: `{keyword}` is not checked here: {expr}"
            );
        }
        let by = label_lists(expr, "by");
        assert!(!by.is_empty(), "{name} aggregates: {expr}");
        for list in by.iter().chain(&label_lists(expr, "on")) {
            for label in installation {
                assert!(
                    list.iter().any(|l| l == label),
                    "{name}: ({}) lacks {label}: {expr}",
                    list.join(", ")
                );
            }
        }
    }
    let tests = read("charts/datajob/alerts/tests.yaml");
    for label in [
        r#"cluster="eu""#,
        r#"cluster="us""#,
        r#"job="datajob-prod""#,
        r#"job="datajob-staging""#,
    ] {
        assert!(
            tests.contains(label),
            "tests.yaml has two installations: {label}"
        );
    }
    // The checks above see what they must.
    assert_eq!(
        aggregations_without_by("sum(x) + max by (a) (y) + max_over_time(z[1d]) + count (w)"),
        ["sum@0", "count@49"]
    );
    assert_eq!(
        label_lists(
            "a * on (job, x) group_left (o) max by(job) (b) unless on(c) d",
            "on"
        ),
        [vec!["job", "x"], vec!["c"]]
    );
}

#[test]
fn the_dashboard_is_a_grafana_model_on_the_datasource_variable() {
    let dash: Value = serde_json::from_str(&read("charts/datajob/dashboards/datajob.json"))
        .expect("the dashboard is JSON");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let names: Vec<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(
        names,
        ["datasource", "cluster", "job", "namespace", "datajob"],
        "each variable after those it depends on"
    );
    for name in ["cluster", "job", "namespace", "datajob"] {
        let v = var(name);
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], "${datasource}");
        assert!(
            v["definition"]
                .as_str()
                .is_some_and(|q| q.starts_with("label_values(")),
            "{v}"
        );
        assert_eq!(v["allValue"], ".*", "All is a regex for =~");
        assert_eq!(
            v["includeAll"], true,
            "{name}: All, also when no series has the label"
        );
        assert_eq!(v["query"]["query"], v["definition"], "{name}");
    }
    // The installations are the scrape jobs that serve the operator's build info (no job
    // name guessed from the release); `cluster`, where a label gives it, selects them.
    assert_eq!(
        var("cluster")["definition"],
        "label_values(datajob_build_info, cluster)"
    );
    assert_eq!(
        var("job")["definition"],
        r#"label_values(datajob_build_info{cluster=~"$cluster"}, job)"#
    );
    for name in ["namespace", "datajob"] {
        let def = var(name)["definition"].as_str().unwrap_or_default();
        assert!(selects_the_installation(def), "{name}: {def}");
    }
    let panels = panels();
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(
        rows,
        [
            "Runs",
            "Schedules",
            "Stuck-run guard",
            "Node groups",
            "Operator",
            "Log archive"
        ]
    );
    let mut ids = BTreeSet::new();
    for p in &panels {
        assert!(ids.insert(p["id"].as_u64().expect("id")), "unique ids");
        let grid = &p["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("title");
        assert!(p["description"].is_string(), "{title} says what it shows");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has queries");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
            assert!(selects_the_installation(expr), "{title}: {expr}");
        }
    }
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_use_is_documented() {
    let docs = documented();
    assert!(docs.len() > 20, "{docs:?}");
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for p in panels() {
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            for n in metric_names(t["expr"].as_str().unwrap_or_default()) {
                used.insert(n, format!("panel {}", p["title"]));
            }
        }
    }
    for a in alerts() {
        for n in metric_names(a["expr"].as_str().unwrap_or_default()) {
            used.insert(n, format!("alert {}", a["alert"]));
        }
    }
    assert!(used.len() > 20, "{used:?}");
    for (name, by) in &used {
        assert!(
            is_documented(name, &docs),
            "{by} uses {name}, which docs/operations.md#metrics does not list"
        );
    }
    let names = metric_names(r#"sum(x{le="datajob_no"}) + datajob_a_total + up{job="x"} + upper"#);
    assert_eq!(names, ["datajob_a_total".into(), "up".into()].into());
}

#[test]
fn the_installation_check_sees_every_selector() {
    let sel = r#"cluster=~"$cluster",job=~"$job""#;
    assert!(selects_the_installation(&format!(
        "sum by (job) (up{{{sel}}} and on (cluster, job) datajob_a{{{sel},x=\"datajob_b\"}})"
    )));
    for bad in [
        format!("datajob_a{{{sel}}} and on (job) datajob_build_info"),
        format!(r#"datajob_a{{cluster=~"$cluster"}} + datajob_b{{{sel}}}"#),
        format!("process_cpu_seconds_total and on (job) datajob_a{{{sel}}}"),
        "sum(vector(1))".to_string(),
    ] {
        assert!(!selects_the_installation(&bad), "{bad}");
    }
}

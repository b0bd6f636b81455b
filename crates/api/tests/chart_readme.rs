//! Each chart's README.md is generated from its Chart.yaml and values.yaml
//! (`make chart-readme`): this test fails, naming the chart and the first differing
//! line, when a value was added, removed or redocumented and the README not regenerated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::fs;
use std::path::PathBuf;

fn check(chart: &str) {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts")).join(chart);
    let read = |f: &str| {
        fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("cannot read charts/{chart}/{f}: {e}"))
    };
    let want = datajob_api::chart_readme::render(&read("Chart.yaml"), &read("values.yaml"))
        .unwrap_or_else(|e| panic!("charts/{chart}: {e}"));
    let have = read("README.md");
    if want != have {
        let line = want
            .lines()
            .zip(have.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the lengths differ".to_string(),
                |i| {
                    format!(
                        "line {}: want {:?}",
                        i + 1,
                        want.lines().nth(i).unwrap_or("")
                    )
                },
            );
        panic!(
            "charts/{chart}/README.md is not generated from its values ({line}): run make chart-readme"
        );
    }
}

#[test]
fn the_datajob_chart_readme_is_generated_from_its_values() {
    check("datajob");
}

#[test]
fn the_crds_chart_readme_is_generated_from_its_values() {
    check("datajob-crds");
}

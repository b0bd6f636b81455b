//! The charts ship the CRDs twice: `charts/datajob/crds/` (Helm installs that folder
//! before the templates, once) and `charts/datajob-crds/files/` (rendered as templates,
//! so `helm upgrade` upgrades them). Both must be byte-for-byte the generated
//! `crds/*.yaml`: this test fails, naming the file, when one was regenerated and not
//! copied. Fix: `make crds`.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect()
}

#[test]
fn chart_crds_are_exact_copies_of_the_generated_ones() {
    same_as_generated("charts/datajob/crds");
}

#[test]
fn the_crds_chart_holds_exact_copies_of_the_generated_ones() {
    same_as_generated("charts/datajob-crds/files");
}

fn same_as_generated(copy: &str) {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let generated = root.join("crds");
    let chart = root.join(copy);
    let want = yaml_files(&generated);
    let have = yaml_files(&chart);
    assert!(!want.is_empty(), "no CRDs in {}", generated.display());

    let mut problems = Vec::new();
    for name in want.difference(&have) {
        problems.push(format!("{copy}/{name} is missing (crds/{name} exists)"));
    }
    for name in have.difference(&want) {
        problems.push(format!(
            "{copy}/{name} has no generated counterpart crds/{name}: remove it"
        ));
    }
    for name in want.intersection(&have) {
        let a = fs::read(generated.join(name)).expect("read generated CRD");
        let b = fs::read(chart.join(name)).expect("read chart CRD");
        if a != b {
            let line = String::from_utf8_lossy(&a)
                .lines()
                .zip(String::from_utf8_lossy(&b).lines())
                .position(|(x, y)| x != y)
                .map_or_else(
                    || "the lengths differ".to_string(),
                    |i| format!("first difference at line {}", i + 1),
                );
            problems.push(format!("{copy}/{name} differs from crds/{name} ({line})"));
        }
    }
    assert!(
        problems.is_empty(),
        "the CRDs in {copy} are not the generated ones:\n  {}\nCopy them: make crds",
        problems.join("\n  ")
    );
}

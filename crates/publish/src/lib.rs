//! Staging, then publish, on a directory: the moves behind the layout of
//! [`datajob_core::output`]. The same code runs in `kubectl datajob run --local` and in the
//! operator's image on the cluster (`datajob-operator stage` in a run's pod before each
//! attempt, `datajob-operator publish` in the Job the operator starts when a run
//! succeeded), so a scenario publishes the same files in both places.
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use datajob_core::output::{MANIFEST, STAGING_DIR, VERSIONS_DIR};

/// What a published version says about itself (`_DATAJOB.json`): readers check it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub run_id: String,
    pub logical_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub published_at: String,
    /// Every file of the version but the manifest, by path relative to it, sorted.
    pub files: Vec<ManifestFile>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
}

/// Who published, for the manifest.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub data_job: Option<String>,
    pub namespace: Option<String>,
}

/// Empties (or makes) the staging directory of `run_id` under `root`, writable by the
/// run's group, and sweeps what finished runs left (see [`sweep`]). Returns it.
pub fn stage(root: &Path, run_id: &str, grace: Duration, now: SystemTime) -> io::Result<PathBuf> {
    let runs = root.join(STAGING_DIR);
    std::fs::create_dir_all(&runs)?;
    let dir = runs.join(run_id);
    remove_any(&dir)?;
    std::fs::create_dir(&dir)?;
    group_writable(&dir)?;
    sweep(root, grace, now, Some(run_id))?;
    Ok(dir)
}

fn group_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2775))
}

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The files under `dir` (relative, sorted), without the manifest at its top.
fn list_files(dir: &Path) -> io::Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if path != Path::new(MANIFEST) {
                out.push(ManifestFile {
                    path: path.to_string_lossy().to_string(),
                    size: entry.metadata()?.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn rfc3339(t: SystemTime) -> String {
    datajob_core::labels::rfc3339(chrono::DateTime::<chrono::Utc>::from(t))
}

/// Publishes the staging directory of `run_id` as the partition of `logical_time`:
/// renames it to `_versions/<version>`, writes its manifest, then points
/// `logical_time=<t>` at it with one rename of a new symlink over the old one. Safe to
/// run again after a failure part way. The version it replaced is swept later.
pub fn publish(
    root: &Path,
    run_id: &str,
    logical_time: &str,
    version: &str,
    origin: &Origin,
    now: SystemTime,
) -> io::Result<Manifest> {
    let staged = root.join(STAGING_DIR).join(run_id);
    let versions = root.join(VERSIONS_DIR);
    std::fs::create_dir_all(&versions)?;
    let target = versions.join(version);
    if staged.is_dir() {
        if target.exists() {
            remove_any(&target)?;
        }
        std::fs::rename(&staged, &target)?;
    } else if !target.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "nothing is staged for run {run_id}: {} does not exist",
                staged.display()
            ),
        ));
    }
    let manifest = Manifest {
        run_id: run_id.to_string(),
        logical_time: logical_time.to_string(),
        data_job: origin.data_job.clone(),
        namespace: origin.namespace.clone(),
        published_at: rfc3339(now),
        files: list_files(&target)?,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let tmp = target.join(format!(".{MANIFEST}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, target.join(MANIFEST))?;

    let partition = root.join(format!("logical_time={logical_time}"));
    let previous = std::fs::read_link(&partition).ok();
    let link = root.join(format!(".logical_time={logical_time}.{version}.tmp"));
    remove_any(&link)?;
    std::os::unix::fs::symlink(Path::new(VERSIONS_DIR).join(version), &link)?;
    std::fs::rename(&link, &partition).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{} is not a partition DataJob made (a symlink): {e}",
                partition.display()
            ),
        )
    })?;
    // The version it replaced starts its grace now: readers that resolved it keep it.
    if let Some(old) = previous.filter(|p| p.as_path() != Path::new(VERSIONS_DIR).join(version)) {
        let old = root.join(old);
        if let Ok(f) = std::fs::File::open(&old) {
            let _ = f.set_modified(now);
        }
    }
    Ok(manifest)
}

/// One entry of an output root, as [`to_sweep`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `_runs/<id>`, `_versions/<v>` or `.logical_time=….tmp`.
    pub path: String,
    pub age: Duration,
}

/// What finished runs left that no reader or run can still need: staging directories
/// and unreferenced versions older than `grace` (the longest a run can live: the
/// cluster's longest deadline plus its startup allowance), except the staging of `keep`.
pub(crate) fn to_sweep(
    entries: &[Entry],
    referenced: &HashSet<String>,
    grace: Duration,
    keep: Option<&str>,
) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.age >= grace)
        .filter(|e| !referenced.contains(&e.path))
        .filter(|e| keep.is_none_or(|k| e.path != format!("{STAGING_DIR}/{k}")))
        .map(|e| e.path.clone())
        .collect()
}

/// Removes what [`to_sweep`] picks under `root`. Returns what it removed.
pub fn sweep(
    root: &Path,
    grace: Duration,
    now: SystemTime,
    keep: Option<&str>,
) -> io::Result<Vec<String>> {
    let age = |p: &Path| -> Duration {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    let mut referenced = HashSet::new();
    for dir in [STAGING_DIR, VERSIONS_DIR] {
        let Ok(read) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in read.flatten() {
            entries.push(Entry {
                path: format!("{dir}/{}", e.file_name().to_string_lossy()),
                age: age(&e.path()),
            });
        }
    }
    for e in std::fs::read_dir(root)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("logical_time=") {
            if let Ok(target) = std::fs::read_link(e.path()) {
                referenced.insert(target.to_string_lossy().trim_end_matches('/').to_string());
            }
        } else if name.starts_with(".logical_time=") && name.ends_with(".tmp") {
            entries.push(Entry {
                path: name,
                age: age(&e.path()),
            });
        }
    }
    let gone = to_sweep(&entries, &referenced, grace, keep);
    for p in &gone {
        remove_any(&root.join(p))?;
    }
    Ok(gone)
}

/// The version directory a partition points to, when it is published.
pub fn resolve_partition(root: &Path, logical_time: &str) -> Option<PathBuf> {
    let link = std::fs::read_link(root.join(format!("logical_time={logical_time}"))).ok()?;
    let dir = root.join(link);
    dir.join(MANIFEST).is_file().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3600);

    fn files(root: &Path, t: &str) -> Vec<(String, String)> {
        let dir = root.join(format!("logical_time={t}"));
        let mut out: Vec<(String, String)> = list_files(&dir)
            .unwrap()
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(&f.path)).unwrap();
                (f.path, text)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_publication_replaces_the_partition_whole_and_says_what_it_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let now = SystemTime::now();
        let t = "2026-11-25T03:00:00Z";
        let staged = stage(root, "raw-1", GRACE, now).unwrap();
        std::fs::write(staged.join("a.csv"), "old a").unwrap();
        std::fs::write(staged.join("stale.csv"), "old").unwrap();
        let m = publish(root, "raw-1", t, "raw-1.one", &Origin::default(), now).unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(!staged.exists(), "the staging directory moved");
        assert_eq!(files(root, t).len(), 2);

        // A re-run of the same logical time: a new version, the whole partition swapped.
        let staged = stage(root, "raw-1", GRACE, now).unwrap();
        std::fs::create_dir(staged.join("sub")).unwrap();
        std::fs::write(staged.join("sub/a.csv"), "new a").unwrap();
        let m = publish(root, "raw-1", t, "raw-1.two", &Origin::default(), now).unwrap();
        assert_eq!(
            m.files,
            vec![ManifestFile {
                path: "sub/a.csv".into(),
                size: 5
            }]
        );
        assert_eq!(
            files(root, t),
            vec![("sub/a.csv".to_string(), "new a".to_string())]
        );
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(root.join(format!("logical_time={t}/{MANIFEST}"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (manifest.run_id.as_str(), manifest.logical_time.as_str()),
            ("raw-1", t)
        );
        // The replaced version stays for readers that resolved it, until the grace passed.
        assert!(root.join("_versions/raw-1.one/a.csv").exists());
        let later = now + GRACE + Duration::from_secs(1);
        let gone = sweep(root, GRACE, later, None).unwrap();
        assert_eq!(gone, vec!["_versions/raw-1.one".to_string()]);
        assert!(
            root.join("_versions/raw-1.two").exists(),
            "the published one stays"
        );
        assert_eq!(
            resolve_partition(root, t),
            Some(root.join("_versions/raw-1.two"))
        );
    }

    #[test]
    fn publishing_again_after_a_failure_part_way_finishes_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let now = SystemTime::now();
        let staged = stage(root, "r-1", GRACE, now).unwrap();
        std::fs::write(staged.join("x"), "x").unwrap();
        // The first publish moved the directory, then died before the swap.
        std::fs::create_dir_all(root.join("_versions")).unwrap();
        std::fs::rename(&staged, root.join("_versions/r-1.v")).unwrap();
        publish(
            root,
            "r-1",
            "2026-01-01T00:00:00Z",
            "r-1.v",
            &Origin::default(),
            now,
        )
        .unwrap();
        assert!(resolve_partition(root, "2026-01-01T00:00:00Z").is_some());
        // Nothing staged and nothing published: said plainly.
        let e = publish(
            root,
            "r-2",
            "2026-01-01T01:00:00Z",
            "r-2.v",
            &Origin::default(),
            now,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("nothing is staged for run r-2"),
            "{e}"
        );
    }

    #[test]
    fn the_sweep_keeps_what_runs_and_readers_may_still_use() {
        let e = |path: &str, secs: u64| Entry {
            path: path.into(),
            age: Duration::from_secs(secs),
        };
        let entries = [
            e("_runs/old-failed", 7200),
            e("_runs/young", 60),
            e("_runs/mine", 7200),
            e("_versions/published", 7200),
            e("_versions/replaced", 7200),
            e("_versions/just-replaced", 10),
            e(".logical_time=x.v.tmp", 7200),
        ];
        let referenced: HashSet<String> = ["_versions/published".to_string()].into();
        assert_eq!(
            to_sweep(&entries, &referenced, GRACE, Some("mine")),
            vec![
                "_runs/old-failed".to_string(),
                "_versions/replaced".to_string(),
                ".logical_time=x.v.tmp".to_string()
            ]
        );
    }
}

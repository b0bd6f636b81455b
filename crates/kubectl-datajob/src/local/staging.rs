//! Staging, then publish, on a laptop, with the layout the cluster uses
//! ([`datajob_core::output`], moves in [`datajob_publish`]): a run writes to
//! `<root>/_runs/<run id>/` (emptied before each attempt); only a successful run is
//! published as `<root>/logical_time=<time>`, a version of its own with a manifest.
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use datajob_core::labels;
use datajob_core::output::{self, Output};
use datajob_publish::{self as publish, Manifest, Origin};

/// How long a local root keeps staging directories and replaced versions: as on the
/// cluster by default (the longest deadline plus the startup allowance).
const GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600 + 15 * 60);

/// The directory on this machine that stands for an output root, and a note when it
/// is not the output itself: a claim is `<state dir>/pvc/<claim>/<path>`, an object
/// store `<state dir>/<scheme>/<bucket>/<path>`.
pub(crate) fn local_root(out: &Output, state_dir: &Path) -> (PathBuf, Option<String>) {
    match out {
        Output::Local { path } => (PathBuf::from(path), None),
        Output::Volume { claim, path } => {
            let root = state_dir.join("pvc").join(claim).join(path);
            let note = format!(
                "output {} is a volume of the cluster: a local run uses {} for it",
                out.url(),
                root.display()
            );
            (root, Some(note))
        }
        Output::ObjectStore { url } => {
            let root = state_dir.join(url.replacen("://", "/", 1));
            let note = format!(
                "output {url} is not a local path: a local run publishes to {} instead, with the layout of a volume",
                root.display()
            );
            (root, Some(note))
        }
    }
}

/// The staging directory of `run_id` under `root`, empty. Writable by the run's user:
/// this user on the host (the group may write too, as on the cluster's volumes); for a
/// container, whose user is not this one (`other_user`), by anyone, and only this
/// directory: the root and `_runs` keep their permissions, and the version it becomes
/// is made read-only for others when it is published.
pub(crate) fn prepare(root: &Path, run_id: &str, other_user: bool) -> io::Result<PathBuf> {
    let dir = publish::stage(root, run_id, GRACE, SystemTime::now())?;
    if other_user {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(dir)
}

/// Publishes the staged output of `run_id` as the partition of `logical_time`; returns
/// the partition and its manifest.
pub(crate) fn publish(
    root: &Path,
    run_id: &str,
    logical_time: DateTime<Utc>,
    origin: &Origin,
) -> io::Result<(PathBuf, Manifest)> {
    let now = SystemTime::now();
    let nonce = format!(
        "{:08x}",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or_default()
    );
    let at = labels::rfc3339(logical_time);
    let version = output::version_name(run_id, &nonce);
    let manifest = publish::publish(root, run_id, &at, &version, origin, now)?;
    // What a container's user could write to while staging, nobody else may once
    // published.
    if let Some(dir) = publish::resolve_partition(root, &at) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok((root.join(output::partition_name(logical_time)), manifest))
}

/// The version directory an input published for `slot` under `root`, or, for an input
/// without a schedule (`slot` None), its latest publication at or before `t`.
pub(crate) fn published_input(
    root: &Path,
    slot: Option<DateTime<Utc>>,
    t: DateTime<Utc>,
) -> Option<(DateTime<Utc>, PathBuf)> {
    let at = match slot {
        Some(s) => s,
        None => std::fs::read_dir(root)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                labels::parse_rfc3339(name.strip_prefix("logical_time=")?)
            })
            .filter(|l| *l <= t)
            .max()?,
    };
    publish::resolve_partition(root, &labels::rfc3339(at)).map(|dir| (at, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_on_this_machine() {
        let state = Path::new("/w/.datajob");
        let out = |s: &str| Output::parse(s, true).unwrap();
        assert_eq!(
            local_root(&out("file:///data/out"), state),
            (PathBuf::from("/data/out"), None)
        );
        let (root, note) = local_root(&out("pvc://lake/events"), state);
        assert_eq!(root, PathBuf::from("/w/.datajob/pvc/lake/events"));
        assert!(note.unwrap().contains("volume of the cluster"));
        let (root, note) = local_root(&out("s3://acme-lake/x"), state);
        assert_eq!(root, PathBuf::from("/w/.datajob/s3/acme-lake/x"));
        assert!(
            note.unwrap()
                .contains("s3://acme-lake/x is not a local path")
        );
    }

    #[test]
    fn a_published_input_is_found_by_its_time() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let t = labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        assert!(published_input(root, Some(t), t).is_none());
        // As for a container: only the run's staging directory is open to others, and
        // not once published.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let staged = prepare(root, "raw-29926260", true).unwrap();
        assert_eq!(mode(&staged), 0o777);
        for d in [root.to_path_buf(), root.join(output::STAGING_DIR)] {
            assert_eq!(mode(&d) & 0o002, 0, "{}", d.display());
        }
        std::fs::write(staged.join("a"), "a").unwrap();
        let (partition, m) = publish(root, "raw-29926260", t, &Origin::default()).unwrap();
        assert!(partition.join("a").exists());
        assert_eq!(mode(&std::fs::canonicalize(&partition).unwrap()), 0o755);
        assert_eq!(m.logical_time, "2026-11-25T03:00:00Z");
        let (at, dir) = published_input(root, Some(t), t).unwrap();
        assert_eq!(at, t);
        assert!(dir.starts_with(root.join("_versions")));
        let later = labels::parse_rfc3339("2026-11-25T05:00:00Z").unwrap();
        assert_eq!(published_input(root, None, later).map(|(a, _)| a), Some(t));
    }
}

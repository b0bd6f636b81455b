//! Staging, then publish, on a laptop: a run writes to its own staging directory; only
//! a successful run's output is moved to the published location.
use std::io;
use std::path::{Path, PathBuf};

/// Where a run's staged output is published, and a note when that is not `output` itself.
pub fn publish_target(output: &str, state_dir: &Path, run_id: &str) -> (PathBuf, Option<String>) {
    if let Some(rest) = output.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        return (PathBuf::from(path), None);
    }
    if output.starts_with('/') {
        return (PathBuf::from(output), None);
    }
    let target = state_dir.join("published").join(run_id);
    let note = format!(
        "output {output} is not a local path: a local run publishes to {} instead",
        target.display()
    );
    (target, Some(note))
}

/// The run's staging directory.
pub fn staging_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("staging").join(run_id)
}

/// An empty staging directory (what an earlier attempt left is removed).
pub fn prepare(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// Moves `staging` to `target`, replacing what was published there before. The new
/// content is put next to the target first, so readers see the old or the new
/// output, never half of one.
pub fn publish(staging: &Path, target: &Path, run_id: &str) -> io::Result<()> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "output".into());
    let incoming = parent.join(format!(".{file_name}.incoming-{run_id}"));
    let old = parent.join(format!(".{file_name}.old-{run_id}"));
    for p in [&incoming, &old] {
        if p.exists() {
            std::fs::remove_dir_all(p)?;
        }
    }
    if std::fs::rename(staging, &incoming).is_err() {
        // Another file system: copy, then remove the staging directory.
        copy_dir(staging, &incoming)?;
        std::fs::remove_dir_all(staging)?;
    }
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old)?;
    }
    std::fs::rename(&incoming, target)?;
    if had_old {
        if old.is_dir() {
            std::fs::remove_dir_all(&old)?;
        } else {
            std::fs::remove_file(&old)?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(link, dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let state = Path::new("/w/.datajob");
        assert_eq!(
            publish_target("file:///data/out", state, "a-1"),
            (PathBuf::from("/data/out"), None)
        );
        assert_eq!(
            publish_target("file://localhost/data/out", state, "a-1").0,
            PathBuf::from("/data/out")
        );
        assert_eq!(
            publish_target("/data/out", state, "a-1").0,
            PathBuf::from("/data/out")
        );
        let (t, note) = publish_target("s3://bucket/x", state, "a-1");
        assert_eq!(t, PathBuf::from("/w/.datajob/published/a-1"));
        assert!(note.unwrap().contains("s3://bucket/x is not a local path"));
    }

    #[test]
    fn publish_replaces_the_old_output_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("staging/a-1");
        prepare(&staging).unwrap();
        std::fs::write(staging.join("part-0"), "new").unwrap();
        let target = tmp.path().join("out/features");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("stale"), "old").unwrap();
        publish(&staging, &target, "a-1").unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("part-0")).unwrap(),
            "new"
        );
        assert!(!target.join("stale").exists());
        assert!(!staging.exists());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("out")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}

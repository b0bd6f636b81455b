//! The output contract, one layout on the cluster and on a laptop: where a run stages,
//! where a logical time is published, and what readers and downstream runs are given.
//! Pure: names and paths only (the moves are in [`datajob_publish`]).
//!
//! Under an output root:
//!
//! ```text
//! <root>/_runs/<run id>/                      a run's staging (DATAJOB_STAGING), emptied per attempt
//! <root>/_versions/<run id>.<nonce>/          a published run's files and its _DATAJOB.json manifest
//! <root>/logical_time=<RFC 3339 UTC>  ->  _versions/<run id>.<nonce>    the partition (DATAJOB_OUTPUT)
//! ```
//!
//! A re-run of a logical time publishes a new version and swaps the partition's symlink
//! with one rename, so a reader resolves the old or the new version, never a mix. In an
//! object store nothing moves: each attempt writes under `<root>/_runs/<run id>/<attempt>/`
//! and the DataJob's status records the prefix of the attempt that succeeded.
use chrono::{DateTime, Utc};

use crate::labels;

/// The staging directories of runs, under an output root.
pub const STAGING_DIR: &str = "_runs";
/// The published versions, under an output root.
pub const VERSIONS_DIR: &str = "_versions";
/// The manifest a published version holds: run id, logical time, files and sizes.
pub const MANIFEST: &str = "_DATAJOB.json";
/// Where a run's pod sees a claim: `/datajob/pvc/<claim>`.
pub(crate) const PVC_MOUNT_ROOT: &str = "/datajob/pvc";
/// The schemes of object stores.
pub(crate) const OBJECT_STORE_SCHEMES: [&str; 4] = ["s3", "gs", "abfs", "abfss"];

/// Where a DataJob publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `pvc://<claim>/<path>`: a PersistentVolumeClaim in the DataJob's namespace.
    Volume { claim: String, path: String },
    /// `s3://bucket/path` and friends, without a trailing `/`.
    ObjectStore { url: String },
    /// `file:///path` or `/path`: a directory on this machine (`run --local` only).
    Local { path: String },
}

/// Why a `spec.output` is refused: (problem, fix).
pub(crate) type Refusal = (String, String);

fn refuse(problem: impl Into<String>, fix: impl Into<String>) -> Refusal {
    (problem.into(), fix.into())
}

fn valid_claim(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 253
        && c.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

impl Output {
    /// Parses `spec.output`. `local` allows `file://` and absolute paths, which only a
    /// local run can reach.
    pub fn parse(s: &str, local: bool) -> Result<Output, Refusal> {
        if let Some(rest) = s.strip_prefix("pvc://") {
            let rest = rest.trim_end_matches('/');
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_claim(claim) {
                return Err(refuse(
                    format!(
                        "does not name a PersistentVolumeClaim ({claim:?} is not a claim name)"
                    ),
                    "write pvc://<claim>/<path>, e.g. pvc://lake/events, with the claim's name in lowercase",
                ));
            }
            if !path.is_empty() && !path.split('/').all(valid_segment) {
                return Err(refuse(
                    "has a path that is not a plain relative path",
                    "use directory names of letters, digits, '-', '_', '.' and '=' separated by '/', without '..' or empty parts",
                ));
            }
            if path
                .split('/')
                .next()
                .is_some_and(|first| first == STAGING_DIR || first == VERSIONS_DIR)
            {
                return Err(refuse(
                    format!(
                        "starts with {STAGING_DIR} or {VERSIONS_DIR}, which DataJob keeps for itself"
                    ),
                    "pick another directory",
                ));
            }
            return Ok(Output::Volume {
                claim: claim.to_string(),
                path: path.to_string(),
            });
        }
        for scheme in OBJECT_STORE_SCHEMES {
            if let Some(rest) = s.strip_prefix(&format!("{scheme}://")) {
                let rest = rest.trim_end_matches('/');
                let bucket = rest.split('/').next().unwrap_or_default();
                if bucket.is_empty() || rest.contains(' ') {
                    return Err(refuse(
                        "names no bucket",
                        format!("write {scheme}://<bucket>/<path>"),
                    ));
                }
                // A key may hold most characters, but `.`, `..` and empty parts would
                // climb out of (or alias) the output's prefix, and out of the local
                // run's stand-in directory for it.
                if rest
                    .split('/')
                    .any(|part| part.is_empty() || part == "." || part == "..")
                {
                    return Err(refuse(
                        "has a path with '.', '..' or an empty part",
                        format!(
                            "write {scheme}://<bucket>/<path> with plain parts, e.g. {scheme}://acme-lake/events"
                        ),
                    ));
                }
                return Ok(Output::ObjectStore {
                    url: format!("{scheme}://{rest}"),
                });
            }
        }
        let path = s
            .strip_prefix("file://")
            .map(|p| p.strip_prefix("localhost").unwrap_or(p))
            .or_else(|| s.starts_with('/').then_some(s));
        match path {
            Some(p) if p.starts_with('/') && p.len() > 1 => match local {
                true => Ok(Output::Local {
                    path: p.trim_end_matches('/').to_string(),
                }),
                false => Err(refuse(
                    "is a path on one machine, which runs on the cluster cannot reach",
                    "use pvc://<claim>/<path> for a volume, or s3://, gs://, abfs:// for an object store (file:// and paths work with kubectl datajob run --local only)",
                )),
            },
            _ => Err(refuse(
                "is not a location DataJob can stage and publish",
                "use pvc://<claim>/<path>, s3://bucket/path, gs://bucket/path or abfs://…",
            )),
        }
    }

    /// The claim a volume output lives on.
    pub fn claim(&self) -> Option<&str> {
        match self {
            Output::Volume { claim, .. } => Some(claim),
            _ => None,
        }
    }

    /// The output root as a run's pod sees it: `/datajob/pvc/<claim>/<path>` for a volume,
    /// the URL for an object store.
    pub(crate) fn root_in_pod(&self) -> String {
        match self {
            Output::Volume { claim, path } => join(&format!("{PVC_MOUNT_ROOT}/{claim}"), path),
            Output::ObjectStore { url } => url.clone(),
            Output::Local { path } => path.clone(),
        }
    }

    /// The output as written in a status: `pvc://claim/path`, the URL, the path.
    pub fn url(&self) -> String {
        match self {
            Output::Volume { claim, path } => join(&format!("pvc://{claim}"), path),
            Output::ObjectStore { url } => url.clone(),
            Output::Local { path } => path.clone(),
        }
    }

    /// Whether the operator moves the data (a volume) or only records a pointer.
    pub fn moves(&self) -> bool {
        !matches!(self, Output::ObjectStore { .. })
    }
}

fn join(a: &str, b: &str) -> String {
    match b.is_empty() {
        true => a.to_string(),
        false => format!("{a}/{b}"),
    }
}

/// `logical_time=2026-11-25T03:00:00Z`: the partition of a logical time.
pub fn partition_name(t: DateTime<Utc>) -> String {
    format!("logical_time={}", labels::rfc3339(t))
}

/// `<root>/logical_time=<t>`.
pub fn partition(root: &str, t: DateTime<Utc>) -> String {
    format!("{root}/{}", partition_name(t))
}

/// `<root>/_runs/<run id>`: a run's staging directory on a volume.
pub fn staging(root: &str, run_id: &str) -> String {
    format!("{root}/{STAGING_DIR}/{run_id}")
}

/// `<run id>.<nonce>`: the version directory a publication of a run gets.
pub fn version_name(run_id: &str, nonce: &str) -> String {
    format!("{run_id}.{nonce}")
}

/// `<root>/_versions/<version>`.
pub(crate) fn version_dir(root: &str, version: &str) -> String {
    format!("{root}/{VERSIONS_DIR}/{version}")
}

/// `<url>/_runs/<run id>/<attempt>/`: the prefix one attempt writes in an object store.
pub(crate) fn attempt_prefix(url: &str, run_id: &str, attempt: &str) -> String {
    format!("{url}/{STAGING_DIR}/{run_id}/{attempt}/")
}

/// `DATAJOB_INPUT_RAW_EVENTS` for input `raw-events`.
pub fn input_env(input: &str) -> String {
    let mut s = String::from("DATAJOB_INPUT_");
    s.extend(input.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

/// The annotation on a run's Job and pod that carries an input's location.
pub(crate) fn input_annotation(input: &str) -> String {
    format!("datajob.dev/input.{input}")
}

/// What a run's pod is given for a published input: the version directory of a volume
/// (it never changes while read), the prefix of an object store.
pub(crate) fn input_location(output: &Output, location: &str, version: Option<&str>) -> String {
    match (output, version) {
        (Output::Volume { .. }, Some(v)) => version_dir(&output.root_in_pod(), v),
        _ => location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap()
    }

    #[test]
    fn outputs_parse_into_the_three_kinds() {
        assert_eq!(
            Output::parse("pvc://lake/events/raw/", false),
            Ok(Output::Volume {
                claim: "lake".into(),
                path: "events/raw".into()
            })
        );
        assert_eq!(
            Output::parse("pvc://lake", false).unwrap().root_in_pod(),
            "/datajob/pvc/lake"
        );
        assert_eq!(
            Output::parse("s3://acme-lake/churn/", false),
            Ok(Output::ObjectStore {
                url: "s3://acme-lake/churn".into()
            })
        );
        assert_eq!(
            Output::parse("file:///data/out", true),
            Ok(Output::Local {
                path: "/data/out".into()
            })
        );
        for (bad, words) in [
            ("pvc://Lake/x", "not a claim name"),
            ("pvc:///x", "not a claim name"),
            ("pvc://lake/../etc", "plain relative path"),
            ("pvc://lake/a//b", "plain relative path"),
            ("pvc://lake/_runs", "keeps for itself"),
            ("s3://", "names no bucket"),
            ("s3://lake/../../etc", "'..'"),
            ("gs://lake/./x", "'..'"),
            ("s3://lake//x", "empty part"),
            ("s3://../x", "'..'"),
            ("ftp://x", "not a location"),
            ("/data/out", "runs on the cluster cannot reach"),
            ("file:///data/out", "runs on the cluster cannot reach"),
        ] {
            let (problem, fix) = Output::parse(bad, false).unwrap_err();
            assert!(problem.contains(words), "{bad}: {problem}");
            assert!(!fix.is_empty());
        }
    }

    #[test]
    fn the_layout() {
        let out = Output::parse("pvc://lake/events", false).unwrap();
        let root = out.root_in_pod();
        assert_eq!(
            partition(&root, t()),
            "/datajob/pvc/lake/events/logical_time=2026-11-25T03:00:00Z"
        );
        assert_eq!(
            staging(&root, "raw-29926260"),
            "/datajob/pvc/lake/events/_runs/raw-29926260"
        );
        assert_eq!(
            input_location(
                &out,
                "pvc://lake/events/logical_time=…",
                Some("raw-29926260.ab12")
            ),
            "/datajob/pvc/lake/events/_versions/raw-29926260.ab12"
        );
        assert_eq!(
            attempt_prefix("s3://b/p", "raw-29926260", "raw-29926260-x7k2p"),
            "s3://b/p/_runs/raw-29926260/raw-29926260-x7k2p/"
        );
        assert_eq!(input_env("raw-events"), "DATAJOB_INPUT_RAW_EVENTS");
        assert_eq!(input_annotation("raw"), "datajob.dev/input.raw");
    }
}

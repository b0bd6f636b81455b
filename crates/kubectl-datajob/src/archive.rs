//! Reading a run's logs from the operator's log archive, for `kubectl datajob logs`
//! once the run's pod (or its node) is gone. The archive is the S3-compatible store the
//! operator copies to; it is reached with the same settings (environment or flags) and
//! the caller's own store credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
use datajob_archive::{Attempt, Settings, Store, layout};

use super::error::{CliError, Result};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ArchiveArgs {
    /// The log archive's S3-compatible endpoint, as the operator's
    /// `--log-archive-endpoint` (chart value `logArchive.endpoint`).
    #[arg(
        long = "archive-endpoint",
        env = "DATAJOB_LOG_ARCHIVE_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// The log archive's bucket.
    #[arg(
        long = "archive-bucket",
        env = "DATAJOB_LOG_ARCHIVE_BUCKET",
        value_name = "NAME"
    )]
    pub bucket: Option<String>,
    #[arg(
        long = "archive-region",
        env = "DATAJOB_LOG_ARCHIVE_REGION",
        default_value = "us-east-1",
        value_name = "REGION"
    )]
    pub region: String,
    #[arg(
        long = "archive-prefix",
        env = "DATAJOB_LOG_ARCHIVE_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub prefix: String,
}

/// Why the archive cannot be read from here, as a hint to add to "the pod is gone".
pub(crate) const HOW_TO_READ: &str = "to read the log archive, set DATAJOB_LOG_ARCHIVE_ENDPOINT and DATAJOB_LOG_ARCHIVE_BUCKET (as in the operator's chart values logArchive.*) and the store's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

impl ArchiveArgs {
    /// The store, or `None` when no archive is named here.
    pub(crate) fn store(&self) -> Result<Option<Store>> {
        let Some(endpoint) = self.endpoint.clone().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let bucket = self.bucket.clone().filter(|b| !b.is_empty()).ok_or_else(|| {
            CliError::Usage(format!(
                "--archive-endpoint {endpoint} is set but no bucket: set --archive-bucket or DATAJOB_LOG_ARCHIVE_BUCKET"
            ))
        })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(access_key), Some(secret_key)) =
            (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(CliError::Usage(
                "reading the log archive needs the store's credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        Store::new(Settings {
            endpoint,
            bucket,
            region: self.region.clone(),
            prefix: self.prefix.clone(),
            access_key,
            secret_key,
        })
        .map(Some)
        .map_err(|e| CliError::Usage(e.to_string()))
    }
}

/// One attempt's log, read from the archive.
pub(crate) struct Archived {
    pub attempt: Attempt,
    pub attempts: usize,
    pub key: String,
    pub text: Vec<u8>,
}

/// The log of `container` of attempt `wanted` (1 is the first; default the latest) of
/// run `run`, or why there is none.
pub(crate) async fn read(
    store: &Store,
    namespace: &str,
    datajob: &str,
    run: &str,
    wanted: Option<usize>,
    container: &str,
) -> Result<Archived> {
    let prefix = layout::run_prefix(store.prefix(), namespace, datajob, run);
    let failed = |e: datajob_archive::StoreError| CliError::Local(e.to_string());
    let keys: Vec<String> = store
        .list(&prefix)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let attempts = layout::attempts(store.prefix(), &keys);
    let count = attempts.len();
    let attempt = match wanted {
        None => attempts.last().cloned(),
        Some(n) => attempts.get(n.wrapping_sub(1)).cloned(),
    }
    .ok_or_else(|| {
        CliError::NotFound(match (wanted, count) {
            (_, 0) => format!(
                "the log archive ({}) holds no logs of run {run}",
                store.settings().describe()
            ),
            (Some(n), _) => format!(
                "run {run} has {count} attempt(s) in the log archive, not an attempt {n}; give --attempt 1 to {count}"
            ),
            (None, _) => format!("the log archive holds no logs of run {run}"),
        })
    })?;
    let key = attempt
        .logs
        .iter()
        .find(|(c, _)| c == container)
        .map(|(_, k)| k.clone())
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "attempt {} of run {run} has no log of container {container} in the log archive",
                attempt.number
            ))
        })?;
    let text = store
        .get(&key)
        .await
        .map_err(failed)?
        .ok_or_else(|| CliError::NotFound(format!("the log archive lost {key} meanwhile")))?;
    Ok(Archived {
        attempt,
        attempts: count,
        key,
        text,
    })
}

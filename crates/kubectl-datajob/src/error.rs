//! What can go wrong in `kubectl datajob`, each said so the user knows what to do next,
//! and the exit code each failure gives.
use std::path::PathBuf;
use std::process::ExitCode;

use thiserror::Error;

/// The command ran and the answer is "no": the DataJob is invalid, the run failed.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Wrong usage (clap uses the same code for bad flags).
pub(crate) const EXIT_USAGE: u8 = 2;
/// The command could not do what was asked: no cluster, no such DataJob, unreadable file.
pub const EXIT_ERROR: u8 = 3;

#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// Already reported to the user in full (problems, a failed run's final line).
    #[error("{0}")]
    Reported(&'static str),

    /// The DataJob is invalid; the message lists every problem.
    #[error("{0}")]
    Invalid(String),

    #[error("{0}")]
    Usage(String),

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    Manifest { path: String, message: String },

    #[error(
        "no usable kubeconfig ({0}); set KUBECONFIG or pass --kubeconfig, and --context to pick a context"
    )]
    Kubeconfig(String),

    #[error(
        "cannot reach the cluster at {url}: {reason}\n  check that it is up and that KUBECONFIG / --context point at the right one"
    )]
    Unreachable { url: String, reason: String },

    #[error(
        "the cluster at {url} refused your credentials ({message}); log in again or check the user of your kubeconfig context"
    )]
    Unauthorized { url: String, message: String },

    #[error(
        "you are not allowed to {action} in namespace {namespace}: {message}\n  ask your platform team for access, or pick another namespace with -n"
    )]
    Forbidden {
        action: String,
        namespace: String,
        message: String,
    },

    #[error(
        "the cluster at {url} does not know DataJobs (no datajob.dev CustomResourceDefinition); install the DataJob operator first"
    )]
    NoCrd { url: String },

    /// "no DataJob named X in namespace Y; did you mean Z?" and the like.
    #[error("{0}")]
    NotFound(String),

    #[error("cannot {action}: {message}")]
    Api { action: String, message: String },

    #[error("{0}")]
    Local(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("encoding the output: {0}")]
    Encode(String),
}

impl CliError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Reported(_) | CliError::Invalid(_) => EXIT_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        })
    }
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

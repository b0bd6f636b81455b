//! The operator's one error type. Each variant says what failed and on what, and
//! carries a metric label; the controllers' error policies decide the requeue.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("{0} has no namespace; DataJobs are namespaced")]
    MissingNamespace(String),

    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("creating the webhook certificate: {0}")]
    Certificate(#[from] rcgen::Error),

    #[error("webhook TLS: {0}")]
    Tls(#[source] std::io::Error),

    /// The certificate of the secure metrics server (`--metrics-secure`) cannot be read
    /// or loaded.
    #[error("metrics TLS: {what}: {source}")]
    MetricsTls {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("kubernetes client configuration: {0}")]
    Config(String),

    /// The log archive did not take a copy (or a listing) in time.
    #[error("log archive: {0}")]
    Archive(#[from] datajob_archive::StoreError),

    #[error(
        "lost the leader Lease: stopped acting and exiting, so that a restart rejoins as a follower"
    )]
    LostLease,
}

impl Error {
    /// A short, stable label for the `datajob_reconcile_errors_total` metric.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "api",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::Encode { .. } => "encode",
            Error::Certificate(_) => "certificate",
            Error::Tls(_) => "tls",
            Error::MetricsTls { .. } => "metrics_tls",
            Error::Bind { .. } => "bind",
            Error::Config(_) => "config",
            Error::LostLease => "lost_lease",
            Error::Archive(_) => "archive",
        }
    }

    /// Wraps a kube error with what was being done to which object.
    pub(crate) fn api(
        action: &'static str,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> impl FnOnce(kube::Error) -> Error {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        move |source| Error::Api {
            action,
            kind,
            namespace,
            name,
            source: Box::new(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The operator's configuration: flags, each with an environment variable, so the
//! Helm chart and `make run` set the same things.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use datajob_core::decide::children::Guards;
use datajob_core::units::parse_duration;
use datajob_core::validation::Limits;

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("{s:?} {e}"))
}

fn bytes(s: &str) -> Result<u64, String> {
    datajob_core::units::parse_bytes(s).map_err(|e| format!("{s:?} {e}"))
}

/// One entry of `--preflight-registries`; blank (an empty variable, `a,,b`) is none.
fn registry_host(s: &str) -> Result<Option<datajob_preflight::RegistryHost>, String> {
    match s.trim() {
        "" => Ok(None),
        h => h.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "datajob-operator",
    version,
    about = "Runs DataJobs: guarded CronJobs and Jobs, fail-fast reasons, scale-to-zero node groups."
)]
pub struct Config {
    /// Address of the admin server (/healthz, /readyz, and /metrics unless
    /// --metrics-secure moves it), plain HTTP.
    #[arg(long, env = "DATAJOB_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: String,

    /// Address the validating admission webhook listens on (TLS).
    #[arg(long, env = "DATAJOB_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: String,

    /// How the apiserver reaches the webhook: a URL (`https://127.0.0.1:9443`, for an
    /// operator running outside the cluster) ...
    #[arg(long, env = "DATAJOB_WEBHOOK_URL", conflicts_with = "webhook_service")]
    pub webhook_url: Option<String>,

    /// ... or a Service as `namespace/name[:port]` (in-cluster, set by the Helm chart).
    /// With neither, no webhook is registered and the reconciler alone rejects bad specs.
    #[arg(long, env = "DATAJOB_WEBHOOK_SERVICE")]
    pub webhook_service: Option<String>,

    /// What the apiserver does when the webhook cannot be reached: `Ignore` (a DataJob is
    /// never blocked by an operator outage; the reconciler still marks it Invalid) or `Fail`.
    #[arg(long, env = "DATAJOB_WEBHOOK_FAILURE_POLICY", default_value = "Ignore", value_parser = ["Ignore", "Fail"])]
    pub webhook_failure_policy: String,

    /// The longest `spec.deadline` a DataJob may ask for.
    #[arg(long, env = "DATAJOB_MAX_DEADLINE", default_value = "24h", value_parser = duration)]
    pub max_deadline: Duration,

    /// How long a finished Job (and its pods, for logs) is kept before Kubernetes deletes it.
    #[arg(long, env = "DATAJOB_TTL_AFTER_FINISHED", default_value = "3d", value_parser = duration)]
    pub ttl_after_finished: Duration,

    /// Time allowed for scheduling, node boot and image pull, on top of `deadline`, in the
    /// Job's `activeDeadlineSeconds` backstop.
    #[arg(long, env = "DATAJOB_STARTUP_ALLOWANCE", default_value = "15m", value_parser = duration)]
    pub startup_allowance: Duration,

    /// How long a run may fail to pull its image before it is ended as ImageNotFound.
    #[arg(long, env = "DATAJOB_IMAGE_PULL_GRACE", default_value = "60s", value_parser = duration)]
    pub image_pull_grace: Duration,

    /// How long a run may miss a Secret or ConfigMap before it is ended as MissingConfig.
    #[arg(long, env = "DATAJOB_CONFIG_GRACE", default_value = "60s", value_parser = duration)]
    pub config_grace: Duration,

    /// How long a run may wait for a node before it is ended as Unschedulable
    /// (a DataJob's `spec.pendingTimeout` overrides it).
    #[arg(long, env = "DATAJOB_UNSCHEDULABLE_GRACE", default_value = "10m", value_parser = duration)]
    pub unschedulable_grace: Duration,

    /// How long a PVC may outlive its run before it is deleted.
    #[arg(long, env = "DATAJOB_PVC_GRACE", default_value = "5m", value_parser = duration)]
    pub pvc_grace: Duration,

    /// How often the clean-up looks for leftover PVCs.
    #[arg(long, env = "DATAJOB_CLEANUP_INTERVAL", default_value = "30s", value_parser = duration)]
    pub cleanup_interval: Duration,

    /// How many DataJobs are reconciled at once. Bounded, so that thousands of DataJobs
    /// (after a start or a failover) queue in the operator instead of flooding the
    /// apiserver with requests.
    #[arg(long, env = "DATAJOB_RECONCILE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,

    /// A `disk` above this gets a generic ephemeral volume (a PVC owned by the pod) instead
    /// of node ephemeral storage.
    #[arg(long, env = "DATAJOB_SCRATCH_VOLUME_ABOVE", default_value = "50Gi", value_parser = bytes)]
    pub scratch_volume_above: u64,

    /// Storage class for those volumes (default: the cluster's default class).
    #[arg(long, env = "DATAJOB_SCRATCH_STORAGE_CLASS")]
    pub scratch_storage_class: Option<String>,

    /// The operator's own image (e.g. `registry.example.com/datajob-operator:0.1.0`): the
    /// Jobs that publish runs' output on volumes (`pvc://` outputs) run it, and so does a
    /// step before each attempt of such a run that empties its staging directory. The
    /// chart sets it to the image it runs. Empty: `pvc://` outputs are refused.
    #[arg(long, env = "DATAJOB_PUBLISHER_IMAGE")]
    pub publisher_image: Option<String>,

    /// Check at admission that a DataJob's image is in its registry and that the
    /// Secrets, ConfigMaps and service account it names exist: warnings, not refusals.
    /// Look-ups fail open within 2 s; Secrets are checked only when the operator may read
    /// them (the chart's `preflight.secrets`).
    #[arg(long, env = "DATAJOB_PREFLIGHT", default_value_t = true, action = clap::ArgAction::Set)]
    pub preflight: bool,

    /// Registries the image preflight may connect to, besides the public ones it knows
    /// (docker.io, ghcr.io, quay.io, registry.k8s.io, gcr.io, *.pkg.dev, public.ecr.aws,
    /// ECR, mcr.microsoft.com, *.azurecr.io, nvcr.io, registry.gitlab.com), comma
    /// separated: `host` (its default port), `host:port`, `host:*`; `*` stands for one DNS
    /// label (`*.corp.example`). Only these may be at private, loopback or link-local
    /// addresses (a registry inside the cluster, a private endpoint). An image anywhere
    /// else is not looked up, and says what an unreachable registry says: nothing.
    #[arg(
        long,
        env = "DATAJOB_PREFLIGHT_REGISTRIES",
        value_name = "HOSTS",
        value_delimiter = ',',
        value_parser = registry_host
    )]
    pub preflight_registries: Vec<Option<datajob_preflight::RegistryHost>>,

    /// Allow DataJobs' pod annotations that take a run out of the service mesh
    /// (`sidecar.istio.io/inject: "false"`, `linkerd.io/inject: disabled`, traffic
    /// exclusions). Off: they are refused at apply, as AppArmor and seccomp annotations
    /// always are.
    #[arg(long, env = "DATAJOB_ALLOW_MESH_OPT_OUT", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_mesh_opt_out: bool,

    #[command(flatten)]
    pub webhook_secret: WebhookSecret,

    #[command(flatten)]
    pub certificate: CertificateSettings,

    #[command(flatten)]
    pub leader: LeaderElection,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "DATAJOB_LOG_JSON")]
    pub log_json: bool,

    /// Label run metrics with the DataJob's name (`datajob`). `false`: that label is
    /// empty everywhere, so the run series are per namespace only (for clusters with
    /// very many DataJobs).
    #[arg(long, env = "DATAJOB_METRICS_PER_DATAJOB", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_per_datajob: bool,

    #[command(flatten)]
    pub secure_metrics: SecureMetrics,

    #[command(flatten)]
    pub log_archive: LogArchive,

    /// Without a command: run the operator. The commands are the steps its image runs in
    /// users' namespaces for outputs on volumes.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The steps the operator's image runs next to runs whose output is on a volume.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Empty a run's staging directory before an attempt (in the run's pod), and remove
    /// what finished runs left.
    Stage(StageArgs),
    /// Publish a run's staging directory as the partition of its logical time (in the
    /// Job the operator starts once the run succeeded).
    Publish(PublishArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct StageArgs {
    /// The output root as this pod sees it, e.g. `/datajob/pvc/lake/events`.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The run id, e.g. `raw-29926260`.
    #[arg(long)]
    pub run_id: String,
    /// Staging directories and replaced versions older than this are removed: the
    /// longest a run can live.
    #[arg(long, default_value = "24h15m", value_parser = duration)]
    pub grace: Duration,
}

#[derive(clap::Args, Clone, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// The run's logical time, RFC 3339 UTC.
    #[arg(long)]
    pub logical_time: String,
    /// The version directory to publish as, under `<root>/_versions/`.
    #[arg(long)]
    pub version: String,
    /// The DataJob, for the manifest.
    #[arg(long)]
    pub datajob: Option<String>,
    /// Its namespace, for the manifest.
    #[arg(long = "datajob-namespace")]
    pub datajob_namespace: Option<String>,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_deadline: self.max_deadline,
            volume_outputs: self
                .publisher_image
                .as_deref()
                .is_some_and(|i| !i.is_empty()),
            local_paths: false,
            mesh_opt_out: self.allow_mesh_opt_out,
        }
    }

    /// Where the image preflight may connect: the public registries and those named.
    pub fn preflight_registries(&self) -> datajob_preflight::Registries {
        datajob_preflight::Registries::new(
            self.preflight_registries
                .iter()
                .flatten()
                .cloned()
                .collect(),
        )
    }

    pub fn watchdog(&self) -> datajob_core::decide::watchdog::Settings {
        datajob_core::decide::watchdog::Settings {
            image_pull_grace: self.image_pull_grace,
            config_grace: self.config_grace,
            unschedulable_grace: self.unschedulable_grace,
        }
    }

    /// The leader election settings, checked; `pod_name` names this replica.
    pub fn election(&self, pod_name: Option<&str>) -> Result<crate::leader::Settings, String> {
        let settings = crate::leader::Settings {
            namespace: self.webhook_secret.namespace.clone(),
            name: self.leader.lease_name.clone(),
            identity: crate::leader::identity(pod_name),
            lease_duration: self.leader.lease_duration,
            renew_deadline: self.leader.lease_renew_deadline,
            retry_period: self.leader.lease_retry_period,
        };
        settings.check()?;
        Ok(settings)
    }

    /// How the webhook is served and registered; `None` when neither `--webhook-url`
    /// nor `--webhook-service` is set.
    pub fn webhook(&self) -> crate::Result<Option<crate::webhook::serve::Settings>> {
        use crate::webhook::tls::{Endpoint, Policy, Source};
        let endpoint = match (&self.webhook_url, &self.webhook_service) {
            (Some(u), _) => Endpoint::Url(u.clone()),
            (None, Some(s)) => Endpoint::parse_service(s)?,
            (None, None) => return Ok(None),
        };
        let addr = self.webhook_addr.parse().map_err(|e| {
            crate::Error::Config(format!("--webhook-addr {:?}: {e}", self.webhook_addr))
        })?;
        let c = &self.certificate;
        if c.renew_before >= c.validity {
            return Err(crate::Error::Config(format!(
                "--webhook-cert-renew-before {:?} must be shorter than --webhook-cert-validity {:?}",
                c.renew_before, c.validity
            )));
        }
        Ok(Some(crate::webhook::serve::Settings {
            policy: Policy {
                hosts: endpoint.hosts(),
                validity: c.validity,
                renew_before: c.renew_before,
            },
            endpoint,
            addr,
            namespace: self.webhook_secret.namespace.clone(),
            secret: self.webhook_secret.secret.clone(),
            source: Source::parse(&c.source),
            check_interval: c.check_interval,
            configuration: c.configuration.clone(),
            failure_policy: self.webhook_failure_policy.clone(),
        }))
    }

    /// How `/metrics` is served securely; `None` without `--metrics-secure` (then the
    /// admin server serves it, plain).
    pub fn secure_metrics(&self) -> crate::Result<Option<crate::admin::SecureSettings>> {
        let m = &self.secure_metrics;
        if !m.secure {
            return Ok(None);
        }
        let addr = m.secure_addr.parse().map_err(|e| {
            crate::Error::Config(format!("--metrics-secure-addr {:?}: {e}", m.secure_addr))
        })?;
        if m.secure_addr == self.admin_addr {
            return Err(crate::Error::Config(format!(
                "--metrics-secure-addr {:?} is also --admin-addr: the probes stay on the admin server, plain HTTP",
                m.secure_addr
            )));
        }
        Ok(Some(crate::admin::SecureSettings {
            addr,
            cert_dir: m
                .cert_dir
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }))
    }

    pub fn guards(&self) -> Guards {
        Guards {
            ttl_after_finished: self.ttl_after_finished,
            startup_allowance: self.startup_allowance,
            scratch_volume_above: self.scratch_volume_above,
            scratch_storage_class: self.scratch_storage_class.clone(),
            publisher_image: self.publisher_image.clone().filter(|i| !i.is_empty()),
            sweep_grace: self.max_deadline + self.startup_allowance,
            log_archive: self
                .log_archive
                .endpoint
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty()),
        }
    }

    /// The log archive's store, or `None` when none is configured (then every run's
    /// logs go with its pod, as in plain Kubernetes). A half-given configuration is an
    /// error that names what is missing.
    pub fn log_archive(&self) -> crate::Result<Option<datajob_archive::Settings>> {
        let a = &self.log_archive;
        let Some(endpoint) = a.endpoint.clone().filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        let missing = |what: &str, flag: &str, env: &str| {
            crate::Error::Config(format!(
                "--log-archive-endpoint {endpoint:?} is set but {what} is not: set {flag} (or {env})"
            ))
        };
        let bucket = a.bucket.clone().filter(|b| !b.is_empty()).ok_or_else(|| {
            missing(
                "the bucket",
                "--log-archive-bucket",
                "DATAJOB_LOG_ARCHIVE_BUCKET",
            )
        })?;
        let access_key = a
            .access_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                missing(
                    "the access key",
                    "--log-archive-access-key",
                    "AWS_ACCESS_KEY_ID",
                )
            })?;
        let secret_key = a
            .secret_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                missing(
                    "the secret key",
                    "--log-archive-secret-key",
                    "AWS_SECRET_ACCESS_KEY",
                )
            })?;
        if a.max_bytes == 0 {
            return Err(crate::Error::Config(
                "--log-archive-max-bytes 0 would keep no log at all: give a bound such as 10Mi"
                    .into(),
            ));
        }
        Ok(Some(datajob_archive::Settings {
            endpoint,
            bucket,
            region: a.region.clone(),
            prefix: a.prefix.clone(),
            access_key,
            secret_key,
        }))
    }
}

/// The log archive: where run logs are copied before their pods go.
#[derive(clap::Args, Clone, Debug)]
pub struct LogArchive {
    /// The S3-compatible store the logs are copied to, e.g.
    /// https://s3.eu-west-1.amazonaws.com or http://minio.storage:9000 (path-style
    /// requests). Unset: no archive; logs go with their pods.
    #[arg(
        long = "log-archive-endpoint",
        env = "DATAJOB_LOG_ARCHIVE_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    #[arg(
        long = "log-archive-bucket",
        env = "DATAJOB_LOG_ARCHIVE_BUCKET",
        value_name = "NAME"
    )]
    pub bucket: Option<String>,
    #[arg(
        long = "log-archive-region",
        env = "DATAJOB_LOG_ARCHIVE_REGION",
        default_value = "us-east-1"
    )]
    pub region: String,
    /// Put before every key, e.g. `datajob/`.
    #[arg(
        long = "log-archive-prefix",
        env = "DATAJOB_LOG_ARCHIVE_PREFIX",
        default_value = ""
    )]
    pub prefix: String,
    #[arg(
        long = "log-archive-access-key",
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key: Option<String>,
    #[arg(
        long = "log-archive-secret-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// At most this many bytes of each container's log per attempt; past it, the tail.
    #[arg(long = "log-archive-max-bytes", env = "DATAJOB_LOG_ARCHIVE_MAX_BYTES", default_value = "10Mi", value_parser = bytes)]
    pub max_bytes: u64,
    /// Runs whose logs are older than this are deleted from the archive.
    #[arg(long = "log-archive-max-age", env = "DATAJOB_LOG_ARCHIVE_MAX_AGE", default_value = "30d", value_parser = duration)]
    pub max_age: Duration,
    /// Per DataJob, only the newest this many runs' logs are kept.
    #[arg(
        long = "log-archive-max-runs",
        env = "DATAJOB_LOG_ARCHIVE_MAX_RUNS",
        default_value_t = 100
    )]
    pub max_runs: usize,
    /// The longest a run pod whose containers stopped is held for its copy: past it, the
    /// pod goes without one and the run's `logs` says `NotKept`. A store that does not
    /// answer never holds a run's clean-up (or a node's scale-down) for longer.
    #[arg(long = "log-archive-give-up-after", env = "DATAJOB_LOG_ARCHIVE_GIVE_UP_AFTER", default_value = "2m", value_parser = duration)]
    pub give_up_after: Duration,
    /// How often retention runs (and the store's size is measured).
    #[arg(long = "log-archive-sweep-interval", env = "DATAJOB_LOG_ARCHIVE_SWEEP_INTERVAL", default_value = "10m", value_parser = duration)]
    pub sweep_interval: Duration,
}

/// `/metrics` over HTTPS, for authenticated and authorized scrapers only.
#[derive(clap::Args, Clone, Debug)]
pub struct SecureMetrics {
    /// Serve /metrics over HTTPS on --metrics-secure-addr, and only to requests whose
    /// bearer token the apiserver authenticates (TokenReview) and whose user may `get`
    /// the non-resource URL /metrics (SubjectAccessReview), as kube-rbac-proxy does:
    /// 401 without a valid token, 403 without the permission. Answers are cached (30 s
    /// allowed, 10 s refused). The admin server keeps /healthz and /readyz, plain HTTP,
    /// and no longer serves /metrics.
    #[arg(
        long = "metrics-secure",
        env = "DATAJOB_METRICS_SECURE",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        action = clap::ArgAction::Set
    )]
    pub secure: bool,
    /// Address of the HTTPS metrics server (with --metrics-secure).
    #[arg(
        long = "metrics-secure-addr",
        env = "DATAJOB_METRICS_SECURE_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub secure_addr: String,
    /// Directory holding the metrics server's `tls.crt` and `tls.key` (a mounted
    /// `kubernetes.io/tls` Secret, e.g. cert-manager's), read again every minute.
    /// Empty: a self-signed certificate made in memory at start (scrapers then skip
    /// verification).
    #[arg(
        long = "metrics-cert-dir",
        env = "DATAJOB_METRICS_CERT_DIR",
        value_name = "DIR"
    )]
    pub cert_dir: Option<String>,
}

/// Leader election: which replica runs the controllers.
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElection {
    /// Elect one leader among replicas through a Lease in `--namespace`; only the leader
    /// reconciles, ends runs, cleans up and scales node groups. Every replica serves the
    /// webhook and the admin endpoints. `false` makes this process act at once, alone.
    #[arg(long = "leader-elect", env = "DATAJOB_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Name of the Lease (`coordination.k8s.io`) in `--namespace`.
    #[arg(long, env = "DATAJOB_LEASE_NAME", default_value = "datajob-operator")]
    pub lease_name: String,
    /// How long a leader's Lease stays valid without renewal: a replica takes over at most
    /// this long (plus one retry period) after the leader died.
    #[arg(long, env = "DATAJOB_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal; below the lease duration.
    #[arg(long, env = "DATAJOB_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub lease_renew_deadline: Duration,
    /// How often followers look at the Lease and the leader renews it: the hand-over time
    /// after a leader released it on shutdown.
    #[arg(long, env = "DATAJOB_LEASE_RETRY_PERIOD", default_value = "1s", value_parser = duration)]
    pub lease_retry_period: Duration,
}

/// Where the webhook's certificate comes from, and when it is renewed.
#[derive(clap::Args, Clone, Debug)]
pub struct CertificateSettings {
    /// `operator`: the operator makes a CA and a serving certificate, stores them in the
    /// Secret and renews them. `external`: someone else (cert-manager) writes the Secret;
    /// the operator only reads it and reloads it when it changes.
    #[arg(long = "webhook-cert", env = "DATAJOB_WEBHOOK_CERT", default_value = "operator", value_parser = ["operator", "external"])]
    pub source: String,
    /// How long a serving certificate the operator makes is valid.
    #[arg(long = "webhook-cert-validity", env = "DATAJOB_WEBHOOK_CERT_VALIDITY", default_value = "365d", value_parser = duration)]
    pub validity: Duration,
    /// A certificate that expires within this is replaced (by the operator) or reported
    /// (when external).
    #[arg(long = "webhook-cert-renew-before", env = "DATAJOB_WEBHOOK_CERT_RENEW_BEFORE", default_value = "30d", value_parser = duration)]
    pub renew_before: Duration,
    /// How often the Secret is read again, to renew the certificate or load a new one.
    #[arg(long = "webhook-cert-check-interval", env = "DATAJOB_WEBHOOK_CERT_CHECK_INTERVAL", default_value = "1m", value_parser = duration)]
    pub check_interval: Duration,
    /// Name of the ValidatingWebhookConfiguration the operator writes (the Helm chart
    /// creates it, so that `helm uninstall` removes it).
    #[arg(
        long = "webhook-configuration",
        env = "DATAJOB_WEBHOOK_CONFIGURATION",
        default_value = "datajob.dev"
    )]
    pub configuration: String,
}

/// Settings of the webhook that are not needed elsewhere.
#[derive(clap::Args, Clone, Debug)]
pub struct WebhookSecret {
    /// Namespace the operator runs in; its webhook certificate Secret lives there.
    #[arg(
        long = "namespace",
        env = "POD_NAMESPACE",
        default_value = "datajob-system"
    )]
    pub namespace: String,
    /// Name of the Secret holding the webhook's CA and serving certificate.
    #[arg(
        long = "webhook-secret",
        env = "DATAJOB_WEBHOOK_SECRET",
        default_value = "datajob-webhook-cert"
    )]
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("datajob-operator").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn a_log_archive_half_configured_names_what_is_missing() {
        let base = ["--log-archive-endpoint", "http://127.0.0.1:9000"];
        let e = parse(&base).log_archive().unwrap_err().to_string();
        assert!(e.contains("--log-archive-bucket"), "{e}");
        let mut with_bucket = base.to_vec();
        with_bucket.extend([
            "--log-archive-bucket",
            "logs",
            "--log-archive-access-key",
            "k",
        ]);
        let e = parse(&with_bucket).log_archive().unwrap_err().to_string();
        assert!(
            e.contains("the secret key") && e.contains("AWS_SECRET_ACCESS_KEY"),
            "{e}"
        );
        with_bucket.extend([
            "--log-archive-secret-key",
            "s",
            "--log-archive-max-bytes",
            "1Mi",
        ]);
        let c = parse(&with_bucket);
        let settings = c.log_archive().unwrap().unwrap();
        assert_eq!(
            (settings.bucket.as_str(), c.log_archive.max_bytes),
            ("logs", 1 << 20)
        );
        assert!(
            c.guards().log_archive,
            "run pods carry the archive's finalizer"
        );
        assert!(parse(&[]).log_archive().unwrap().is_none());
        assert!(!parse(&[]).guards().log_archive);
    }

    #[test]
    fn preflight_registries_are_a_comma_list_of_hosts() {
        assert!(parse(&[]).preflight_registries.is_empty());
        // The chart passes an empty list as an empty variable.
        assert!(
            parse(&["--preflight-registries", ""])
                .preflight_registries
                .iter()
                .flatten()
                .next()
                .is_none()
        );
        let c = parse(&[
            "--preflight-registries",
            "registry.example.com:5000, *.corp.example,,127.0.0.1:*",
        ]);
        let named: Vec<_> = c.preflight_registries.iter().flatten().cloned().collect();
        assert_eq!(
            named,
            ["registry.example.com:5000", "*.corp.example", "127.0.0.1:*"]
                .map(|h| h.parse().unwrap())
        );
        for bad in [
            "https://registry.example.com",
            "registry.example.com/team",
            "a:0",
        ] {
            let e = Config::try_parse_from(["datajob-operator", "--preflight-registries", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a registry host"), "{bad}: {e}");
        }
    }

    #[test]
    fn secure_metrics_are_off_by_default_and_on_with_the_flag() {
        assert!(parse(&[]).secure_metrics().unwrap().is_none());
        assert!(
            parse(&["--metrics-secure=false"])
                .secure_metrics()
                .unwrap()
                .is_none()
        );
        for on in [&["--metrics-secure"][..], &["--metrics-secure", "true"]] {
            let s = parse(on).secure_metrics().unwrap().unwrap();
            assert_eq!(s.addr.to_string(), "0.0.0.0:8443");
            assert_eq!(s.cert_dir, None, "self-signed");
        }
        let s = parse(&[
            "--metrics-secure",
            "--metrics-secure-addr",
            "127.0.0.1:9000",
            "--metrics-cert-dir",
            "/etc/datajob/metrics-tls",
        ])
        .secure_metrics()
        .unwrap()
        .unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:9000");
        assert_eq!(s.cert_dir, Some(PathBuf::from("/etc/datajob/metrics-tls")));
        // The chart passes an empty directory for a self-signed certificate.
        let s = parse(&["--metrics-secure", "--metrics-cert-dir", ""])
            .secure_metrics()
            .unwrap()
            .unwrap();
        assert_eq!(s.cert_dir, None);
        for bad in [
            &["--metrics-secure", "--metrics-secure-addr", "nowhere"][..],
            &[
                "--metrics-secure",
                "--metrics-secure-addr",
                "0.0.0.0:8080",
                "--admin-addr",
                "0.0.0.0:8080",
            ],
        ] {
            assert!(parse(bad).secure_metrics().is_err(), "{bad:?}");
        }
    }
}

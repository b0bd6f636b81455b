//! `DataJob`: one short resource that says what to run, when, and with what.
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bounds;
use super::quantity::Quantity;

/// The longest DataJob name: its CronJob carries the same name and the CronJob
/// controller appends `-<11 digits>` to name each Job, which must stay within 63
/// characters (the label value limit).
pub const MAX_NAME_LEN: usize = 52;

/// What to run, when, and with what. Every field but `image` has a safe default.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "datajob.dev",
    version = "v1alpha1",
    kind = "DataJob",
    plural = "datajobs",
    shortname = "dj",
    category = "datajob-all",
    namespaced,
    status = "DataJobStatus",
    doc = "A batch data job: an image run once or on a schedule, with a deadline, bounded retries and resources (not VMs).",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Last Run", type_ = "string", json_path = ".status.lastRun.logicalTime"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Next Run", type_ = "string", json_path = ".status.nextRun"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(name = "Late", type_ = "string", json_path = ".status.conditions[?(@.type==\"Late\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 52")
        .message("metadata.name is longer than 52 characters: the names DataJob derives from it (CronJob, Jobs, pods) would overflow the 63-character limit; use a shorter name")
        .reason(kube::core::Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct DataJobSpec {
    /// Container image to run, e.g. `ghcr.io/acme/churn:1.4.2`. Required. Pin a tag or a digest:
    /// a run records the image it used.
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("spec.image is empty: set the container image to run, e.g. ghcr.io/acme/churn:1.4.2"))]
    #[schemars(length(max = bounds::MAX_IMAGE_LEN))]
    pub image: String,

    /// Entrypoint override. Default: the image's own entrypoint.
    /// At most 64 items of 32768 characters each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_COMMAND_ITEMS), inner(length(max = bounds::MAX_ARG_LEN)))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint. Default: the image's own arguments.
    /// At most 256 items of 32768 characters each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_ARGS_ITEMS), inner(length(max = bounds::MAX_ARG_LEN)))]
    pub args: Vec<String>,

    /// Extra environment variables, as in a Kubernetes container (`value` or `valueFrom`).
    /// The operator also injects `DATAJOB_NAME`, `DATAJOB_NAMESPACE`, `DATAJOB_RUN_ID`,
    /// `DATAJOB_LOGICAL_TIME`, `DATAJOB_DEADLINE_SECONDS`, `DATAJOB_SCRATCH`, with `output`
    /// `DATAJOB_STAGING` and `DATAJOB_OUTPUT`, and with `inputs` one `DATAJOB_INPUT_<NAME>`
    /// per input. At most 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_ENV_ITEMS))]
    pub env: Vec<EnvVar>,

    /// When to run, as a standard 5-field cron expression (`minute hour day-of-month month
    /// day-of-week`) or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    /// Default: none, and the job runs once, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_SCHEDULE_LEN))]
    pub schedule: Option<String>,

    /// IANA time zone the schedule is read in, e.g. `Europe/London`. Default: `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_TIME_ZONE_LEN))]
    pub time_zone: Option<String>,

    /// What one run needs. Requests equal limits, so a run gets exactly this.
    #[serde(default)]
    pub resources: DataJobResources,

    /// The longest a run may take once its container started, as `90m`, `2h`, `1h30m`
    /// (units s, m, h, d). Default: `1h`. Never above the operator's maximum (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub deadline: Option<String>,

    /// Annotations for the run's pods, e.g. a monitoring tool's. Keys under `datajob.dev/`
    /// and `batch.kubernetes.io/` are reserved; AppArmor and seccomp annotations are
    /// refused, and so are mesh opt-outs (`sidecar.istio.io/inject: "false"`, ...) unless
    /// the operator allows them (`settings.allowMeshOptOut`). Default: none. At most 64.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = bounds::MAX_POD_ANNOTATIONS))]
    pub pod_annotations: std::collections::BTreeMap<String, String>,

    /// How long a run may wait for a node before it is ended as `Unschedulable`, e.g. `30m`.
    /// Default: the operator's setting (10m). A run no node could ever fit ends at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub pending_timeout: Option<String>,

    /// How many times a failed run is retried (0 to 10). Default: 1. Failures that retrying
    /// cannot fix (image not found, missing config, command not found) are never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: Option<i32>,

    /// Pause scheduling new runs; runs already going finish. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Service account the run's pod uses. Default: the namespace's `default` account, with
    /// no API token mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_OBJECT_NAME_LEN))]
    pub service_account_name: Option<String>,

    /// The numeric user (and group) a run's container runs as, never root. Default: 65532,
    /// whatever the image says: most public images run as root, and a run never does.
    /// Set it to the image's own non-root user when its files need that user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: Option<i64>,

    /// How many finished runs keep their Job (and pods, for logs). Default: 5; at most 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 50))]
    pub history: Option<i32>,

    /// Names of DataJobs in the same namespace whose published output this job waits for:
    /// a run for logical time T starts once each input has published its latest logical
    /// time at or before T, and gets its location as `DATAJOB_INPUT_<NAME>`. A failed
    /// input ends the run `UpstreamFailed`. Unknown inputs and cycles are refused.
    /// Default: none. At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::MAX_INPUTS), inner(length(max = bounds::MAX_INPUT_LEN)))]
    pub inputs: Vec<String>,

    /// Where a successful run publishes its output: `pvc://<claim>/<path>` (a volume: the
    /// operator moves the run's staging directory into the partition of its logical time),
    /// or `s3://`, `gs://`, `abfs://`, `abfss://` (an object store: each run writes under a
    /// prefix of its own, and the status records the published prefix). `kubectl datajob
    /// run --local` also takes `file://` and absolute paths. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_OUTPUT_LEN))]
    pub output: Option<String>,

    /// What runs after the operator or the cluster was down and scheduled times passed
    /// without a run: `latest` (the most recent missed time runs, if still within its
    /// starting deadline; older ones are skipped), `all` (every missed time runs, oldest
    /// first, one at a time, at most the last 100) or `none` (a run that could not start
    /// within a minute of its time is skipped). Default: `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,

    /// By when a run must have succeeded: a time of day in `timeZone` (`06:00`, the first
    /// time it comes after the run's logical time) or a duration after the logical time
    /// (`3h`, 1m to 31d). The run of the newest scheduled time whose expected-by time has
    /// passed (or a one-off DataJob's run) that has not succeeded makes the DataJob
    /// `Late`: a condition, a column, an event, a metric and an alert. Late never ends a
    /// run; triggered and backfilled runs are not held to it. A time of day is for
    /// schedules that run at most daily, after the run's own time of day. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_DURATION_LEN))]
    pub expect_by: Option<String>,

    /// Who owns the DataJob: a team or a person, e.g. `team-growth` or `ana@acme.io`. The
    /// operator's `datajob_info` metric carries it, and so do the DataJob's alerts, so that
    /// Alertmanager can route them to their owner. At most 128 printable characters.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_OWNER_LEN))]
    pub owner: Option<String>,

    /// The parameters a run may be given (`kubectl datajob trigger NAME --arg KEY=VALUE`),
    /// each with its default: every run's container gets `DATAJOB_ARG_<KEY>` (the key in
    /// upper case, `-` as `_`), the default unless the run was given another value, and
    /// `command` and `args` may use it as `$(DATAJOB_ARG_<KEY>)`. Names: a letter, then
    /// letters, digits, `_` or `-`, at most 40 characters; at most 32 parameters. A
    /// DataJob with parameters has a name of at most 45 characters, so that the run ids
    /// of runs with parameters fit. Default: none (a trigger takes no `--arg`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = bounds::MAX_PARAMS))]
    pub params: std::collections::BTreeMap<String, String>,
}

/// What runs after the operator or the cluster was down and scheduled times passed
/// without a run: `latest` (the most recent missed time runs, if still within its
/// starting deadline; older ones are skipped), `all` (every missed time runs, oldest
/// first, one at a time, at most the last 100) or `none` (a run that could not start
/// within a minute of its time is skipped). Default: `latest`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// The most recent missed time runs (within its starting deadline); older ones are skipped.
    #[default]
    Latest,
    /// Every missed time runs, oldest first, one at a time (at most the last 100).
    All,
    /// Missed times are skipped: a run starts within a minute of its time or not at all.
    None,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }
}

/// Resources, not VMs: what one run needs. Requests equal limits.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataJobResources {
    /// CPU cores, e.g. `4` or `500m`. Default: `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `16Gi`. Default: `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Scratch disk at `/scratch`, e.g. `40Gi`: the node's ephemeral storage, or above the
    /// operator's `--scratch-volume-above` (50Gi) a volume that lives and dies with the
    /// pod. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Quantity>,
    /// Whole GPUs (`nvidia.com/gpu`). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub gpu: Option<i32>,
}

/// The state of a run, or of the DataJob as a whole.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RunState {
    /// Waiting for its first run (scheduled DataJobs).
    #[default]
    Scheduled,
    /// A run waits for its inputs to publish (`reason` WaitingForInput names the input).
    Waiting,
    /// A run exists but its container has not started.
    Pending,
    /// A run's container is running.
    Running,
    /// The last run succeeded.
    Succeeded,
    /// The last run failed; `reason` says why.
    Failed,
    /// The spec is invalid; no run is created until it is fixed.
    Invalid,
    /// `spec.suspend` is true.
    Suspended,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Scheduled => "Scheduled",
            RunState::Waiting => "Waiting",
            RunState::Pending => "Pending",
            RunState::Running => "Running",
            RunState::Succeeded => "Succeeded",
            RunState::Failed => "Failed",
            RunState::Invalid => "Invalid",
            RunState::Suspended => "Suspended",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run: identified by (DataJob, logical time).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Run id: the name of the run's Job.
    pub name: String,
    /// The logical time this run processes (RFC 3339, UTC).
    pub logical_time: String,
    /// Waiting, Pending, Running, Succeeded or Failed.
    pub state: RunState,
    /// When the run's Job started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the run succeeded or failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// A stable CamelCase word, e.g. `ImageNotFound`, `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Estimated cost of a finished run: its share of a node (the largest of CPU, memory, GPU, disk)
    /// times the node group's `pricePerHour`, for its duration. Only with node groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost: Option<String>,
    /// The Backfill that started this run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
    /// The parameters this run was given (`trigger --arg`); empty for runs that take the
    /// defaults. A run with parameters has a run id of its own.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// Where the run's logs are once its pod is gone, when the operator keeps a log
    /// archive: `Archived` (copied whole), `Cut` (copied, the last 10 MiB of each
    /// container's log), `NotKept` (the archive did not take them in time) or `Empty`
    /// (no container started, so there was nothing to keep). Unset: no archive is
    /// configured, or the run's pod has not stopped yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

/// What the operator observed and decided.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataJobStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The DataJob's state: its last run's, or Scheduled, Invalid, Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// Why it is in that state (empty when all is well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Ready`, `Invalid`, `Running` and `Failed`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    /// The last few runs, newest first, kept after their Jobs and events are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_runs: Vec<RunRecord>,
    /// The next scheduled logical time (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The node group the DataJob's runs are placed on (none when there are no NodeGroups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_group: Option<String>,
    /// The last `datajob.dev/trigger` annotation value the operator acted on, followed by
    /// ` args=<hash>` when the trigger had arguments (`datajob.dev/trigger-args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger: Option<String>,
    /// Run ids of runs not yet finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_runs: Vec<String>,
    /// What is published, newest logical time first (the last 50): for each logical time,
    /// the run whose output readers and downstream DataJobs get, and where it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<Publication>,
    /// With `catchUp: all`: up to which scheduled time every slot has a run or was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpStatus>,
}

/// A published logical time: the pointer readers follow.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// The logical time (RFC 3339, UTC).
    pub logical_time: String,
    /// The run whose output is published for it.
    pub run_id: String,
    /// Where readers find it: `pvc://<claim>/<path>/logical_time=<time>` (a directory with
    /// the `_DATAJOB.json` manifest), or the run's own prefix in an object store.
    pub location: String,
    /// On a volume: the directory under `<root>/_versions/` the partition points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it was published (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
}

/// How far `catchUp: all` has accounted for scheduled times.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpStatus {
    /// Every scheduled time up to this one (RFC 3339) has a run or was given up.
    pub through: String,
    /// The schedule and time zone this applies to; another schedule starts afresh.
    pub schedule: String,
}

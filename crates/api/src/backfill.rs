//! `Backfill`: run every scheduled time of a DataJob in a range, declaratively. The
//! object is the state: the operator works through it oldest first and records how far
//! it got, so a restart (or another leader) carries on where it stopped.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most slots a Backfill may cover unless `spec.maxSlots` says otherwise.
pub const DEFAULT_MAX_SLOTS: i32 = 1000;
/// How many runs of each DataJob a Backfill has going at once unless `spec.parallel` says.
pub const DEFAULT_PARALLEL: i32 = 1;

/// An RFC 3339 time, as CEL's `timestamp()` takes it (`\\.` in a CEL string is `\.`).
macro_rules! time_pattern {
    () => {
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
    };
}
/// `spec.from` and `spec.to` are times (refused at apply, as the plugin refuses them).
const TIME_RULE: &str = concat!("self.matches('", time_pattern!(), "')");
/// `spec.from` is not after `spec.to` (checked once both are times).
const RANGE_RULE: &str = concat!(
    "!(self.from.matches('",
    time_pattern!(),
    "') && self.to.matches('",
    time_pattern!(),
    "')) || timestamp(self.from) <= timestamp(self.to)"
);
/// The words of `decide::backfill::plan` for the same refusal.
const RANGE_MESSAGE: &str = r#"'spec.from "' + self.from + '" is after spec.to "' + self.to + '"; swap them: spec.from is the first time, spec.to the last'"#;

fn time_message(field: &str) -> String {
    format!(
        r#"'{field} "' + self + '" is not a time; write an RFC 3339 time such as 2026-11-01T00:00:00Z'"#
    )
}

/// Which scheduled times of a DataJob to run, how many at a time, and what to do with
/// times that already ran.
// The printer columns repeat `type_ = "string"`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "datajob.dev",
    version = "v1alpha1",
    kind = "Backfill",
    plural = "backfills",
    shortname = "bf",
    category = "datajob-all",
    namespaced,
    status = "BackfillStatus",
    doc = "Runs every scheduled time of a DataJob in [from, to] once, oldest first, a few at a time; downstream DataJobs follow.",
    printcolumn(name = "DataJob", type_ = "string", json_path = ".spec.dataJob"),
    printcolumn(name = "From", type_ = "string", json_path = ".spec.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Done", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(RANGE_RULE).message(kube::core::Message::Expression(RANGE_MESSAGE.into())))]
pub struct BackfillSpec {
    /// The DataJob (same namespace) whose scheduled times to run. It must have a schedule.
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("spec.dataJob is empty: name the DataJob to backfill"))]
    #[schemars(length(max = super::bounds::MAX_OBJECT_NAME_LEN))]
    pub data_job: String,

    /// The first logical time of the range (RFC 3339, e.g. `2026-11-01T00:00:00Z`), included.
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new(TIME_RULE).message(kube::core::Message::Expression(time_message("spec.from"))))]
    pub from: String,

    /// The last logical time of the range (RFC 3339), included. Times still in the future
    /// when the backfill runs are left to the schedule.
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new(TIME_RULE).message(kube::core::Message::Expression(time_message("spec.to"))))]
    pub to: String,

    /// How many runs of each DataJob go at once (1 to 100). Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub parallel: Option<i32>,

    /// Run again the times whose run had failed before this backfill. Default: false
    /// (they are reported and left alone). A time that fails during the backfill is not
    /// retried by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_failed: Option<bool>,

    /// Also run, for the same range, the DataJobs that take this one as an input (and
    /// theirs), each time once its inputs have published. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<bool>,

    /// The most scheduled times the range may hold, all DataJobs together (1 to 100000).
    /// Default: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_slots: Option<i32>,
}

/// Where a Backfill is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum BackfillState {
    /// Runs are being started or are going.
    #[default]
    Running,
    /// Every time in the range has a final outcome; `failed` says how many failed.
    Complete,
    /// The spec cannot be acted on (unknown DataJob, no time in the range, too many);
    /// `message` says why and what to do.
    Invalid,
}

impl BackfillState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Running => "Running",
            BackfillState::Complete => "Complete",
            BackfillState::Invalid => "Invalid",
        }
    }
}

impl std::fmt::Display for BackfillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One time whose run did not succeed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedSlot {
    /// The DataJob.
    pub data_job: String,
    /// The logical time (RFC 3339, UTC).
    pub logical_time: String,
    /// Why its run failed, e.g. `RetriesExhausted` or `UpstreamFailed`.
    pub reason: String,
}

/// A run the Backfill waits for.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveSlot {
    /// The logical time (RFC 3339, UTC).
    pub logical_time: String,
    /// When the Backfill started it or took it on (RFC 3339): an outcome recorded before
    /// belongs to an earlier run of the same time.
    pub since: String,
}

/// How far the Backfill got with one DataJob.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillProgress {
    /// The DataJob.
    pub data_job: String,
    /// Its scheduled times in the range.
    pub slots: i32,
    /// The next time to start (RFC 3339); absent once every time was started or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Its runs this Backfill started (or found going) that have not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ActiveSlot>,
    /// Runs that succeeded.
    #[serde(default)]
    pub succeeded: i32,
    /// Times that had succeeded before: not run again.
    #[serde(default)]
    pub skipped: i32,
    /// Runs that failed (including `UpstreamFailed`).
    #[serde(default)]
    pub failed: i32,
}

/// What the operator did and found.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The generation of the spec this status follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Running, Complete or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BackfillState>,
    /// The state in plain words, or what is wrong with the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `done/total`, e.g. `4/6`: times with a final outcome, of all times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Scheduled times in the range, all DataJobs together.
    #[serde(default)]
    pub total: i32,
    /// Runs that succeeded.
    #[serde(default)]
    pub succeeded: i32,
    /// Times that had succeeded before the backfill.
    #[serde(default)]
    pub skipped: i32,
    /// Runs that failed.
    #[serde(default)]
    pub failed: i32,
    /// Runs going or waiting for their inputs.
    #[serde(default)]
    pub active: i32,
    /// Per DataJob: the target first, then its downstream DataJobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_jobs: Vec<BackfillProgress>,
    /// The times whose run failed, oldest first: the latest 100 (`failed` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_slots: Vec<FailedSlot>,
    /// When the operator started it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When every time had a final outcome (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// `Complete` (True once every time has a final outcome) and `Invalid`, each with a
    /// reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

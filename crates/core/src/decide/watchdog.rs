//! What is stuck, and what to do about it: the watchdog's decisions as pure functions
//! of a run's Job, its pods and the nodes. `controller::watchdog` acts on them.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, Pod, PodCondition};
use kube::ResourceExt;

use crate::decide::nodegroup::{Group, usable};
use crate::labels::{
    self, DEADLINE_SECONDS, END_MESSAGE, END_REASON, LAST_FAILURE_MESSAGE, LAST_FAILURE_REASON,
    PENDING_TIMEOUT_SECONDS,
};
use crate::resources::Request;
use crate::units;
use datajob_api::NodeGroup;

/// How long each kind of stuck is tolerated. Configurable in the operator.
#[derive(Clone, Debug)]
pub struct Settings {
    pub image_pull_grace: Duration,
    pub config_grace: Duration,
    pub unschedulable_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image_pull_grace: Duration::from_secs(60),
            config_grace: Duration::from_secs(60),
            unschedulable_grace: Duration::from_secs(600),
        }
    }
}

/// What the watchdog does about one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Nothing to do; look again at this time if something might expire then.
    Fine { recheck_at: Option<DateTime<Utc>> },
    /// End the run now, with no more retries.
    End {
        reason: &'static str,
        message: String,
    },
    /// Note what happened to an attempt; the run goes on (retries may follow).
    Record {
        reason: &'static str,
        message: String,
    },
}

/// Reasons the watchdog gives, with what the user should do. Documented in docs/reasons.md.
pub(crate) const IMAGE_NOT_FOUND: &str = "ImageNotFound";
pub(crate) const MISSING_CONFIG: &str = "MissingConfig";
pub(crate) const RUNS_AS_ROOT: &str = "RunsAsRoot";
pub const UNSCHEDULABLE: &str = "Unschedulable";
pub(crate) const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub(crate) const OUT_OF_MEMORY: &str = "OutOfMemory";
pub(crate) const COMMAND_NOT_RUNNABLE: &str = "CommandNotRunnable";

/// The scheduler's `PodScheduled=False/Unschedulable` condition of `pod`, if it has one.
pub fn unschedulable_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.status == "True"
                    && matches!(
                        c.type_.as_str(),
                        "Complete" | "Failed" | "FailureTarget" | "SuccessCriteriaMet"
                    )
            })
        })
}

fn annotation_secs(job: &Job, key: &str) -> Option<Duration> {
    job.annotations()
        .get(key)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Time since `t`, a Kubernetes timestamp. Those have second precision (truncated), so a
/// second is taken off: the watchdog never acts before a grace period really passed.
fn since(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - t)
        .to_std()
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(1))
}

/// When [`since`] reaches `d`.
fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d + Duration::from_secs(1)).unwrap_or(chrono::Duration::MAX)
}

fn scheduled_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")?;
    c.last_transition_time
        .as_ref()
        .and_then(labels::from_k8s_time)
}

/// When the earliest container of the run started (running or since terminated).
fn first_start(pods: &[&Pod]) -> Option<DateTime<Utc>> {
    pods.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|cs| {
            let st = cs.state.as_ref()?;
            st.running
                .as_ref()
                .and_then(|r| r.started_at.as_ref())
                .or_else(|| st.terminated.as_ref().and_then(|t| t.started_at.as_ref()))
                .and_then(labels::from_k8s_time)
        })
        .min()
}

/// A node group as the watchdog sees it.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Group,
    /// While the group is adding nodes: when its provisioning timeout runs out.
    pub scale_up_until: Option<DateTime<Utc>>,
}

impl GroupView {
    pub fn of(ng: &NodeGroup) -> Option<GroupView> {
        let group = usable(ng)?;
        let status = ng.status.clone().unwrap_or_default();
        let scale_up_until = (status.desired > status.ready)
            .then(|| {
                status
                    .last_scale_time
                    .as_deref()
                    .and_then(labels::parse_rfc3339)
            })
            .flatten()
            .map(|t| after(t, group.provisioning_timeout));
        Some(GroupView {
            group,
            scale_up_until,
        })
    }
}

/// The decision for one run.
pub fn assess(
    job: &Job,
    pods: &[&Pod],
    nodes: &[&Node],
    groups: &[GroupView],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Verdict {
    if job.annotations().contains_key(END_REASON) {
        return Verdict::Fine { recheck_at: None };
    }
    if finished(job) {
        // An attempt killed for memory says more than the Job controller's reason, even
        // when the run failed before the watchdog saw the pod.
        return out_of_memory(job, pods).unwrap_or(Verdict::Fine { recheck_at: None });
    }
    let mut recheck: Vec<DateTime<Utc>> = Vec::new();
    let live: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();

    // The runtime could not start the command (a binary missing from the image, no
    // execute bit): every retry fails the same way, so the run ends now.
    if let Some((reason, message)) = start_error(&live) {
        return Verdict::End { reason, message };
    }

    for pod in &live {
        if let Some(verdict) = waiting_verdict(pod, settings, now, &mut recheck) {
            return verdict;
        }
    }
    for pod in &live {
        if let Some(verdict) = pending_verdict(job, pod, nodes, groups, settings, now, &mut recheck)
        {
            return verdict;
        }
    }
    if let Some(verdict) = overdue(job, pods, now, &mut recheck) {
        return verdict;
    }

    out_of_memory(job, pods).unwrap_or(Verdict::Fine {
        recheck_at: recheck.into_iter().min(),
    })
}

/// A container of `pod` that waits for a reason no retry mends (an image that cannot be
/// pulled, a missing ConfigMap or Secret, an image that runs as root): the run's end once
/// the reason's grace has passed since the pod was scheduled, or else when to look again.
fn waiting_verdict(
    pod: &Pod,
    settings: &Settings,
    now: DateTime<Utc>,
    recheck: &mut Vec<DateTime<Utc>>,
) -> Option<Verdict> {
    let scheduled = scheduled_at(pod);
    for cs in pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
    {
        let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.as_deref().unwrap_or_default();
        let msg = w.message.clone().unwrap_or_default();
        let image = cs.image.clone();
        let (grace, verdict) = match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => (
                settings.image_pull_grace,
                Verdict::End {
                    reason: IMAGE_NOT_FOUND,
                    message: format!(
                        "{image} could not be pulled ({}); check spec.image: the tag or registry may be wrong, or the registry needs credentials",
                        if msg.is_empty() {
                            reason.to_string()
                        } else {
                            msg
                        }
                    ),
                },
            ),
            "CreateContainerConfigError"
                if msg.contains("runAsNonRoot") || msg.contains("run as root") =>
            {
                (
                    settings.config_grace,
                    Verdict::End {
                        reason: RUNS_AS_ROOT,
                        message: format!(
                            "{image} runs as root, which DataJob does not allow ({msg}); build the image with a non-root USER"
                        ),
                    },
                )
            }
            "CreateContainerConfigError" => (
                settings.config_grace,
                Verdict::End {
                    reason: MISSING_CONFIG,
                    message: format!(
                        "{msg}; create it in namespace {} or fix the reference in spec.env",
                        pod.namespace().unwrap_or_default()
                    ),
                },
            ),
            _ => continue,
        };
        let Some(t) = scheduled else { continue };
        if since(t, now) >= grace {
            return Some(verdict);
        }
        recheck.push(after(t, grace));
    }
    None
}

/// A pod the scheduler cannot place: the run's end when no node, present or that a
/// group can make, could ever fit it, or when it has waited past its pending timeout
/// (unless a scale-up that could place it is under way); or else when to look again.
fn pending_verdict(
    job: &Job,
    pod: &Pod,
    nodes: &[&Node],
    groups: &[GroupView],
    settings: &Settings,
    now: DateTime<Utc>,
    recheck: &mut Vec<DateTime<Utc>>,
) -> Option<Verdict> {
    let cond = unschedulable_condition(pod)?;
    // A request or a node that cannot be read is not judged: a run is never ended
    // as unschedulable on a number that was not there.
    let request = Request::try_of(pod).ok();
    let scheduler = cond.message.clone().unwrap_or_default();
    // Nodes that exist, and nodes that node groups can make.
    let capacities: Option<Vec<Request>> = nodes
        .iter()
        .map(|n| Request::try_allocatable(n).ok())
        .chain(groups.iter().map(|g| Some(g.group.shape)))
        .collect();
    if let (Some(request), Some(capacities)) = (request, capacities)
        && !capacities.is_empty()
        && !capacities.iter().any(|c| request.fits(c))
    {
        let largest = capacities
            .iter()
            .max_by_key(|r| (r.memory, r.cpu_millis))
            .copied()
            .unwrap_or_default();
        return Some(Verdict::End {
            reason: UNSCHEDULABLE,
            message: format!(
                "no node can ever fit this run: it asks for {request}, the largest node offers {largest}; lower spec.resources ({scheduler})"
            ),
        });
    }
    // A scale-up that could place it is under way: wait for the group's provisioning.
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let scaling = groups
        .iter()
        .find(|g| selector.is_some_and(|s| g.group.marks(s)))
        .and_then(|g| g.scale_up_until);
    if let Some(until) = scaling.filter(|u| *u > now) {
        recheck.push(until);
        return None;
    }
    let grace =
        annotation_secs(job, PENDING_TIMEOUT_SECONDS).unwrap_or(settings.unschedulable_grace);
    let t = cond
        .last_transition_time
        .as_ref()
        .and_then(labels::from_k8s_time)?;
    if since(t, now) >= grace {
        let waited = units::format_duration(grace);
        // A big scratch disk is a PVC: with no StorageClass that provisions it, the
        // pod waits for the volume, not for room.
        let message = if scheduler.contains("unbound immediate PersistentVolumeClaims") {
            format!(
                "the run's scratch volume (spec.resources.disk) was not provisioned for {waited}: {scheduler}; ask your platform team for a default StorageClass, or ask for less disk so it comes from the node's own storage"
            )
        } else {
            let asks = request.map_or_else(|| "its requests".to_string(), |r| r.to_string());
            format!(
                "no node had room for this run ({asks}) for {waited}: {scheduler}; lower spec.resources, raise spec.pendingTimeout, or ask for more capacity"
            )
        };
        return Some(Verdict::End {
            reason: UNSCHEDULABLE,
            message,
        });
    }
    recheck.push(after(t, grace));
    None
}

/// The component name Karpenter publishes its events with.
pub const KARPENTER: &str = "karpenter";

/// The reasons of Karpenter's pod events that say why the pod has no node: it made
/// none (`FailedScheduling`: a NodePool at its limits, no instance type that fits), or
/// the NodeClaim it made for the pod failed to launch (`InsufficientCapacityError`:
/// `NodeClaim … nominated for this pod failed to launch: …`).
pub const AUTOSCALER_REASONS: [&str; 2] = ["FailedScheduling", "InsufficientCapacityError"];

/// Karpenter's latest word on why it made no node for a pod, from the pod's events
/// ([`AUTOSCALER_REASONS`] from `karpenter`): e.g. `Failed to schedule pod, all available
/// instance types exceed limits for nodepool: "batch"`. `None` without one.
pub fn autoscaler_words(events: &[Event]) -> Option<String> {
    events
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| AUTOSCALER_REASONS.contains(&r))
                && (e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(KARPENTER)
                    || e.reporting_component.as_deref() == Some(KARPENTER))
        })
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
        })
        .and_then(|e| e.message.clone())
        .filter(|m| !m.is_empty())
}

/// An `Unschedulable` end with the autoscaler's words added (why no node was made for
/// the run: a NodePool at its limits, no instance type that fits, a node that failed to
/// launch), where the scheduler's words only say that no node had room. Other verdicts
/// are left as they are.
pub fn with_autoscaler_words(verdict: Verdict, words: Option<&str>) -> Verdict {
    match (verdict, words) {
        (
            Verdict::End {
                reason: UNSCHEDULABLE,
                message,
            },
            Some(words),
        ) => Verdict::End {
            reason: UNSCHEDULABLE,
            message: format!("{message}; Karpenter made no node for it: {words}"),
        },
        (verdict, _) => verdict,
    }
}

/// A run past its deadline (`spec.deadline`, counted from its first start): its end, or
/// else when to look again.
fn overdue(
    job: &Job,
    pods: &[&Pod],
    now: DateTime<Utc>,
    recheck: &mut Vec<DateTime<Utc>>,
) -> Option<Verdict> {
    let (Some(deadline), Some(start)) = (annotation_secs(job, DEADLINE_SECONDS), first_start(pods))
    else {
        return None;
    };
    if since(start, now) >= deadline {
        return Some(Verdict::End {
            reason: DEADLINE_EXCEEDED,
            message: format!(
                "the run took longer than its deadline of {} and was stopped; raise spec.deadline or make the job faster",
                units::format_duration(deadline)
            ),
        });
    }
    recheck.push(after(start, deadline));
    None
}

/// A `Record` of an attempt killed for memory, once per run.
fn out_of_memory(job: &Job, pods: &[&Pod]) -> Option<Verdict> {
    let (reason, message) = attempt_failure(pods)?;
    let recorded = job
        .annotations()
        .get(LAST_FAILURE_REASON)
        .map(String::as_str)
        == Some(reason);
    (!recorded).then_some(Verdict::Record { reason, message })
}

/// A container the runtime could not start (`StartError`, exit code 128: the command is
/// not in the image or cannot be executed), as a reason and what to do.
fn start_error(pods: &[&Pod]) -> Option<(&'static str, String)> {
    let t = pods
        .iter()
        .flat_map(|p| p.status.iter())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|cs| {
            let state = cs.state.as_ref()?.terminated.as_ref();
            let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            state
                .into_iter()
                .chain(last)
                .find(|t| t.reason.as_deref() == Some("StartError"))
        })
        .next()?;
    let why = t
        .message
        .as_deref()
        .and_then(|m| {
            m.rsplit_once("unable to start container process: ")
                .map(|(_, w)| w)
        })
        .or(t.message.as_deref())
        .unwrap_or("StartError")
        .trim_end_matches(": unknown");
    Some((
        COMMAND_NOT_RUNNABLE,
        format!(
            "the command could not be started ({why}); check spec.command: the program must exist in the image and be executable"
        ),
    ))
}

/// Why an attempt among `pods` died, when it says more than its exit code: its command
/// could not be started (`CommandNotRunnable`), or it was killed for memory
/// (`OutOfMemory`), with the limit it hit; and what to do.
pub(crate) fn attempt_failure(pods: &[&Pod]) -> Option<(&'static str, String)> {
    if let Some(found) = start_error(pods) {
        return Some(found);
    }
    let oom = pods.iter().any(|p| {
        p.status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .any(|cs| {
                cs.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
            })
    });
    if !oom {
        return None;
    }
    let limit = pods
        .first()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| {
            c.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .map(|q| q.0.clone())
        })
        .unwrap_or_else(|| "its limit".into());
    Some((
        OUT_OF_MEMORY,
        format!(
            "the container ran out of memory ({limit}) and was killed; raise spec.resources.memory"
        ),
    ))
}

/// What the watchdog writes on a run's Job for a verdict that is not
/// [`Verdict::Fine`], and how it is told (a log line, a metric, an event on the DataJob).
#[derive(Clone, Debug, PartialEq)]
pub struct JobChange {
    /// A merge patch of the Job.
    pub patch: serde_json::Value,
    pub reason: &'static str,
    /// The event's action: `EndRun` or `RecordFailure`.
    pub action: &'static str,
    pub note: String,
    /// The run ends (counted as ended, not as a failed attempt).
    pub ends: bool,
}

/// The change `verdict` asks of `job`, the run `id`; `None` for [`Verdict::Fine`].
///
/// Ending a run shrinks `activeDeadlineSeconds` to the time it has run (at least 1 s):
/// the Job controller then fails the Job and deletes its pods at once, with no further
/// retry. The reason and message go on the Job's annotations, where the DataJob
/// controller reads them.
pub fn job_change(job: &Job, id: &str, verdict: &Verdict, now: DateTime<Utc>) -> Option<JobChange> {
    match verdict {
        Verdict::Fine { .. } => None,
        Verdict::End { reason, message } => {
            let started = job
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .and_then(labels::from_k8s_time);
            let elapsed = started.map_or(1, |t| (now - t).num_seconds().max(1));
            Some(JobChange {
                patch: serde_json::json!({
                    "metadata": {"annotations": {END_REASON: reason, END_MESSAGE: message}},
                    "spec": {"activeDeadlineSeconds": elapsed},
                }),
                reason,
                action: "EndRun",
                note: format!("run {id} ended: {message}"),
                ends: true,
            })
        }
        Verdict::Record { reason, message } => Some(JobChange {
            patch: serde_json::json!({"metadata": {"annotations": {
                LAST_FAILURE_REASON: reason, LAST_FAILURE_MESSAGE: message}}}),
            reason,
            action: "RecordFailure",
            note: format!("run {id}: {message}"),
            ends: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GROUP_LABEL;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }
    fn event(component: &str, reason: &str, at: &str, message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": reason, "message": message, "lastTimestamp": at,
            "source": {"component": component},
        }))
        .unwrap()
    }

    #[test]
    fn karpenters_latest_failed_scheduling_words_join_an_unschedulable_end() {
        let events = [
            event(
                "karpenter",
                "FailedScheduling",
                "2026-01-01T00:00:10Z",
                "Failed to schedule pod, all available instance types exceed limits for nodepool: \"batch\"",
            ),
            event(
                "karpenter",
                "FailedScheduling",
                "2026-01-01T00:00:01Z",
                "older",
            ),
            event(
                "default-scheduler",
                "FailedScheduling",
                "2026-01-01T00:00:20Z",
                "0/1 nodes are available",
            ),
            event(
                "karpenter",
                "Nominated",
                "2026-01-01T00:00:30Z",
                "Pod should schedule on: nodeclaim/x",
            ),
        ];
        let words = autoscaler_words(&events);
        assert_eq!(
            words.as_deref(),
            Some(
                "Failed to schedule pod, all available instance types exceed limits for nodepool: \"batch\""
            )
        );
        let end = Verdict::End {
            reason: UNSCHEDULABLE,
            message: "no node had room".into(),
        };
        let Verdict::End { reason, message } = with_autoscaler_words(end, words.as_deref()) else {
            panic!("still an end");
        };
        assert_eq!(reason, UNSCHEDULABLE);
        assert!(message.starts_with("no node had room; Karpenter made no node for it: Failed to schedule pod, all available instance types exceed limits"), "{message}");
        // A NodeClaim that failed to launch, said later, is the latest word.
        let mut launch = events.to_vec();
        launch.push(event(
            "karpenter",
            "InsufficientCapacityError",
            "2026-01-01T00:00:40Z",
            "NodeClaim batch-x nominated for this pod failed to launch: resolving node class from nodeclaim, not found",
        ));
        assert_eq!(
            autoscaler_words(&launch).as_deref(),
            Some(
                "NodeClaim batch-x nominated for this pod failed to launch: resolving node class from nodeclaim, not found"
            )
        );
        // Without Karpenter's words, or for another verdict, nothing changes.
        assert_eq!(autoscaler_words(&events[2..]), None);
        let other = Verdict::End {
            reason: DEADLINE_EXCEEDED,
            message: "late".into(),
        };
        assert_eq!(with_autoscaler_words(other.clone(), Some("x")), other);
        let plain = Verdict::End {
            reason: UNSCHEDULABLE,
            message: "m".into(),
        };
        assert_eq!(with_autoscaler_words(plain.clone(), None), plain);
    }

    fn ago(secs: i64) -> String {
        labels::rfc3339(now() - chrono::Duration::seconds(secs))
    }
    fn job(extra: serde_json::Value) -> Job {
        let mut annotations = json!({DEADLINE_SECONDS: "600"});
        if let Some(o) = extra.as_object() {
            for (k, v) in o {
                annotations[k] = v.clone();
            }
        }
        serde_json::from_value(
            json!({"metadata": {"name": "dj-1", "annotations": annotations}, "status": {}}),
        )
        .unwrap()
    }
    fn pod(scheduled_secs_ago: Option<i64>, container_state: serde_json::Value, cpu: &str) -> Pod {
        let mut conditions = vec![];
        if let Some(s) = scheduled_secs_ago {
            conditions.push(
                json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(s)}),
            );
        }
        serde_json::from_value(json!({
            "metadata": {"name": "dj-1-abc", "namespace": "ns"},
            "spec": {"containers": [{"name": "main", "image": "img", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]},
            "status": {"conditions": conditions, "containerStatuses": [{"name": "main", "image": "img:1", "imageID": "", "ready": false, "restartCount": 0, "state": container_state}]},
        }))
        .unwrap()
    }
    fn unschedulable(secs_ago: i64, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "dj-1-abc", "namespace": "ns"},
            "spec": {"containers": [{"name": "main", "image": "img", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.", "lastTransitionTime": ago(secs_ago)}]},
        }))
        .unwrap()
    }
    fn node(cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": cpu, "memory": "16Gi"}}})).unwrap()
    }
    fn waiting(reason: &str, msg: &str) -> serde_json::Value {
        json!({"waiting": {"reason": reason, "message": msg}})
    }

    #[test]
    fn a_command_the_runtime_cannot_start_ends_the_run_at_once() {
        // What a real containerd and runc say for `command: [/no/such/binary]`.
        let message = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory: unknown";
        let p = pod(
            Some(1),
            json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": message}}),
            "1",
        );
        let v = assess(
            &job(json!({})),
            &[&p],
            &[],
            &[],
            &Settings::default(),
            now(),
        );
        match v {
            Verdict::End { reason, message } => {
                assert_eq!(reason, COMMAND_NOT_RUNNABLE);
                assert!(
                    message.starts_with("the command could not be started (exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory)"),
                    "{message}"
                );
            }
            v => panic!("{v:?}"),
        }
        // A Job the Job controller already failed still gets the reason, recorded once.
        let done: Job = serde_json::from_value(json!({"metadata": {"name": "dj-1", "annotations": {}}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}})).unwrap();
        assert!(matches!(
            assess(&done, &[&p], &[], &[], &Settings::default(), now()),
            Verdict::Record {
                reason: COMMAND_NOT_RUNNABLE,
                ..
            }
        ));
        let recorded: Job = serde_json::from_value(json!({"metadata": {"name": "dj-1", "annotations": {LAST_FAILURE_REASON: COMMAND_NOT_RUNNABLE}}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}})).unwrap();
        assert!(matches!(
            assess(&recorded, &[&p], &[], &[], &Settings::default(), now()),
            Verdict::Fine { .. }
        ));
        // An ordinary failure is not a start error.
        let exit = pod(
            Some(1),
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            "1",
        );
        assert!(start_error(&[&exit]).is_none());
    }

    #[test]
    fn image_pull_failures_end_after_the_grace() {
        let s = Settings::default();
        let n = node("4");
        let p = pod(
            Some(30),
            waiting("ImagePullBackOff", "Back-off pulling image"),
            "1",
        );
        match assess(&job(json!({})), &[&p], &[&n], &[], &s, now()) {
            Verdict::Fine { recheck_at } => {
                assert_eq!(recheck_at, labels::parse_rfc3339(&ago(-31)))
            }
            v => panic!("{v:?}"),
        }
        // Timestamps are truncated to the second: exactly the grace is not enough yet.
        let p = pod(Some(60), waiting("ErrImagePull", "manifest unknown"), "1");
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[&n], &[], &s, now()),
            Verdict::Fine { .. }
        ));
        let p = pod(Some(61), waiting("ErrImagePull", "manifest unknown"), "1");
        match assess(&job(json!({})), &[&p], &[&n], &[], &s, now()) {
            Verdict::End { reason, message } => {
                assert_eq!(reason, IMAGE_NOT_FOUND);
                assert!(
                    message.contains("img:1") && message.contains("manifest unknown"),
                    "{message}"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn missing_config_and_root_images() {
        let s = Settings::default();
        let p = pod(
            Some(120),
            waiting("CreateContainerConfigError", "secret \"db\" not found"),
            "1",
        );
        assert!(
            matches!(assess(&job(json!({})), &[&p], &[], &[], &s, now()), Verdict::End { reason: MISSING_CONFIG, message } if message.contains("secret \"db\" not found"))
        );
        let p = pod(
            Some(120),
            waiting(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            ),
            "1",
        );
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[], &s, now()),
            Verdict::End {
                reason: RUNS_AS_ROOT,
                ..
            }
        ));
    }

    #[test]
    fn unschedulable_waits_unless_nothing_could_ever_fit() {
        let s = Settings::default();
        let small = node("4");
        let p = unschedulable(60, "2");
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[&small], &[], &s, now()),
            Verdict::Fine {
                recheck_at: Some(_)
            }
        ));
        let p = unschedulable(601, "2");
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[&small], &[], &s, now()),
            Verdict::End {
                reason: UNSCHEDULABLE,
                ..
            }
        ));
        // Per-DataJob timeout on the Job.
        let p = unschedulable(120, "2");
        assert!(matches!(
            assess(
                &job(json!({PENDING_TIMEOUT_SECONDS: "100"})),
                &[&p],
                &[&small],
                &[],
                &s,
                now()
            ),
            Verdict::End { .. }
        ));
        // Waiting for a scratch volume that is never provisioned says so.
        let mut p = unschedulable(601, "2");
        if let Some(c) = p
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.first_mut())
        {
            c.message = Some(
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.".into(),
            );
        }
        match assess(&job(json!({})), &[&p], &[&small], &[], &s, now()) {
            Verdict::End { reason, message } => {
                assert_eq!(reason, UNSCHEDULABLE);
                assert!(
                    message.starts_with("the run's scratch volume (spec.resources.disk) was not provisioned for 10m: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."),
                    "{message}"
                );
            }
            v => panic!("{v:?}"),
        }
        // Too big for every node: at once, naming the largest node.
        let p = unschedulable(1, "64");
        match assess(
            &job(json!({})),
            &[&p],
            &[&small, &node("16")],
            &[],
            &s,
            now(),
        ) {
            Verdict::End { reason, message } => {
                assert_eq!(reason, UNSCHEDULABLE);
                assert!(
                    message.contains("cpu 64") && message.contains("cpu 16"),
                    "{message}"
                );
            }
            v => panic!("{v:?}"),
        }
        // No nodes at all (they may be coming): wait.
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[], &s, now()),
            Verdict::Fine { .. }
        ));
    }

    #[test]
    fn a_scale_up_under_way_holds_off_unschedulable() {
        let s = Settings::default();
        let mut p = unschedulable(601, "2");
        p.spec.as_mut().unwrap().node_selector =
            Some([(GROUP_LABEL.to_string(), "burst".to_string())].into());
        let shape = Request {
            cpu_millis: 8000,
            memory: 32 << 30,
            ephemeral: 0,
            gpu: 0,
        };
        let group = crate::group::Group {
            name: "burst".into(),
            shape,
            labels: Default::default(),
            taints: vec![],
            min_size: 0,
            max_size: 3,
            price_per_hour: 1.0,
            scale_down_after: Duration::from_secs(60),
            provisioning_timeout: Duration::from_secs(600),
            warm_up_before: None,
            provider: crate::decide::nodegroup::ProviderKind::Static,
            ..Default::default()
        };
        let until = now() + chrono::Duration::seconds(300);
        let scaling = GroupView {
            group: group.clone(),
            scale_up_until: Some(until),
        };
        assert_eq!(
            assess(&job(json!({})), &[&p], &[], &[scaling], &s, now()),
            Verdict::Fine {
                recheck_at: Some(until)
            }
        );
        // Provisioning timed out: the usual rule applies.
        let stale = GroupView {
            group: group.clone(),
            scale_up_until: Some(now() - chrono::Duration::seconds(1)),
        };
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[stale], &s, now()),
            Verdict::End { .. }
        ));
        // With no node at all, a group whose nodes could fit it means: wait; none: end at once.
        let idle = GroupView {
            group,
            scale_up_until: None,
        };
        let young = unschedulable(5, "2");
        assert!(matches!(
            assess(
                &job(json!({})),
                &[&young],
                &[],
                std::slice::from_ref(&idle),
                &s,
                now()
            ),
            Verdict::Fine { .. }
        ));
        let huge = unschedulable(5, "64");
        assert!(matches!(
            assess(&job(json!({})), &[&huge], &[], &[idle], &s, now()),
            Verdict::End { .. }
        ));
    }

    #[test]
    fn deadline_counts_from_the_container_start() {
        let s = Settings::default();
        let running = |secs| {
            pod(
                Some(secs + 300),
                json!({"running": {"startedAt": ago(secs)}}),
                "1",
            )
        };
        let p = running(500);
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[], &s, now()),
            Verdict::Fine {
                recheck_at: Some(_)
            }
        ));
        let p = running(601);
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[], &s, now()),
            Verdict::End {
                reason: DEADLINE_EXCEEDED,
                ..
            }
        ));
    }

    #[test]
    fn oom_is_recorded_once_and_finished_runs_are_left_alone() {
        let s = Settings::default();
        let p = pod(
            Some(100),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ago(50)}}),
            "1",
        );
        assert!(matches!(
            assess(&job(json!({})), &[&p], &[], &[], &s, now()),
            Verdict::Record {
                reason: OUT_OF_MEMORY,
                ..
            }
        ));
        assert!(matches!(
            assess(
                &job(json!({LAST_FAILURE_REASON: OUT_OF_MEMORY})),
                &[&p],
                &[],
                &[],
                &s,
                now()
            ),
            Verdict::Fine { .. }
        ));
        let mut done = job(json!({}));
        done.status =
            serde_json::from_value(json!({"conditions": [{"type": "Complete", "status": "True"}]}))
                .unwrap();
        let stuck = pod(Some(1000), waiting("ImagePullBackOff", ""), "1");
        assert_eq!(
            assess(&done, &[&stuck], &[], &[], &s, now()),
            Verdict::Fine { recheck_at: None }
        );
    }

    #[test]
    fn ending_a_run_shrinks_its_deadline_to_the_time_it_ran_and_notes_why() {
        let now = labels::parse_rfc3339("2026-12-01T02:10:00Z").unwrap();
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nightly-1"},
            "status": {"startTime": "2026-12-01T02:00:00Z"},
        }))
        .unwrap();
        let end = Verdict::End {
            reason: IMAGE_NOT_FOUND,
            message: "no such image".into(),
        };
        let c = job_change(&job, "nightly-1", &end, now).unwrap();
        assert!(c.ends);
        assert_eq!(c.action, "EndRun");
        assert_eq!(c.patch["spec"]["activeDeadlineSeconds"], 600);
        assert_eq!(
            c.patch["metadata"]["annotations"][END_REASON],
            IMAGE_NOT_FOUND
        );
        assert_eq!(
            c.patch["metadata"]["annotations"][END_MESSAGE],
            "no such image"
        );
        assert_eq!(c.note, "run nightly-1 ended: no such image");
        // A Job not started yet (or started in the future, by a skewed clock): 1 s.
        let fresh = Job::default();
        let c = job_change(&fresh, "nightly-1", &end, now).unwrap();
        assert_eq!(c.patch["spec"]["activeDeadlineSeconds"], 1);
        let record = Verdict::Record {
            reason: OUT_OF_MEMORY,
            message: "killed".into(),
        };
        let c = job_change(&job, "nightly-1", &record, now).unwrap();
        assert!(!c.ends);
        assert_eq!(c.action, "RecordFailure");
        assert!(c.patch.get("spec").is_none());
        assert_eq!(
            c.patch["metadata"]["annotations"][LAST_FAILURE_REASON],
            OUT_OF_MEMORY
        );
        let fine = Verdict::Fine { recheck_at: None };
        assert_eq!(job_change(&job, "nightly-1", &fine, now), None);
    }
}

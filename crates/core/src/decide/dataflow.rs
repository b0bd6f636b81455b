//! Dataflow between DataJobs, decided purely: which logical time of an input a run
//! reads, whether it may start, wait or must end `UpstreamFailed`; what a succeeded run
//! still needs before it counts as published; and which inputs are missing or make a
//! cycle (refused at apply, in `plan` and by the reconciler with the same words).
//!
//! **Matching rule.** A run of logical time T reads, of each input, the input's latest
//! scheduled time at or before T (for an input without a schedule: its latest run at or
//! before T). Same schedules match time for time; an hourly job reading a daily input
//! gets the day's run once it is due; a daily job reading an hourly input gets the
//! hour of its own time.
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use crate::decide::children;
use crate::labels::{self, END_MESSAGE, END_REASON};
use crate::output::{self, Output};
use crate::schedule::{self, Schedule};
use crate::validation::Problem;
use datajob_api::{DataJob, Publication, RunRecord, RunState};

/// The reason of a run that did not start because an input failed.
pub(crate) const UPSTREAM_FAILED: &str = "UpstreamFailed";
/// The reason of a run that waits for an input.
pub const WAITING_FOR_INPUT: &str = "WaitingForInput";
/// The reason of a succeeded run whose output is being published.
pub const PUBLISHING: &str = "Publishing";
/// The reason of a run whose output could not be published.
pub const PUBLISH_FAILED: &str = "PublishFailed";
/// How many publications `status.published` keeps.
pub(crate) const PUBLISHED_KEPT: usize = 50;
/// How long a succeeded run on an object store may wait for its attempt's pod to be seen
/// (to name its prefix) before it counts as not published.
pub(crate) const ATTEMPT_LOOKUP_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// What a downstream run needs to know about one input DataJob.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub schedule: Option<Schedule>,
    pub output: Option<Output>,
    pub published: Vec<Publication>,
    /// Its runs: the status' history, refreshed with what its Jobs say now.
    pub runs: Vec<RunRecord>,
}

impl Upstream {
    /// The view of `dj`, with the records of its Jobs as they are now (`job_runs`).
    pub fn of(dj: &DataJob, job_runs: Vec<RunRecord>) -> Upstream {
        let tz = dj
            .spec
            .time_zone
            .as_deref()
            .map_or(Ok(chrono_tz::UTC), schedule::parse_time_zone);
        let schedule = match (dj.spec.schedule.as_deref(), tz) {
            (Some(expr), Ok(tz)) => Schedule::parse(expr, tz).ok(),
            _ => None,
        };
        let status = dj.status.clone().unwrap_or_default();
        Upstream {
            name: dj.name_any(),
            schedule,
            output: dj
                .spec
                .output
                .as_deref()
                .and_then(|o| Output::parse(o, false).ok()),
            published: status.published,
            runs: merge_views(&status.recent_runs, job_runs),
        }
    }

    /// The logical time of this input that a run of `t` reads.
    pub(crate) fn matched(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.schedule {
            Some(s) => s.at_or_before(t),
            None => self
                .runs
                .iter()
                .map(|r| r.logical_time.as_str())
                .chain(self.published.iter().map(|p| p.logical_time.as_str()))
                .filter_map(labels::parse_rfc3339)
                .filter(|l| *l <= t)
                .max(),
        }
    }
}

/// The history in a status refreshed with the records of the Jobs now: a Job's record
/// wins, unless the status knows more about the same attempt (its output could not be
/// published: the Job alone says Succeeded).
pub(crate) fn merge_views(status: &[RunRecord], jobs: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut by_name: BTreeMap<String, RunRecord> =
        status.iter().map(|r| (r.name.clone(), r.clone())).collect();
    for run in jobs {
        let known = by_name.get(&run.name).is_some_and(|s| {
            s.reason.as_deref() == Some(PUBLISH_FAILED) && s.start_time == run.start_time
        });
        if !known {
            by_name.insert(run.name.clone(), run);
        }
    }
    by_name.into_values().collect()
}

/// Whether a run of logical time T may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every input published: (input, the location its run gets) in `spec.inputs` order.
    Ready(Vec<(String, String)>),
    /// An input has not published yet.
    Waiting { input: String, message: String },
    /// An input's run for the matched time failed, or that time passed without a run.
    UpstreamFailed { input: String, message: String },
}

/// Decides for a run of logical time `t` with `inputs`, from what `upstreams` say.
/// `deadline_of` gives an input's starting deadline: a scheduled time with no run once
/// it passed will not get one.
pub fn decide(
    t: DateTime<Utc>,
    inputs: &[String],
    upstreams: &BTreeMap<String, Upstream>,
    now: DateTime<Utc>,
) -> Verdict {
    let mut ready = Vec::new();
    for input in inputs {
        match read_input(input, upstreams.get(input), t, now) {
            Ok(location) => ready.push((input.clone(), location)),
            Err(verdict) => return verdict,
        }
    }
    Verdict::Ready(ready)
}

/// What input `input` (`up`, `None` when no DataJob has that name) offers a run of time
/// `t`: the location to read, or why the run waits or must end.
fn read_input(
    input: &str,
    up: Option<&Upstream>,
    t: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, Verdict> {
    let waiting = |message: String| Verdict::Waiting {
        input: input.to_string(),
        message,
    };
    let failed = |message: String| Verdict::UpstreamFailed {
        input: input.to_string(),
        message,
    };
    let Some(up) = up else {
        return Err(waiting(format!(
            "input {input} is not a DataJob in this namespace"
        )));
    };
    let Some(slot) = up.matched(t) else {
        return Err(match up.runs.is_empty() {
            true => waiting(format!(
                "waiting for input {input} to run for the first time"
            )),
            false => failed(format!(
                "input {input} has no run at or before {}; trigger it for that time",
                labels::rfc3339(t)
            )),
        });
    };
    let at = labels::rfc3339(slot);
    if let Some(p) = up.published.iter().find(|p| p.logical_time == at) {
        return Ok(up.output.as_ref().map_or_else(String::new, |o| {
            output::input_location(o, &p.location, p.version.as_deref())
        }));
    }
    let run = up.runs.iter().find(|r| r.logical_time == at);
    match run {
        Some(r) if r.state == RunState::Succeeded && up.output.is_none() => Ok(String::new()),
        Some(r) if r.state == RunState::Failed => {
            let (id, reason) = (&r.name, r.reason.as_deref().unwrap_or_default());
            Err(failed(format!(
                "input {input}'s run {id} for {at} failed ({reason}); when it is run again and succeeds, this run goes"
            )))
        }
        Some(r) => {
            let doing = match r.state {
                RunState::Succeeded => "succeeded and is being published".to_string(),
                s => format!("is {s}"),
            };
            Err(waiting(format!(
                "waiting for input {input}: its run for {at} {doing}"
            )))
        }
        None => {
            let passed = up
                .schedule
                .as_ref()
                .is_some_and(|s| slot + crate::decide::runs::starting_deadline(s, now) < now);
            Err(match passed {
                true => failed(format!(
                    "input {input} has no run for {at}: its time passed without one (skipped, missed or suspended); backfill {input} for that time and this run goes"
                )),
                false => waiting(format!("waiting for input {input} to run for {at}")),
            })
        }
    }
}

/// The claims of the inputs' volume outputs (the run's pod mounts them read-only).
pub fn input_claims(inputs: &[String], upstreams: &BTreeMap<String, Upstream>) -> Vec<String> {
    let mut claims: Vec<String> = inputs
        .iter()
        .filter_map(|i| upstreams.get(i)?.output.as_ref()?.claim().map(String::from))
        .collect();
    claims.dedup();
    claims
}

/// Missing inputs and cycles. `others` are the namespace's DataJobs (name, inputs),
/// `name`/`inputs` the DataJob being checked (it replaces its own entry in `others`).
pub fn check_graph(
    name: &str,
    namespace: &str,
    inputs: &[String],
    others: &[(String, Vec<String>)],
) -> Vec<Problem> {
    let mut graph: BTreeMap<&str, &[String]> = others
        .iter()
        .map(|(n, i)| (n.as_str(), i.as_slice()))
        .collect();
    graph.insert(name, inputs);
    let mut problems = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if input == name {
            continue; // validation says "is this DataJob itself"
        }
        let field = format!("spec.inputs[{i}]");
        if !graph.contains_key(input.as_str()) {
            let names: Vec<&str> = others
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| *n != name)
                .collect();
            let close = crate::suggest::closest(input, names.iter().copied());
            let hint = match close.is_empty() {
                true => String::new(),
                false => format!("; did you mean {}?", crate::suggest::or_list(&close)),
            };
            problems.push(Problem::new(
                field,
                input,
                format!("is not a DataJob in namespace {namespace}"),
                format!(
                    "create it first (apply a DataJob's inputs before it), or fix the name{hint}"
                ),
            ));
            continue;
        }
        if let Some(path) = path_to(&graph, input, name) {
            let mut cycle = vec![name.to_string()];
            cycle.extend(path);
            problems.push(Problem::new(
                field,
                input,
                format!("makes a cycle: {}", cycle.join(" → ")),
                "remove an input so that no DataJob waits, through its inputs, for its own output",
            ));
        }
    }
    problems
}

/// A path of inputs from `from` to `to` (both included), if there is one. Linear in the
/// graph: each DataJob is visited once, and the path is read back from where each was
/// reached from (not copied along every branch, which is quadratic on a long chain).
fn path_to<'a>(
    graph: &BTreeMap<&'a str, &'a [String]>,
    from: &'a str,
    to: &str,
) -> Option<Vec<String>> {
    let mut reached_from: HashMap<&'a str, &'a str> = HashMap::new();
    let mut seen: HashSet<&'a str> = HashSet::from([from]);
    let mut stack = vec![from];
    while let Some(node) = stack.pop() {
        if node == to {
            let mut path = vec![node.to_string()];
            let mut at = node;
            while let Some(&before) = reached_from.get(at) {
                path.push(before.to_string());
                at = before;
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(node).copied().unwrap_or_default() {
            if seen.insert(next.as_str()) {
                reached_from.insert(next.as_str(), node);
                stack.push(next.as_str());
            }
        }
    }
    None
}

/// The DataJobs that read `name`, directly or through others, each once and after all
/// of its inputs that are among them.
pub(crate) fn downstream_of(name: &str, all: &[(String, Vec<String>)]) -> Vec<String> {
    let mut closure: Vec<String> = Vec::new();
    let mut frontier = vec![name.to_string()];
    while let Some(n) = frontier.pop() {
        for (d, inputs) in all {
            if inputs.contains(&n) && d != name && !closure.contains(d) {
                closure.push(d.clone());
                frontier.insert(0, d.clone());
            }
        }
    }
    // Inputs first: a DataJob goes once every input of it in the closure went.
    let inputs_of = |d: &str| {
        all.iter()
            .find(|(n, _)| n == d)
            .map(|(_, i)| i.clone())
            .unwrap_or_default()
    };
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < closure.len() {
        let next = closure.iter().find(|d| {
            !ordered.contains(d)
                && inputs_of(d)
                    .iter()
                    .all(|i| !closure.contains(i) || ordered.contains(i))
        });
        match next {
            Some(d) => ordered.push(d.clone()),
            // A cycle (refused at apply): keep the order found.
            None => {
                let rest: Vec<String> = closure
                    .iter()
                    .filter(|d| !ordered.contains(d))
                    .cloned()
                    .collect();
                ordered.extend(rest);
                break;
            }
        }
    }
    ordered
}

/// What a succeeded run of a DataJob with an output still needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PublishStep {
    /// Published (or nothing to publish): the run stands as Succeeded.
    Done(Option<Publication>),
    /// Create the publish Job.
    Start,
    /// A publish Job of an earlier run with the same id is still there: delete it.
    Stale { uid: String },
    /// The publish Job is going, or the attempt's pod is not known yet.
    InProgress,
    /// The output could not be published.
    Failed { message: String },
}

/// The next step for `run` (Succeeded by its Job), whose Job is `run_job` (`None` once
/// pruned), with `publish_job` (the Job named for publishing it, if any), the name of
/// the pod that succeeded (object stores), and what the status already records.
pub(crate) fn publish_step(
    run: &RunRecord,
    run_job: Option<&Job>,
    out: Option<&Output>,
    publish_job: Option<&Job>,
    succeeded_pod: Option<&str>,
    previous: &[Publication],
    now: DateTime<Utc>,
) -> PublishStep {
    let Some(out) = out else {
        return PublishStep::Done(None);
    };
    let version = run_job
        .and_then(|j| j.uid())
        .map(|uid| children::publish_version(&run.name, &uid));
    let recorded = previous.iter().find(|p| {
        p.run_id == run.name
            && p.logical_time == run.logical_time
            && (version.is_none() || p.version == version)
    });
    if let Some(p) = recorded {
        return PublishStep::Done(Some(p.clone()));
    }
    let (Some(job), Some(version)) = (run_job, version) else {
        return PublishStep::Failed {
            message: "the run's Job is gone and its output was never published".into(),
        };
    };
    let publication = |location: String, at: DateTime<Utc>| Publication {
        logical_time: run.logical_time.clone(),
        run_id: run.name.clone(),
        location,
        version: Some(version.clone()),
        published_at: Some(labels::rfc3339(at)),
    };
    match out {
        Output::ObjectStore { url } => {
            let finished = run.finish_time.as_deref().and_then(labels::parse_rfc3339);
            match succeeded_pod {
                Some(pod) => PublishStep::Done(Some(publication(
                    output::attempt_prefix(url, &run.name, pod),
                    now,
                ))),
                None if finished.is_some_and(|f| now - f > ATTEMPT_LOOKUP_GRACE) => {
                    PublishStep::Failed {
                        message: "the pod of the attempt that succeeded is gone, so the prefix it wrote under cannot be named; run it again".into(),
                    }
                }
                None => PublishStep::InProgress,
            }
        }
        _ => {
            let Some(pj) = publish_job else {
                return PublishStep::Start;
            };
            match publish_job_step(job, pj, now) {
                Ok(when) => {
                    let location = match labels::parse_rfc3339(&run.logical_time) {
                        Some(t) => output::partition(&out.url(), t),
                        None => out.url(),
                    };
                    PublishStep::Done(Some(publication(location, when)))
                }
                Err(step) => step,
            }
        }
    }
}

/// What the Job `pj` that publishes the run of Job `job` says: when it completed, or
/// the step to take (delete a stale one, wait, or fail the run).
fn publish_job_step(job: &Job, pj: &Job, now: DateTime<Utc>) -> Result<DateTime<Utc>, PublishStep> {
    let owner = pj
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone());
    if owner != job.uid() {
        return Err(PublishStep::Stale {
            uid: pj.uid().unwrap_or_default(),
        });
    }
    let done = |t: &str| {
        pj.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == "True"))
            .cloned()
    };
    if let Some(c) = done("Complete") {
        return Ok(c
            .last_transition_time
            .as_ref()
            .and_then(labels::from_k8s_time)
            .unwrap_or(now));
    }
    let Some(c) = done("Failed").or_else(|| done("FailureTarget")) else {
        return Err(PublishStep::InProgress);
    };
    let ended = pj.annotations().get(END_REASON).cloned();
    let why = pj
        .annotations()
        .get(END_MESSAGE)
        .cloned()
        .or(c.message)
        .unwrap_or_default();
    Err(PublishStep::Failed {
        message: format!(
            "the Job {} that publishes it failed ({}): {why}; see `kubectl logs job/{}`",
            pj.name_any(),
            ended.or(c.reason).unwrap_or_default(),
            pj.name_any()
        ),
    })
}

/// The run record a publish step makes of a run its Job calls Succeeded.
pub(crate) fn apply_step(run: &mut RunRecord, step: &PublishStep, out: Option<&Output>) {
    match step {
        PublishStep::Done(_) => {}
        PublishStep::Start | PublishStep::Stale { .. } | PublishStep::InProgress => {
            run.state = RunState::Running;
            run.reason = Some(PUBLISHING.into());
            run.message = Some(format!(
                "the run succeeded; its output is being published to {}",
                out.map_or_else(String::new, Output::url)
            ));
            run.finish_time = None;
        }
        PublishStep::Failed { message } => {
            run.state = RunState::Failed;
            run.reason = Some(PUBLISH_FAILED.into());
            run.message = Some(format!("{message}; nothing was published"));
        }
    }
}

/// The publications to record: `previous` with `new` ones (one per logical time, the
/// newest run's), newest logical time first, at most [`PUBLISHED_KEPT`].
pub(crate) fn merge_publications(
    previous: &[Publication],
    new: Vec<Publication>,
) -> Vec<Publication> {
    let mut by_time: BTreeMap<String, Publication> = previous
        .iter()
        .map(|p| (p.logical_time.clone(), p.clone()))
        .collect();
    for p in new {
        by_time.insert(p.logical_time.clone(), p);
    }
    let mut out: Vec<Publication> = by_time.into_values().rev().collect();
    out.truncate(PUBLISHED_KEPT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).unwrap()
    }

    fn run(name: &str, at: &str, state: RunState) -> RunRecord {
        RunRecord {
            name: name.into(),
            logical_time: at.into(),
            state,
            ..Default::default()
        }
    }

    fn upstream(schedule: Option<&str>, output: Option<&str>) -> Upstream {
        Upstream {
            name: "raw".into(),
            schedule: schedule.map(|s| Schedule::parse(s, chrono_tz::UTC).unwrap()),
            output: output.map(|o| Output::parse(o, false).unwrap()),
            published: vec![],
            runs: vec![],
        }
    }

    fn ups(u: Upstream) -> BTreeMap<String, Upstream> {
        BTreeMap::from([(u.name.clone(), u)])
    }

    fn inputs() -> Vec<String> {
        vec!["raw".into()]
    }

    #[test]
    fn a_run_waits_until_its_input_published_the_matched_time() {
        let now = t("2026-11-25T03:10:00Z");
        let mut up = upstream(Some("0 * * * *"), Some("pvc://lake/raw"));
        let at = t("2026-11-25T03:00:00Z");
        let v = decide(at, &inputs(), &ups(up.clone()), now);
        assert!(
            matches!(&v, Verdict::Waiting { input, message } if input == "raw" && message.contains("to run for 2026-11-25T03:00:00Z")),
            "{v:?}"
        );
        up.runs = vec![run(
            "raw-29926260",
            "2026-11-25T03:00:00Z",
            RunState::Running,
        )];
        assert!(matches!(
            decide(at, &inputs(), &ups(up.clone()), now),
            Verdict::Waiting { .. }
        ));
        // Its Job succeeded, but the output is not published yet: still waiting.
        up.runs[0].state = RunState::Succeeded;
        let v = decide(at, &inputs(), &ups(up.clone()), now);
        assert!(
            matches!(&v, Verdict::Waiting { message, .. } if message.contains("being published")),
            "{v:?}"
        );
        up.published = vec![Publication {
            logical_time: "2026-11-25T03:00:00Z".into(),
            run_id: "raw-29926260".into(),
            location: "pvc://lake/raw/logical_time=2026-11-25T03:00:00Z".into(),
            version: Some("raw-29926260.abcd1234".into()),
            published_at: None,
        }];
        assert_eq!(
            decide(at, &inputs(), &ups(up.clone()), now),
            Verdict::Ready(vec![(
                "raw".into(),
                "/datajob/pvc/lake/raw/_versions/raw-29926260.abcd1234".into()
            )])
        );
        // A daily reader at 03:30 gets the hour of 03:00; an hourly time before it waits.
        assert!(matches!(
            decide(t("2026-11-25T03:30:00Z"), &inputs(), &ups(up.clone()), now),
            Verdict::Ready(_)
        ));
    }

    #[test]
    fn a_failed_input_ends_the_run_and_a_time_that_passed_without_a_run_too() {
        let now = t("2026-11-25T06:00:00Z");
        let mut up = upstream(Some("0 * * * *"), Some("s3://b/raw"));
        up.runs = vec![{
            let mut r = run("raw-29926260", "2026-11-25T03:00:00Z", RunState::Failed);
            r.reason = Some("RetriesExhausted".into());
            r
        }];
        let v = decide(t("2026-11-25T03:00:00Z"), &inputs(), &ups(up.clone()), now);
        assert!(
            matches!(&v, Verdict::UpstreamFailed { message, .. } if message.contains("raw-29926260") && message.contains("RetriesExhausted")),
            "{v:?}"
        );
        // 04:00 passed its starting deadline (1h for an hourly schedule) with no run.
        let v = decide(t("2026-11-25T04:00:00Z"), &inputs(), &ups(up.clone()), now);
        assert!(
            matches!(&v, Verdict::UpstreamFailed { message, .. } if message.contains("passed without one")),
            "{v:?}"
        );
        // 05:30 reads 05:00, which may still start: wait.
        let v = decide(t("2026-11-25T05:30:00Z"), &inputs(), &ups(up), now);
        assert!(matches!(v, Verdict::Waiting { .. }), "{v:?}");
    }

    #[test]
    fn inputs_without_a_schedule_or_an_output() {
        let now = t("2026-11-25T06:00:00Z");
        let mut up = upstream(None, None);
        let at = t("2026-11-25T05:00:00Z");
        assert!(matches!(
            decide(at, &inputs(), &ups(up.clone()), now),
            Verdict::Waiting { .. }
        ));
        up.runs = vec![run("raw-1", "2026-11-25T04:12:00Z", RunState::Succeeded)];
        assert_eq!(
            decide(at, &inputs(), &ups(up.clone()), now),
            Verdict::Ready(vec![("raw".into(), String::new())])
        );
        // Only runs after the time: nothing to read.
        assert!(matches!(
            decide(t("2026-11-25T04:00:00Z"), &inputs(), &ups(up), now),
            Verdict::UpstreamFailed { .. }
        ));
    }

    /// Issue 25 item 5: a chain of 20 000 DataJobs that closes into a cycle is found,
    /// whole, with each DataJob visited once (the path is not copied per step).
    #[test]
    fn a_cycle_through_a_long_chain_is_found_whole() {
        let n = 20_000;
        let name = |i: usize| format!("dj-{i}");
        // dj-i reads dj-(i+1); the last reads dj-0, which is the DataJob being checked.
        let ns: Vec<(String, Vec<String>)> =
            (1..n).map(|i| (name(i), vec![name((i + 1) % n)])).collect();
        let p = check_graph(&name(0), "ns", &[name(1)], &ns);
        assert_eq!(p.len(), 1, "{p:?}");
        let said = p[0].to_string();
        assert!(
            said.contains("makes a cycle: dj-0 → dj-1 → dj-2 → "),
            "{}",
            &said[..200]
        );
        assert_eq!(
            said.matches(" → ").count(),
            n,
            "every DataJob of the cycle is named once"
        );
    }

    #[test]
    fn missing_inputs_and_cycles_are_named() {
        let ns = vec![
            ("raw".to_string(), vec![]),
            ("clean".to_string(), vec!["raw".to_string()]),
            ("report".to_string(), vec!["clean".to_string()]),
        ];
        assert!(check_graph("report", "ns", &["clean".into()], &ns).is_empty());
        let p = check_graph("x", "analytics", &["claen".into()], &ns);
        assert_eq!(p.len(), 1);
        let said = p[0].to_string();
        assert!(
            said.starts_with("spec.inputs[0] \"claen\" is not a DataJob in namespace analytics")
                && said.contains("did you mean clean?"),
            "{said}"
        );
        // raw now reads report: raw → report → clean → raw.
        let p = check_graph("raw", "ns", &["report".into()], &ns);
        assert_eq!(
            p[0].to_string(),
            "spec.inputs[0] \"report\" makes a cycle: raw → report → clean → raw; remove an input so that no DataJob waits, through its inputs, for its own output"
        );
        assert_eq!(downstream_of("raw", &ns), vec!["clean", "report"]);
        // b reads raw and a; a reads raw: a goes first.
        let diamond = vec![
            ("b".to_string(), vec!["raw".to_string(), "a".to_string()]),
            ("a".to_string(), vec!["raw".to_string()]),
        ];
        assert_eq!(downstream_of("raw", &diamond), vec!["a", "b"]);
    }

    fn job(uid: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "raw-29926260", "namespace": "ns", "uid": uid},
        }))
        .unwrap()
    }

    fn publish_job(owner: &str, condition: Option<&str>) -> Job {
        let conditions: Vec<serde_json::Value> = condition
            .map(|c| serde_json::json!({"type": c, "status": "True", "message": "BackoffLimitExceeded"}))
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "raw-29926260-publish", "namespace": "ns", "uid": "p-1",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "raw-29926260", "uid": owner, "controller": true}]},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn a_succeeded_run_on_a_volume_counts_once_its_publish_job_succeeded() {
        let now = t("2026-11-25T03:05:00Z");
        let out = Output::parse("pvc://lake/raw", false).unwrap();
        let r = run("raw-29926260", "2026-11-25T03:00:00Z", RunState::Succeeded);
        let j = job("0a1b2c3d-4e5f");
        let step = |pj: Option<&Job>, prev: &[Publication]| {
            publish_step(&r, Some(&j), Some(&out), pj, None, prev, now)
        };
        assert_eq!(step(None, &[]), PublishStep::Start);
        assert_eq!(
            step(Some(&publish_job("old-uid", Some("Complete"))), &[]),
            PublishStep::Stale { uid: "p-1".into() },
            "a publish Job of an earlier run of the same time does not count"
        );
        assert_eq!(
            step(Some(&publish_job("0a1b2c3d-4e5f", None)), &[]),
            PublishStep::InProgress
        );
        let PublishStep::Done(Some(p)) =
            step(Some(&publish_job("0a1b2c3d-4e5f", Some("Complete"))), &[])
        else {
            panic!("published")
        };
        assert_eq!(
            p.location,
            "pvc://lake/raw/logical_time=2026-11-25T03:00:00Z"
        );
        assert_eq!(p.version.as_deref(), Some("raw-29926260.0a1b2c3d"));
        // Recorded: it stays published after the publish Job is gone.
        assert_eq!(
            step(None, std::slice::from_ref(&p)),
            PublishStep::Done(Some(p.clone()))
        );
        let failed = step(Some(&publish_job("0a1b2c3d-4e5f", Some("Failed"))), &[]);
        let mut rec = r.clone();
        apply_step(&mut rec, &failed, Some(&out));
        assert_eq!(
            (rec.state, rec.reason.as_deref()),
            (RunState::Failed, Some(PUBLISH_FAILED))
        );
        let mut rec = r.clone();
        apply_step(&mut rec, &PublishStep::InProgress, Some(&out));
        assert_eq!(
            (rec.state, rec.reason.as_deref()),
            (RunState::Running, Some(PUBLISHING))
        );
    }

    #[test]
    fn an_object_store_records_the_prefix_of_the_attempt_that_succeeded() {
        let now = t("2026-11-25T03:05:00Z");
        let out = Output::parse("s3://lake/raw", false).unwrap();
        let mut r = run("raw-29926260", "2026-11-25T03:00:00Z", RunState::Succeeded);
        r.finish_time = Some("2026-11-25T03:04:00Z".into());
        let j = job("0a1b2c3d");
        let PublishStep::Done(Some(p)) = publish_step(
            &r,
            Some(&j),
            Some(&out),
            None,
            Some("raw-29926260-x7k2p"),
            &[],
            now,
        ) else {
            panic!()
        };
        assert_eq!(
            p.location,
            "s3://lake/raw/_runs/raw-29926260/raw-29926260-x7k2p/"
        );
        assert_eq!(
            publish_step(&r, Some(&j), Some(&out), None, None, &[], now),
            PublishStep::InProgress
        );
        let later = t("2026-11-25T03:10:00Z");
        assert!(matches!(
            publish_step(&r, Some(&j), Some(&out), None, None, &[], later),
            PublishStep::Failed { .. }
        ));
    }

    #[test]
    fn publications_are_one_per_logical_time_newest_first_and_bounded() {
        let p = |at: i64, run: &str| Publication {
            logical_time: labels::rfc3339(DateTime::from_timestamp(at * 3600, 0).unwrap()),
            run_id: run.into(),
            ..Default::default()
        };
        let old: Vec<Publication> = (0..PUBLISHED_KEPT as i64).map(|i| p(i, "a")).collect();
        let merged = merge_publications(&old, vec![p(3, "rerun"), p(1000, "new")]);
        assert_eq!(merged.len(), PUBLISHED_KEPT);
        assert_eq!(merged[0].run_id, "new");
        assert!(merged.iter().any(|x| x.run_id == "rerun"));
    }

    #[test]
    fn the_status_knows_when_a_succeeded_job_could_not_publish() {
        let mut failed = run("a-1", "2026-11-25T03:00:00Z", RunState::Failed);
        failed.reason = Some(PUBLISH_FAILED.into());
        failed.start_time = Some("2026-11-25T03:00:05Z".into());
        let mut job = run("a-1", "2026-11-25T03:00:00Z", RunState::Succeeded);
        job.start_time = failed.start_time.clone();
        assert_eq!(
            merge_views(std::slice::from_ref(&failed), vec![job.clone()])[0].state,
            RunState::Failed
        );
        // A new run of the same time (started later) is what its Job says.
        job.start_time = Some("2026-11-25T04:00:00Z".into());
        job.state = RunState::Pending;
        assert_eq!(
            merge_views(&[failed], vec![job])[0].state,
            RunState::Pending
        );
    }
}

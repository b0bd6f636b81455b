//! One validation for every door: the admission webhook, the reconciler and
//! `kubectl datajob plan` call [`resolve`], so a user sees the same words everywhere.
//! A valid spec comes back as [`Resolved`]: defaults applied, strings parsed into types.
use std::{borrow::Cow, collections::HashSet, sync::LazyLock, time::Duration};

use chrono_tz::Tz;
use k8s_openapi::api::core::v1::EnvVar;
use regex::Regex;

pub use crate::problem::{Problem, Problems};
use crate::{
    labels,
    output::Output,
    schedule::{self, Schedule},
    units,
};
use datajob_api::{CatchUp, DataJob, DataJobSpec, bounds, datajob::MAX_NAME_LEN};

pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_RETRIES: i32 = 1;
pub(crate) const MAX_RETRIES: i32 = 10;
pub(crate) const DEFAULT_CPU_MILLIS: u64 = 1000;
pub(crate) const DEFAULT_MEMORY: u64 = 2 << 30;
pub(crate) const DEFAULT_HISTORY: i32 = 5;
/// The user and group a run runs as unless `spec.runAsUser` says otherwise (the
/// `nonroot` user of distroless images).
pub(crate) const DEFAULT_RUN_AS_USER: i64 = 65532;
pub(crate) const MAX_HISTORY: i32 = 50;
const MAX_CPU_MILLIS: u64 = 512_000;
const MIN_CPU_MILLIS: u64 = 10;
const MAX_MEMORY: u64 = 16 << 40;
const MIN_MEMORY: u64 = 16 << 20;
const MAX_DISK: u64 = 256 << 40;
const MAX_GPU: i32 = 16;
/// Environment variables the operator sets itself.
pub const RESERVED_ENV_PREFIX: &str = "DATAJOB_";
/// The largest `spec.env[].value`: configuration beyond this belongs in a ConfigMap or
/// Secret (`valueFrom`).
pub(crate) const MAX_ENV_VALUE_BYTES: usize = 32 << 10;
/// The largest spec, as JSON. The DataJob, its CronJob, its Jobs and their pods each
/// carry it, and Kubernetes refuses objects past etcd's request limit (1.5 MiB) with an
/// HTTP 500 that names no field.
pub(crate) const MAX_SPEC_BYTES: usize = 256 << 10;
/// The largest `spec.podAnnotations`, keys and values together (Kubernetes allows 256 KiB
/// of annotations on a pod, and the operator adds its own).
pub(crate) const MAX_POD_ANNOTATIONS_BYTES: usize = 64 << 10;

/// Limits a platform engineer sets in the operator's configuration, and what the place
/// a DataJob runs in can do.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_deadline: Duration,
    /// Outputs on volumes (`pvc://`) can be published: the operator has a publisher image.
    pub volume_outputs: bool,
    /// `file://` and absolute-path outputs are allowed: only `run --local` can reach them.
    pub local_paths: bool,
    /// Pod annotations that take a run out of the service mesh (`sidecar.istio.io/inject:
    /// "false"`, `linkerd.io/inject: disabled`, ...) are allowed (the chart's
    /// `settings.allowMeshOptOut`).
    pub mesh_opt_out: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_deadline: Duration::from_secs(24 * 3600),
            volume_outputs: true,
            local_paths: false,
            mesh_opt_out: false,
        }
    }
}

/// A valid DataJob spec with every default applied and every string parsed.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub schedule: Option<Schedule>,
    pub time_zone: Tz,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub disk_bytes: Option<u64>,
    pub gpu: u32,
    pub deadline: Duration,
    /// `None`: the operator's default applies.
    pub pending_timeout: Option<Duration>,
    pub retries: i32,
    pub suspend: bool,
    pub service_account: Option<String>,
    /// The user and group the container runs as (never 0).
    pub run_as_user: i64,
    pub pod_annotations: std::collections::BTreeMap<String, String>,
    pub history: i32,
    pub inputs: Vec<String>,
    pub output: Option<Output>,
    pub catch_up: CatchUp,
    /// The parameters a run may be given, with their defaults (`spec.params`).
    pub params: crate::params::Args,
    /// Who owns the DataJob (`spec.owner`).
    pub owner: Option<String>,
    /// By when a run must have succeeded (`spec.expectBy`).
    pub expect_by: Option<crate::decide::late::ExpectBy>,
    /// The claims of the inputs' volume outputs, which the run's pod mounts (read-only
    /// unless it is the output's own claim); set by the reconciler from its DataJob cache.
    pub input_claims: Vec<String>,
    /// The node group runs go to; set by [`crate::admission::resolve_and_place`].
    pub placement: Option<crate::group::Group>,
}

static IMAGE_RE: LazyLock<Regex> = LazyLock::new(|| {
    // The grammar of github.com/distribution/reference: [domain[:port]/]path[:tag][@digest].
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let domain = r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?";
    let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let re = format!(r"^(?:{domain}/)?{component}(?:/{component})*(?::{tag})?(?:@{digest})?$");
    Regex::new(&re).unwrap_or_else(|e| unreachable!("static image regex: {e}"))
});
static DNS_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap_or_else(|e| unreachable!("{e}"))
});
static DNS_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .unwrap_or_else(|e| unreachable!("{e}"))
});
static QUALIFIED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
        .unwrap_or_else(|e| unreachable!("{e}"))
});
static ENV_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$").unwrap_or_else(|e| unreachable!("{e}"))
});

/// Whether `image` is a valid image reference (the grammar of
/// github.com/distribution/reference, at most 255 characters).
pub fn is_image_reference(image: &str) -> bool {
    image.len() <= 255 && IMAGE_RE.is_match(image)
}

/// Checks a DataJob and applies defaults. Collects every problem, not just the first, in
/// the order of the spec's fields.
pub fn resolve(dj: &DataJob, limits: &Limits) -> Result<Resolved, Problems> {
    let mut p = Vec::new();
    let name = dj.metadata.name.clone().unwrap_or_default();
    let namespace = dj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec_bytes = serde_json::to_vec(&dj.spec).map(|v| v.len()).unwrap_or(0);
    // Every later check reads the spec cut to its bounds: its cost stays bounded however
    // large a spec `plan` reads or an object stored before the schema had the bounds.
    let spec = &*within_bounds(&dj.spec, &mut p);
    check_name(&name, &mut p);
    let image = spec.image.trim().to_string();
    check_image(&image, &mut p);
    let (time_zone, schedule) = when(spec, &mut p);
    let deadline = deadline(spec, limits, &mut p);
    let pending_timeout = pending_timeout(spec, &mut p);
    let (retries, history) = counts(spec, &mut p);
    let (cpu_millis, memory_bytes, disk_bytes, gpu) = resources(spec, &mut p);
    check_env_names(spec, &mut p);
    check_sizes(spec, spec_bytes, &mut p);
    check_annotations(spec, limits, &mut p);
    let run_as_user = run_as_user(spec, &mut p);
    check_service_account(spec, &mut p);
    check_inputs(spec, &name, &mut p);
    let output = output(spec, limits, &mut p);
    p.extend(crate::params::check_declared(&name, &spec.params));
    check_owner(spec, &mut p);
    let expect_by = expect_by(spec, schedule.as_ref(), &mut p);

    if !p.is_empty() {
        return Err(Problems(p));
    }
    Ok(Resolved {
        name,
        namespace,
        image,
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        schedule,
        time_zone,
        cpu_millis,
        memory_bytes,
        disk_bytes,
        gpu: gpu as u32,
        deadline,
        pending_timeout,
        retries,
        suspend: spec.suspend.unwrap_or(false),
        service_account: spec.service_account_name.clone(),
        run_as_user,
        pod_annotations: spec.pod_annotations.clone(),
        history,
        inputs: spec.inputs.clone(),
        output,
        catch_up: spec.catch_up.unwrap_or_default(),
        params: spec.params.clone(),
        owner: spec.owner.clone().filter(|o| !o.is_empty()),
        expect_by,
        input_claims: Vec::new(),
        placement: None,
    })
}

/// `spec.expectBy`: a time of day or a duration that the schedule allows.
fn expect_by(
    spec: &DataJobSpec,
    schedule: Option<&Schedule>,
    p: &mut Vec<Problem>,
) -> Option<crate::decide::late::ExpectBy> {
    use crate::decide::late::{ExpectBy, schedule_problem};
    let raw = spec.expect_by.as_deref()?;
    let fix = "write a time of day such as 06:00 or a duration after the logical time such as 3h";
    match ExpectBy::parse(raw) {
        Err(e) => {
            p.push(Problem::new("spec.expectBy", raw, e, fix));
            None
        }
        Ok(e) => {
            if let Some(why) = schedule.and_then(|s| schedule_problem(e, s, chrono::Utc::now())) {
                p.push(Problem::new("spec.expectBy", raw, why, ""));
            }
            Some(e)
        }
    }
}

/// The longest `spec.owner`.
pub const MAX_OWNER_LEN: usize = bounds::MAX_OWNER_LEN;

// `params` checks its own count with the bound the schema states.
const _: () = assert!(crate::params::MAX_PARAMS == bounds::MAX_PARAMS);

/// How many characters of an over-long value a problem repeats.
const SHOWN_CHARS: usize = 64;

/// The number of characters of `s` when more than `max` (counted as the schema's
/// `maxLength` counts them), else `None`.
fn chars_over(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let n = s.chars().count();
    (n > max).then_some(n)
}

/// `value` if short, else its start and `…`: a problem never repeats a long value whole.
fn shown(value: &str) -> String {
    labels::truncate(value, SHOWN_CHARS)
}

fn too_many(field: &str, count: usize, max: usize, what: &str, fix: &str) -> Problem {
    Problem::new(
        field,
        format!("<{count} {what}>"),
        format!("has {count} {what}, more than the limit of {max}"),
        fix,
    )
}

fn too_long(field: &str, value: &str, chars: usize, max: usize, fix: &str) -> Problem {
    Problem::new(
        field,
        shown(value),
        format!("is {chars} characters, more than the limit of {max}"),
        fix,
    )
}

/// A copy of `spec` with each list and map cut to its bound, cloning only what is kept
/// (a copy of 100 000 variables to keep 256 would cost more than all the checks).
fn cut_copy(spec: &DataJobSpec) -> DataJobSpec {
    fn first<T: Clone>(items: &[T], n: usize) -> Vec<T> {
        items.iter().take(n).cloned().collect()
    }
    fn first_entries(
        map: &std::collections::BTreeMap<String, String>,
        n: usize,
    ) -> std::collections::BTreeMap<String, String> {
        map.iter()
            .take(n)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    // Every field by name: a new field must say here how it is cut.
    let DataJobSpec {
        image,
        command,
        args,
        env,
        schedule,
        time_zone,
        resources,
        deadline,
        pod_annotations,
        pending_timeout,
        retries,
        suspend,
        service_account_name,
        run_as_user,
        history,
        inputs,
        output,
        catch_up,
        expect_by,
        owner,
        params,
    } = spec;
    DataJobSpec {
        image: image.clone(),
        command: first(command, bounds::MAX_COMMAND_ITEMS),
        args: first(args, bounds::MAX_ARGS_ITEMS),
        env: first(env, bounds::MAX_ENV_ITEMS),
        schedule: schedule.clone(),
        time_zone: time_zone.clone(),
        resources: resources.clone(),
        deadline: deadline.clone(),
        pod_annotations: first_entries(pod_annotations, bounds::MAX_POD_ANNOTATIONS),
        pending_timeout: pending_timeout.clone(),
        retries: *retries,
        suspend: *suspend,
        service_account_name: service_account_name.clone(),
        run_as_user: *run_as_user,
        history: *history,
        inputs: first(inputs, bounds::MAX_INPUTS),
        output: output.clone(),
        catch_up: *catch_up,
        expect_by: expect_by.clone(),
        owner: owner.clone(),
        params: first_entries(params, bounds::MAX_PARAMS),
    }
}

/// The spec within the bounds the CRD schema states ([`bounds`]): each list or map past
/// its bound, and each string past its length, is a problem, and the spec the other
/// checks read keeps only the first items of such a list and drops such a string (so
/// that it is not judged, and repeated, a second time). Borrowed when all is within
/// bounds, as it is for every object the apiserver admitted.
fn within_bounds<'a>(spec: &'a DataJobSpec, p: &mut Vec<Problem>) -> Cow<'a, DataJobSpec> {
    let mut cut: Option<DataJobSpec> = None;
    let mut edit = |f: &dyn Fn(&mut DataJobSpec)| f(cut.get_or_insert_with(|| cut_copy(spec)));
    let counts = [
        (
            "spec.command",
            spec.command.len(),
            bounds::MAX_COMMAND_ITEMS,
            "items",
            "bake the command into the image, or run a script",
        ),
        (
            "spec.args",
            spec.args.len(),
            bounds::MAX_ARGS_ITEMS,
            "items",
            "pass the arguments in a file (a ConfigMap) instead",
        ),
        (
            "spec.env",
            spec.env.len(),
            bounds::MAX_ENV_ITEMS,
            "items",
            "put related settings in one ConfigMap or Secret and read them from a file",
        ),
        (
            "spec.podAnnotations",
            spec.pod_annotations.len(),
            bounds::MAX_POD_ANNOTATIONS,
            "entries",
            "keep the annotations tools need; put data in a ConfigMap",
        ),
        (
            "spec.inputs",
            spec.inputs.len(),
            bounds::MAX_INPUTS,
            "items",
            "split the DataJob, or wait for one DataJob that gathers the others",
        ),
        (
            "spec.params",
            spec.params.len(),
            bounds::MAX_PARAMS,
            "entries",
            "pass related settings as one parameter, or read them from a ConfigMap",
        ),
    ];
    let mut over = false;
    for (field, count, max, what, fix) in counts {
        if count > max {
            p.push(too_many(field, count, max, what, fix));
            over = true;
        }
    }
    if over {
        // The copy keeps the first items of each list and map (see `cut_copy`).
        edit(&|_| ());
    }
    let items = [
        ("spec.command", &spec.command, bounds::MAX_COMMAND_ITEMS),
        ("spec.args", &spec.args, bounds::MAX_ARGS_ITEMS),
    ];
    for (field, list, max_items) in items {
        for (i, item) in list.iter().take(max_items).enumerate() {
            if let Some(n) = chars_over(item, bounds::MAX_ARG_LEN) {
                p.push(too_long(
                    &format!("{field}[{i}]"),
                    item,
                    n,
                    bounds::MAX_ARG_LEN,
                    "put long text in a ConfigMap and read it as a file",
                ));
            }
        }
    }
    type Get = fn(&DataJobSpec) -> &Option<String>;
    type Set = fn(&mut DataJobSpec) -> &mut Option<String>;
    let strings: [(&str, Get, Set, usize, &str); 7] = [
        (
            "spec.schedule",
            |s| &s.schedule,
            |s| &mut s.schedule,
            bounds::MAX_SCHEDULE_LEN,
            "write a 5-field cron expression such as 0 3 * * *",
        ),
        (
            "spec.timeZone",
            |s| &s.time_zone,
            |s| &mut s.time_zone,
            bounds::MAX_TIME_ZONE_LEN,
            "write an IANA time zone such as Europe/London",
        ),
        (
            "spec.deadline",
            |s| &s.deadline,
            |s| &mut s.deadline,
            bounds::MAX_DURATION_LEN,
            "write a duration such as 90m, 2h or 1h30m",
        ),
        (
            "spec.pendingTimeout",
            |s| &s.pending_timeout,
            |s| &mut s.pending_timeout,
            bounds::MAX_DURATION_LEN,
            "write a duration such as 10m or 1h",
        ),
        (
            "spec.serviceAccountName",
            |s| &s.service_account_name,
            |s| &mut s.service_account_name,
            bounds::MAX_OBJECT_NAME_LEN,
            "name a service account of the namespace",
        ),
        (
            "spec.output",
            |s| &s.output,
            |s| &mut s.output,
            bounds::MAX_OUTPUT_LEN,
            "publish under a shorter prefix",
        ),
        (
            "spec.expectBy",
            |s| &s.expect_by,
            |s| &mut s.expect_by,
            bounds::MAX_DURATION_LEN,
            "write a time of day such as 06:00 or a duration such as 3h",
        ),
    ];
    for (field, get, set, max, fix) in strings {
        let Some(value) = get(spec).as_deref() else {
            continue;
        };
        if let Some(n) = chars_over(value, max) {
            p.push(too_long(field, value, n, max, fix));
            edit(&|s| *set(s) = None);
        }
    }
    match cut {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(spec),
    }
}

/// `spec.owner`: short and printable (it is a label value of metrics and alerts).
fn check_owner(spec: &DataJobSpec, p: &mut Vec<Problem>) {
    let Some(owner) = spec.owner.as_deref() else {
        return;
    };
    if owner.chars().count() > MAX_OWNER_LEN || owner.chars().any(char::is_control) {
        p.push(Problem::new(
            "spec.owner",
            labels::truncate(owner, MAX_OWNER_LEN + 3),
            format!("is not a short printable name (at most {MAX_OWNER_LEN} characters, no newlines or other control characters)"),
            "name a team or a person, e.g. team-growth or ana@acme.io",
        ));
    }
}

/// `metadata.name`: short enough for the names derived from it.
fn check_name(name: &str, p: &mut Vec<Problem>) {
    if name.len() > MAX_NAME_LEN {
        p.push(Problem::new(
            "metadata.name",
            name,
            format!("is {} characters, more than {MAX_NAME_LEN}: the CronJob, Job and pod names derived from it would overflow Kubernetes' 63-character limit", name.len()),
            format!("use a name of at most {MAX_NAME_LEN} characters"),
        ));
    }
}

/// `spec.image`: set, within its length, and a valid reference.
fn check_image(image: &str, p: &mut Vec<Problem>) {
    if let Some(n) = chars_over(image, bounds::MAX_IMAGE_LEN) {
        p.push(too_long(
            "spec.image",
            image,
            n,
            bounds::MAX_IMAGE_LEN,
            "write it as [registry/]repository[:tag][@sha256:digest], e.g. ghcr.io/acme/churn:1.4.2",
        ));
    } else if image.is_empty() {
        p.push(Problem::new(
            "spec.image",
            "",
            "is empty",
            "set the container image to run, e.g. ghcr.io/acme/churn:1.4.2",
        ));
    } else if !is_image_reference(image) {
        p.push(Problem::new(
            "spec.image",
            image,
            "is not a valid image reference",
            "write it as [registry/]repository[:tag][@sha256:digest] in lowercase, e.g. ghcr.io/acme/churn:1.4.2",
        ));
    }
}

/// `spec.timeZone` and `spec.schedule`.
fn when(spec: &DataJobSpec, p: &mut Vec<Problem>) -> (Tz, Option<Schedule>) {
    let time_zone = match spec.time_zone.as_deref() {
        None => Tz::UTC,
        Some(tz) => schedule::parse_time_zone(tz).unwrap_or_else(|e| {
            p.push(Problem::new("spec.timeZone", tz, e, ""));
            Tz::UTC
        }),
    };
    let schedule = spec.schedule.as_deref().and_then(|expr| {
        Schedule::parse(expr, time_zone)
            .map_err(|e| p.push(Problem::new("spec.schedule", expr, e, "")))
            .ok()
    });
    (time_zone, schedule)
}

/// `spec.deadline`, within the cluster's maximum.
fn deadline(spec: &DataJobSpec, limits: &Limits, p: &mut Vec<Problem>) -> Duration {
    match spec.deadline.as_deref() {
        None => DEFAULT_DEADLINE,
        Some(d) => match units::parse_duration(d) {
            Ok(v) if v > limits.max_deadline => {
                p.push(Problem::new(
                    "spec.deadline",
                    d,
                    format!("is longer than this cluster's maximum of {}", units::format_duration(limits.max_deadline)),
                    format!("split the work, or ask your platform team to raise --max-deadline (at most {})", units::format_duration(limits.max_deadline)),
                ));
                v
            }
            Ok(v) => v,
            Err(e) => {
                p.push(Problem::new(
                    "spec.deadline",
                    d,
                    e,
                    "write a duration such as 90m, 2h or 1h30m",
                ));
                DEFAULT_DEADLINE
            }
        },
    }
}

/// `spec.pendingTimeout`; `None` when unset or wrong.
fn pending_timeout(spec: &DataJobSpec, p: &mut Vec<Problem>) -> Option<Duration> {
    spec.pending_timeout.as_deref().and_then(|d| {
        units::parse_duration(d)
            .map_err(|e| {
                p.push(Problem::new(
                    "spec.pendingTimeout",
                    d,
                    e,
                    "write a duration such as 10m or 1h",
                ))
            })
            .ok()
    })
}

/// `spec.retries` and `spec.history`, within their bounds.
fn counts(spec: &DataJobSpec, p: &mut Vec<Problem>) -> (i32, i32) {
    let retries = spec.retries.unwrap_or(DEFAULT_RETRIES);
    if !(0..=MAX_RETRIES).contains(&retries) {
        p.push(Problem::new(
            "spec.retries",
            retries,
            format!("is outside 0-{MAX_RETRIES}"),
            format!("use a number of retries from 0 to {MAX_RETRIES}"),
        ));
    }
    let history = spec.history.unwrap_or(DEFAULT_HISTORY);
    if !(0..=MAX_HISTORY).contains(&history) {
        p.push(Problem::new(
            "spec.history",
            history,
            format!("is outside 0-{MAX_HISTORY}"),
            format!("keep from 0 to {MAX_HISTORY} finished runs"),
        ));
    }
    (retries, history)
}

/// `spec.resources`: CPU, memory, disk and GPUs, parsed and within bounds.
fn resources(spec: &DataJobSpec, p: &mut Vec<Problem>) -> (u64, u64, Option<u64>, i32) {
    let r = &spec.resources;
    let cpu_millis = quantity(
        p,
        "spec.resources.cpu",
        r.cpu.as_ref().map(|q| q.as_str()),
        units::parse_cpu_millis,
        DEFAULT_CPU_MILLIS,
        (MIN_CPU_MILLIS, MAX_CPU_MILLIS),
        units::format_cpu,
        "CPU cores such as 4 or 500m",
    );
    let memory_bytes = quantity(
        p,
        "spec.resources.memory",
        r.memory.as_ref().map(|q| q.as_str()),
        units::parse_bytes,
        DEFAULT_MEMORY,
        (MIN_MEMORY, MAX_MEMORY),
        units::format_bytes,
        "a size such as 16Gi or 512Mi",
    );
    let disk_bytes = r.disk.as_ref().map(|d| {
        quantity(
            p,
            "spec.resources.disk",
            Some(d.as_str()),
            units::parse_bytes,
            0,
            (1 << 20, MAX_DISK),
            units::format_bytes,
            "a size such as 100Gi",
        )
    });
    let gpu = r.gpu.unwrap_or(0);
    if !(0..=MAX_GPU).contains(&gpu) {
        p.push(Problem::new(
            "spec.resources.gpu",
            gpu,
            format!("is outside 0-{MAX_GPU}"),
            "ask for whole GPUs, from 0 to 16",
        ));
    }
    (cpu_millis, memory_bytes, disk_bytes, gpu)
}

/// `spec.env[*].name`: valid, and not one the operator sets.
fn check_env_names(spec: &DataJobSpec, p: &mut Vec<Problem>) {
    for (i, e) in spec.env.iter().enumerate() {
        let field = format!("spec.env[{i}].name");
        if !ENV_NAME_RE.is_match(&e.name) {
            p.push(Problem::new(
                &field,
                shown(&e.name),
                "is not a valid environment variable name",
                "use letters, digits, '_', '-' and '.', not starting with a digit",
            ));
        } else if e.name.starts_with(RESERVED_ENV_PREFIX) {
            p.push(Problem::new(
                &field,
                &e.name,
                "is set by the operator itself",
                format!("rename it; names starting with {RESERVED_ENV_PREFIX} are reserved"),
            ));
        }
    }
}

/// Annotation prefixes that loosen a pod's confinement (AppArmor, seccomp): a run keeps
/// the `restricted` profile the operator gives it, whatever its namespace allows.
const CONFINEMENT_PREFIXES: [&str; 2] = [
    "container.apparmor.security.beta.kubernetes.io",
    "seccomp.security.alpha.kubernetes.io",
];

/// Annotations (key, the values that opt out) that take a pod out of a service mesh or
/// its traffic rules: allowed only with [`Limits::mesh_opt_out`].
const MESH_OPT_OUTS: [(&str, &[&str]); 6] = [
    ("sidecar.istio.io/inject", &["false"]),
    ("linkerd.io/inject", &["disabled"]),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", &[]),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", &[]),
    ("traffic.sidecar.istio.io/excludeInboundPorts", &[]),
    ("config.linkerd.io/skip-outbound-ports", &[]),
];

/// `spec.podAnnotations` keys: valid, none of the reserved prefixes, none that loosens the
/// pod's confinement, and no mesh opt-out unless the operator allows it.
fn check_annotations(spec: &DataJobSpec, limits: &Limits, p: &mut Vec<Problem>) {
    for (key, value) in &spec.pod_annotations {
        let field = format!("spec.podAnnotations[{}]", shown(key));
        let prefix = key.rsplit_once('/').map_or("", |(prefix, _)| prefix);
        if CONFINEMENT_PREFIXES.contains(&prefix) {
            p.push(Problem::new(
                &field,
                shown(key),
                "changes the run's AppArmor or seccomp profile, which DataJob keeps at the restricted default",
                "remove it: a run always gets RuntimeDefault",
            ));
            continue;
        }
        let opts_out = MESH_OPT_OUTS.iter().any(|(k, values)| {
            k == key
                && (values.is_empty() || values.contains(&value.trim().to_lowercase().as_str()))
        });
        if opts_out && !limits.mesh_opt_out {
            p.push(Problem::new(
                &field,
                shown(value),
                "takes the run out of the service mesh, which this installation does not allow",
                "remove it, or ask the platform team to install DataJob with settings.allowMeshOptOut=true",
            ));
        }
    }
    for key in spec.pod_annotations.keys() {
        let field = format!("spec.podAnnotations[{}]", shown(key));
        let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
        let valid_name = !name.is_empty() && name.len() <= 63 && QUALIFIED_NAME_RE.is_match(name);
        // A key with a '/' needs a prefix before it: Kubernetes refuses "/a" (found by
        // crates/e2e/tests/e2e/shared/generated_specs.rs).
        let valid_prefix =
            !key.contains('/') || (prefix.len() <= 253 && DNS_SUBDOMAIN_RE.is_match(prefix));
        if !valid_name || !valid_prefix {
            p.push(Problem::new(
                &field,
                shown(key),
                "is not a valid annotation key",
                "use [prefix/]name, e.g. sidecar.istio.io/inject",
            ));
        } else if ["datajob.dev", "batch.kubernetes.io"].contains(&prefix) {
            p.push(Problem::new(
                &field,
                shown(key),
                "is reserved for the operator and Kubernetes",
                "use a key of your own",
            ));
        }
    }
}

/// `spec.runAsUser`: never root.
fn run_as_user(spec: &DataJobSpec, p: &mut Vec<Problem>) -> i64 {
    let run_as_user = spec.run_as_user.unwrap_or(DEFAULT_RUN_AS_USER);
    if !(1..=i64::from(i32::MAX)).contains(&run_as_user) {
        p.push(Problem::new(
            "spec.runAsUser",
            run_as_user,
            "is not a non-root user id",
            format!(
                "use a user id from 1 to {}, or leave it out for {DEFAULT_RUN_AS_USER}",
                i32::MAX
            ),
        ));
    }
    run_as_user
}

/// `spec.serviceAccountName`: a valid name.
fn check_service_account(spec: &DataJobSpec, p: &mut Vec<Problem>) {
    if let Some(sa) = &spec.service_account_name
        && (sa.len() > 253 || !DNS_SUBDOMAIN_RE.is_match(sa))
    {
        p.push(Problem::new(
            "spec.serviceAccountName",
            sa,
            "is not a valid service account name",
            "use lowercase letters, digits, '-' and '.'",
        ));
    }
}

/// `spec.inputs`: DataJob names, not itself, each once (one pass: a set of the names seen).
fn check_inputs(spec: &DataJobSpec, name: &str, p: &mut Vec<Problem>) {
    let mut seen: HashSet<&str> = HashSet::with_capacity(spec.inputs.len());
    for (i, input) in spec.inputs.iter().enumerate() {
        let field = format!("spec.inputs[{i}]");
        let first = seen.insert(input.as_str());
        if input.len() > MAX_NAME_LEN || !DNS_LABEL_RE.is_match(input) {
            p.push(Problem::new(
                &field,
                shown(input),
                "is not a DataJob name",
                "name a DataJob in the same namespace, e.g. raw-events",
            ));
        } else if input == name {
            p.push(Problem::new(
                &field,
                input,
                "is this DataJob itself",
                "remove it; a DataJob cannot wait for its own output",
            ));
        } else if !first {
            p.push(Problem::new(
                &field,
                input,
                "is listed twice",
                "list each input once",
            ));
        }
    }
}

/// `spec.output`, and whether this cluster can publish to it.
fn output(spec: &DataJobSpec, limits: &Limits, p: &mut Vec<Problem>) -> Option<Output> {
    spec
        .output
        .as_deref()
        .and_then(|out| match Output::parse(out, limits.local_paths) {
            Ok(Output::Volume { .. }) if !limits.volume_outputs => {
                p.push(Problem::new(
                    "spec.output",
                    out,
                    "is a volume, and this cluster's operator has no publisher image to publish to volumes",
                    "ask your platform team to set the operator's --publisher-image (the chart does), or publish to an object store",
                ));
                None
            }
            Ok(o) => Some(o),
            Err((problem, fix)) => {
                p.push(Problem::new("spec.output", out, problem, fix));
                None
            }
        })
}

fn kib(n: usize) -> String {
    format!("{} KiB", n.div_ceil(1024))
}

/// Sizes that would pass the schema but make Kubernetes refuse the DataJob or its
/// children with an error that names no field.
/// `total` is the size of the whole spec as JSON (before [`within_bounds`] cut it).
fn check_sizes(spec: &datajob_api::DataJobSpec, total: usize, p: &mut Vec<Problem>) {
    for (i, e) in spec.env.iter().enumerate() {
        if let Some(v) = &e.value
            && v.len() > MAX_ENV_VALUE_BYTES
        {
            p.push(Problem::new(
                format!("spec.env[{i}].value"),
                format!("<{} of text>", kib(v.len())),
                format!("is longer than the limit of {}", kib(MAX_ENV_VALUE_BYTES)),
                format!(
                    "put large configuration in a ConfigMap or Secret and read it with spec.env[{i}].valueFrom"
                ),
            ));
        }
    }
    let annotations: usize = spec
        .pod_annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if annotations > MAX_POD_ANNOTATIONS_BYTES {
        p.push(Problem::new(
            "spec.podAnnotations",
            format!("<{} of annotations>", kib(annotations)),
            format!(
                "is larger than the limit of {}",
                kib(MAX_POD_ANNOTATIONS_BYTES)
            ),
            "keep annotations short; put data in a ConfigMap",
        ));
    }
    if total > MAX_SPEC_BYTES {
        p.push(Problem::new(
            "spec",
            format!("<{} in all>", kib(total)),
            format!(
                "is larger than the limit of {}: the DataJob, its CronJob, Jobs and pods each carry it",
                kib(MAX_SPEC_BYTES)
            ),
            "move large values (env, args, annotations) into a ConfigMap or Secret",
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn quantity(
    p: &mut Vec<Problem>,
    field: &str,
    raw: Option<&str>,
    parse: fn(&str) -> Result<u64, String>,
    default: u64,
    (min, max): (u64, u64),
    format: fn(u64) -> String,
    example: &str,
) -> u64 {
    let Some(raw) = raw else { return default };
    match parse(raw) {
        Ok(v) if v < min => {
            p.push(Problem::new(
                field,
                raw,
                format!("is less than the minimum of {}", format(min)),
                format!("ask for at least {}", format(min)),
            ));
            default
        }
        Ok(v) if v > max => {
            p.push(Problem::new(
                field,
                raw,
                format!("is more than the maximum of {}", format(max)),
                format!("ask for at most {}", format(max)),
            ));
            default
        }
        Ok(v) => v,
        Err(e) => {
            p.push(Problem::new(field, raw, e, format!("write {example}")));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJobResources, DataJobSpec};
    use kube::core::ObjectMeta;

    fn dj(name: &str, spec: DataJobSpec) -> DataJob {
        DataJob {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }

    fn spec() -> DataJobSpec {
        DataJobSpec {
            image: "ghcr.io/acme/churn:1.4.2".into(),
            ..Default::default()
        }
    }

    fn problems(d: DataJob) -> Vec<String> {
        resolve(&d, &Limits::default())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn oversized_values_are_refused_with_the_field_and_the_limit() {
        let mut s = spec();
        s.env = vec![EnvVar {
            name: "BLOB".into(),
            value: Some("x".repeat(2 << 20)),
            value_from: None,
        }];
        let found = problems(dj("big", s));
        assert!(
            found.iter().any(|p| p.starts_with("spec.env[0].value")
                && p.contains("32 KiB")
                && p.contains("valueFrom")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec ") && p.contains("256 KiB")),
            "{found:?}"
        );
        let mut s = spec();
        s.env = (0..20)
            .map(|i| EnvVar {
                name: format!("V{i}"),
                value: Some("y".repeat(20 << 10)),
                value_from: None,
            })
            .collect();
        let found = problems(dj("many", s));
        assert_eq!(
            found.len(),
            1,
            "each value fits, the whole does not: {found:?}"
        );
        let mut s = spec();
        s.pod_annotations = (0..5)
            .map(|i| (format!("example.com/a{i}"), "z".repeat(20 << 10)))
            .collect();
        assert!(problems(dj("notes", s))[0].starts_with("spec.podAnnotations"));
        // Just under every limit is fine.
        let mut s = spec();
        s.env = vec![EnvVar {
            name: "OK".into(),
            value: Some("x".repeat(MAX_ENV_VALUE_BYTES)),
            value_from: None,
        }];
        assert!(resolve(&dj("fits", s), &Limits::default()).is_ok());
    }

    #[test]
    fn lists_past_their_bound_are_refused_with_the_field_the_count_and_the_bound() {
        let mut s = spec();
        s.env = (0..100_000)
            .map(|i| EnvVar {
                name: format!("V{i}"),
                value: Some("x".into()),
                value_from: None,
            })
            .collect();
        s.inputs = (0..bounds::MAX_INPUTS + 1)
            .map(|i| format!("in-{i}"))
            .collect();
        s.pod_annotations = (0..bounds::MAX_POD_ANNOTATIONS + 1)
            .map(|i| (format!("example.com/a{i}"), String::new()))
            .collect();
        s.schedule = Some("*".repeat(bounds::MAX_SCHEDULE_LEN + 1));
        let found = problems(dj("wide", s));
        let has = |start: &str, words: &str| {
            found
                .iter()
                .any(|p| p.starts_with(start) && p.contains(words))
        };
        assert!(
            has("spec.env ", "has 100000 items, more than the limit of 256"),
            "{found:?}"
        );
        assert!(
            has("spec.inputs ", "has 65 items, more than the limit of 64"),
            "{found:?}"
        );
        assert!(
            has(
                "spec.podAnnotations ",
                "has 65 entries, more than the limit of 64"
            ),
            "{found:?}"
        );
        assert!(
            has(
                "spec.schedule ",
                "is 129 characters, more than the limit of 128"
            ),
            "{found:?}"
        );
        // The over-long schedule is not parsed (and repeated) again.
        assert_eq!(
            found
                .iter()
                .filter(|p| p.starts_with("spec.schedule"))
                .count(),
            1
        );
        // At the bounds, all is well.
        let mut s = spec();
        s.env = (0..bounds::MAX_ENV_ITEMS)
            .map(|i| EnvVar {
                name: format!("V{i}"),
                value: Some("x".into()),
                value_from: None,
            })
            .collect();
        s.inputs = (0..bounds::MAX_INPUTS).map(|i| format!("in-{i}")).collect();
        assert!(resolve(&dj("wide", s), &Limits::default()).is_ok());
    }

    #[test]
    fn a_repeated_input_is_found_in_one_pass() {
        let mut s = spec();
        s.inputs = vec!["a-1".into(), "b-2".into(), "a-1".into(), "b-2".into()];
        let found = problems(dj("x", s));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("spec.inputs[2]") && found[0].contains("twice"));
        assert!(found[1].starts_with("spec.inputs[3]"));
    }

    #[test]
    fn defaults_apply() {
        let r = resolve(&dj("a", spec()), &Limits::default()).unwrap();
        assert_eq!(r.deadline, DEFAULT_DEADLINE);
        assert_eq!(r.retries, DEFAULT_RETRIES);
        assert_eq!(r.cpu_millis, 1000);
        assert_eq!(r.memory_bytes, 2 << 30);
        assert_eq!(r.time_zone, Tz::UTC);
        assert!(r.schedule.is_none());
    }

    #[test]
    fn images() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "ghcr.io/acme/churn:1.4.2",
            "localhost:5000/a/b",
            "a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                resolve(
                    &dj(
                        "a",
                        DataJobSpec {
                            image: ok.into(),
                            ..spec()
                        }
                    ),
                    &Limits::default()
                )
                .is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "busybox:tag\u{e9}",
            "Ghcr.io/Acme/Churn",
            "acme/churn:",
            "acme//churn",
            "acme/churn:1.0 extra",
            "-acme",
        ] {
            let msgs = problems(dj(
                "a",
                DataJobSpec {
                    image: bad.into(),
                    ..spec()
                },
            ));
            assert!(msgs[0].starts_with("spec.image"), "{bad}: {msgs:?}");
        }
    }

    #[test]
    fn every_problem_names_field_value_and_fix() {
        let d = dj(
            &"x".repeat(53),
            DataJobSpec {
                image: "ok:1".into(),
                schedule: Some("61 * * * *".into()),
                time_zone: Some("Mars/Base".into()),
                deadline: Some("2 hours".into()),
                retries: Some(-1),
                resources: DataJobResources {
                    cpu: Some("-2".into()),
                    memory: Some("500Ti".into()),
                    disk: None,
                    gpu: Some(64),
                },
                ..spec()
            },
        );
        let msgs = problems(d);
        let want = [
            ("metadata.name", "xxxxxxxx"),
            ("spec.timeZone", "Mars/Base"),
            ("spec.schedule", "61 * * * *"),
            ("spec.deadline", "2 hours"),
            ("spec.retries", "-1"),
            ("spec.resources.cpu", "-2"),
            ("spec.resources.memory", "500Ti"),
            ("spec.resources.gpu", "64"),
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for ((field, value), msg) in want.iter().zip(&msgs) {
            assert!(msg.starts_with(field) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn deadline_limit_is_configurable() {
        let d = dj(
            "a",
            DataJobSpec {
                deadline: Some("3h".into()),
                ..spec()
            },
        );
        assert!(resolve(&d, &Limits::default()).is_ok());
        let err = resolve(
            &d,
            &Limits {
                max_deadline: Duration::from_secs(7200),
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("maximum of 2h"), "{err}");
        let zero = dj(
            "a",
            DataJobSpec {
                deadline: Some("0m".into()),
                ..spec()
            },
        );
        assert!(problems(zero)[0].contains("longer than zero"));
    }

    #[test]
    fn inputs_and_output() {
        let d = dj(
            "a",
            DataJobSpec {
                inputs: vec!["a".into(), "B".into(), "c".into(), "c".into()],
                output: Some("ftp://x".into()),
                ..spec()
            },
        );
        let msgs = problems(d);
        assert!(msgs[0].contains("itself"));
        assert!(msgs[1].contains("not a DataJob name"));
        assert!(msgs[2].contains("twice"));
        assert!(msgs[3].starts_with("spec.output"));
    }

    #[test]
    fn outputs_the_cluster_can_publish_to() {
        let with = |out: &str| DataJobSpec {
            output: Some(out.into()),
            ..spec()
        };
        let r = resolve(&dj("a", with("pvc://lake/events")), &Limits::default()).unwrap();
        assert_eq!(r.output.unwrap().url(), "pvc://lake/events");
        // A path on one machine is for run --local only.
        let msgs = problems(dj("a", with("/data/out")));
        assert!(
            msgs[0].starts_with("spec.output \"/data/out\" is a path on one machine"),
            "{msgs:?}"
        );
        let local = Limits {
            local_paths: true,
            ..Limits::default()
        };
        assert!(resolve(&dj("a", with("file:///data/out")), &local).is_ok());
        // Volumes need the operator's publisher image.
        let no_publisher = Limits {
            volume_outputs: false,
            ..Limits::default()
        };
        let err = resolve(&dj("a", with("pvc://lake/x")), &no_publisher).unwrap_err();
        assert!(err.to_string().contains("--publisher-image"), "{err}");
        assert!(resolve(&dj("a", with("s3://b/x")), &no_publisher).is_ok());
    }

    #[test]
    fn an_owner_is_a_short_printable_name() {
        let with = |owner: &str| DataJobSpec {
            image: "busybox".into(),
            owner: Some(owner.into()),
            ..Default::default()
        };
        let check = |spec: DataJobSpec| {
            let mut p = Vec::new();
            check_owner(&spec, &mut p);
            p
        };
        assert!(check(with("team-growth")).is_empty());
        assert!(check(with("ana@acme.io")).is_empty());
        let p = check(with("a\nb"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "spec.owner");
        assert!(
            check(with(&"x".repeat(MAX_OWNER_LEN + 1)))[0]
                .problem
                .contains("at most 128")
        );
    }

    #[test]
    fn pod_annotations() {
        let ann = |k: &str| DataJobSpec {
            pod_annotations: [(k.to_string(), "x".to_string())].into(),
            ..spec()
        };
        assert!(resolve(&dj("a", ann("sidecar.istio.io/inject")), &Limits::default()).is_ok());
        assert!(problems(dj("a", ann("datajob.dev/run-id")))[0].contains("reserved"));
        assert!(problems(dj("a", ann("bad key!")))[0].contains("not a valid annotation key"));
    }

    #[test]
    fn annotations_that_loosen_confinement_or_leave_the_mesh_are_refused() {
        let ann = |k: &str, v: &str| DataJobSpec {
            pod_annotations: [(k.to_string(), v.to_string())].into(),
            ..spec()
        };
        for key in [
            "container.apparmor.security.beta.kubernetes.io/main",
            "seccomp.security.alpha.kubernetes.io/pod",
        ] {
            let p = problems(dj("a", ann(key, "unconfined")));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].contains(&format!("spec.podAnnotations[{key}]")),
                "{p:?}"
            );
            assert!(p[0].contains("AppArmor or seccomp"), "{p:?}");
        }
        let allowed = Limits {
            mesh_opt_out: true,
            ..Limits::default()
        };
        for (key, value) in [
            ("sidecar.istio.io/inject", "false"),
            ("sidecar.istio.io/inject", " FALSE"),
            ("linkerd.io/inject", "disabled"),
            (
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "0.0.0.0/0",
            ),
        ] {
            let p = problems(dj("a", ann(key, value)));
            assert_eq!(p.len(), 1, "{key}={value}: {p:?}");
            assert!(p[0].contains("settings.allowMeshOptOut=true"), "{p:?}");
            assert!(
                resolve(&dj("a", ann(key, value)), &allowed).is_ok(),
                "{key}"
            );
        }
        // Opting in is fine, and so is anything else.
        for (key, value) in [
            ("sidecar.istio.io/inject", "true"),
            ("linkerd.io/inject", "enabled"),
            ("prometheus.io/scrape", "true"),
        ] {
            assert!(
                resolve(&dj("a", ann(key, value)), &Limits::default()).is_ok(),
                "{key}"
            );
        }
    }

    #[test]
    fn reserved_env() {
        let d = dj(
            "a",
            DataJobSpec {
                env: vec![EnvVar {
                    name: "DATAJOB_RUN_ID".into(),
                    ..Default::default()
                }],
                ..spec()
            },
        );
        assert!(problems(d)[0].contains("reserved"));
    }
}

//! What a DataJob becomes: guarded CronJobs and Jobs, built as plain values.
//! Nothing here talks to the cluster.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec, PodFailurePolicy,
    PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, EphemeralVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::labels::{
    self, CONTAINER, JOB_NAME, LOGICAL_TIME, MANAGED_BY, MANAGED_BY_VALUE, NAME, PUBLISH_OF, RUN_ID,
};
use crate::output::{self, Output, PVC_MOUNT_ROOT};
use crate::units::{format_bytes, format_cpu};
use crate::validation::Resolved;
use datajob_api::DataJob;

/// Exit codes that mean the command cannot run at all: retrying cannot fix them.
pub const UNRETRYABLE_EXIT_CODES: [i32; 2] = [126, 127];

/// Operator-wide settings for the objects it creates.
#[derive(Clone, Debug)]
pub struct Guards {
    /// How long a finished Job (and its pods, for logs) stays before Kubernetes deletes it.
    pub ttl_after_finished: Duration,
    /// Added to `deadline` for the Job's `activeDeadlineSeconds` backstop, which also
    /// counts time spent Pending (kubernetes#111948).
    pub startup_allowance: Duration,
    /// A `disk` above this (bytes) gets a generic ephemeral volume (a PVC that lives and
    /// dies with the pod) instead of node ephemeral storage.
    pub scratch_volume_above: u64,
    /// Storage class of those volumes; `None`: the cluster's default.
    pub scratch_storage_class: Option<String>,
    /// The operator's image, which stages and publishes outputs on volumes.
    pub publisher_image: Option<String>,
    /// How long staging directories and replaced versions are kept on a volume: the
    /// longest a run can live (the longest deadline plus the startup allowance).
    pub sweep_grace: Duration,
    /// The operator keeps a log archive: run pods carry its finalizer
    /// ([`crate::decide::archive::FINALIZER`]) until their logs are copied.
    pub log_archive: bool,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            ttl_after_finished: Duration::from_secs(3 * 86_400),
            startup_allowance: Duration::from_secs(15 * 60),
            scratch_volume_above: 50 << 30,
            scratch_storage_class: None,
            publisher_image: None,
            sweep_grace: Duration::from_secs(24 * 3600 + 15 * 60),
            log_archive: false,
        }
    }
}

/// The image of the stage and publish steps; plan shows this name when it is not known.
fn publisher_image(guards: &Guards) -> String {
    guards
        .publisher_image
        .clone()
        .unwrap_or_else(|| "datajob-operator".into())
}

fn common_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (NAME.to_string(), name.to_string()),
    ])
}

fn owner_meta(
    dj: &DataJob,
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: dj.namespace(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: dj.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The CronJob for a scheduled DataJob. Its Jobs start suspended: the operator admits
/// each one (stamps its logical time, places it) and then lets it run.
pub fn cronjob(dj: &DataJob, r: &Resolved, guards: &Guards) -> Option<CronJob> {
    let schedule = r.schedule.as_ref()?;
    let interval = schedule
        .min_interval(Utc::now())
        .map_or(3600, |d| d.num_seconds());
    let labels = common_labels(&r.name);
    Some(CronJob {
        metadata: owner_meta(dj, r.name.clone(), labels.clone(), BTreeMap::new()),
        spec: CronJobSpec {
            schedule: schedule.cronjob.clone(),
            time_zone: Some(r.time_zone.name().to_string()),
            concurrency_policy: Some("Forbid".into()),
            // Always set: without it a CronJob that missed 100 schedules stops for good
            // (kubernetes#42649). A run may start at most this late, and never later than
            // the next one is due.
            starting_deadline_seconds: Some(interval.clamp(60, 3600)),
            suspend: Some(r.suspend),
            successful_jobs_history_limit: Some(r.history),
            failed_jobs_history_limit: Some(r.history.max(1)),
            job_template: JobTemplateSpec {
                // The CronJob controller copies these to each Job: the watchdog reads
                // the run's deadline and pending timeout from them.
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(job_annotations(r, None)),
                    ..Default::default()
                }),
                spec: Some(job_spec(r, guards, None, true)),
            },
        },
        status: None,
    })
}

/// The Job of one run at `logical_time`, created by the operator itself
/// (one-off DataJobs and triggered runs).
pub fn job(
    dj: &DataJob,
    r: &Resolved,
    guards: &Guards,
    logical_time: DateTime<Utc>,
    suspend: bool,
) -> Job {
    let id = labels::run_id(&r.name, logical_time);
    let mut l = common_labels(&r.name);
    l.insert(RUN_ID.into(), id.clone());
    Job {
        metadata: owner_meta(dj, id, l, job_annotations(r, Some(logical_time))),
        spec: Some(job_spec(r, guards, Some(logical_time), suspend)),
        status: None,
    }
}

/// The same Job, of a run given `args` (`kubectl datajob trigger --arg`): its own run id
/// ([`crate::params::run_id`]) on the Job and its pod, the values in the run's
/// `DATAJOB_ARG_*` variables, and the arguments on the Job (`datajob.dev/params`), where
/// its run record reads them back. Unchanged without arguments.
pub fn with_args(
    mut job: Job,
    r: &Resolved,
    logical_time: DateTime<Utc>,
    args: &crate::params::Args,
) -> Job {
    if args.is_empty() {
        return job;
    }
    let id = crate::params::run_id(&r.name, logical_time, args);
    job.metadata.name = Some(id.clone());
    job.labels_mut().insert(RUN_ID.into(), id.clone());
    job.annotations_mut()
        .insert(labels::PARAMS.into(), crate::params::annotation(args));
    let values: BTreeMap<String, String> =
        crate::params::env(&r.params, args).into_iter().collect();
    if let Some(template) = job.spec.as_mut().map(|s| &mut s.template) {
        if let Some(meta) = template.metadata.as_mut() {
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(RUN_ID.into(), id);
        }
        for c in template
            .spec
            .iter_mut()
            .flat_map(|s| s.containers.iter_mut())
        {
            for e in c.env.iter_mut().flatten() {
                if let Some(v) = values.get(&e.name) {
                    e.value = Some(v.clone());
                }
            }
        }
    }
    job
}

/// The same Job with the locations of its inputs, on the Job and its pod (the container
/// reads them through the Downward API), and extra labels (a Backfill's).
pub fn with_inputs(
    mut job: Job,
    inputs: &[(String, String)],
    extra_labels: &BTreeMap<String, String>,
) -> Job {
    let add = |meta: &mut ObjectMeta| {
        let a = meta.annotations.get_or_insert_with(BTreeMap::new);
        for (input, location) in inputs {
            a.insert(output::input_annotation(input), location.clone());
        }
        let l = meta.labels.get_or_insert_with(BTreeMap::new);
        l.extend(extra_labels.clone());
    };
    add(&mut job.metadata);
    if let Some(spec) = job.spec.as_mut() {
        add(spec.template.metadata.get_or_insert_with(Default::default));
    }
    job
}

/// What the watchdog needs to know about a run, on its Job.
fn job_annotations(r: &Resolved, logical_time: Option<DateTime<Utc>>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([(
        labels::DEADLINE_SECONDS.to_string(),
        r.deadline.as_secs().to_string(),
    )]);
    if let Some(p) = r.pending_timeout {
        a.insert(
            labels::PENDING_TIMEOUT_SECONDS.into(),
            p.as_secs().to_string(),
        );
    }
    if let Some(t) = logical_time {
        a.insert(LOGICAL_TIME.into(), labels::rfc3339(t));
    }
    if let Some(o) = &r.owner {
        a.insert(labels::OWNER.into(), o.clone());
    }
    a
}

fn job_spec(
    r: &Resolved,
    guards: &Guards,
    logical_time: Option<DateTime<Utc>>,
    suspend: bool,
) -> JobSpec {
    let backstop = r.deadline + guards.startup_allowance;
    JobSpec {
        active_deadline_seconds: Some(backstop.as_secs() as i64),
        backoff_limit: Some(r.retries),
        completions: Some(1),
        parallelism: Some(1),
        suspend: Some(suspend),
        ttl_seconds_after_finished: Some(
            guards.ttl_after_finished.as_secs().min(i32::MAX as u64) as i32
        ),
        // A new pod only once the failed one is gone: a run never holds two nodes' worth.
        pod_replacement_policy: Some("Failed".into()),
        pod_failure_policy: Some(PodFailurePolicy {
            rules: vec![
                // Evictions and preemptions are not the job's fault: do not count them.
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: Some("True".into()),
                    }]),
                    on_exit_codes: None,
                },
                // The command cannot be executed or found: retrying cannot fix it.
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some(CONTAINER.into()),
                        operator: "In".into(),
                        values: UNRETRYABLE_EXIT_CODES.to_vec(),
                    }),
                    on_pod_conditions: None,
                },
            ],
        }),
        template: pod_template(r, guards, logical_time),
        ..Default::default()
    }
}

fn pod_template(
    r: &Resolved,
    guards: &Guards,
    logical_time: Option<DateTime<Utc>>,
) -> PodTemplateSpec {
    let mut labels = common_labels(&r.name);
    let mut annotations = BTreeMap::from([
        // Clusters that also run Karpenter or Cluster Autoscaler must not evict a run mid-way.
        (
            "karpenter.sh/do-not-disrupt".to_string(),
            "true".to_string(),
        ),
        (
            "cluster-autoscaler.kubernetes.io/safe-to-evict".to_string(),
            "false".to_string(),
        ),
    ]);
    if let Some(o) = &r.owner {
        annotations.insert(labels::OWNER.into(), o.clone());
    }
    for (k, v) in &r.pod_annotations {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(t) = logical_time {
        labels.insert(RUN_ID.into(), labels::run_id(&r.name, t));
        annotations.insert(LOGICAL_TIME.into(), labels::rfc3339(t));
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            // The Job controller puts the template's finalizers on every pod it makes.
            finalizers: guards
                .log_archive
                .then(|| vec![crate::decide::archive::FINALIZER.to_string()]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: r.service_account.clone(),
            node_selector: r.placement.as_ref().map(|g| g.labels.clone()),
            tolerations: r.placement.as_ref().map(tolerations),
            // A run only gets an API token when it asked for an identity.
            automount_service_account_token: Some(r.service_account.is_some()),
            // Never root, whatever the image says (most public images run as root):
            // an explicit user and group, and volumes writable by that group.
            security_context: Some(pod_security(r)),
            init_containers: stage_container(r, guards).map(|c| vec![c]),
            containers: vec![container(r, guards)],
            volumes: Some(
                [scratch_volume(r, guards), home_volume()]
                    .into_iter()
                    .chain(claim_pvc_volumes(r))
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

/// The claims a run's pod mounts at `/datajob/pvc/<claim>`: (volume name, claim, read-only).
/// The output's own claim is writable; inputs' other claims are read-only.
fn claim_volumes(r: &Resolved) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    if let Some(claim) = r.output.as_ref().and_then(Output::claim) {
        out.push(("output".to_string(), claim.to_string(), false));
    }
    for claim in &r.input_claims {
        if !out.iter().any(|(_, c, _)| c == claim) {
            out.push((format!("input-{}", out.len()), claim.clone(), true));
        }
    }
    out
}

/// The volumes of [`claim_volumes`].
fn claim_pvc_volumes(r: &Resolved) -> impl Iterator<Item = Volume> {
    claim_volumes(r)
        .into_iter()
        .map(|(name, claim, read_only)| Volume {
            name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(read_only),
            }),
            ..Default::default()
        })
}

fn claim_mounts(r: &Resolved) -> Vec<VolumeMount> {
    claim_volumes(r)
        .into_iter()
        .map(|(name, claim, read_only)| VolumeMount {
            name,
            mount_path: format!("{PVC_MOUNT_ROOT}/{claim}"),
            read_only: Some(read_only),
            ..Default::default()
        })
        .collect()
}

/// The pod of a run or of its publish step: never root, an explicit user and group,
/// volumes writable by that group, seccomp `RuntimeDefault` (the `restricted` profile).
fn pod_security(r: &Resolved) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(r.run_as_user),
        run_as_group: Some(r.run_as_user),
        fs_group: Some(r.run_as_user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Before each attempt of a run whose output is on a volume: the operator's image
/// empties the run's staging directory (`datajob-operator stage`), as the run's user,
/// with the run's own resources (so the pod asks for no more than the run).
fn stage_container(r: &Resolved, guards: &Guards) -> Option<Container> {
    let out = r.output.as_ref().filter(|o| o.claim().is_some())?;
    let main = container(r, guards);
    Some(Container {
        name: "stage".into(),
        image: Some(publisher_image(guards)),
        command: Some(vec!["/datajob-operator".into()]),
        args: Some(vec![
            "stage".into(),
            "--root".into(),
            out.root_in_pod(),
            "--run-id".into(),
            "$(DATAJOB_RUN_ID)".into(),
            "--grace".into(),
            crate::units::format_duration(guards.sweep_grace),
        ]),
        env: Some(vec![EnvVar {
            name: "DATAJOB_RUN_ID".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{JOB_NAME}']"),
                    api_version: None,
                }),
                ..Default::default()
            }),
        }]),
        resources: main.resources,
        security_context: Some(restricted()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(claim_mounts(r)),
        ..Default::default()
    })
}

/// The name of the Job that publishes run `run_id`: `<run id>-publish`, shortened with a
/// hash when that passes 63 characters.
pub(crate) fn publish_job_name(run_id: &str) -> String {
    let name = format!("{run_id}-publish");
    if name.len() <= 63 {
        return name;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(run_id.as_bytes());
    let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}-publish", &run_id[..run_id.len().min(45)])
}

/// The version directory a publication of `run` gets: its run id and the first
/// characters of its Job's uid, so a re-run of the same logical time never reuses one.
pub(crate) fn publish_version(run_id: &str, job_uid: &str) -> String {
    let nonce: String = job_uid.chars().filter(|c| *c != '-').take(8).collect();
    output::version_name(run_id, &nonce)
}

/// The Job that publishes a succeeded run whose output is on a volume: the operator's
/// image renames the staging directory into a version and swaps the partition's symlink
/// (`datajob-operator publish`). Owned by the run's Job, so it goes when the run is
/// pruned; placed like the run. `None` without a volume output.
pub(crate) fn publish_job(
    r: &Resolved,
    guards: &Guards,
    run_job: &Job,
    logical_time: DateTime<Utc>,
) -> Option<Job> {
    let out = r.output.as_ref().filter(|o| o.claim().is_some())?;
    let run_id = run_job.metadata.name.clone()?;
    let uid = run_job.metadata.uid.clone()?;
    let name = publish_job_name(&run_id);
    let mut l = common_labels(&r.name);
    l.insert(PUBLISH_OF.into(), run_id.clone());
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: run_id.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let container = publisher_container(r, guards, out, &run_id, &uid, logical_time);
    Some(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(r.namespace.clone()),
            labels: Some(l.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(600),
            ttl_seconds_after_finished: Some(
                guards.ttl_after_finished.as_secs().min(i32::MAX as u64) as i32,
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    annotations: Some(BTreeMap::from([(
                        "karpenter.sh/do-not-disrupt".to_string(),
                        "true".to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    node_selector: r.placement.as_ref().map(|g| g.labels.clone()),
                    tolerations: r.placement.as_ref().map(tolerations),
                    security_context: Some(pod_security(r)),
                    containers: vec![container],
                    volumes: Some(claim_pvc_volumes(r).collect()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The publish Job's one container: `datajob-operator publish` with the run's output
/// root, run id, logical time and version; small fixed requests.
fn publisher_container(
    r: &Resolved,
    guards: &Guards,
    out: &Output,
    run_id: &str,
    uid: &str,
    logical_time: DateTime<Utc>,
) -> Container {
    let res = BTreeMap::from([
        ("cpu".to_string(), Quantity("50m".into())),
        ("memory".to_string(), Quantity("64Mi".into())),
    ]);
    Container {
        name: "publish".into(),
        image: Some(publisher_image(guards)),
        command: Some(vec!["/datajob-operator".into()]),
        args: Some(vec![
            "publish".into(),
            "--root".into(),
            out.root_in_pod(),
            "--run-id".into(),
            run_id.to_string(),
            "--logical-time".into(),
            labels::rfc3339(logical_time),
            "--version".into(),
            publish_version(run_id, uid),
            "--grace".into(),
            crate::units::format_duration(guards.sweep_grace),
            "--datajob".into(),
            r.name.clone(),
            "--datajob-namespace".into(),
            r.namespace.clone(),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(res.clone()),
            limits: Some(res),
            ..Default::default()
        }),
        security_context: Some(restricted()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(claim_mounts(r)),
        ..Default::default()
    }
}

/// Tolerations for a group's taints, so its runs may land there.
fn tolerations(g: &crate::group::Group) -> Vec<Toleration> {
    g.taints
        .iter()
        .map(|t| Toleration {
            key: Some(t.key.clone()),
            operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.into()),
            value: t.value.clone(),
            effect: Some(t.effect.clone()),
            toleration_seconds: None,
        })
        .collect()
}

/// What one run's pod asks the scheduler for.
pub fn run_request(r: &Resolved, guards: &Guards) -> crate::resources::Request {
    crate::resources::Request {
        cpu_millis: r.cpu_millis,
        memory: r.memory_bytes,
        ephemeral: r
            .disk_bytes
            .filter(|_| !needs_scratch_pvc(r, guards))
            .unwrap_or(0),
        gpu: u64::from(r.gpu),
    }
}

/// Where a run's scratch space is mounted.
pub const SCRATCH_PATH: &str = "/scratch";
const SCRATCH_VOLUME: &str = "scratch";
/// A writable home for the run's user (`HOME`): an image's own home belongs to its
/// user, and tools write there (caches, configuration).
pub const HOME_PATH: &str = "/home/datajob";
const HOME_VOLUME: &str = "home";

fn home_volume() -> Volume {
    Volume {
        name: HOME_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn needs_scratch_pvc(r: &Resolved, guards: &Guards) -> bool {
    r.disk_bytes
        .is_some_and(|d| d > guards.scratch_volume_above)
}

/// Scratch space: node ephemeral storage (an emptyDir bounded by `disk`), or, for a
/// `disk` larger than nodes give, a generic ephemeral volume whose PVC the pod owns.
fn scratch_volume(r: &Resolved, guards: &Guards) -> Volume {
    if !needs_scratch_pvc(r, guards) {
        return Volume {
            name: SCRATCH_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: r.disk_bytes.map(|d| Quantity(format_bytes(d))),
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    let size = Quantity(format_bytes(r.disk_bytes.unwrap_or_default()));
    Volume {
        name: SCRATCH_VOLUME.into(),
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    labels: Some(common_labels(&r.name)),
                    ..Default::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: guards.scratch_storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }),
        }),
        ..Default::default()
    }
}

fn container(r: &Resolved, guards: &Guards) -> Container {
    let mut res = BTreeMap::from([
        ("cpu".to_string(), Quantity(format_cpu(r.cpu_millis))),
        ("memory".to_string(), Quantity(format_bytes(r.memory_bytes))),
    ]);
    if let Some(d) = r.disk_bytes.filter(|_| !needs_scratch_pvc(r, guards)) {
        res.insert("ephemeral-storage".into(), Quantity(format_bytes(d)));
    }
    if r.gpu > 0 {
        res.insert("nvidia.com/gpu".into(), Quantity(r.gpu.to_string()));
    }
    Container {
        name: CONTAINER.into(),
        image: Some(r.image.clone()),
        command: (!r.command.is_empty()).then(|| r.command.clone()),
        args: (!r.args.is_empty()).then(|| r.args.clone()),
        env: Some(env(r)),
        resources: Some(ResourceRequirements {
            requests: Some(res.clone()),
            limits: Some(res),
            ..Default::default()
        }),
        security_context: Some(restricted()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: SCRATCH_VOLUME.into(),
                    mount_path: SCRATCH_PATH.into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: HOME_VOLUME.into(),
                    mount_path: HOME_PATH.into(),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(claim_mounts(r))
            .collect(),
        ),
        ..Default::default()
    }
}

/// What every run's container is told about itself, then the user's own variables.
fn env(r: &Resolved) -> Vec<EnvVar> {
    let literal = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let field = |name: &str, path: String| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path,
                api_version: None,
            }),
            ..Default::default()
        }),
    };
    let mut env = vec![
        // Before the user's variables, so a HOME of theirs wins.
        literal("HOME", HOME_PATH),
        literal("DATAJOB_SCRATCH", SCRATCH_PATH),
        literal("DATAJOB_NAME", &r.name),
        literal("DATAJOB_NAMESPACE", &r.namespace),
        field("DATAJOB_RUN_ID", format!("metadata.labels['{JOB_NAME}']")),
        field(
            "DATAJOB_LOGICAL_TIME",
            format!("metadata.annotations['{LOGICAL_TIME}']"),
        ),
        literal(
            "DATAJOB_DEADLINE_SECONDS",
            &r.deadline.as_secs().to_string(),
        ),
    ];
    // The output contract (crate::output): `$(NAME)` refers to the variables above.
    match &r.output {
        Some(Output::ObjectStore { url }) => {
            // Each attempt writes under its own prefix: nothing moves, so a retry must
            // never add to what a failed attempt left. The pod's name names the attempt.
            env.push(field("DATAJOB_ATTEMPT", "metadata.name".into()));
            let prefix = output::attempt_prefix(url, "$(DATAJOB_RUN_ID)", "$(DATAJOB_ATTEMPT)");
            env.push(literal("DATAJOB_STAGING", &prefix));
            env.push(literal("DATAJOB_OUTPUT", &prefix));
        }
        Some(out) => {
            let root = out.root_in_pod();
            env.push(literal(
                "DATAJOB_STAGING",
                &output::staging(&root, "$(DATAJOB_RUN_ID)"),
            ));
            env.push(literal(
                "DATAJOB_OUTPUT",
                &format!("{root}/logical_time=$(DATAJOB_LOGICAL_TIME)"),
            ));
        }
        None => {}
    }
    // Each parameter's default; a run given arguments gets their values (`with_args`).
    for (name, value) in crate::params::env(&r.params, &crate::params::Args::new()) {
        env.push(literal(&name, &value));
    }
    for input in &r.inputs {
        env.push(field(
            &output::input_env(input),
            format!(
                "metadata.annotations['{}']",
                output::input_annotation(input)
            ),
        ));
    }
    env.extend(r.env.iter().cloned());
    env
}

/// The DataJob field a field of its CronJob or Job comes from, so that a refusal of the
/// child by the apiserver can say what the user must fix.
pub(crate) fn datajob_field(child_field: &str) -> Option<String> {
    let f = child_field
        .trim_start_matches("spec.jobTemplate.")
        .trim_start_matches("spec.template.");
    let container = ["spec.containers[0].", "containers[0]."]
        .iter()
        .find_map(|p| f.strip_prefix(p));
    let mapped = match (f, container) {
        ("spec.schedule", _) => "spec.schedule".to_string(),
        ("spec.timeZone", _) => "spec.timeZone".to_string(),
        ("metadata.name", _) => "metadata.name".to_string(),
        (_, Some(c)) if c.starts_with("image") => "spec.image".to_string(),
        (_, Some(c)) if c.starts_with("command") => "spec.command".to_string(),
        (_, Some(c)) if c.starts_with("args") => "spec.args".to_string(),
        (_, Some(c)) if c.starts_with("resources") => "spec.resources".to_string(),
        (_, Some(c)) if c.starts_with("env") => {
            // env[i] of the container: the user's variables come after the operator's.
            return Some("spec.env".to_string());
        }
        (f, _)
            if f.starts_with("metadata.annotations")
                || f.starts_with("spec.metadata.annotations") =>
        {
            "spec.podAnnotations".to_string()
        }
        (f, _) if f.starts_with("spec.serviceAccountName") => "spec.serviceAccountName".to_string(),
        _ => return None,
    };
    Some(mapped)
}

/// What the DataJob says when the apiserver refused its `kind` child: the apiserver's
/// own words, and the DataJob fields to fix.
pub fn rejection(kind: &str, status: &kube::core::Status) -> String {
    let mut fields: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter_map(|c| datajob_field(&c.field))
        .collect();
    fields.dedup();
    let words = status.message.trim();
    match fields.is_empty() {
        true => format!("the apiserver refused the {kind}: {words}"),
        false => format!(
            "the apiserver refused the {kind}: {words}; fix {}",
            fields.join(", ")
        ),
    }
}

#[cfg(test)]
mod rejection_tests {
    use super::*;

    #[test]
    fn a_refused_child_names_the_datajob_field_to_fix() {
        assert_eq!(
            datajob_field("spec.schedule").as_deref(),
            Some("spec.schedule")
        );
        assert_eq!(
            datajob_field("spec.jobTemplate.spec.template.spec.containers[0].image").as_deref(),
            Some("spec.image")
        );
        assert_eq!(
            datajob_field("spec.template.spec.containers[0].env[7].value").as_deref(),
            Some("spec.env")
        );
        assert_eq!(
            datajob_field("spec.jobTemplate.spec.template.metadata.annotations").as_deref(),
            Some("spec.podAnnotations")
        );
        assert_eq!(datajob_field("spec.parallelism"), None);
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "CronJob.batch \"weekly\" is invalid: spec.schedule: Invalid value: \"0 12 * * 7\": end of range (7) above maximum (6)",
            "details": {"name": "weekly", "kind": "CronJob", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value", "field": "spec.schedule"}
            ]}
        }))
        .unwrap();
        let said = rejection("CronJob", &status);
        assert!(
            said.starts_with("the apiserver refused the CronJob: CronJob.batch"),
            "{said}"
        );
        assert!(
            said.contains("end of range (7)") && said.ends_with("; fix spec.schedule"),
            "{said}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{Limits, resolve};
    use datajob_api::{DataJobResources, DataJobSpec};

    fn dj(schedule: Option<&str>) -> (DataJob, Resolved) {
        let mut d = DataJob::new(
            "churn-features",
            DataJobSpec {
                image: "ghcr.io/acme/churn:1.4.2".into(),
                schedule: schedule.map(Into::into),
                time_zone: Some("Europe/London".into()),
                deadline: Some("2h".into()),
                retries: Some(2),
                resources: DataJobResources {
                    cpu: Some("4".into()),
                    memory: Some("16Gi".into()),
                    disk: Some("100Gi".into()),
                    gpu: None,
                },
                ..Default::default()
            },
        );
        d.metadata.namespace = Some("analytics".into());
        d.metadata.uid = Some("uid-1".into());
        let r = resolve(&d, &Limits::default()).unwrap();
        (d, r)
    }

    #[test]
    fn a_run_carries_its_owner_on_the_job_and_the_pod() {
        let (mut d, _) = dj(None);
        let t = chrono::DateTime::from_timestamp(1_767_000_000, 0).unwrap();
        let owner_of = |d: &DataJob| {
            let r = resolve(d, &Limits::default()).unwrap();
            let j = job(d, &r, &Guards::default(), t, false);
            let on_job = j.annotations().get(labels::OWNER).cloned();
            let on_pod = j
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get(labels::OWNER).cloned());
            (on_job, on_pod)
        };
        assert_eq!(owner_of(&d), (None, None));
        d.spec.owner = Some("Data Platform <dp@acme.io>".into());
        let want = Some("Data Platform <dp@acme.io>".to_string());
        assert_eq!(owner_of(&d), (want.clone(), want));
    }

    #[test]
    fn scheduled_datajob_gets_a_guarded_cronjob() {
        let (d, r) = dj(Some("0 3 * * *"));
        let cj = cronjob(&d, &r, &Guards::default()).unwrap();
        let spec = cj.spec;
        // Each scheduled run carries what the watchdog needs (the deadline), as a
        // one-off run does; the logical time is stamped when the run is admitted.
        let template_annotations = spec
            .job_template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            template_annotations
                .get(labels::DEADLINE_SECONDS)
                .map(String::as_str),
            Some("7200")
        );
        assert!(!template_annotations.contains_key(LOGICAL_TIME));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.time_zone.as_deref(), Some("Europe/London"));
        assert_eq!(spec.starting_deadline_seconds, Some(3600));
        let job = spec.job_template.spec.unwrap();
        assert_eq!(
            job.suspend,
            Some(true),
            "the operator admits each scheduled run"
        );
        assert_eq!(
            cj.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn every_job_is_guarded() {
        let (d, r) = dj(None);
        let t = labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        let j = job(&d, &r, &Guards::default(), t, false);
        assert_eq!(j.metadata.name.as_deref(), Some("churn-features-29926260"));
        let spec = j.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(2 * 3600 + 15 * 60));
        assert_eq!(spec.backoff_limit, Some(2));
        assert!(spec.ttl_seconds_after_finished.is_some());
        assert_eq!(spec.pod_failure_policy.unwrap().rules.len(), 2);
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.requests, res.limits);
        let req = res.requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "4");
        assert_eq!(req["memory"].0, "16Gi");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let env: Vec<&str> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(env.contains(&"DATAJOB_RUN_ID") && env.contains(&"DATAJOB_LOGICAL_TIME"));
        let meta = spec.template.metadata.unwrap();
        assert_eq!(
            meta.annotations.unwrap()[LOGICAL_TIME],
            "2026-11-25T03:00:00Z"
        );
    }

    #[test]
    fn big_disks_get_a_pvc_that_lives_and_dies_with_the_pod() {
        let (d, mut r) = dj(None);
        let t = labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        let guards = Guards {
            scratch_volume_above: 50 << 30,
            ..Guards::default()
        };
        let pod = |r: &Resolved| {
            job(&d, r, &guards, t, false)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
        };
        let big = pod(&r);
        let v = &big.volumes.as_ref().unwrap()[0];
        let claim = v
            .ephemeral
            .as_ref()
            .unwrap()
            .volume_claim_template
            .as_ref()
            .unwrap();
        assert_eq!(
            claim.metadata.as_ref().unwrap().labels.as_ref().unwrap()[NAME],
            "churn-features"
        );
        let req = big.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert!(
            !req.contains_key("ephemeral-storage"),
            "the PVC provides the disk"
        );
        r.disk_bytes = Some(10 << 30);
        let small = pod(&r);
        assert!(small.volumes.unwrap()[0].empty_dir.is_some());
        assert_eq!(
            small.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["ephemeral-storage"]
                .0,
            "10Gi"
        );
    }

    #[test]
    fn minute_schedules_get_a_minute_of_starting_deadline() {
        let (d, r) = dj(Some("* * * * *"));
        let cj = cronjob(&d, &r, &Guards::default()).unwrap();
        assert_eq!(cj.spec.starting_deadline_seconds, Some(60));
    }
}

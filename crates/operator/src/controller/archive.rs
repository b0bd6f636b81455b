//! The log archive controller: for every run pod that carries the archive's finalizer,
//! asks [`datajob_core::decide::archive::assess`] what to do, copies each container's
//! log into the store ([`datajob_archive`]) once the pod stopped, says on the run's Job
//! what became of them, and lets the pod go. A retention pass deletes what is past the
//! archive's age and count and measures what stays.
//!
//! A restart mid-copy loses nothing: the pod keeps its finalizer until every object is
//! written, and a copy made again writes the same keys whole, so no line is doubled.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, LogParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use crate::metrics::OutcomeLabels;
use crate::{Error, Result};
use datajob_archive::{AttemptKey, Tail, retention};
use datajob_core::decide::archive::{self as decide, Kept, Verdict};
use datajob_core::labels::{JOB_NAME, NAME, RUN_ID};

const CONTROLLER: &str = "archive";

/// The longest one pod's copy may take (every container, read and written); past it
/// the copy is tried again, within the give-up bound.
const COPY_TIMEOUT: Duration = Duration::from_secs(60);

/// The archive's settings, as the operator was started with them.
pub struct Archive {
    pub store: datajob_archive::Store,
    pub max_bytes: u64,
    pub policy: retention::Policy,
    pub sweep_interval: Duration,
    /// How long a stopped pod is held for its copy ([`decide::RELEASE_AFTER`] by default).
    pub give_up_after: Duration,
}

impl Archive {
    /// The archive `config` asks for, `None` when it asks for none; a configuration
    /// that is half given, or an endpoint that is not a URL, is an error naming the fix.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Archive>> {
        let Some(settings) = config.log_archive()? else {
            return Ok(None);
        };
        let a = &config.log_archive;
        Ok(Some(Archive {
            store: datajob_archive::Store::new(settings)?,
            max_bytes: a.max_bytes,
            policy: retention::Policy {
                max_age: a.max_age,
                max_runs: a.max_runs,
            },
            sweep_interval: a.sweep_interval,
            give_up_after: a.give_up_after,
        }))
    }

    /// The start-up line: where logs go, or that they go with their pods.
    pub fn announce(archive: Option<&Archive>) {
        match archive {
            Some(a) => info!(
                store = %a.store.settings().describe(),
                max_bytes = a.max_bytes,
                max_age_s = a.policy.max_age.as_secs(),
                max_runs = a.policy.max_runs,
                give_up_after_s = a.give_up_after.as_secs(),
                "log archive: run logs are copied before their pods go"
            ),
            None => warn!(
                "log archive: not configured, so a run's logs go with its pod (TTL, history, node scale-down); set --log-archive-endpoint and --log-archive-bucket (chart: logArchive.*) to keep them"
            ),
        }
    }
}

struct ArchiveContext {
    base: Context,
    archive: Option<Archive>,
}

impl ArchiveContext {
    fn give_up_after(&self) -> Duration {
        self.archive
            .as_ref()
            .map_or(decide::RELEASE_AFTER, |a| a.give_up_after)
    }
}

/// Runs the controller until `shutdown` resolves. With no archive (`None`) it still
/// lets go of any pod left with the finalizer (the archive was turned off).
pub async fn run(
    base: Context,
    archive: Option<Archive>,
    pods: Store<Pod>,
    pod_events: impl futures::Stream<Item = Pod> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(ArchiveContext { base, archive });
    let sweeps = {
        let ctx = ctx.clone();
        async move {
            let Some(a) = ctx.archive.as_ref() else {
                return std::future::pending().await;
            };
            loop {
                sweep(&ctx.base, a).await;
                tokio::time::sleep(a.sweep_interval).await;
            }
        }
    };
    let pods_with_finalizer = pod_events.filter(|p| std::future::ready(decide::holds(p)));
    let controller = Controller::for_stream(pods_with_finalizer.map(Ok::<_, watcher::Error>), pods)
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::report(CONTROLLER, result));
    tokio::select! {
        _ = controller => {},
        _ = sweeps => {},
    }
}

fn error_policy(pod: Arc<Pod>, error: &Error, ctx: Arc<ArchiveContext>) -> Action {
    let ns = pod.namespace().unwrap_or_default();
    let reference = pod
        .labels()
        .get(NAME)
        .map(|datajob| Context::datajob_ref(&ns, datajob));
    let retry = decide::retry_in(&pod, ctx.give_up_after(), Utc::now());
    ctx.base.failed(CONTROLLER, reference, error, retry)
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<ArchiveContext>) -> Result<Action> {
    let _timer = ctx.base.metrics.reconcile(CONTROLLER);
    let ns = pod
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(pod.name_any()))?;
    let give_up = ctx.archive.as_ref().map(|a| a.give_up_after);
    let verdict = decide::assess(&pod, give_up, Utc::now());
    let kept = match verdict {
        Verdict::Nothing | Verdict::Wait => return Ok(Action::await_change()),
        Verdict::Release { not_kept: None } => Some(Kept::Empty),
        Verdict::Release {
            not_kept: Some(why),
        } => {
            if ctx.archive.is_some() {
                warn!(namespace = %ns, pod = %pod.name_any(), %why, "run logs not kept");
            }
            Some(Kept::NotKept)
        }
        Verdict::Copy { containers } => {
            let Some(archive) = ctx.archive.as_ref() else {
                return Ok(Action::await_change());
            };
            let copied = tokio::time::timeout(
                COPY_TIMEOUT,
                copy(&ctx.base, archive, &pod, &ns, &containers),
            )
            .await;
            match copied {
                Ok(Ok(kept)) => Some(kept),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    warn!(namespace = %ns, pod = %pod.name_any(), "copying the logs took over {} s; trying again", COPY_TIMEOUT.as_secs());
                    return Ok(Action::requeue(decide::retry_in(
                        &pod,
                        archive.give_up_after,
                        Utc::now(),
                    )));
                }
            }
        }
    };
    if let Some(kept) = kept {
        // Only a run pod that ran is told about: an archive that is off says nothing.
        if ctx.archive.is_some() {
            ctx.base
                .metrics
                .log_copies
                .get_or_create(&OutcomeLabels {
                    outcome: kept.as_str().into(),
                })
                .inc();
            mark_job(&ctx.base, &pod, &ns, kept).await?;
        }
    }
    release(&ctx.base, &pod, &ns).await?;
    Ok(Action::await_change())
}

/// Copies each container's log, bounded to its tail; `Cut` when one was longer.
async fn copy(
    base: &Context,
    archive: &Archive,
    pod: &Pod,
    ns: &str,
    containers: &[String],
) -> Result<Kept> {
    let name = pod.name_any();
    let created = pod
        .creation_timestamp()
        .and_then(|t| datajob_core::labels::from_k8s_time(&t))
        .unwrap_or_default();
    // The run id is its Job's name.
    let run = pod
        .labels()
        .get(JOB_NAME)
        .or_else(|| pod.labels().get(RUN_ID))
        .cloned()
        .unwrap_or_else(|| name.clone());
    let datajob = pod.labels().get(NAME).cloned().unwrap_or_default();
    let key = AttemptKey {
        namespace: ns,
        datajob: &datajob,
        run: &run,
        pod: &name,
        created,
    };
    let api: Api<Pod> = Api::namespaced(base.client.clone(), ns);
    let mut kept = Kept::Archived;
    for container in containers {
        let params = LogParams {
            container: Some(container.clone()),
            ..LogParams::default()
        };
        let mut stream = api.log_stream(&name, &params).await.map_err(Error::api(
            "read the logs of",
            "Pod",
            ns,
            &name,
        ))?;
        let bound = usize::try_from(archive.max_bytes).unwrap_or(usize::MAX);
        let mut tail = Tail::new(bound);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| {
                Error::api("read the logs of", "Pod", ns, &name)(kube::Error::ReadEvents(e))
            })?;
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        if tail.dropped() > 0 {
            kept = Kept::Cut;
        }
        let object = key.object(archive.store.prefix(), container);
        archive.store.put(&object, tail.finish()).await?;
    }
    info!(namespace = %ns, pod = %name, run = %run, containers = containers.len(), outcome = kept.as_str(), "run logs archived");
    Ok(kept)
}

/// Says on the run's Job what became of its logs (the DataJob's status reads it).
async fn mark_job(base: &Context, pod: &Pod, ns: &str, kept: Kept) -> Result<()> {
    let Some(job) = pod.labels().get(JOB_NAME) else {
        return Ok(());
    };
    let api: Api<Job> = Api::namespaced(base.client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {decide::LOGS: kept.as_str()}}});
    match api
        .patch(job, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // The Job went first (its TTL, a prune): there is nobody left to tell.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api("mark the logs of", "Job", ns, job)(e)),
    }
}

/// Takes the finalizer off: a JSON patch that tests the list first, so another
/// controller's finalizer that came or went meanwhile is never lost (the test fails,
/// and the next pass reads the pod again).
async fn release(base: &Context, pod: &Pod, ns: &str) -> Result<()> {
    let name = pod.name_any();
    let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    let Some(i) = finalizers.iter().position(|f| f == decide::FINALIZER) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": decide::FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
    .map_err(|source| Error::Encode {
        what: "the finalizer patch",
        source,
    })?;
    let api: Api<Pod> = Api::namespaced(base.client.clone(), ns);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api("release", "Pod", ns, &name)(e)),
    }
}

/// One retention pass: deletes what the policy says goes, then sets the size gauges.
async fn sweep(base: &Context, a: &Archive) {
    let listed = match a.store.list(a.store.prefix()).await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "log archive retention: listing failed; trying again next pass");
            return;
        }
    };
    let s = retention::sweep(a.store.prefix(), &listed, a.policy, Utc::now());
    let mut deleted = 0usize;
    for key in &s.delete {
        match a.store.delete(key).await {
            Ok(()) => deleted += 1,
            Err(e) => warn!(error = %e, "log archive retention: delete failed"),
        }
    }
    if deleted > 0 {
        info!(
            deleted,
            "log archive retention: deleted logs past their age or count"
        );
    }
    base.metrics
        .log_archive_bytes
        .set(i64::try_from(s.bytes).unwrap_or(i64::MAX));
    base.metrics
        .log_archive_objects
        .set(i64::try_from(s.objects).unwrap_or(i64::MAX));
}

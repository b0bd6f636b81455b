//! Controllers: one per resource. Each gathers state, calls a pure decision, applies it.
pub mod archive;
pub mod backfill;
mod caches;
pub mod cleanup;
mod context;
pub mod datajob;
pub mod jobs;
#[cfg(test)]
pub(crate) mod mock;
pub mod nodegroup;
mod streams;
pub mod watchdog;

pub use caches::*;
pub use context::*;
pub use streams::*;

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use futures::{Stream, StreamExt};

    use kube::runtime::reflector::{self, Store};
    use kube::runtime::{WatchStreamExt, watcher};

    use kube::ResourceExt;

    #[test]
    fn error_events_are_rate_limited_per_object() {
        let mut l = EventLimiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(l.allow("a", "boom", at(0)), "the first error is told");
        assert!(
            !l.allow("a", "boom", at(15)),
            "a retry loop tells nothing new"
        );
        assert!(
            l.allow("b", "boom", at(15)),
            "another object has its own budget"
        );
        assert!(
            !l.allow("a", "other", at(30)),
            "a new error waits for the gap"
        );
        assert!(l.allow("a", "other", at(61)), "and is told after it");
        assert!(!l.allow("a", "other", at(400)));
        assert!(
            l.allow("a", "other", at(61 + 600)),
            "the same error, now and then"
        );
    }

    #[test]
    fn a_broken_watch_lists_again_instead_of_resuming() {
        let status = |code: u16| {
            Box::new(kube::core::Status {
                code,
                ..Default::default()
            })
        };
        let refused = || kube::Error::Api(status(403));
        assert!(must_relist(&watcher::Error::WatchStartFailed(refused())));
        assert!(must_relist(&watcher::Error::WatchFailed(refused())));
        assert!(must_relist(&watcher::Error::WatchError(status(500))));
        // kube's watcher lists again after these by itself.
        assert!(!must_relist(&watcher::Error::WatchError(status(410))));
        assert!(!must_relist(&watcher::Error::InitialListFailed(refused())));
    }

    #[test]
    fn a_broken_watch_retries_soon_and_never_waits_more_than_four_seconds() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let waits: Vec<u64> = b.by_ref().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }

    fn datajob(uid: &str, generation: i64) -> datajob_api::DataJob {
        let mut d = datajob_api::DataJob::new("nightly", datajob_api::DataJobSpec::default());
        d.metadata.namespace = Some("data".into());
        d.metadata.uid = Some(uid.into());
        d.metadata.generation = Some(generation);
        d
    }

    /// Feeds `objects` through a reflector store (applied, or deleted when flagged) and
    /// `filter`, one by one; returns which passed.
    async fn passed<F, S>(objects: Vec<(datajob_api::DataJob, bool)>, filter: F) -> Vec<bool>
    where
        F: FnOnce(
            futures::channel::mpsc::UnboundedReceiver<datajob_api::DataJob>,
            Store<datajob_api::DataJob>,
        ) -> S,
        S: Stream<Item = ()> + Send + 'static,
    {
        let (store, mut writer) = reflector::store::<datajob_api::DataJob>();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut out = Box::pin(filter(rx, store));
        let mut result = Vec::new();
        for (obj, deleted) in objects {
            let event = match deleted {
                true => watcher::Event::Delete(obj.clone()),
                false => watcher::Event::Apply(obj.clone()),
            };
            writer.apply_watcher_event(&event);
            tx.unbounded_send(obj).expect("the filter listens");
            let got = tokio::time::timeout(Duration::from_millis(50), out.next()).await;
            result.push(matches!(got, Ok(Some(()))));
        }
        result
    }

    #[tokio::test]
    async fn a_datajobs_own_status_writes_do_not_wake_its_reconcile() {
        let first = datajob("uid-1", 1);
        let mut status_written = first.clone();
        status_written.status = Some(datajob_api::DataJobStatus {
            message: Some("running".into()),
            ..Default::default()
        });
        let spec_changed = datajob("uid-1", 2);
        let mut run_asked = spec_changed.clone();
        run_asked
            .annotations_mut()
            .insert(datajob_core::labels::TRIGGER.into(), "now".into());
        let mut deleting = run_asked.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let recreated = datajob("uid-2", 1);
        let got = passed(
            vec![
                (first, false),
                (status_written, false),
                (spec_changed, false),
                (run_asked.clone(), false),
                (run_asked, false),
                (deleting.clone(), false),
                (deleting, true),
                (recreated, false),
            ],
            |rx, store| spec_or_request_changes(rx.map(Arc::new), store).map(|_| ()),
        )
        .await;
        assert_eq!(
            got,
            [true, false, true, true, false, true, true, true],
            "new, status only, spec, run asked, the same again, deletion mark, deleted, made again"
        );
    }

    #[tokio::test]
    async fn node_group_ticks_count_spec_changes_and_deletions_not_status() {
        let first = datajob("uid-1", 1);
        let mut status_written = first.clone();
        status_written.status = Some(datajob_api::DataJobStatus {
            message: Some("ready".into()),
            ..Default::default()
        });
        let spec_changed = datajob("uid-1", 2);
        let got = passed(
            vec![
                (first, false),
                (status_written, false),
                (spec_changed.clone(), false),
                (spec_changed, true),
            ],
            |rx, store| {
                let (ticks_rx, pump) = spec_changes(rx, store);
                tokio::spawn(pump);
                ticks(ticks_rx)
            },
        )
        .await;
        assert_eq!(
            got,
            [true, false, true, true],
            "new, status only, spec, deleted"
        );
    }

    #[test]
    fn trimmed_pods_and_jobs_keep_what_the_controllers_read() {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-1-x", "namespace": "data", "labels": {"a": "b"}, "annotations": {"c": "d"}},
            "spec": {
                "nodeName": "n", "nodeSelector": {"datajob.dev/node-group": "g"},
                "containers": [{"name": "main", "image": "etl:1", "command": ["run"], "env": [{"name": "X", "value": "1"}],
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "r-1-data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
                    {"name": "token", "projected": {"sources": []}},
                ],
                "tolerations": [{"key": "k", "operator": "Exists"},
                    {"key": "datajob.dev/reserved-for", "operator": "Equal", "value": "g-1", "effect": "NoSchedule"}],
            },
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "etl:1", "imageID": "", "ready": true, "restartCount": 0}]},
        }))
        .expect("a pod");
        let (before, status) = (
            datajob_core::resources::Request::of(&pod),
            pod.status.clone(),
        );
        trim_pod(&mut pod);
        assert_eq!(
            datajob_core::resources::Request::of(&pod),
            before,
            "what it asks for"
        );
        assert_eq!(pod.status, status);
        assert_eq!(pod.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let spec = pod.spec.as_ref().expect("a spec");
        assert_eq!(spec.node_name.as_deref(), Some("n"));
        assert!(spec.node_selector.is_some());
        let c = &spec.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("main", Some("etl:1"))
        );
        assert!(c.env.is_none() && c.command.is_none() && c.volume_mounts.is_none());
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some()
        );
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"], "the volumes backed by claims");
        assert_eq!(
            datajob_core::decide::nodegroup::reserve::held_by(&pod).collect::<Vec<_>>(),
            ["g-1"],
            "only the tolerations of node reservations"
        );
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(1));

        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-1", "annotations": {"e": "f"}},
            "spec": {"suspend": true, "backoffLimit": 1, "template": {"spec": {"containers": [{"name": "main", "image": "etl:1"}]}}},
            "status": {"active": 1},
        }))
        .expect("a job");
        trim_job(&mut job);
        let spec = job.spec.as_ref().expect("a spec");
        assert_eq!((spec.suspend, spec.backoff_limit), (Some(true), Some(1)));
        assert!(spec.template.spec.is_none());
        assert_eq!(job.status.and_then(|s| s.active), Some(1));
    }

    #[tokio::test]
    async fn the_store_keeps_objects_trimmed_not_only_the_events_passed_on() {
        use k8s_openapi::api::batch::v1::Job;
        let job = |name: &str| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "data",
                    "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]},
                "spec": {"suspend": false, "template": {"spec": {"containers": [{"name": "main", "image": "etl:1"}]}}},
            }))
            .expect("a job")
        };
        let (store, writer) = reflector::store::<Job>();
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(job("listed"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(job("watched"))),
        ]);
        let passed: Vec<Job> = cached_events(writer, events, trim_job)
            .touched_objects()
            .filter_map(|r| std::future::ready(r.ok()))
            .collect()
            .await;
        let stored = store.state();
        assert_eq!(stored.len(), 2);
        for j in stored.iter().map(|j| &**j).chain(&passed) {
            assert!(j.metadata.managed_fields.is_none(), "{j:?}");
            let spec = j.spec.as_ref().expect("a spec");
            assert!(spec.template.spec.is_none(), "{j:?}");
            assert_eq!(spec.suspend, Some(false));
        }
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}

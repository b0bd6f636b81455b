//! What every reconciler shares: the client, metrics, limits and guards, the event
//! recorder with its rate limit for errors, and the one error policy ([`Context::failed`]).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use datajob_core::decide::children::Guards;
use datajob_core::validation::Limits;

/// What every reconciliation needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub limits: Limits,
    pub guards: Guards,
    /// Which reconcile errors were published as events, and when.
    pub error_events: Arc<Mutex<EventLimiter>>,
}

/// How often the same object's reconcile errors become events: a retry loop (every
/// 15 s) must not flood the namespace's events, yet a new error is told within a minute.
pub(crate) const ERROR_EVENT_MIN_GAP: Duration = Duration::from_secs(60);
/// The same error again is told at most this often (the event's series counts it).
pub(crate) const ERROR_EVENT_REPEAT_AFTER: Duration = Duration::from_secs(600);

/// Decides which error events to publish: per object, at most one every
/// [`ERROR_EVENT_MIN_GAP`], and the same message again only after
/// [`ERROR_EVENT_REPEAT_AFTER`]. Pure, so the rule is unit-tested.
#[derive(Debug, Default)]
pub struct EventLimiter {
    last: HashMap<String, (Instant, String)>,
}

impl EventLimiter {
    /// Whether an event about `key` saying `note` may be published at `now`; if so, it
    /// is recorded as published.
    pub(crate) fn allow(&mut self, key: &str, note: &str, now: Instant) -> bool {
        let quiet = match self.last.get(key) {
            Some((t, n)) if n == note => now.duration_since(*t) < ERROR_EVENT_REPEAT_AFTER,
            Some((t, _)) => now.duration_since(*t) < ERROR_EVENT_MIN_GAP,
            None => false,
        };
        if quiet {
            return false;
        }
        if self.last.len() >= 10_000 {
            self.last
                .retain(|_, (t, _)| now.duration_since(*t) < ERROR_EVENT_REPEAT_AFTER);
        }
        self.last.insert(key.to_string(), (now, note.to_string()));
        true
    }
}

impl Context {
    /// A reference to a DataJob for events, from its namespace and name alone.
    pub(crate) fn datajob_ref(
        namespace: &str,
        name: &str,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("datajob.dev/v1alpha1".into()),
            kind: Some("DataJob".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Publishes an event on a DataJob; a failure to publish is logged, never fatal.
    pub(crate) async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = kube::runtime::events::Event {
            type_: if warning {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, %reason, "could not publish event");
        }
    }

    /// The one error policy of every controller (DataJob, watchdog, NodeGroup, Backfill):
    /// the log line, the error metric by kind (`datajob_reconcile_errors_total`), a
    /// Warning event `ReconcileFailed` on `reference` (the object whose user should hear
    /// of it; rate-limited by [`EventLimiter`]), and a requeue after `retry`.
    pub(crate) fn failed(
        &self,
        controller: &str,
        reference: Option<k8s_openapi::api::core::v1::ObjectReference>,
        error: &crate::Error,
        retry: Duration,
    ) -> kube::runtime::controller::Action {
        let (name, namespace) = reference.as_ref().map_or((None, None), |r| {
            (r.name.as_deref(), r.namespace.as_deref())
        });
        tracing::warn!(
            controller,
            name = name.unwrap_or_default(),
            namespace = namespace.unwrap_or_default(),
            %error,
            "reconcile failed; retrying in {}s",
            retry.as_secs()
        );
        self.metrics.reconcile_failure(controller, error);
        if let Some(reference) = reference {
            self.error_event(reference, controller, error, retry);
        }
        kube::runtime::controller::Action::requeue(retry)
    }

    /// Publishes a failed reconcile as a Warning event `ReconcileFailed` on `reference`
    /// (in the background: error policies are not async), unless [`EventLimiter`] says
    /// the object was told recently. `retry` says when the controller tries again.
    pub(crate) fn error_event(
        &self,
        reference: k8s_openapi::api::core::v1::ObjectReference,
        controller: &str,
        error: &crate::Error,
        retry: Duration,
    ) {
        let key = format!(
            "{controller}/{}/{}",
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        let note = truncate(
            &format!(
                "{controller} failed, retrying in {}s: {error}",
                retry.as_secs()
            ),
            1000,
        );
        let allowed = match self.error_events.lock() {
            Ok(mut limiter) => limiter.allow(&key, &note, Instant::now()),
            Err(_) => false,
        };
        if !allowed {
            return;
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            ctx.event(&reference, true, "ReconcileFailed", "Reconcile", note)
                .await;
        });
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, limits: Limits, guards: Guards) -> Self {
        let reporter = Reporter {
            controller: datajob_core::labels::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            limits,
            guards,
            error_events: Arc::default(),
        }
    }
}

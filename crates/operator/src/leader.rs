//! Leader election on a `coordination.k8s.io` Lease, the way client-go does it. Every
//! replica serves the webhook, `/metrics` and `/healthz`; only the replica that holds the
//! Lease runs the controllers (reconciles, ends runs, cleans up, scales node groups).
//!
//! * A follower reads the Lease every retry period. It takes the Lease when nobody holds
//!   it, or when the holder's record has not changed for the lease duration **by the
//!   follower's own clock** (so clock skew between machines does not matter).
//! * The leader renews every retry period. When it could not renew for the renew
//!   deadline (shorter than the lease duration), it stops acting: the process exits and
//!   its Deployment restarts it as a follower.
//! * Every Lease call is bounded, as client-go bounds its renewals: the leader's by the
//!   time left until its renew deadline, so a call that never answers (the apiserver cut
//!   off, packets dropped) is given up at the deadline and the step-down is not late.
//! * `/healthz` fails while this replica leads on a renewal older than the renew
//!   deadline ([`LeaseHealth`]): an election loop that stopped renewing without stepping
//!   down gets the process restarted.
//! * On SIGTERM the leader first stops its controllers, then releases the Lease (no
//!   holder, duration 1 s), so a follower takes over at its next look.
//!
//! Writes are replace-with-resourceVersion: of two replicas that try at once, the
//! apiserver lets one win (409 for the other).
//!
//! Why not `kube-lease-manager` (0.13, the crate for kube 5): its followers sleep until
//! the Lease's expiry, so a Lease released on SIGTERM is taken only when its old term
//! would have ended (up to the whole lease duration). The hand-over we want on a
//! rolling update is one retry period.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// How one replica takes part in the election.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica, as written in `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a holder's record must stay unchanged before another replica takes it.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often followers look and the leader renews.
    pub retry_period: Duration,
}

impl Settings {
    /// The settings must let a leader notice it lost the Lease before anybody else may
    /// take it: retry < renew deadline < lease duration.
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--lease-retry-period {:?} must be above 0 and below --lease-renew-deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--lease-renew-deadline {:?} must be below --lease-duration {:?}, so that a leader stops acting before another replica may take over",
                self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }
}

/// A unique identity for this process: the pod's name (or the host's) and a suffix, so
/// a restarted pod never mistakes the Lease of its previous life for its own.
pub(crate) fn identity(pod_name: Option<&str>) -> String {
    let base = pod_name
        .map(str::to_string)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "datajob-operator".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{base}_{:x}{:05x}", std::process::id(), nanos & 0xfffff)
}

/// What a replica last read of the Lease and when, by its own clock.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    pub holder: Option<String>,
    /// `renewTime` as written; only compared, never read as a time.
    pub renew_time: Option<String>,
    pub transitions: i32,
    pub duration: Duration,
}

impl Record {
    pub(crate) fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
        }
    }
}

/// The record and the local instant it was first seen in that form.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    pub record: Record,
    pub since: Instant,
}

impl Observed {
    /// Folds a new read into what was seen: the clock restarts only when the record
    /// changed (a live holder renews, so its record keeps changing).
    pub(crate) fn update(previous: Option<Observed>, record: Record, now: Instant) -> Observed {
        match previous {
            Some(p) if p.record == record => p,
            _ => Observed { record, since: now },
        }
    }
}

/// May `me` write itself into the Lease now? Yes when nobody holds it, when `me`
/// holds it (a renewal), or when the holder's record has not changed for its duration.
pub(crate) fn may_take(observed: &Observed, me: &str, now: Instant) -> bool {
    match observed.record.holder.as_deref() {
        None => true,
        Some(holder) if holder == me => true,
        Some(_) => now.duration_since(observed.since) >= observed.record.duration,
    }
}

/// The Lease spec after `me` took or renewed it at `now`.
pub(crate) fn taken(previous: Option<&LeaseSpec>, me: &str, duration: Duration) -> LeaseSpec {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let prev = previous.cloned().unwrap_or_default();
    let ours = prev.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32),
        acquire_time: if ours {
            prev.acquire_time.clone()
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(match (ours, prev.holder_identity.as_deref()) {
            (true, _) => prev.lease_transitions.unwrap_or(0),
            (false, None) if previous.is_none() => 0,
            (false, _) => prev.lease_transitions.unwrap_or(0).saturating_add(1),
        }),
        ..prev
    }
}

/// The leader's last renewal, for `/healthz`: shared by the election loop (which writes
/// it) and the admin server (which reads it).
#[derive(Clone, Debug, Default)]
pub struct LeaseHealth(Arc<Mutex<Option<Renewed>>>);

/// When the leader last renewed, and how long it may go without.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Renewed {
    pub at: Instant,
    pub deadline: Duration,
}

impl LeaseHealth {
    pub(crate) fn set(&self, value: Option<Renewed>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }

    /// Why this replica is not healthy at `now`, if it is not.
    pub fn problem(&self, now: Instant) -> Option<String> {
        stale(*self.0.lock().unwrap_or_else(|e| e.into_inner()), now)
    }
}

/// A leader whose last renewal is older than its renew deadline should have stepped
/// down: still leading, it is wedged (and another replica may take the Lease).
pub(crate) fn stale(renewed: Option<Renewed>, now: Instant) -> Option<String> {
    let r = renewed?;
    let age = now.saturating_duration_since(r.at);
    (age > r.deadline).then(|| {
        format!(
            "leading on a Lease last renewed {:.1}s ago, past the renew deadline of {:?}",
            age.as_secs_f64(),
            r.deadline
        )
    })
}

/// How long the next Lease call may take: a leader's, until its renew deadline (zero:
/// it is already past and steps down without a call); a follower's, one renew deadline.
pub(crate) fn call_budget(
    leading: bool,
    last_renewal: Option<Instant>,
    renew_deadline: Duration,
    now: Instant,
) -> Duration {
    match (leading, last_renewal) {
        (true, Some(at)) => (at + renew_deadline).saturating_duration_since(now),
        (true, None) => Duration::ZERO,
        (false, _) => renew_deadline,
    }
}

/// What the election loop tells the rest of the operator.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts electing. `on_change` is called with every change of leadership (for the
    /// `datajob_leader` gauge).
    pub fn spawn(
        client: kube::Client,
        settings: Settings,
        health: LeaseHealth,
        on_change: impl Fn(bool) + Send + 'static,
    ) -> Leadership {
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let task = tokio::spawn(elect(api, settings, leading_tx, stop_rx, health, on_change));
        Leadership {
            leading,
            stop,
            task,
        }
    }

    /// Waits until this replica leads. False when the election ended first.
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|l| *l).await.is_ok()
    }

    /// A future that resolves once this replica, having led, no longer does.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.leading.clone();
        async move {
            let _ = rx.wait_for(|l| *l).await;
            let _ = rx.wait_for(|l| !*l).await;
        }
    }

    /// Stops electing and, when this replica holds the Lease, gives it up at once.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The election's clock: tokio's, so that tests with paused time drive it.
fn now_instant() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn elect(
    api: Api<Lease>,
    s: Settings,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    health: LeaseHealth,
    on_change: impl Fn(bool) + Send + 'static,
) {
    let lease = format!("{}/{}", s.namespace, s.name);
    let mut observed: Option<Observed> = None;
    let mut last_renewal: Option<Instant> = None;
    let mut first = true;
    loop {
        let leads = *leading.borrow();
        if !first {
            // A leader looks again by its deadline at the latest.
            let pause = match leads {
                true => s.retry_period.min(call_budget(
                    true,
                    last_renewal,
                    s.renew_deadline,
                    now_instant(),
                )),
                false => s.retry_period,
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        first = false;
        let now = now_instant();
        let budget = call_budget(leads, last_renewal, s.renew_deadline, now);
        let mut taken_by_other = false;
        let call = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = tokio::time::timeout(budget, try_take(&api, &s, &mut observed, now)) => r,
        };
        match call {
            Ok(Ok(Some(holder))) if holder == s.identity => {
                last_renewal = Some(now);
                health.set(Some(Renewed {
                    at: now,
                    deadline: s.renew_deadline,
                }));
                if !leads {
                    info!(identity = %s.identity, %lease, "became the leader");
                    on_change(true);
                    let _ = leading.send(true);
                }
            }
            Ok(Ok(holder)) => taken_by_other = holder.is_some(),
            Ok(Err(e)) => {
                warn!(error = %e, %lease, "leader election: could not read or write the Lease")
            }
            Err(_) => {
                warn!(%lease, ?budget, "leader election: the Lease call did not answer in time")
            }
        }
        if *leading.borrow()
            && (taken_by_other
                || last_renewal.is_none_or(|t| now_instant().duration_since(t) >= s.renew_deadline))
        {
            warn!(identity = %s.identity, deadline = ?s.renew_deadline, taken_by_other, "could not renew the Lease: no longer the leader");
            health.set(None);
            on_change(false);
            let _ = leading.send(false);
            return;
        }
    }
    if *leading.borrow() {
        // Bounded like a renewal: a release that does not answer is given up, and the
        // Lease runs out by itself.
        match tokio::time::timeout(s.renew_deadline, release(&api, &s)).await {
            Ok(Ok(())) => info!(identity = %s.identity, "released the Lease"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the Lease; another replica takes over when it expires")
            }
            Err(_) => {
                warn!(
                    "the Lease release did not answer in time; another replica takes over when it expires"
                )
            }
        }
        health.set(None);
        on_change(false);
        let _ = leading.send(false);
    }
}

/// One look at the Lease: take or renew it when allowed. Returns who holds it after the
/// call, as far as this replica knows (`None`: nobody, or a write race it lost).
async fn try_take(
    api: &Api<Lease>,
    s: &Settings,
    observed: &mut Option<Observed>,
    now: Instant,
) -> Result<Option<String>, kube::Error> {
    let Some(lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..Default::default()
            },
            spec: Some(taken(None, &s.identity, s.lease_duration)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(s.identity.clone())),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        };
    };
    let seen = Observed::update(observed.take(), Record::of(&lease), now);
    let allowed = may_take(&seen, &s.identity, now);
    let holder = seen.record.holder.clone();
    *observed = Some(seen);
    if !allowed {
        return Ok(holder);
    }
    let mut next = lease.clone();
    next.spec = Some(taken(lease.spec.as_ref(), &s.identity, s.lease_duration));
    match api.replace(&s.name, &PostParams::default(), &next).await {
        Ok(written) => {
            *observed = Some(Observed::update(None, Record::of(&written), now));
            Ok(Some(s.identity.clone()))
        }
        // Another replica wrote first: read again next time.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up when this replica holds it: no holder, and a duration of one
/// second so that replicas which read the old record do not wait for its term.
async fn release(api: &Api<Lease>, s: &Settings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    api.replace(&s.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, renew: &str, secs: u64) -> Record {
        Record {
            holder: holder.map(str::to_string),
            renew_time: Some(renew.into()),
            transitions: 0,
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_free_or_own_lease_may_be_taken_at_once() {
        let now = Instant::now();
        let free = Observed::update(None, record(None, "t1", 15), now);
        assert!(may_take(&free, "me", now));
        let mine = Observed::update(None, record(Some("me"), "t1", 15), now);
        assert!(may_take(&mine, "me", now));
    }

    #[test]
    fn another_holder_keeps_the_lease_while_its_record_changes() {
        let t0 = Instant::now();
        let seen = Observed::update(None, record(Some("other"), "t1", 15), t0);
        assert!(!may_take(&seen, "me", t0 + Duration::from_secs(14)));
        // It renewed at t+14: the clock restarts, so at t+20 it still holds the lease.
        let seen = Observed::update(
            Some(seen),
            record(Some("other"), "t2", 15),
            t0 + Duration::from_secs(14),
        );
        assert!(!may_take(&seen, "me", t0 + Duration::from_secs(20)));
        // No renewal for the whole duration by our clock: it is dead.
        let same = Observed::update(
            Some(seen),
            record(Some("other"), "t2", 15),
            t0 + Duration::from_secs(25),
        );
        assert!(may_take(&same, "me", t0 + Duration::from_secs(29)));
    }

    #[test]
    fn taking_counts_transitions_and_keeps_the_acquire_time_on_renewal() {
        let d = Duration::from_secs(15);
        let first = taken(None, "a", d);
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));
        let renewed = taken(Some(&first), "a", d);
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        let other = taken(Some(&renewed), "b", d);
        assert_eq!(other.lease_transitions, Some(1));
        // A released lease (no holder) taken by someone: still a transition.
        let released = LeaseSpec {
            holder_identity: None,
            ..other.clone()
        };
        assert_eq!(taken(Some(&released), "c", d).lease_transitions, Some(2));
    }

    #[test]
    fn settings_must_let_a_leader_stop_before_another_may_take_over() {
        let ok = Settings {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(1),
        };
        assert!(ok.check().is_ok());
        let bad = Settings {
            renew_deadline: Duration::from_secs(15),
            ..ok.clone()
        };
        assert!(bad.check().unwrap_err().contains("--lease-renew-deadline"));
        let bad = Settings {
            retry_period: Duration::from_secs(10),
            ..ok
        };
        assert!(bad.check().unwrap_err().contains("--lease-retry-period"));
    }

    #[test]
    fn a_leaders_call_may_take_only_the_time_left_until_its_renew_deadline() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        assert_eq!(
            call_budget(true, Some(t0), d, t0 + Duration::from_secs(2)),
            Duration::from_secs(8)
        );
        assert_eq!(
            call_budget(true, Some(t0), d, t0 + Duration::from_secs(12)),
            Duration::ZERO,
            "past the deadline: no call, a step-down"
        );
        assert_eq!(call_budget(true, None, d, t0), Duration::ZERO);
        assert_eq!(call_budget(false, None, d, t0), d);
    }

    #[test]
    fn a_leader_past_its_renew_deadline_is_not_healthy() {
        let t0 = Instant::now();
        let r = Some(Renewed {
            at: t0,
            deadline: Duration::from_secs(10),
        });
        assert_eq!(stale(r, t0 + Duration::from_secs(9)), None);
        let why = stale(r, t0 + Duration::from_secs(11)).unwrap();
        assert!(why.contains("past the renew deadline of 10s"), "{why}");
        assert_eq!(
            stale(None, t0 + Duration::from_secs(100)),
            None,
            "a follower is healthy"
        );
        let health = LeaseHealth::default();
        health.set(Some(Renewed {
            at: t0 - Duration::from_secs(30),
            deadline: Duration::from_secs(10),
        }));
        assert!(health.problem(t0).is_some());
    }

    /// A Lease call that never answers (the apiserver cut off) is given up at the
    /// renew deadline: the leader steps down then, not when the call returns.
    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_calls_hang_steps_down_at_its_renew_deadline() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "datajob-system");
        let api: Api<Lease> = Api::namespaced(client, "datajob-system");
        let settings = Settings {
            namespace: "datajob-system".into(),
            name: "datajob-operator".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        let (leading_tx, mut leading) = watch::channel(false);
        let (_stop, stop_rx) = watch::channel(false);
        let health = LeaseHealth::default();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let task = tokio::spawn(elect(
            api,
            settings,
            leading_tx,
            stop_rx,
            health.clone(),
            move |l| seen.lock().unwrap().push(l),
        ));
        // The first look: no Lease, so it creates one and leads.
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), "GET");
        send.send_response(
            Response::builder()
                .status(404)
                .body(Body::from(
                    br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_vec(),
                ))
                .unwrap(),
        );
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), "POST");
        send.send_response(
            Response::builder()
                .body(Body::from(br#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"datajob-operator","namespace":"datajob-system","resourceVersion":"1"}}"#.to_vec()))
                .unwrap(),
        );
        leading.wait_for(|l| *l).await.unwrap();
        let led_at = Instant::now();
        // From now on the apiserver takes every request and never answers.
        let mut held = Vec::new();
        let stepped_down = async {
            loop {
                tokio::select! {
                    r = handle.next_request() => match r {
                        Some(pending) => held.push(pending),
                        None => break,
                    },
                    _ = leading.wait_for(|l| !*l) => break,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), stepped_down)
            .await
            .expect("the leader steps down although its call never returns");
        let after = led_at.elapsed();
        assert!(
            after <= Duration::from_secs(10),
            "stepped down {after:?} after its last renewal, past the 10s deadline"
        );
        assert_eq!(*changes.lock().unwrap(), [true, false]);
        assert_eq!(health.problem(Instant::now()), None, "no longer leading");
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }

    #[test]
    fn identities_are_unique_per_process_start() {
        let a = identity(Some("pod-1"));
        assert!(a.starts_with("pod-1_"), "{a}");
        assert!(!identity(None).is_empty());
    }
}

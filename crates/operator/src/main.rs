//! `datajob-operator`: wires configuration, client, the admin server, the webhook,
//! leader election and the controllers, and shuts down cleanly on SIGINT/SIGTERM.
//!
//! Every replica serves `/healthz`, `/readyz`, `/metrics` (with `--metrics-secure` on a
//! server of its own, over HTTPS, for authorized scrapers) and the webhook (with its
//! NodeGroup and DataJob caches). Only the replica holding the leader Lease runs the
//! controllers; it releases the Lease after they stopped, and exits when it loses the Lease.
//!
//! `datajob-operator stage|publish` are the steps the operator's image runs next to runs
//! whose output is on a volume (see `datajob_publish`).
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use datajob_api::{DataJob, NodeGroup};
use datajob_operator::admin::{self, Readiness};
use datajob_operator::config::{Command, Config};
use datajob_operator::controller::{self, Context};
use datajob_operator::leader::{Leadership, LeaseHealth};
use datajob_operator::metrics::Metrics;
use datajob_operator::webhook;
use datajob_operator::{Error, Result};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How long controllers asked to stop (SIGTERM) may finish what they are doing before
/// they are dropped; well inside the chart's `terminationGracePeriodSeconds` (30 s),
/// and the Lease is renewed meanwhile.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Counts the heap for `/metrics` (`datajob_heap_bytes`), beside the resident
/// memory, so the memory the allocator keeps shows.
#[global_allocator]
static ALLOCATOR: datajob_operator::heap::Counting = datajob_operator::heap::Counting;

#[tokio::main]
async fn main() -> ExitCode {
    // The registry client of the preflight takes the process's TLS crypto: ring, as kube.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::parse();
    if let Some(command) = &config.command {
        return step(command);
    }
    init_tracing(config.log_json);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "datajob-operator stopped");
            eprintln!("datajob-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `stage` or `publish`: a step next to a run, on its volume; says what it did.
fn step(command: &Command) -> ExitCode {
    let now = std::time::SystemTime::now();
    let result = match command {
        Command::Stage(a) => datajob_publish::stage(&a.root, &a.run_id, a.grace, now)
            .map(|dir| format!("staging directory {} is ready and empty", dir.display())),
        Command::Publish(a) => {
            let origin = datajob_publish::Origin {
                data_job: a.datajob.clone(),
                namespace: a.datajob_namespace.clone(),
            };
            let s = &a.stage;
            datajob_publish::publish(&s.root, &s.run_id, &a.logical_time, &a.version, &origin, now)
                .and_then(|m| {
                    let swept = datajob_publish::sweep(&s.root, s.grace, now, None)?;
                    Ok(format!(
                        "published run {} as logical_time={} (version {}, {} file(s)); removed {} leftover(s) of finished runs",
                        m.run_id,
                        m.logical_time,
                        a.version,
                        m.files.len(),
                        swept.len()
                    ))
                })
        }
    };
    match result {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("datajob-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}

/// Resolves once `rx` says stop.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn run(config: Config) -> Result<()> {
    let pod_name = std::env::var("POD_NAME").ok();
    let election = match config.leader.enabled {
        true => Some(
            config
                .election(pod_name.as_deref())
                .map_err(Error::Config)?,
        ),
        false => None,
    };
    let webhook_settings = config.webhook()?;
    let secure_metrics = config.secure_metrics()?;
    // Checked once, at start: a half-given archive stops the operator with the fix.
    let archive = controller::archive::Archive::from_config(&config)?;
    controller::archive::Archive::announce(archive.as_ref());
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("cannot reach the cluster: {e}")))?;
    // The Lease has a client (a request queue and connections) of its own: a renewal
    // never waits behind the controllers' requests (measured: 2,000 DataJobs reconciled
    // at start-up made a shared client miss the renew deadline).
    let lease_client = Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("cannot reach the cluster: {e}")))?;
    let metrics = Metrics::new(config.metrics_per_datajob);
    let ready = Readiness::default();
    // `stop` ends everything (a signal, or the controllers ended); the controllers also
    // end when the Lease is lost.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let signal_task = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutting down");
            let _ = stop_tx.send(true);
        })
    };
    let lease_health = LeaseHealth::default();
    let admin = serve_admin(
        &config,
        metrics.clone(),
        ready.clone(),
        lease_health.clone(),
        secure_metrics.is_none(),
        stop_rx.clone(),
    )
    .await?;
    let secure_served = match secure_metrics {
        Some(s) => Some(admin::serve_secure(client.clone(), metrics.clone(), s).await?),
        None => None,
    };
    let (shared, pumps) = watch_shared(&client);
    let served = match webhook_settings {
        Some(s) => Some(start_webhook(&config, s, &client, &shared, &metrics, &stop_rx).await?),
        None => {
            info!(
                "no --webhook-url or --webhook-service: bad DataJobs are marked Invalid by the reconciler only"
            );
            None
        }
    };
    // Ready once the NodeGroup cache synced: the webhook cannot judge a DataJob before.
    tokio::spawn(ready_when(shared.groups_synced.clone(), ready.clone()));
    // The leader alone runs the controllers.
    let mut leadership = election.map(|s| {
        let gauge = metrics.leader.clone();
        Leadership::spawn(lease_client.clone(), s, lease_health, move |leading| {
            gauge.set(i64::from(leading));
        })
    });
    let ctx = Context::new(client, metrics.clone(), config.limits(), config.guards());
    let lost_lease = lead(leadership.as_mut(), ctx, &config, shared, archive, stop_rx).await;
    // Controllers have stopped: only now may another replica act.
    if let Some(l) = leadership {
        l.release().await;
    }
    metrics.leader.set(0);
    let _ = stop_tx.send(true);
    if let Some(s) = served {
        s.shutdown().await;
    }
    for pump in pumps {
        pump.abort();
    }
    if let Some(s) = secure_served {
        s.shutdown().await;
    }
    let _ = admin.await;
    signal_task.abort();
    match lost_lease {
        true => Err(Error::LostLease),
        false => Ok(()),
    }
}

/// Says `ready` once `synced` (never, when the cache stops before).
async fn ready_when(synced: controller::Synced, ready: Readiness) {
    if synced.wait().await {
        info!("ready: serving");
        ready.set_ready();
    }
}

/// The caches every replica keeps: the NodeGroups (the webhook judges DataJobs against
/// them) and the DataJobs (the webhook checks inputs against them). Each has the only
/// watch of its kind: its changes go to the leader's controllers through bounded
/// broadcasts (`controller::all_then_changes`). Returns the tasks that keep them filled.
fn watch_shared(client: &Client) -> (Shared, [tokio::task::JoinHandle<()>; 2]) {
    let (groups, group_stream) =
        controller::cache::<NodeGroup>(client.clone(), watcher::Config::default(), |_| {});
    let (group_broadcast, _) =
        tokio::sync::broadcast::channel::<Arc<NodeGroup>>(controller::CHANGES_BUFFER);
    let group_stream = {
        let tx = group_broadcast.clone();
        group_stream.inspect(move |g| {
            let _ = tx.send(Arc::new(g.clone()));
        })
    };
    let (group_changes, group_pump) = controller::spec_changes(group_stream, groups.clone());
    // The DataJob cache's changes are broadcast, so the leader reconciles the readers of
    // a DataJob that changed.
    let (datajobs, datajob_stream) =
        controller::cache::<DataJob>(client.clone(), watcher::Config::default(), |_| {});
    let (datajob_changes, _) =
        tokio::sync::broadcast::channel::<Arc<DataJob>>(controller::CHANGES_BUFFER);
    let datajob_pump = {
        let tx = datajob_changes.clone();
        datajob_stream.for_each(move |dj| {
            let _ = tx.send(Arc::new(dj));
            async {}
        })
    };
    // Each cache's sync, for any number of waiters (see `controller::Synced`).
    let shared = Shared {
        groups_synced: controller::Synced::of(&groups),
        datajobs_synced: controller::Synced::of(&datajobs),
        groups,
        group_changes,
        group_broadcast,
        datajobs,
        datajob_changes,
    };
    (
        shared,
        [tokio::spawn(group_pump), tokio::spawn(datajob_pump)],
    )
}

/// Serves the admission webhook (every replica) with the shared caches, and registers it.
async fn start_webhook(
    config: &Config,
    settings: webhook::serve::Settings,
    client: &Client,
    shared: &Shared,
    metrics: &Metrics,
    stop: &watch::Receiver<bool>,
) -> Result<webhook::serve::Served> {
    let preflight = config
        .preflight
        .then(|| datajob_preflight::Preflight::new(client.clone(), config.preflight_registries()));
    let app = webhook::router(
        config.limits(),
        config.guards(),
        webhook::Caches {
            groups: shared.groups.clone(),
            groups_synced: shared.groups_synced.clone(),
            datajobs: shared.datajobs.clone(),
            datajobs_synced: shared.datajobs_synced.clone(),
        },
        Some(client.clone()),
        metrics.clone(),
        preflight,
    );
    webhook::serve::start(client.clone(), settings, app, metrics.clone(), stop.clone()).await
}

/// Waits for the leader Lease (none: this replica leads at once), then runs the
/// controllers until `stop` says so or the Lease is lost. Returns whether it was lost.
async fn lead(
    mut leadership: Option<&mut Leadership>,
    ctx: Context,
    config: &Config,
    shared: Shared,
    archive: Option<controller::archive::Archive>,
    stop: watch::Receiver<bool>,
) -> bool {
    let leads = match &mut leadership {
        Some(l) => {
            info!("waiting for the leader Lease");
            tokio::select! {
                acquired = l.acquired() => acquired,
                _ = stopped(stop.clone()) => false,
            }
        }
        None => {
            ctx.metrics.leader.set(1);
            true
        }
    };
    if !leads {
        return false;
    }
    // `act` asks the controllers to stop: on a stop, they finish what they are doing
    // for at most `STOP_GRACE`. A Lease lost stops them at once: their futures are
    // dropped, in-flight reconciles with them, so nothing more is written by a replica
    // that another may already have replaced.
    let (act_tx, act_rx) = watch::channel(false);
    let lost = async move {
        match leadership.map(|l| l.lost()) {
            Some(lost) => lost.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    let controllers = run_controllers(ctx, config, shared, archive, act_rx);
    tokio::pin!(controllers);
    tokio::select! {
        _ = &mut controllers => false,
        _ = &mut lost => {
            warn!("lost the leader Lease: the controllers stop now");
            true
        }
        _ = stopped(stop) => {
            let _ = act_tx.send(true);
            tokio::select! {
                finished = tokio::time::timeout(STOP_GRACE, &mut controllers) => {
                    if finished.is_err() {
                        warn!(grace = ?STOP_GRACE, "the controllers did not finish in time: stopping them");
                    }
                    false
                }
                _ = &mut lost => {
                    warn!("lost the leader Lease while stopping: the controllers stop now");
                    true
                }
            }
        }
    }
}

/// The admin server: the probes, and `/metrics` unless it is served securely.
async fn serve_admin(
    config: &Config,
    metrics: Metrics,
    ready: Readiness,
    lease: LeaseHealth,
    with_metrics: bool,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(&config.admin_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.admin_addr.clone(),
            source,
        })?;
    let app = match with_metrics {
        true => {
            info!(addr = %config.admin_addr, "admin server: /healthz /readyz /metrics");
            admin::router(metrics, ready, lease)
        }
        false => {
            info!(addr = %config.admin_addr, "admin server: /healthz /readyz");
            admin::probes(ready, lease)
        }
    };
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped(stop))
            .await
    }))
}

/// The caches every replica keeps, and their changes.
struct Shared {
    groups: Store<NodeGroup>,
    group_changes: watch::Receiver<u64>,
    group_broadcast: tokio::sync::broadcast::Sender<Arc<NodeGroup>>,
    groups_synced: controller::Synced,
    datajobs_synced: controller::Synced,
    datajobs: Store<DataJob>,
    datajob_changes: tokio::sync::broadcast::Sender<Arc<DataJob>>,
}

/// The DataJobs that read one that changed, as long as changes are announced.
fn input_changes(
    datajobs: Store<DataJob>,
    changes: tokio::sync::broadcast::Receiver<Arc<DataJob>>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<DataJob>> + Send + 'static {
    futures::stream::unfold(changes, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(dj) => return Some((dj, rx)),
                // Fell behind: the periodic requeue catches up.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |dj| {
        let refs = controller::jobs::downstream_refs(&dj, &datajobs.state());
        futures::stream::iter(refs)
    })
}

/// The leader's work: the DataJob reconciler, the watchdog, the NodeGroup controller,
/// the Backfill reconciler and the clean-up loop, with the caches they share, until
/// `act` says stop.
///
/// It stays whole: it is the one place that shows which controller reads which cache
/// and which change stream, one call per controller; split, that wiring would be
/// spread over functions that each pass most of the caches on.
async fn run_controllers(
    ctx: Context,
    config: &Config,
    shared: Shared,
    archive: Option<controller::archive::Archive>,
    act: watch::Receiver<bool>,
) {
    let Shared {
        groups,
        group_changes,
        group_broadcast,
        groups_synced,
        datajobs_synced,
        datajobs: datajob_store,
        datajob_changes,
    } = shared;
    // The controllers share the replica's NodeGroup and DataJob caches: start them once
    // those synced. kube's `Store::wait_until_ready` wakes only one of several waiters,
    // and each controller waits on its store (see `controller::Synced`).
    let synced = async { groups_synced.wait().await && datajobs_synced.wait().await };
    tokio::select! {
        ok = synced => if !ok {
            return;
        },
        _ = stopped(act.clone()) => return,
    }
    let client = ctx.client.clone();
    let (nodes, node_events) = controller::cache::<Node>(
        client.clone(),
        watcher::Config::default(),
        controller::trim_node,
    );
    let (jobs, job_events) = controller::managed_cache::<Job>(client.clone(), controller::trim_job);
    let (pods, pod_events) = controller::managed_cache::<Pod>(client.clone(), controller::trim_pod);
    let (pods_for_watchdog, pods_rest, pod_pump) = controller::fan_out(pod_events);
    let (pods_for_groups, pods_for_archive, pod_pump_rest) = controller::fan_out(pods_rest);
    let (jobs_for_datajobs, jobs_rest, job_pump) = controller::fan_out(job_events);
    let (jobs_for_watchdog, jobs_for_backfills, job_pump_rest) = controller::fan_out(jobs_rest);
    let datajobs = controller::datajob::run(
        ctx.clone(),
        controller::datajob::DataJobCaches {
            jobs: jobs.clone(),
            job_events: jobs_for_datajobs,
            groups: groups.clone(),
            group_events: controller::ticks(group_changes),
            pods: pods.clone(),
            datajobs: datajob_store.clone(),
            // Its own status writes do not wake it (see `spec_or_request_changes`).
            datajob_events: controller::spec_or_request_changes(
                controller::all_then_changes(
                    datajob_store.clone(),
                    datajobs_synced.clone(),
                    datajob_changes.subscribe(),
                ),
                datajob_store.clone(),
            ),
            input_changes: input_changes(datajob_store.clone(), datajob_changes.subscribe()),
        },
        config.reconcile_concurrency,
        stopped(act.clone()),
    );
    // Woken by its runs' Jobs and by the DataJobs it runs, at most
    // `backfill::MAX_RUNNING` Backfills starting runs at once.
    let backfills = controller::backfill::run_on(
        ctx.clone(),
        jobs.clone(),
        datajob_store.clone(),
        groups.clone(),
        Some(controller::backfill::BackfillEvents {
            jobs: jobs_for_backfills,
            datajobs: controller::changes_of(datajob_store.clone(), datajob_changes.subscribe()),
        }),
        controller::backfill::MAX_RUNNING,
        stopped(act.clone()),
    );
    let watchdog = controller::watchdog::run(
        ctx.clone(),
        config.watchdog(),
        controller::watchdog::WatchdogCaches {
            jobs: jobs.clone(),
            pods: pods.clone(),
            nodes: nodes.clone(),
            groups: groups.clone(),
        },
        jobs_for_watchdog,
        pods_for_watchdog,
        stopped(act.clone()),
    );
    let nodegroups = controller::nodegroup::run(
        ctx.clone(),
        controller::nodegroup::NodeGroupCaches {
            group_events: controller::all_then_changes(
                groups.clone(),
                groups_synced.clone(),
                group_broadcast.subscribe(),
            ),
            groups: groups.clone(),
            pods: pods.clone(),
            pod_events: pods_for_groups,
            jobs: jobs.clone(),
            nodes,
            node_events,
            datajobs: datajob_store.clone(),
            datajob_events: controller::changes_of(
                datajob_store.clone(),
                datajob_changes.subscribe(),
            ),
        },
        stopped(act.clone()),
    );
    let archive = controller::archive::run(
        ctx.clone(),
        archive,
        pods.clone(),
        pods_for_archive,
        stopped(act.clone()),
    );
    let cleanup = controller::cleanup::run(
        ctx,
        pods,
        jobs,
        config.pvc_grace,
        config.cleanup_interval,
        stopped(act.clone()),
    );
    let pumps = async move {
        tokio::select! {
            _ = futures::future::join4(pod_pump, pod_pump_rest, job_pump, job_pump_rest) => {},
            _ = stopped(act) => {},
        }
    };
    info!("leading: controllers running");
    tokio::join!(
        datajobs, watchdog, nodegroups, backfills, archive, cleanup, pumps
    );
    info!("controllers stopped");
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

//! `datajob-operator`: wires configuration, client, controllers, the webhook and the
//! admin server, and shuts down cleanly on SIGINT/SIGTERM.
use std::process::ExitCode;

use clap::Parser;
use datajob::admin::{self, Readiness};
use datajob::api::{DataJob, NodeGroup};
use datajob::config::Config;
use datajob::controller::{self, Context};
use datajob::metrics::Metrics;
use datajob::webhook::{self, tls};
use datajob::{Error, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{error, info};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
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

async fn run(config: Config) -> Result<()> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("cannot reach the cluster: {e}")))?;
    let metrics = Metrics::default();
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = watch::channel(false);

    let admin_listener = tokio::net::TcpListener::bind(&config.admin_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.admin_addr.clone(),
            source,
        })?;
    let admin_app = admin::router(metrics.clone(), ready.clone());
    let mut admin_stop = stop_rx.clone();
    let admin = tokio::spawn(async move {
        axum::serve(admin_listener, admin_app)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            })
            .await
    });
    info!(addr = %config.admin_addr, "admin server: /healthz /readyz /metrics");

    // Caches the webhook and the controllers share. Node and NodeGroup events feed the
    // NodeGroup controller and the DataJob controller (placement) respectively.
    let (nodes, node_events) = controller::cache::<Node>(
        client.clone(),
        watcher::Config::default(),
        controller::trim_node,
    );
    let (groups, group_stream) =
        controller::cache::<NodeGroup>(client.clone(), watcher::Config::default(), |_| {});
    let (group_events, group_pump) = changed_specs(group_stream, groups.clone());

    let endpoint = match (&config.webhook_url, &config.webhook_service) {
        (Some(u), _) => Some(tls::Endpoint::Url(u.clone())),
        (None, Some(s)) => Some(tls::Endpoint::parse_service(s)?),
        (None, None) => None,
    };
    let webhook_handle = axum_server::Handle::new();
    let webhook_task = match &endpoint {
        Some(endpoint) => {
            let ws = &config.webhook_secret;
            let cert =
                tls::load_or_create(client.clone(), &ws.namespace, &ws.secret, &endpoint.hosts())
                    .await?;
            let tls_config = axum_server::tls_rustls::RustlsConfig::from_pem(
                cert.cert_pem.into_bytes(),
                cert.key_pem.into_bytes(),
            )
            .await
            .map_err(Error::Tls)?;
            let addr: std::net::SocketAddr = config.webhook_addr.parse().map_err(|e| {
                Error::Config(format!("--webhook-addr {:?}: {e}", config.webhook_addr))
            })?;
            let app = webhook::router(
                config.limits(),
                config.guards(),
                groups.clone(),
                metrics.clone(),
            );
            let server = axum_server::bind_rustls(addr, tls_config).handle(webhook_handle.clone());
            let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
            tls::register(
                client.clone(),
                endpoint,
                &cert.ca_pem,
                &config.webhook_failure_policy,
            )
            .await?;
            info!(addr = %config.webhook_addr, "admission webhook serving");
            Some(task)
        }
        None => {
            info!(
                "no --webhook-url or --webhook-service: bad DataJobs are marked Invalid by the reconciler only"
            );
            None
        }
    };

    let ctx = Context::new(
        client.clone(),
        metrics.clone(),
        config.limits(),
        config.guards(),
    );
    let mut shutdown_rx = stop_rx.clone();
    let shutdown = async move {
        let _ = shutdown_rx.wait_for(|s| *s).await;
    };
    let signal_task = tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (jobs, job_events) = controller::managed_cache::<Job>(client.clone());
    let (pods, pod_events) = controller::managed_cache::<Pod>(client.clone());
    let (pods_for_watchdog, pods_for_groups, pod_pump) = controller::fan_out(pod_events);
    let ready_flag = ready.clone();
    let (pods_synced, nodes_synced, groups_synced) = (pods.clone(), nodes.clone(), groups.clone());
    let datajobs = controller::datajob::run(
        ctx.clone(),
        controller::datajob::DataJobCaches {
            jobs: jobs.clone(),
            job_events,
            groups: groups.clone(),
            group_events,
            pods: pods.clone(),
        },
        shutdown,
        move || {
            // Ready once every cache is synced (the Job cache is, when this is called).
            tokio::spawn(async move {
                let synced = futures::future::join3(
                    pods_synced.wait_until_ready(),
                    nodes_synced.wait_until_ready(),
                    groups_synced.wait_until_ready(),
                )
                .await;
                if synced.0.is_ok() && synced.1.is_ok() && synced.2.is_ok() {
                    info!("caches synced; ready");
                    ready_flag.set_ready();
                }
            });
        },
    );
    let caches = controller::watchdog::WatchdogCaches {
        pods: pods.clone(),
        nodes: nodes.clone(),
        groups: groups.clone(),
    };
    let watchdog = controller::watchdog::run(
        ctx.clone(),
        config.watchdog(),
        caches,
        pods_for_watchdog,
        stopped(stop_rx.clone()),
    );
    let (datajob_cache, datajob_events) =
        controller::cache::<DataJob>(client.clone(), watcher::Config::default(), |_| {});
    let nodegroups = controller::nodegroup::run(
        ctx.clone(),
        controller::nodegroup::NodeGroupCaches {
            pods: pods.clone(),
            pod_events: pods_for_groups,
            nodes,
            node_events,
            datajobs: datajob_cache,
            datajob_events,
        },
        stopped(stop_rx.clone()),
    );
    let cleanup = controller::cleanup::run(
        ctx,
        pods,
        jobs,
        config.pvc_grace,
        config.cleanup_interval,
        stopped(stop_rx.clone()),
    );
    let pumps = async move {
        tokio::select! {
            _ = pod_pump => {},
            _ = group_pump => {},
            _ = stopped(stop_rx.clone()) => {},
        }
    };
    tokio::join!(datajobs, watchdog, nodegroups, cleanup, pumps);

    webhook_handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    if let Some(t) = webhook_task {
        let _ = t.await;
    }
    let _ = admin.await;
    signal_task.abort();
    Ok(())
}

/// NodeGroup events whose spec changed (generation) or that were deleted, so status
/// updates do not re-place every DataJob; the returned pump keeps the cache filled.
fn changed_specs(
    stream: impl futures::Stream<Item = NodeGroup> + Send + 'static,
    store: kube::runtime::reflector::Store<NodeGroup>,
) -> (
    impl futures::Stream<Item = NodeGroup> + Send + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut seen: std::collections::HashMap<String, Option<i64>> = std::collections::HashMap::new();
    let pump = futures::StreamExt::for_each(stream, move |ng| {
        let key = ng.metadata.uid.clone().unwrap_or_default();
        // The reflector has applied the event before it is passed on: a group that is
        // not in the store any more was deleted.
        let deleted = store
            .get(&kube::runtime::reflector::ObjectRef::from_obj(&ng))
            .is_none_or(|current| current.metadata.uid != ng.metadata.uid);
        let changed = if deleted {
            seen.remove(&key);
            true
        } else {
            seen.insert(key, ng.metadata.generation) != Some(ng.metadata.generation)
        };
        if changed {
            let _ = tx.unbounded_send(ng);
        }
        async {}
    });
    (rx, pump)
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

//! Serving the webhook on every replica: TLS from the certificate Secret, registration of
//! the ValidatingWebhookConfiguration, and a loop that renews the certificate and loads
//! a new one without a restart.
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use kube::Client;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::tls::{self, Endpoint, Policy, ServingCert, Source};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// Everything the webhook needs to serve and stay registered.
#[derive(Clone, Debug)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    /// The certificate Secret: namespace and name.
    pub namespace: String,
    pub secret: String,
    pub source: Source,
    pub policy: Policy,
    pub check_interval: Duration,
    /// The ValidatingWebhookConfiguration's name.
    pub configuration: String,
    pub failure_policy: String,
}

/// A running webhook server and its certificate loop.
pub struct Served {
    handle: axum_server::Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    refresh: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Stops accepting, lets requests in flight finish (up to 5 s), stops the loop.
    pub async fn shutdown(self) {
        self.refresh.abort();
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.server.await;
    }
}

/// Waits for a certificate fit to serve: at once when the operator makes it; when it is
/// external, until cert-manager has written it (logging why not yet), or until `stop`.
async fn first_certificate(
    client: &Client,
    s: &Settings,
    stop: &mut watch::Receiver<bool>,
) -> Result<ServingCert> {
    loop {
        match tls::ensure(client.clone(), &s.namespace, &s.secret, s.source, &s.policy).await {
            Ok(e) => return Ok(e.cert),
            Err(e) if s.source == Source::External => {
                warn!(error = %e, "waiting for the webhook certificate");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Loads the certificate, serves `app` over TLS on `s.addr`, registers the webhook and
/// starts the loop that keeps the certificate fresh. Returns once registered.
pub async fn start(
    client: Client,
    s: Settings,
    app: Router,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) -> Result<Served> {
    let cert = first_certificate(&client, &s, &mut stop).await?;
    let rustls = RustlsConfig::from_pem(
        cert.cert_pem.clone().into_bytes(),
        cert.key_pem.clone().into_bytes(),
    )
    .await
    .map_err(Error::Tls)?;
    let handle = axum_server::Handle::new();
    let server = tokio::spawn(
        axum_server::bind_rustls(s.addr, rustls.clone())
            .handle(handle.clone())
            .serve(app.into_make_service()),
    );
    tls::register(
        client.clone(),
        &s.configuration,
        &s.endpoint,
        &cert.ca_pem,
        &s.failure_policy,
    )
    .await?;
    if let Some(t) = tls::not_after(&cert) {
        metrics.webhook_cert_expiry.set(t);
    }
    info!(addr = %s.addr, "admission webhook serving");
    let refresh = tokio::spawn(refresh(client, s, rustls, cert, metrics));
    Ok(Served {
        handle,
        server,
        refresh,
    })
}

/// Every check interval: renew (or, when external, read) the certificate; load it when
/// it changed; register the CA bundle again when that changed.
async fn refresh(
    client: Client,
    s: Settings,
    rustls: RustlsConfig,
    mut serving: ServingCert,
    metrics: Metrics,
) {
    loop {
        tokio::time::sleep(s.check_interval).await;
        let ensured =
            match tls::ensure(client.clone(), &s.namespace, &s.secret, s.source, &s.policy).await {
                Ok(e) => e,
                Err(e) => {
                    error!(error = %e, "webhook certificate check failed; serving the current one");
                    continue;
                }
            };
        if ensured.cert == serving {
            continue;
        }
        let next = ensured.cert;
        if let Err(e) = rustls
            .reload_from_pem(
                next.cert_pem.clone().into_bytes(),
                next.key_pem.clone().into_bytes(),
            )
            .await
        {
            error!(error = %e, "could not load the new webhook certificate; serving the current one");
            continue;
        }
        info!(replaced_because = ?ensured.replaced.map(|r| r.to_string()), "loaded a new webhook certificate");
        if next.ca_pem != serving.ca_pem
            && let Err(e) = tls::register(
                client.clone(),
                &s.configuration,
                &s.endpoint,
                &next.ca_pem,
                &s.failure_policy,
            )
            .await
        {
            // Keep `serving`'s CA as the one on record so the next pass registers again.
            error!(error = %e, "could not register the new CA bundle; trying again");
            serving = ServingCert {
                ca_pem: serving.ca_pem.clone(),
                ..next
            };
            continue;
        }
        if let Some(t) = tls::not_after(&next) {
            metrics.webhook_cert_expiry.set(t);
        }
        serving = next;
    }
}

//! Controllers: one per resource. Each gathers state, calls a pure decision, applies it.
pub mod datajob;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::children::Guards;
use crate::metrics::Metrics;
use crate::validation::Limits;

/// What every reconciliation needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub limits: Limits,
    pub guards: Guards,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, limits: Limits, guards: Guards) -> Self {
        let reporter = Reporter {
            controller: crate::labels::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            limits,
            guards,
        }
    }
}

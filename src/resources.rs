//! Resources as the scheduler counts them: what a pod asks for, what a node or a node
//! group's node offers, and whether one fits in the other.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::units::{self, format_bytes, format_cpu};

/// Resources as the scheduler counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub cpu_millis: u64,
    pub memory: u64,
    pub ephemeral: u64,
    pub gpu: u64,
}

impl Request {
    pub fn from_map(m: Option<&BTreeMap<String, Quantity>>) -> Self {
        let get = |k: &str| m.and_then(|m| m.get(k)).map(|q| q.0.as_str());
        Request {
            cpu_millis: get("cpu")
                .and_then(|q| units::parse_cpu_millis(q).ok())
                .unwrap_or(0),
            memory: get("memory")
                .and_then(|q| units::parse_bytes(q).ok())
                .unwrap_or(0),
            ephemeral: get("ephemeral-storage")
                .and_then(|q| units::parse_bytes(q).ok())
                .unwrap_or(0),
            gpu: get("nvidia.com/gpu")
                .and_then(|q| q.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The sum of the pod's container requests.
    pub fn of(pod: &Pod) -> Self {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .fold(Request::default(), |acc, c| {
                let r = Request::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
                Request {
                    cpu_millis: acc.cpu_millis + r.cpu_millis,
                    memory: acc.memory + r.memory,
                    ephemeral: acc.ephemeral + r.ephemeral,
                    gpu: acc.gpu + r.gpu,
                }
            })
    }

    pub fn allocatable(node: &Node) -> Self {
        Request::from_map(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
    }

    pub fn fits(&self, capacity: &Request) -> bool {
        self.cpu_millis <= capacity.cpu_millis
            && self.memory <= capacity.memory
            && self.ephemeral <= capacity.ephemeral
            && self.gpu <= capacity.gpu
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu {}, memory {}",
            format_cpu(self.cpu_millis),
            format_bytes(self.memory)
        )?;
        if self.ephemeral > 0 {
            write!(f, ", disk {}", format_bytes(self.ephemeral))?;
        }
        if self.gpu > 0 {
            write!(f, ", gpu {}", self.gpu)?;
        }
        Ok(())
    }
}

impl Request {
    /// `self - other`, never below zero.
    pub fn minus(&self, other: &Request) -> Request {
        Request {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory: self.memory.saturating_sub(other.memory),
            ephemeral: self.ephemeral.saturating_sub(other.ephemeral),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    pub fn plus(&self, other: &Request) -> Request {
        Request {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory: self.memory + other.memory,
            ephemeral: self.ephemeral + other.ephemeral,
            gpu: self.gpu + other.gpu,
        }
    }

    /// The largest share of `shape` this takes in any dimension (0.0 to 1.0 when it fits).
    pub fn share_of(&self, shape: &Request) -> f64 {
        let ratio = |a: u64, b: u64| {
            if a == 0 {
                0.0
            } else if b == 0 {
                f64::INFINITY
            } else {
                a as f64 / b as f64
            }
        };
        [
            ratio(self.cpu_millis, shape.cpu_millis),
            ratio(self.memory, shape.memory),
            ratio(self.ephemeral, shape.ephemeral),
            ratio(self.gpu, shape.gpu),
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }
}

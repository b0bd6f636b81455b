//! Resources as the scheduler counts them: what a pod asks for, what a node or a node
//! group's node offers, and whether one fits in the other.
//!
//! Quantities read from the cluster (a pod's requests, a node's allocatable) are parsed
//! with Kubernetes' own grammar ([`parse_quantity`]: `500m`, `1.5Gi`, `129e6`, `100n`),
//! rounded up the way Kubernetes rounds them. One that still cannot be read is never
//! counted as zero in silence: the `try_` readers return a [`QuantityError`] naming the
//! resource and the value, and the plain readers log it once and count it on the safe
//! side (a pod that asks for an unreadable amount fills any node; a node that offers an
//! unreadable amount offers none of it).
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::units::{format_bytes, format_cpu};

/// Resources as the scheduler counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub cpu_millis: u64,
    pub memory: u64,
    pub ephemeral: u64,
    pub gpu: u64,
}

/// A quantity of a resource that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{resource} {value:?} {problem}")]
pub(crate) struct QuantityError {
    /// `cpu`, `memory`, `ephemeral-storage` or `nvidia.com/gpu`.
    pub resource: String,
    pub value: String,
    pub problem: String,
}

/// The resources DataJob counts, and the unit each is counted in.
const RESOURCES: [(&str, Unit); 4] = [
    ("cpu", Unit::Milli),
    ("memory", Unit::Whole),
    ("ephemeral-storage", Unit::Whole),
    ("nvidia.com/gpu", Unit::Whole),
];

#[derive(Clone, Copy)]
enum Unit {
    Milli,
    Whole,
}

/// Nano-units per unit: a quantity is held exactly in nano-units (Kubernetes' finest
/// precision) as an `i128`.
const NANO: i128 = 1_000_000_000;

/// A Kubernetes quantity in nano-units, from its canonical or any accepted spelling:
/// `<sign><digits>[.<digits>]<suffix>`, the suffix one of `Ki Mi Gi Ti Pi Ei`,
/// `n u m "" k M G T P E`, or `e<exponent>` / `E<exponent>`. Precision below a nano-unit
/// is rounded up, as Kubernetes does.
///
/// Stays whole: it is one left-to-right pass over the quantity grammar, in the order
/// of Kubernetes' own `ParseQuantity`, so each step can be checked against it; split,
/// the position and the partial number would be threaded through every part.
pub fn parse_quantity(s: &str) -> Result<i128, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return Err("is not a number with an optional unit".into());
    }
    if frac.contains('.') {
        return Err("has two decimal points".into());
    }
    let (binary, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("has an unknown unit {e:?}"));
            }
            let exp: i32 = exp.parse().map_err(|_| "is too large".to_string())?;
            (1, exp)
        }
        other => return Err(format!("has an unknown unit {other:?}")),
    };
    // Leading zeros say nothing; a mantissa past 38 digits cannot be held exactly.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return Err("is too large".into());
    }
    let mantissa: i128 = match digits {
        "" => 0,
        d => d.parse().map_err(|_| "is too large".to_string())?,
    };
    // value = mantissa * binary * 10^(exp10 - frac.len()); in nano-units, 10^(that + 9).
    let scale = i64::from(exp10) - frac.len() as i64 + 9;
    let scaled = mantissa.checked_mul(binary).ok_or("is too large")?;
    let nanos = if scale >= 0 {
        let pow = u32::try_from(scale)
            .ok()
            .and_then(|p| 10i128.checked_pow(p))
            .ok_or("is too large")?;
        scaled.checked_mul(pow).ok_or("is too large")?
    } else {
        // Finer than a nano-unit: round up, as Kubernetes does.
        match u32::try_from(-scale)
            .ok()
            .and_then(|p| 10i128.checked_pow(p))
        {
            Some(pow) => scaled / pow + i128::from(scaled % pow != 0),
            None => i128::from(scaled != 0),
        }
    };
    Ok(if negative { -nanos } else { nanos })
}

/// A quantity as a count of `unit`s, rounded up (Kubernetes' `Value()` and
/// `MilliValue()` round up too).
fn count(resource: &str, q: &str, unit: Unit) -> Result<u64, QuantityError> {
    let err = |problem: String| QuantityError {
        resource: resource.to_string(),
        value: q.to_string(),
        problem,
    };
    let nanos = parse_quantity(q).map_err(err)?;
    if nanos < 0 {
        return Err(err("is negative".into()));
    }
    let per = match unit {
        Unit::Milli => NANO / 1000,
        Unit::Whole => NANO,
    };
    let n = nanos / per + i128::from(nanos % per != 0);
    u64::try_from(n).map_err(|_| err("is too large".into()))
}

impl Request {
    /// The resources in a `requests` or `allocatable` map; a missing resource is 0, an
    /// unreadable one an error.
    pub(crate) fn try_from_map(
        m: Option<&BTreeMap<String, Quantity>>,
    ) -> Result<Self, QuantityError> {
        let mut values = [0u64; 4];
        for (slot, (resource, unit)) in values.iter_mut().zip(RESOURCES) {
            if let Some(q) = m.and_then(|m| m.get(resource)) {
                *slot = count(resource, &q.0, unit)?;
            }
        }
        let [cpu_millis, memory, ephemeral, gpu] = values;
        Ok(Request {
            cpu_millis,
            memory,
            ephemeral,
            gpu,
        })
    }

    /// Like [`Request::try_from_map`], but an unreadable resource counts as `unreadable`.
    fn from_map_or(m: Option<&BTreeMap<String, Quantity>>, unreadable: u64, whose: &str) -> Self {
        let mut values = [0u64; 4];
        for (slot, (resource, unit)) in values.iter_mut().zip(RESOURCES) {
            if let Some(q) = m.and_then(|m| m.get(resource)) {
                *slot = count(resource, &q.0, unit).unwrap_or_else(|e| {
                    report_once(whose, &e);
                    unreadable
                });
            }
        }
        let [cpu_millis, memory, ephemeral, gpu] = values;
        Request {
            cpu_millis,
            memory,
            ephemeral,
            gpu,
        }
    }

    /// The sum of the pod's container requests, or the first one that cannot be read.
    pub(crate) fn try_of(pod: &Pod) -> Result<Self, QuantityError> {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .try_fold(Request::default(), |acc, c| {
                let r =
                    Request::try_from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()))?;
                Ok(acc.plus(&r))
            })
    }

    /// The sum of the pod's container requests. A request that cannot be read is logged
    /// (once) and counts as filling any node: the scaler then makes room rather than
    /// squeezing another pod next to it.
    pub fn of(pod: &Pod) -> Self {
        let whose = format!(
            "pod {}/{}",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        );
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .fold(Request::default(), |acc, c| {
                let r = Request::from_map_or(
                    c.resources.as_ref().and_then(|r| r.requests.as_ref()),
                    u64::MAX,
                    &whose,
                );
                acc.plus(&r)
            })
    }

    /// What the node offers to pods, or the first resource that cannot be read.
    pub(crate) fn try_allocatable(node: &Node) -> Result<Self, QuantityError> {
        Request::try_from_map(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
    }

    /// What the node offers to pods. An allocatable resource that cannot be read is
    /// logged (once) and counts as none offered.
    pub fn allocatable(node: &Node) -> Self {
        Request::from_map_or(
            node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
            0,
            &format!("node {}", node.name_any()),
        )
    }

    pub fn fits(&self, capacity: &Request) -> bool {
        self.cpu_millis <= capacity.cpu_millis
            && self.memory <= capacity.memory
            && self.ephemeral <= capacity.ephemeral
            && self.gpu <= capacity.gpu
    }
}

/// Logs an unreadable quantity once per object and value (the controllers read the same
/// objects every few seconds).
fn report_once(whose: &str, e: &QuantityError) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let key = format!("{whose} {e}");
    let Ok(mut seen) = SEEN.get_or_init(Default::default).lock() else {
        return;
    };
    if seen.len() > 10_000 {
        seen.clear();
    }
    if seen.insert(key) {
        tracing::warn!(object = %whose, resource = %e.resource, value = %e.value, problem = %e.problem, "a resource quantity cannot be read; it is not counted as zero");
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

    /// `self + other`, never past `u64::MAX` (an unreadable request counts as that).
    pub fn plus(&self, other: &Request) -> Request {
        Request {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory: self.memory.saturating_add(other.memory),
            ephemeral: self.ephemeral.saturating_add(other.ephemeral),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }

    /// The largest share of `shape` this takes in any dimension (0.0 to 1.0 when it fits).
    pub(crate) fn share_of(&self, shape: &Request) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<i128, String> {
        parse_quantity(s)
    }

    #[test]
    fn every_spelling_kubernetes_writes_is_read() {
        assert_eq!(q("4"), Ok(4 * NANO));
        assert_eq!(q("500m"), Ok(NANO / 2));
        assert_eq!(q("1.5Gi"), Ok(3 * (1 << 29) * NANO));
        assert_eq!(q("16331412Ki"), Ok(16331412 * 1024 * NANO));
        assert_eq!(q("129e6"), Ok(129_000_000 * NANO));
        assert_eq!(q("129E6"), Ok(129_000_000 * NANO));
        assert_eq!(q("1e-3"), Ok(NANO / 1000));
        assert_eq!(q("100n"), Ok(100));
        assert_eq!(q("1500u"), Ok(1_500_000));
        assert_eq!(q("1k"), Ok(1000 * NANO));
        assert_eq!(q(".5"), Ok(NANO / 2));
        assert_eq!(q("5."), Ok(5 * NANO));
        assert_eq!(q("+1"), Ok(NANO));
        assert_eq!(q("-1"), Ok(-NANO));
        assert_eq!(q("0"), Ok(0));
        // Finer than a nano-unit rounds up.
        assert_eq!(q("0.1n"), Ok(1));
        assert_eq!(q("1e-30"), Ok(1));
    }

    #[test]
    fn what_kubernetes_refuses_is_an_error_never_zero() {
        for bad in [
            "", "x", "1x", "1Kb", "1.2.3", "1e", "1e+", "--1", "1 Gi", "Gi", ".", "1e999",
        ] {
            assert!(q(bad).is_err(), "{bad:?}");
        }
        assert!(q(&"9".repeat(40)).is_err());
    }

    #[test]
    fn requests_round_up_like_kubernetes() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        };
        let r = Request::try_from_map(Some(&map(&[
            ("cpu", "100n"),
            ("memory", "1500m"),
            ("ephemeral-storage", "1Gi"),
            ("nvidia.com/gpu", "1"),
        ])))
        .unwrap();
        assert_eq!(
            r,
            Request {
                cpu_millis: 1,
                memory: 2,
                ephemeral: 1 << 30,
                gpu: 1
            }
        );
        let e = Request::try_from_map(Some(&map(&[("memory", "lots")]))).unwrap_err();
        assert_eq!(e.resource, "memory");
        assert_eq!(e.value, "lots");
        assert!(
            Request::try_from_map(Some(&map(&[("cpu", "-1")])))
                .unwrap_err()
                .problem
                .contains("negative")
        );
    }

    #[test]
    fn an_unreadable_quantity_is_counted_on_the_safe_side() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "bogus"}}}
            ]}
        }))
        .unwrap();
        assert!(Request::try_of(&pod).is_err());
        let r = Request::of(&pod);
        assert_eq!(r.cpu_millis, u64::MAX, "fills any node");
        assert_eq!(r.memory, 1 << 30);
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "4", "memory": "bogus"}}
        }))
        .unwrap();
        assert!(Request::try_allocatable(&node).is_err());
        let a = Request::allocatable(&node);
        assert_eq!((a.cpu_millis, a.memory), (4000, 0), "offers none of it");
    }
}

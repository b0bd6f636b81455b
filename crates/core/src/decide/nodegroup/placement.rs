//! Placement and refusal at apply: which group a run goes to (the cheapest that fits;
//! [`super::packing`] first tries a node with room), whether any group could ever fit
//! it ([`admission_problem`]), and what a run costs there ([`run_cost`]).
use std::time::Duration;

use crate::group::Group;
use crate::problem::Problem;
use crate::resources::Request;
use crate::units::{format_bytes, format_cpu};

/// The cheapest group whose node fits `request`; GPU groups only for GPU work unless no
/// other group fits. `None` when no group fits (or there are none).
pub fn place<'a>(request: &Request, groups: &'a [Group]) -> Option<&'a Group> {
    candidates(request, groups).min_by(|a, b| cheaper(a, b))
}

/// The groups whose node fits `request`; GPU groups only for GPU work unless no other
/// group fits.
pub fn candidates<'a>(request: &Request, groups: &'a [Group]) -> impl Iterator<Item = &'a Group> {
    let fits: Vec<&Group> = groups.iter().filter(|g| request.fits(&g.shape)).collect();
    let cpu_only = request.gpu == 0 && fits.iter().any(|g| g.shape.gpu == 0);
    fits.into_iter()
        .filter(move |g| !cpu_only || g.shape.gpu == 0)
}

/// Price per node, then fewer CPUs, less memory, name.
pub(super) fn cheaper(a: &Group, b: &Group) -> std::cmp::Ordering {
    a.price_per_hour
        .total_cmp(&b.price_per_hour)
        .then(a.shape.cpu_millis.cmp(&b.shape.cpu_millis))
        .then(a.shape.memory.cmp(&b.shape.memory))
        .then(a.name.cmp(&b.name))
}

/// Admission: the problem with a request no group could ever fit. `None` when one fits or
/// when there are no groups at all (then nothing is known, and the watchdog decides).
pub fn admission_problem(request: &Request, groups: &[Group]) -> Option<Problem> {
    if groups.is_empty() || place(request, groups).is_some() {
        return None;
    }
    type Dim = (&'static str, fn(&Request) -> u64, fn(u64) -> String);
    let dims: [Dim; 4] = [
        ("spec.resources.memory", |r| r.memory, format_bytes),
        ("spec.resources.cpu", |r| r.cpu_millis, format_cpu),
        ("spec.resources.gpu", |r| r.gpu, |v| v.to_string()),
        ("spec.resources.disk", |r| r.ephemeral, format_bytes),
    ];
    for (field, get, fmt) in dims {
        let Some(largest) = groups.iter().max_by_key(|g| get(&g.shape)) else {
            continue;
        };
        if get(request) > get(&largest.shape) {
            return Some(Problem {
                field: field.into(),
                value: fmt(get(request)),
                problem: format!(
                    "is more than any node group offers (largest: {}, {} allocatable)",
                    largest.name,
                    fmt(get(&largest.shape))
                ),
                fix: format!(
                    "ask for at most {}, or ask your platform team for a bigger node group",
                    fmt(get(&largest.shape))
                ),
            });
        }
    }
    let shapes: Vec<String> = groups
        .iter()
        .map(|g| format!("{}: {}", g.name, g.shape))
        .collect();
    Some(Problem {
        field: "spec.resources".into(),
        value: request.to_string(),
        problem: format!("fits no single node group ({})", shapes.join("; ")),
        fix: "lower one of the resources so the run fits one group's node".into(),
    })
}

/// A run's estimated cost: its largest share of a node times the node's price, for its duration.
pub fn run_cost(request: &Request, group: &Group, duration: Duration) -> f64 {
    request.share_of(&group.shape).min(1.0) * group.price_per_hour * duration.as_secs_f64() / 3600.0
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;

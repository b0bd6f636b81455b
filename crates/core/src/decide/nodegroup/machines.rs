//! A Cluster API group's scale-down: which Machines to mark with
//! [`DELETE_MACHINE_ANNOTATION`] before the replicas go down. Cluster API picks the
//! machines a scale-down removes, and picks the marked ones first; marking exactly the
//! machines whose nodes were found empty, and lowering the replicas by no more than
//! were marked, keeps "no node is removed under a running pod" for Cluster API too.
//! Pure: the caller lists the Machines and counts the pods on their nodes.
use chrono::{DateTime, Utc};

use crate::labels;

/// The annotation Cluster API deletes a Machine for first when its MachineSet (or
/// MachinePool) scales down.
pub const DELETE_MACHINE_ANNOTATION: &str = "cluster.x-k8s.io/delete-machine";

/// How the marks DataJob puts begin: only those are ever taken off again.
pub const MARK_PREFIX: &str = "datajob.dev";

/// The label selector of the Machines of the Cluster API `kind` named `name`; `None`
/// for a kind whose Machines DataJob does not know how to find (none can be marked,
/// so it is never scaled down).
pub fn machines_selector(kind: &str, name: &str) -> Option<String> {
    match kind {
        "MachineDeployment" => Some(format!("cluster.x-k8s.io/deployment-name={name}")),
        "MachinePool" => Some(format!("cluster.x-k8s.io/pool-name={name}")),
        _ => None,
    }
}

/// The mark DataJob puts on a Machine it lets go: who, why and when.
pub fn mark_value(group: &str, node: &str, now: DateTime<Utc>) -> String {
    format!(
        "{MARK_PREFIX}: node group {group} found node {node} empty at {}",
        labels::rfc3339(now)
    )
}

/// A Machine as the choice reads it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Machine {
    pub name: String,
    /// Its node (`status.nodeRef.name`); `None` while it has none.
    pub node: Option<String>,
    /// Its [`DELETE_MACHINE_ANNOTATION`], if any.
    pub mark: Option<String>,
    /// Being deleted already (`metadata.deletionTimestamp`).
    pub deleting: bool,
}

impl Machine {
    /// Whether its mark is DataJob's.
    pub fn marked_by_datajob(&self) -> bool {
        self.mark
            .as_deref()
            .is_some_and(|m| m.starts_with(MARK_PREFIX))
    }
}

/// What to do before a scale-down: which Machines to mark (with their nodes), which of
/// DataJob's own earlier marks to take off, and by how many replicas to go down.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Marking {
    /// (machine, its node) to mark.
    pub mark: Vec<(String, String)>,
    /// Machines whose mark (DataJob's) goes: they are not among those that go now.
    pub unmark: Vec<String>,
    /// How many replicas go: the machines marked (or found marked) whose nodes are
    /// empty; at most the `k` asked for.
    pub scale_by: usize,
    /// Why fewer than `k` go, in words; `None` when `k` do.
    pub short: Option<String>,
}

/// The Machines whose nodes are among `removable` (the nodes the decision may let go,
/// in the order they go): those whose pods the caller counts once more before
/// [`choose`]. Machines marked already come first, in that order too.
pub fn candidates<'a>(machines: &'a [Machine], removable: &[String]) -> Vec<&'a Machine> {
    let position = |m: &Machine| {
        m.node
            .as_ref()
            .and_then(|n| removable.iter().position(|r| r == n))
    };
    let mut found: Vec<(bool, usize, &Machine)> = machines
        .iter()
        .filter(|m| !m.deleting)
        .filter_map(|m| position(m).map(|p| (m.mark.is_none(), p, m)))
        .collect();
    found.sort_by_key(|(unmarked, p, _)| (*unmarked, *p));
    found.into_iter().map(|(_, _, m)| m).collect()
}

/// Which Machines to mark so that a scale-down by `k` removes only machines whose nodes
/// are in `empty` (the nodes found without any pod but DaemonSets', in the order they
/// go):
/// - Machines being deleted are neither marked nor counted.
/// - Up to `k` Machines on empty nodes are chosen, those marked already first (Cluster
///   API takes the marked ones first anyway); each one not marked yet is marked.
/// - DataJob's marks on any other Machine are taken off: exactly the chosen machines
///   carry its mark when the replicas go down.
/// - A Machine someone else marked whose node is not known to be empty would be
///   removed first by any scale-down: then nothing goes.
/// - The replicas go down by the number chosen: fewer than `k` when fewer Machines
///   have empty nodes (a Machine without a node yet, say).
pub fn choose(machines: &[Machine], empty: &[String], k: usize) -> Marking {
    let live: Vec<&Machine> = machines.iter().filter(|m| !m.deleting).collect();
    let on_empty = |m: &Machine| m.node.as_ref().is_some_and(|n| empty.contains(n));
    let theirs: Vec<&str> = live
        .iter()
        .filter(|m| m.mark.is_some() && !m.marked_by_datajob() && !on_empty(m))
        .map(|m| m.name.as_str())
        .collect();
    let chosen: Vec<&Machine> = if theirs.is_empty() {
        candidates(machines, empty).into_iter().take(k).collect()
    } else {
        Vec::new()
    };
    let mark = chosen
        .iter()
        .filter(|m| m.mark.is_none())
        .filter_map(|m| Some((m.name.clone(), m.node.clone()?)))
        .collect();
    let unmark = live
        .iter()
        .filter(|m| m.marked_by_datajob())
        .filter(|m| !chosen.iter().any(|c| c.name == m.name))
        .map(|m| m.name.clone())
        .collect();
    let short = if !theirs.is_empty() {
        Some(format!(
            "machine(s) {} marked for deletion by someone else and their nodes not known to be empty: a scale-down could remove them",
            theirs.join(", ")
        ))
    } else if chosen.len() < k {
        Some(format!(
            "only {} of the {k} machine(s) to go have a node found empty",
            chosen.len()
        ))
    } else {
        None
    };
    Marking {
        mark,
        unmark,
        scale_by: chosen.len(),
        short,
    }
}

#[cfg(test)]
#[path = "machines_tests.rs"]
mod tests;

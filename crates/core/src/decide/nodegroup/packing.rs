//! Placement that leaves fewer half-empty nodes: a run that starts now goes where a node
//! already has room for it, before the cheapest group boots a node of its own.
//!
//! The room is each group's `status.room`: what the NodeGroup controller saw free on
//! the nodes that stay, once the pods already pending were packed in (first fit
//! decreasing, with the nodes booting for them). So a run placed after others that
//! wait joins the node being made for them when it fits, and a run that fits beside a
//! long run on an expensive group's node takes that room instead of booting a cheap
//! node: a node already paid for costs nothing more.
use super::placement::{candidates, cheaper};
use crate::group::Group;
use crate::resources::Request;

/// How much a run adds where it fits: none on a node that is up, none but the wait on
/// one that is booting, a new node otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    /// A Ready node has room: it starts at once, for nothing more.
    ReadyRoom,
    /// A node on its way has room: it waits for that node, for nothing more.
    BootingRoom,
    /// The group needs one more node for it.
    NewNode,
}

/// Where `request` fits in `group`'s room.
pub fn fit(request: &Request, group: &Group) -> Fit {
    let fits = |ready: bool| {
        group
            .room
            .iter()
            .any(|r| r.ready == ready && request.fits(&r.free))
    };
    if fits(true) {
        Fit::ReadyRoom
    } else if fits(false) {
        Fit::BootingRoom
    } else {
        Fit::NewNode
    }
}

/// The group for a run that starts now: among the groups whose node fits it (GPU groups
/// only for GPU work unless nothing else fits, as [`super::place`]), one with room on
/// a Ready node, else on a booting node, else the cheapest; ties go to the cheaper
/// group. Without any room this is [`super::place`].
pub fn place_packed<'a>(request: &Request, groups: &'a [Group]) -> Option<&'a Group> {
    candidates(request, groups).min_by(|a, b| {
        fit(request, a)
            .cmp(&fit(request, b))
            .then_with(|| cheaper(a, b))
    })
}

#[cfg(test)]
#[path = "packing_tests.rs"]
mod tests;

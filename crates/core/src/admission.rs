//! Admission of a DataJob: validation plus placement on a node group, the one answer that
//! the admission webhook, the reconciler and `kubectl datajob plan` all give.
use crate::decide::children::{Guards, run_request};
use crate::decide::nodegroup::{self, Group};
use crate::validation::{self, Limits, Problems, Resolved};
use datajob_api::DataJob;

/// Validation plus placement: what admission, the reconciler and `plan` all call.
///
/// Only the groups that serve the DataJob's namespace count. A scheduled DataJob goes to
/// the cheapest group that fits ([`place`](nodegroup::place)): its CronJob and the warm-up follow that
/// group, whatever the nodes hold now. A one-off DataJob's run starts now and once: it
/// goes where a node already has room for it ([`packing::place_packed`](nodegroup::packing::place_packed)), and stays on
/// the group `status.nodeGroup` names once placed (its Job is made once).
pub fn resolve_and_place(
    dj: &DataJob,
    limits: &Limits,
    guards: &Guards,
    groups: &[Group],
) -> Result<Resolved, Problems> {
    let mut r = validation::resolve(dj, limits)?;
    let request = run_request(&r, guards);
    let serving: Vec<Group> = groups
        .iter()
        .filter(|g| g.serves(&r.namespace))
        .cloned()
        .collect();
    if let Some(p) = nodegroup::admission_problem(&request, &serving) {
        return Err(Problems(vec![p]));
    }
    let placed = if r.schedule.is_some() {
        nodegroup::place(&request, &serving)
    } else {
        let before = dj.status.as_ref().and_then(|s| s.node_group.as_deref());
        before
            .and_then(|name| nodegroup::candidates(&request, &serving).find(|g| g.name == name))
            .or_else(|| nodegroup::packing::place_packed(&request, &serving))
    };
    r.placement = placed.cloned();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::nodegroup::Room;
    use crate::decide::nodegroup::fixtures::{group, req};

    #[test]
    fn a_datajob_is_placed_only_on_groups_that_serve_its_namespace() {
        let dj = |ns: &str, schedule: Option<&str>| -> datajob_api::DataJob {
            let mut spec =
                serde_json::json!({"image": "busybox", "resources": {"cpu": 2, "memory": "4Gi"}});
            if let Some(s) = schedule {
                spec["schedule"] = serde_json::json!(s);
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
                "metadata": {"name": "j", "namespace": ns}, "spec": spec,
            }))
            .unwrap()
        };
        let mut team = group("team", req(4, 16, 0), 0.1, 3);
        team.namespaces = vec!["team-a".into()];
        let shared = group("shared", req(4, 16, 0), 0.2, 3);
        let groups = [team, shared];
        let limits = Limits::default();
        let guards = Guards::default();
        let placed = |d: &datajob_api::DataJob| {
            resolve_and_place(d, &limits, &guards, &groups)
                .unwrap()
                .placement
                .map(|g| g.name)
        };
        assert_eq!(placed(&dj("team-a", None)).as_deref(), Some("team"));
        assert_eq!(placed(&dj("team-b", None)).as_deref(), Some("shared"));
        assert_eq!(
            placed(&dj("team-b", Some("0 3 * * *"))).as_deref(),
            Some("shared")
        );
        // Admission looks only at the groups that serve the namespace.
        let only_team = [groups[0].clone()];
        assert!(
            resolve_and_place(&dj("team-b", None), &limits, &guards, &only_team)
                .unwrap()
                .placement
                .is_none()
        );
        // A one-off DataJob stays where it was placed; a scheduled one follows the price.
        let mut moved = dj("team-b", None);
        moved.status = Some(datajob_api::DataJobStatus {
            node_group: Some("elsewhere".into()),
            ..Default::default()
        });
        assert_eq!(
            placed(&moved).as_deref(),
            Some("shared"),
            "gone: placed again"
        );
        let mut roomy = groups.to_vec();
        let mut rich = group("rich", req(4, 16, 0), 0.25, 3);
        rich.room = vec![Room {
            node: Some("rich-0".into()),
            ready: true,
            free: req(2, 4, 0),
        }];
        roomy.push(rich);
        let placed_in = |d: &datajob_api::DataJob| {
            resolve_and_place(d, &limits, &guards, &roomy)
                .unwrap()
                .placement
                .map(|g| g.name)
        };
        assert_eq!(
            placed_in(&dj("team-b", None)).as_deref(),
            Some("rich"),
            "a node with room beats a cheaper group"
        );
        assert_eq!(
            placed_in(&dj("team-b", Some("0 3 * * *"))).as_deref(),
            Some("shared"),
            "scheduled: cheapest per node"
        );
        moved.status.as_mut().unwrap().node_group = Some("shared".into());
        assert_eq!(
            placed_in(&moved).as_deref(),
            Some("shared"),
            "stays where it was placed"
        );
    }
}

//! The Cluster API provider: the group is a MachineDeployment (or MachinePool), and
//! DataJob sets its replicas through the `scale` subresource; Cluster API makes and
//! removes the machines. Cluster API picks the machines a scale-down removes, and picks
//! those marked `cluster.x-k8s.io/delete-machine` first: before the replicas go down,
//! the Machines whose nodes were counted empty once more are marked
//! ([`nodegroup::machines`]), and the replicas go down by no more than were marked.
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::NodeGroupContext;
use super::observe::live_pods;
use crate::{Error, Result};
use datajob_core::decide::nodegroup::machines::{self, DELETE_MACHINE_ANNOTATION, Machine};

/// The resource a Cluster API group scales.
pub(super) struct Target<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    /// The API of `kind` (plural `plural`) in the target's group, version and namespace.
    fn api(&self, ctx: &NodeGroupContext, kind: &str, plural: &str) -> Api<DynamicObject> {
        let (g, v) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", self.api_version));
        let gvk = GroupVersionKind::gvk(g, v, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::namespaced_with(ctx.base.client.clone(), self.namespace, &ar)
    }
}

/// What a scale-down needs to know: the group, the nodes the decision may let go (in the
/// order they go) and now.
pub(super) struct Shrink<'a> {
    pub group: &'a str,
    pub removable: &'a [String],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Sets `target`'s replicas to `desired` through its `scale` subresource, when they
/// differ. Up at once; down only by the Machines [`mark`] marked.
pub(super) async fn scale(
    ctx: &NodeGroupContext,
    target: &Target<'_>,
    desired: i32,
    shrink: &Shrink<'_>,
) -> Result<()> {
    let Target {
        kind,
        namespace,
        name,
        ..
    } = *target;
    let api = target.api(ctx, kind, &format!("{}s", kind.to_lowercase()));
    let scale = api.get_scale(name).await.map_err(Error::api(
        "read scale of",
        kind_name(kind),
        namespace,
        name,
    ))?;
    // Scale omits replicas when they are 0.
    let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    let to = if desired < replicas {
        replicas - mark(ctx, target, (replicas - desired) as usize, shrink).await? as i32
    } else {
        desired
    };
    if to != replicas {
        let patch = json!({"spec": {"replicas": to}});
        api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api("scale", kind_name(kind), namespace, name))?;
        info!(nodegroup = %shrink.group, replicas = to, "scaled {kind} {namespace}/{name}");
    }
    Ok(())
}

/// Marks the Machines of `target` that may go when its replicas go down by `k`
/// ([`machines::choose`]): each candidate's node is counted once more from the API
/// (DataJob's pods and anyone's but DaemonSets'), DataJob's marks on the machines that
/// stay come off, and the chosen ones are marked. Returns by how many the replicas may
/// go down.
async fn mark(
    ctx: &NodeGroupContext,
    target: &Target<'_>,
    k: usize,
    shrink: &Shrink<'_>,
) -> Result<usize> {
    let Target {
        kind,
        namespace,
        name,
        ..
    } = *target;
    let group = shrink.group;
    let Some(selector) = machines::machines_selector(kind, name) else {
        warn!(nodegroup = %group, "not scaled down: the Machines of a {kind} cannot be found, so none can be marked to go, and its controller could remove a node with pods");
        return Ok(0);
    };
    let api = target.api(ctx, "Machine", "machines");
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(
            "list the Machines of",
            kind_name(kind),
            namespace,
            name,
        ))?;
    let all: Vec<Machine> = listed.items.iter().map(machine_of).collect();
    let mut empty = Vec::new();
    for m in machines::candidates(&all, shrink.removable) {
        let Some(node) = m.node.as_ref() else {
            continue;
        };
        if live_pods(ctx, node).await? == (0, 0) {
            empty.push(node.clone());
        }
    }
    let marking = machines::choose(&all, &empty, k);
    for machine in &marking.unmark {
        if set_mark(&api, machine, None).await? {
            info!(nodegroup = %group, %machine, "took DataJob's delete-machine mark off a machine that stays");
        }
    }
    let mut marked = marking.scale_by - marking.mark.len();
    for (machine, node) in &marking.mark {
        let value = machines::mark_value(group, node, shrink.now);
        if set_mark(&api, machine, Some(&value)).await? {
            info!(nodegroup = %group, %machine, %node, "marked the machine of an empty node to go");
            marked += 1;
        }
    }
    if let Some(why) = &marking.short {
        info!(nodegroup = %group, asked = k, going = marked, "{kind} {namespace}/{name} scaled down by fewer replicas: {why}");
    }
    Ok(marked)
}

/// `kind` as errors name it.
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "MachineDeployment" => "MachineDeployment",
        "MachinePool" => "MachinePool",
        _ => "Cluster API resource",
    }
}

/// A Machine as [`machines::choose`] reads it.
fn machine_of(m: &DynamicObject) -> Machine {
    Machine {
        name: m.name_any(),
        node: m.data["status"]["nodeRef"]["name"]
            .as_str()
            .map(String::from),
        mark: m.annotations().get(DELETE_MACHINE_ANNOTATION).cloned(),
        deleting: m.meta().deletion_timestamp.is_some(),
    }
}

/// Puts the delete-machine mark `value` on `machine`, or takes it off (`None`). Returns
/// whether it did; `false` when the machine is gone meanwhile.
async fn set_mark(api: &Api<DynamicObject>, machine: &str, value: Option<&str>) -> Result<bool> {
    let patch = json!({"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: value}}});
    match api
        .patch(machine, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            info!(%machine, "machine gone before its delete-machine mark changed");
            Ok(false)
        }
        Err(e) => Err(Error::api(
            "mark for deletion",
            "Machine",
            api.namespace().unwrap_or_default(),
            machine,
        )(e)),
    }
}

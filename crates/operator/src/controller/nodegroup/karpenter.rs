//! The Karpenter provider: the group's nodes are a NodePool's, made and removed by
//! Karpenter. DataJob reads the NodePool, to say on the group when it cannot make the
//! nodes the group declares ([`datajob_core::decide::nodegroup::karpenter`]), and keeps
//! the group's CapacityBuffers as [`datajob_core::decide::nodegroup::buffers`] says.
use k8s_openapi::api::core::v1::PodTemplate;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::NodeGroupContext;
use crate::{Error, Result};
use datajob_core::decide::nodegroup::buffers::{self, Buffer};
use datajob_core::decide::nodegroup::{GROUP_LABEL, Group};
use datajob_core::labels::FIELD_MANAGER;

/// The NodePool `name` as the API serves it; `None` when there is none (or Karpenter's
/// API is not installed).
pub(super) async fn node_pool(
    ctx: &NodeGroupContext,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "nodepools");
    let api: Api<DynamicObject> = Api::all_with(ctx.base.client.clone(), &ar);
    match api.get_opt(name).await {
        Ok(pool) => Ok(pool.and_then(|p| serde_json::to_value(p).ok())),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(Error::api("read", "NodePool", "", name)(e)),
    }
}

/// What became of the group's CapacityBuffers.
pub(super) enum Buffers {
    /// The buffers the group wants are there (how many), the others gone.
    Synced(usize),
    /// No CapacityBuffer API on this cluster: no warm-up, no keep.
    NoApi,
}

fn capacity_buffers(ctx: &NodeGroupContext, ns: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("autoscaling.x-k8s.io", "v1beta1", "CapacityBuffer");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "capacitybuffers");
    match ns {
        Some(ns) => Api::namespaced_with(ctx.base.client.clone(), ns, &ar),
        None => Api::all_with(ctx.base.client.clone(), &ar),
    }
}

/// Makes the group's CapacityBuffers (and their PodTemplates) what `wanted` says: each
/// wanted one that is missing or differs applied with its PodTemplate (server-side,
/// owned by its DataJob; a buffer someone else edited is put back), every other buffer
/// of the group deleted. A DataJob that is gone from the
/// cache gets no buffer.
pub(super) async fn sync_buffers(
    ctx: &NodeGroupContext,
    group: &Group,
    wanted: &[Buffer],
) -> Result<Buffers> {
    let selector = format!("{GROUP_LABEL}={}", group.name);
    let existing = match capacity_buffers(ctx, None)
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Buffers::NoApi),
        Err(e) => return Err(Error::api("list", "CapacityBuffer", "", &group.name)(e)),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut made = 0;
    for b in wanted {
        let (ns, name) = b.owner();
        let Some(dj) = ctx.datajobs.get(&ObjectRef::new(name).within(ns)) else {
            continue;
        };
        let Some(owner) = dj.controller_owner_ref(&()) else {
            continue;
        };
        let owner = serde_json::to_value(owner).unwrap_or_default();
        let buffer = buffers::capacity_buffer(b, group, &owner);
        // Unchanged since the last reconcile: no writes (the group reconciles every 2 s
        // while busy).
        let unchanged = existing.iter().any(|o| {
            o.namespace().as_deref() == Some(ns)
                && o.name_any() == b.name()
                && o.data.get("spec") == buffer.get("spec")
                && o.annotations().get(buffers::WHY) == Some(&b.why)
        });
        if unchanged {
            made += 1;
            continue;
        }
        let templates: Api<PodTemplate> = Api::namespaced(ctx.base.client.clone(), ns);
        let template = buffers::pod_template(b, group, &owner);
        templates
            .patch(&b.name(), &params, &Patch::Apply(&template))
            .await
            .map_err(Error::api("apply", "PodTemplate", ns, &b.name()))?;
        capacity_buffers(ctx, Some(ns))
            .patch(&b.name(), &params, &Patch::Apply(&buffer))
            .await
            .map_err(Error::api("apply", "CapacityBuffer", ns, &b.name()))?;
        made += 1;
    }
    for old in existing {
        let (Some(ns), name) = (old.namespace(), old.name_any()) else {
            continue;
        };
        if wanted.iter().any(|b| b.owner().0 == ns && b.name() == name) {
            continue;
        }
        for result in [
            capacity_buffers(ctx, Some(&ns))
                .delete(&name, &DeleteParams::background())
                .await
                .map(|_| ()),
            Api::<PodTemplate>::namespaced(ctx.base.client.clone(), &ns)
                .delete(&name, &DeleteParams::background())
                .await
                .map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::api("delete", "CapacityBuffer", &ns, &name)(e)),
            }
        }
    }
    Ok(Buffers::Synced(made))
}

//! The Cluster API provider: the group is a MachineDeployment (or any resource with a
//! `scale` subresource), and DataJob sets its replicas; its machines are Cluster API's.
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use tracing::info;

use super::NodeGroupContext;
use crate::{Error, Result};

/// The resource a Cluster API group scales.
pub(super) struct Target<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Sets `target`'s replicas to `desired` through its `scale` subresource, when they
/// differ.
pub(super) async fn scale(
    ctx: &NodeGroupContext,
    group: &str,
    target: &Target<'_>,
    desired: i32,
) -> Result<()> {
    let Target {
        api_version,
        kind,
        namespace,
        name,
    } = *target;
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(g, v, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.base.client.clone(), namespace, &ar);
    let scale = api.get_scale(name).await.map_err(Error::api(
        "read scale of",
        "MachineDeployment",
        namespace,
        name,
    ))?;
    // Scale omits replicas when they are 0.
    if scale.spec.and_then(|s| s.replicas).unwrap_or(0) != desired {
        let patch = json!({"spec": {"replicas": desired}});
        api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api("scale", "MachineDeployment", namespace, name))?;
        info!(nodegroup = %group, replicas = desired, "scaled {kind} {namespace}/{name}");
    }
    Ok(())
}

//! The Karpenter provider: the group's nodes are a NodePool's, made and removed by
//! Karpenter. DataJob reads the NodePool, to say on the group when it cannot make the
//! nodes the group declares ([`datajob_core::decide::nodegroup::karpenter`]).
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

use super::NodeGroupContext;
use crate::{Error, Result};

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

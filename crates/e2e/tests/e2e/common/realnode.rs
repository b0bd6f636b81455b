//! Helpers for tests that run real containers on the real node of the local cluster
//! (`real-0`: a kubelet with containerd, started by `e2e/cluster.sh up`) with images
//! from the local registry (see docs/testing.md, "The real node").
//!
//! * [`cluster_env`] – the cluster's `cluster.env` (registry address, image references).
//! * [`real_node`] – the real node's settings, or `None` when `up` skipped it.
//! * [`namespace`] – a test namespace whose pods all go to the real node: annotated for
//!   the apiserver's `PodNodeSelector` and `PodTolerationRestriction` admission plugins,
//!   so that the pods need no node selector or toleration of their own.
//! * [`pod`], [`logs`], [`closed_port`] – small builders and readers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, LogParams, PostParams};

use super::{TestNamespace, from_json, wait_for};

/// Label (and taint key) of the real node: `datajob.dev/real-node=true`.
pub const LABEL: &str = "datajob.dev/real-node";
/// Namespace annotation read by the `PodNodeSelector` admission plugin.
pub const NODE_SELECTOR_ANNOTATION: &str = "scheduler.alpha.kubernetes.io/node-selector";
/// Namespace annotation read by the `PodTolerationRestriction` admission plugin.
pub const DEFAULT_TOLERATIONS_ANNOTATION: &str = "scheduler.alpha.kubernetes.io/defaultTolerations";

/// What `e2e/cluster.sh up` recorded about the real node and the registry.
#[derive(Debug, Clone)]
pub struct RealNode {
    /// Node name, `real-0` by default.
    pub name: String,
    /// `127.0.0.1:<port>` of the local registry (plain HTTP).
    pub registry: String,
    /// Busybox, `USER 65532:65532`, `HOME=/tmp`, pushed to the registry at `up`.
    pub image_nonroot: String,
    /// The same busybox without `USER` (runs as root).
    pub image_root: String,
    /// The pods' subnet on the real node, e.g. `10.245.0.0/24`.
    pub pod_subnet: String,
}

/// `${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}/cluster.env`
pub fn cluster_env_path() -> PathBuf {
    let dir = std::env::var_os("DATAJOB_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/datajob/cluster")
        });
    dir.join("cluster.env")
}

/// The `KEY=VALUE` lines of the cluster's `cluster.env` (values may be double-quoted).
pub fn cluster_env() -> BTreeMap<String, String> {
    let path = cluster_env_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (is the cluster up? `bash e2e/cluster.sh up`)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The real node, or `None` (with the reason printed) when `up` ran without it
/// (`DATAJOB_REAL_NODE=0`, not root, containerd missing). With
/// `DATAJOB_E2E_REQUIRE_REAL_NODE=1` a missing real node panics instead.
pub fn real_node() -> Option<RealNode> {
    let env = cluster_env();
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing in {}", cluster_env_path().display()))
    };
    if env.get("REAL_NODE").map(String::as_str) != Some("1") {
        let why = env
            .get("REAL_NODE_WHY")
            .cloned()
            .unwrap_or_else(|| "cluster.env has no REAL_NODE=1".into());
        if std::env::var("DATAJOB_E2E_REQUIRE_REAL_NODE").as_deref() == Ok("1") {
            panic!("the cluster has no real node: {why}");
        }
        eprintln!("SKIPPED: the cluster has no real node ({why})");
        return None;
    }
    Some(RealNode {
        name: get("REAL_NODE_NAME"),
        registry: get("REGISTRY"),
        image_nonroot: get("IMAGE_NONROOT"),
        image_root: get("IMAGE_ROOT"),
        pod_subnet: get("REAL_POD_SUBNET"),
    })
}

/// A fresh namespace `<prefix>-xxxxx` (labelled `datajob.dev/e2e=true`, deleted when the
/// guard drops, like [`super::test_namespace`]) whose pods all land on the real node:
/// it carries the annotations
/// `scheduler.alpha.kubernetes.io/node-selector: datajob.dev/real-node=true` and
/// `scheduler.alpha.kubernetes.io/defaultTolerations: [{"key":"datajob.dev/real-node",...}]`,
/// which the apiserver's admission plugins merge into every pod created in it.
/// Returns `None` when the cluster has no real node (see [`real_node`]).
/// Like every test namespace it enforces the `restricted` Pod Security profile
/// (`pod-security.kubernetes.io/enforce: restricted`); see [`privileged_namespace`].
pub async fn namespace(client: &Client, prefix: &str) -> Option<(TestNamespace, RealNode)> {
    namespace_enforcing(client, prefix, Some(super::POD_SECURITY_LEVEL)).await
}

/// Like [`namespace`], without the Pod Security label: for pods of the harness that need
/// more than `restricted` allows on the real node (`hostNetwork`, the only way a pod there
/// reaches the apiserver on 127.0.0.1); `why` says which, for the reader of the test.
pub async fn privileged_namespace(
    client: &Client,
    prefix: &str,
    why: &str,
) -> Option<(TestNamespace, RealNode)> {
    let _ = why;
    namespace_enforcing(client, prefix, None).await
}

async fn namespace_enforcing(
    client: &Client,
    prefix: &str,
    enforce: Option<&str>,
) -> Option<(TestNamespace, RealNode)> {
    let node = real_node()?;
    let tolerations = serde_json::json!([{
        "key": LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"
    }]);
    let api: Api<Namespace> = Api::all(client.clone());
    // annotated at creation: the admission plugins may read namespaces from a cache,
    // an annotation patched in later could be missed by the first pods
    let ns: Namespace = from_json(serde_json::json!({
        "metadata": {
            "generateName": format!("{}-", super::sanitize(prefix)),
            "labels": super::namespace_labels(enforce),
            "annotations": {
                NODE_SELECTOR_ANNOTATION: format!("{LABEL}=true"),
                DEFAULT_TOLERATIONS_ANNOTATION: tolerations.to_string(),
            },
        }
    }));
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .expect("create real-node test namespace");
    let name = created.metadata.name.expect("namespace has a name");
    let guard = TestNamespace { name: name.clone() };
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for("default service account", Duration::from_secs(30), || {
        let sas = sas.clone();
        async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
    })
    .await
    .expect("default ServiceAccount of the test namespace");
    Some((guard, node))
}

/// A `restartPolicy: Never` pod with one container `main` running `command`
/// (exec form; use `["sh", "-c", "..."]` for a shell), small requests, no limits. It
/// meets the `restricted` Pod Security profile that [`namespace`] enforces: its
/// container's security context ([`restricted_container_security`]) runs it as non-root,
/// without privilege escalation or capabilities, with the runtime's seccomp profile.
/// A test that sets its own container security context starts from that one.
pub fn pod(name: &str, image: &str, command: &[&str]) -> Pod {
    from_json(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": image,
                "command": command,
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
                "securityContext": restricted_container_security(),
            }],
        },
    }))
}

pub use super::restricted_container_security;

/// The log of container `main` of pod `name`, through the apiserver (which asks the
/// kubelet: the real `kubectl logs` path).
pub async fn logs(pods: &Api<Pod>, name: &str) -> super::Result<String> {
    Ok(pods
        .logs(
            name,
            &LogParams {
                container: Some("main".into()),
                ..LogParams::default()
            },
        )
        .await?)
}

/// A 127.0.0.1 port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

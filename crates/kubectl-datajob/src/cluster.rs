//! Reaching the cluster the way kubectl does (`KUBECONFIG`, `--kubeconfig`, `--context`,
//! `--cluster`, `--user`, `--as`, `--as-group`, `--request-timeout`, `-n`), and turning the API's failures into sentences that say what to do.
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

use super::error::{CliError, Result};
use datajob_api::DataJob;
use datajob_core::suggest;

/// The standard kubectl connection flags.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Cluster options (as kubectl)")]
pub struct ClusterArgs {
    /// Namespace to use (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,

    /// Path to a kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig cluster to use (default: the context's).
    #[arg(long, global = true, value_name = "CLUSTER")]
    pub cluster: Option<String>,

    /// Kubeconfig user to use (default: the context's).
    #[arg(long, global = true, value_name = "USER")]
    pub user: Option<String>,

    /// User to impersonate for the operation (a user or a ServiceAccount,
    /// `system:serviceaccount:NS:NAME`).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,

    /// Group to impersonate for the operation; repeat for several.
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,

    /// How long to wait for one request before giving up: `30s`, `1m`, `500ms`, or
    /// seconds (`0`, the default, waits as long as the request takes).
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::flags::request_timeout)]
    pub request_timeout: Option<Duration>,
}

/// Loads the client configuration without talking to the cluster.
pub(crate) async fn load_config(args: &ClusterArgs) -> Result<Config> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let loaded = match &args.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| CliError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    };
    let mut config = match loaded {
        Ok(config) => config,
        // Inside a pod without a kubeconfig, like kubectl.
        Err(e)
            if args.kubeconfig.is_none()
                && args.context.is_none()
                && args.cluster.is_none()
                && args.user.is_none() =>
        {
            Config::incluster().map_err(|_| CliError::Kubeconfig(e.to_string()))?
        }
        Err(e) => return Err(CliError::Kubeconfig(e.to_string())),
    };
    apply_overrides(&mut config, args);
    Ok(config)
}

/// `--as`, `--as-group` and `--request-timeout` on a loaded configuration.
fn apply_overrides(config: &mut Config, args: &ClusterArgs) {
    if let Some(user) = &args.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !args.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(args.as_group.clone());
    }
    if let Some(t) = args.request_timeout {
        // `0` is no limit, as in kubectl.
        let t = (!t.is_zero()).then_some(t);
        config.read_timeout = t;
        config.write_timeout = t;
    }
}

/// A client for the chosen cluster and namespace.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub client: Client,
    pub namespace: String,
    pub url: String,
}

impl Cluster {
    pub(crate) async fn connect(args: &ClusterArgs) -> Result<Cluster> {
        let mut config = load_config(args).await?;
        // Say "cannot reach" quickly rather than hang on a dead address.
        config.connect_timeout = Some(Duration::from_secs(5));
        let url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| CliError::Unreachable {
            url: url.clone(),
            reason: chain(&e),
        })?;
        Ok(Cluster {
            client,
            namespace,
            url,
        })
    }

    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Turns a failed call into what to do about it. `action` reads "get DataJob x".
    pub(crate) fn error(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> CliError {
        let (action, url, namespace) = (action.into(), self.url.clone(), self.namespace.clone());
        move |e| classify(e, &url, &namespace, action)
    }

    /// The DataJob `name`, or an error that says which names exist.
    pub(crate) async fn datajob(&self, name: &str) -> Result<DataJob> {
        let api: Api<DataJob> = self.api();
        match api.get_opt(name).await {
            Ok(Some(dj)) => Ok(dj),
            Ok(None) => Err(self.not_found(name).await),
            Err(e) => Err(self.error(format!("get DataJob {name}"))(e)),
        }
    }

    /// "no DataJob named X in namespace Y; did you mean Z?"
    async fn not_found(&self, name: &str) -> CliError {
        let api: Api<DataJob> = self.api();
        let here: Vec<String> = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list.items.iter().map(|d| d.name_any()).collect(),
            Err(e) => return self.error(format!("list DataJobs in {}", self.namespace))(e),
        };
        // The same name elsewhere is the likeliest mistake; ignore a refusal to list all.
        let elsewhere: Vec<String> = Api::<DataJob>::all(self.client.clone())
            .list_metadata(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map(|l| l.items.iter().filter_map(|d| d.namespace()).collect())
            .unwrap_or_default();
        CliError::NotFound(not_found_message(name, &self.namespace, &here, &elsewhere))
    }
}

/// The words for a DataJob that is not there, from what is there.
pub(crate) fn not_found_message(
    name: &str,
    namespace: &str,
    here: &[String],
    elsewhere: &[String],
) -> String {
    let mut msg = format!("no DataJob named {name} in namespace {namespace}");
    let close = suggest::closest(name, here.iter().map(String::as_str));
    if !close.is_empty() {
        msg.push_str(&format!("; did you mean {}?", suggest::or_list(&close)));
    } else if let Some(ns) = elsewhere.first() {
        let all = suggest::or_list(elsewhere);
        msg.push_str(&format!("; there is one in namespace {all}: add -n {ns}"));
    } else if here.is_empty() {
        msg.push_str(&format!(
            " (there are no DataJobs in {namespace}; pick another namespace with -n)"
        ));
    } else if here.len() <= 8 {
        msg.push_str(&format!("; the DataJobs there are {}", here.join(", ")));
    } else {
        msg.push_str("; list them with `kubectl datajob status`");
    }
    msg
}

/// A kube error as a [`CliError`].
pub(crate) fn classify(e: kube::Error, url: &str, namespace: &str, action: String) -> CliError {
    match e {
        kube::Error::Api(s) => match s.code {
            401 => CliError::Unauthorized {
                url: url.into(),
                message: s.message.clone(),
            },
            403 => CliError::Forbidden {
                action,
                namespace: namespace.into(),
                message: s.message.clone(),
            },
            404 if s.message.contains("could not find the requested resource")
                || s.message.contains("page not found") =>
            {
                CliError::NoCrd { url: url.into() }
            }
            _ => CliError::Api {
                action,
                message: match webhook_unreachable_hint(&s.message) {
                    Some(hint) => format!("{}\n  {hint}", s.message),
                    None => s.message.clone(),
                },
            },
        },
        other => CliError::Unreachable {
            url: url.into(),
            // The first link only says which kube-rs variant it is.
            reason: std::error::Error::source(&other).map_or_else(|| chain(&other), chain),
        },
    }
}

/// What to do when the apiserver could not call DataJob's admission webhook and its
/// `failurePolicy` is `Fail` (the apiserver's message names the webhook and the network
/// error only: it has no field for a message of ours).
pub(crate) fn webhook_unreachable_hint(message: &str) -> Option<String> {
    let name = datajob_core::labels::WEBHOOK_NAME;
    message
        .contains(&format!("failed calling webhook \"{name}\""))
        .then(|| {
            format!(
                "DataJob's admission webhook ({name}) did not answer: the datajob-operator is down or the apiserver cannot reach it, and its failurePolicy is Fail, so no DataJob can be created or changed until it answers again (your DataJob was not checked). Try again in a minute; if it lasts, tell your platform team: `kubectl get validatingwebhookconfiguration datajob.dev` and the operator's pods (`kubectl -n datajob-system get pods`), see docs/operations.md#the-admission-webhook"
            )
        })
}

/// An error and its causes, each once: `client error (Connect): tcp connect error: Connection refused`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cluster_user_impersonation_and_timeout_flags_shape_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubeconfig");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
             clusters:\n- name: dev\n  cluster: {server: 'https://127.0.0.1:6443'}\n\
             - name: prod\n  cluster: {server: 'https://10.0.0.1:6443'}\n\
             users:\n- name: dev\n  user: {token: dev-token}\n- name: alice\n  user: {username: alice, password: secret}\n\
             contexts:\n- name: dev\n  context: {cluster: dev, user: dev, namespace: analytics}\n",
        )
        .unwrap();
        let mut args = ClusterArgs {
            kubeconfig: Some(file),
            ..Default::default()
        };
        let plain = load_config(&args).await.unwrap();
        assert_eq!(plain.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(plain.default_namespace, "analytics");
        assert_eq!(plain.auth_info.impersonate, None);
        args.cluster = Some("prod".into());
        args.user = Some("alice".into());
        args.as_user = Some("system:serviceaccount:analytics:ci".into());
        args.as_group = vec!["devs".into()];
        args.request_timeout = Some(Duration::from_secs(90));
        let c = load_config(&args).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://10.0.0.1:6443/");
        assert_eq!(c.auth_info.username.as_deref(), Some("alice"));
        assert!(c.auth_info.token.is_none(), "not the context's user");
        assert_eq!(
            c.auth_info.impersonate.as_deref(),
            Some("system:serviceaccount:analytics:ci")
        );
        assert_eq!(
            c.auth_info.impersonate_groups,
            Some(vec!["devs".to_string()])
        );
        assert_eq!(c.read_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.write_timeout, Some(Duration::from_secs(90)));
        // `0` lifts the limit.
        args.request_timeout = Some(Duration::ZERO);
        assert_eq!(load_config(&args).await.unwrap().read_timeout, None);
        // A cluster the kubeconfig lacks is an error that names it.
        args.cluster = Some("nowhere".into());
        let e = load_config(&args).await.unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_unreachable_webhook_says_what_to_do() {
        let apiserver = r#"Internal error occurred: failed calling webhook "validate.datajob.dev": failed to call webhook: Post "https://127.0.0.1:9443/validate-datajob?timeout=5s": dial tcp 127.0.0.1:9443: connect: connection refused"#;
        let hint = webhook_unreachable_hint(apiserver).unwrap();
        assert!(hint.contains("datajob-operator is down"), "{hint}");
        assert!(hint.contains("failurePolicy is Fail"), "{hint}");
        assert!(webhook_unreachable_hint("Internal error occurred: etcd is down").is_none());
        let said = classify(
            kube::Error::Api(Box::new(kube::core::Status {
                code: 500,
                message: apiserver.into(),
                reason: "InternalError".into(),
                ..Default::default()
            })),
            "https://127.0.0.1:6443",
            "default",
            "annotate DataJob x".into(),
        )
        .to_string();
        assert!(
            said.starts_with("cannot annotate DataJob x: Internal error"),
            "{said}"
        );
        assert!(said.contains("Try again in a minute"), "{said}");
    }

    #[test]
    fn not_found_says_what_exists() {
        let m = not_found_message(
            "churn-feature",
            "analytics",
            &names(&["churn-features", "raw-events"]),
            &[],
        );
        assert_eq!(
            m,
            "no DataJob named churn-feature in namespace analytics; did you mean churn-features?"
        );
        let m = not_found_message("nightly", "default", &[], &names(&["analytics"]));
        assert!(
            m.ends_with("there is one in namespace analytics: add -n analytics"),
            "{m}"
        );
        let m = not_found_message("nightly", "default", &[], &[]);
        assert!(m.contains("there are no DataJobs in default"), "{m}");
        let m = not_found_message("nightly", "default", &names(&["a", "b"]), &[]);
        assert!(m.ends_with("the DataJobs there are a, b"), "{m}");
    }
}

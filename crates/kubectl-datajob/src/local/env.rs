//! The environment of a local run: the variables the operator gives a run's container,
//! read from the very Job it would create ([`datajob_core::decide::children::job`]) and resolved the
//! way the kubelet resolves them for the Job's pod.
use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::EnvVar;
use kube::ResourceExt;

use datajob_core::labels::JOB_NAME;

/// Resolved variables, in order, and what could not be resolved without a cluster.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Env {
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

impl Env {
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing an earlier value in place.
    pub(crate) fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    /// Sets each of `-e NAME=VALUE`'s `overrides`: they win, and a warning that NAME is
    /// not set goes.
    pub(crate) fn override_with(&mut self, overrides: &[(String, String)]) {
        for (k, v) in overrides {
            self.set(k, v.clone());
            let unset = format!("{k} is not set");
            self.warnings.retain(|w| !w.starts_with(&unset));
        }
    }

    fn map(&self) -> BTreeMap<String, String> {
        self.vars.iter().cloned().collect()
    }

    /// `command` and `args` with `$(VAR)` references expanded, as Kubernetes does.
    pub(crate) fn expand_all(&self, words: &[String]) -> Vec<String> {
        let map = self.map();
        words.iter().map(|w| expand(w, &map)).collect()
    }
}

/// The container environment of the pod the Job would start, named `pod_name`.
pub(crate) fn container_env(job: &Job, pod_name: &str) -> Env {
    let template = job.spec.as_ref().map(|s| &s.template);
    let meta = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    // The Job controller labels the pods it creates with the Job's name.
    labels.insert(JOB_NAME.to_string(), job.name_any());
    let annotations = meta.annotations.unwrap_or_default();
    let pod_spec = template.and_then(|t| t.spec.as_ref());
    let container = pod_spec.and_then(|s| s.containers.first());
    let namespace = job.namespace().unwrap_or_default();
    let service_account = pod_spec
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());

    let field = |path: &str| -> Option<String> {
        let key = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix("']"))
                .map(str::to_string)
        };
        if let Some(k) = key("metadata.labels['") {
            return labels.get(&k).cloned();
        }
        if let Some(k) = key("metadata.annotations['") {
            return annotations.get(&k).cloned();
        }
        match path {
            "metadata.name" => Some(pod_name.to_string()),
            "metadata.namespace" => Some(namespace.clone()),
            "spec.serviceAccountName" => Some(service_account.clone()),
            "spec.nodeName" => Some("localhost".into()),
            "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
            _ => None,
        }
    };

    let mut env = Env::default();
    for var in container.and_then(|c| c.env.clone()).unwrap_or_default() {
        match resolve_var(&var, &field, &env.map()) {
            Ok(value) => env.set(&var.name, value),
            Err(why) => env.warnings.push(format!(
                "{} is not set: {why}; pass --env {}=VALUE to set it",
                var.name, var.name
            )),
        }
    }
    env
}

fn resolve_var(
    var: &EnvVar,
    field: &impl Fn(&str) -> Option<String>,
    defined: &BTreeMap<String, String>,
) -> Result<String, String> {
    if let Some(v) = &var.value {
        return Ok(expand(v, defined));
    }
    let Some(from) = &var.value_from else {
        return Ok(String::new());
    };
    if let Some(f) = &from.field_ref {
        return field(&f.field_path).ok_or_else(|| {
            format!(
                "it comes from the pod's field {}, which a local run does not have",
                f.field_path
            )
        });
    }
    if let Some(s) = &from.secret_key_ref {
        return Err(format!(
            "it comes from key {} of Secret {}, which is in the cluster",
            s.key, s.name
        ));
    }
    if let Some(c) = &from.config_map_key_ref {
        return Err(format!(
            "it comes from key {} of ConfigMap {}, which is in the cluster",
            c.key, c.name
        ));
    }
    Err("it comes from the cluster".into())
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one is
/// left as written, and `$$` is a literal `$`.
pub(crate) fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJob, DataJobSpec};
    use datajob_core::decide::children::{Guards, job};
    use datajob_core::validation::{Limits, resolve};

    #[test]
    fn the_operators_variables_resolve_as_the_kubelet_would() {
        let mut dj = DataJob::new(
            "hello",
            DataJobSpec {
                image: "busybox".into(),
                deadline: Some("90s".into()),
                env: vec![
                    EnvVar {
                        name: "GREETING".into(),
                        value: Some("hi $(DATAJOB_NAME) $$(DATAJOB_NAME) $(NOPE)".into()),
                        value_from: None,
                    },
                    serde_json::from_value(serde_json::json!({
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}
                    }))
                    .unwrap(),
                ],
                ..Default::default()
            },
        );
        dj.metadata.namespace = Some("team".into());
        let r = resolve(&dj, &Limits::default()).unwrap();
        let t = datajob_core::labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        let j = job(&dj, &r, &Guards::default(), t, false);
        let env = container_env(&j, "hello-29926260-local");
        assert_eq!(env.get("DATAJOB_NAME"), Some("hello"));
        assert_eq!(env.get("DATAJOB_NAMESPACE"), Some("team"));
        assert_eq!(env.get("DATAJOB_RUN_ID"), Some("hello-29926260"));
        assert_eq!(
            env.get("DATAJOB_LOGICAL_TIME"),
            Some("2026-11-25T03:00:00Z")
        );
        assert_eq!(env.get("DATAJOB_DEADLINE_SECONDS"), Some("90"));
        assert_eq!(
            env.get("GREETING"),
            Some("hi hello $(DATAJOB_NAME) $(NOPE)")
        );
        assert_eq!(env.get("PASSWORD"), None);
        assert_eq!(env.warnings.len(), 1);
        assert!(env.warnings[0].contains("Secret db"), "{:?}", env.warnings);
        assert_eq!(
            env.expand_all(&["echo".into(), "$(DATAJOB_RUN_ID)".into()]),
            vec!["echo", "hello-29926260"]
        );
    }

    #[test]
    fn expansion_edge_cases() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("$(A)$(A)", &vars), "11");
        assert_eq!(expand("$A $(A", &vars), "$A $(A");
        assert_eq!(expand("cost $$5", &vars), "cost $5");
        assert_eq!(expand("end$", &vars), "end$");
    }
}

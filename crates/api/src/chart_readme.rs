//! The README of a Helm chart, generated from its `Chart.yaml` and the `# --` comments of
//! its `values.yaml` (helm-docs' convention): one table row per documented value, with
//! its type and default read from the values themselves. `make chart-readme` writes it;
//! `crates/api/tests/chart_readme.rs` fails when a chart's README and values drift apart.
//!
//! A value is documented by a comment block right above its key that starts with
//! `# -- `; the following `#` lines continue it. A key with no such comment must sit
//! under a documented one (a map documented as a whole, like `resources`): otherwise the
//! generator refuses, naming the key.
use std::fmt::Write as _;

use serde_json::Value;

/// What went wrong, naming the file and the key.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadmeError(pub String);

impl std::fmt::Display for ReadmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadmeError {}

/// One documented value: its dotted path and its description.
#[derive(Debug, PartialEq, Eq)]
pub struct Documented {
    pub path: Vec<String>,
    pub doc: String,
}

/// The key of a `key: …` line, and its indentation; `None` for other lines.
fn key_of(line: &str) -> Option<(usize, String)> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    if rest.starts_with('-') || rest.starts_with('#') {
        return None;
    }
    let (key, _) = rest.split_once(':')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    plain.then(|| (indent, key.to_string()))
}

/// The documented values of `values.yaml`, in file order. Fails on a key that is neither
/// documented nor under a documented key.
pub fn documented(values_yaml: &str) -> Result<Vec<Documented>, ReadmeError> {
    let mut out = Vec::new();
    // (indent, key, documented here or above)
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    let mut doc: Option<String> = None;
    for (n, line) in values_yaml.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(first) = trimmed.strip_prefix("# --") {
            doc = Some(first.trim().to_string());
            continue;
        }
        if let Some(more) = trimmed.strip_prefix('#') {
            if let Some(d) = doc.as_mut() {
                let more = more.strip_prefix(' ').unwrap_or(more);
                d.push(' ');
                d.push_str(more.trim_end());
            }
            continue;
        }
        if trimmed.is_empty() {
            doc = None;
            continue;
        }
        let Some((indent, key)) = key_of(line) else {
            continue;
        };
        while stack.last().is_some_and(|(i, _, _)| *i >= indent) {
            stack.pop();
        }
        let covered = stack.last().is_some_and(|(_, _, c)| *c);
        let mut path: Vec<String> = stack.iter().map(|(_, k, _)| k.clone()).collect();
        path.push(key.clone());
        let here = doc.take();
        let leaf = !line.trim_end().ends_with(':');
        if here.is_none() && leaf && !covered {
            return Err(ReadmeError(format!(
                "values.yaml line {}: `{}` has no `# --` comment (document it, or the map it is in)",
                n + 1,
                path.join(".")
            )));
        }
        if let Some(d) = &here {
            out.push(Documented {
                path: path.clone(),
                doc: d.trim().to_string(),
            });
        }
        stack.push((indent, key, covered || here.is_some()));
    }
    Ok(out)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn field<'a>(chart: &'a Value, key: &str) -> &'a str {
    chart.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The README of the chart whose `Chart.yaml` and `values.yaml` are given.
pub fn render(chart_yaml: &str, values_yaml: &str) -> Result<String, ReadmeError> {
    let chart: Value =
        serde_saphyr::from_str(chart_yaml).map_err(|e| ReadmeError(format!("Chart.yaml: {e}")))?;
    let values: Value = serde_saphyr::from_str(values_yaml)
        .map_err(|e| ReadmeError(format!("values.yaml: {e}")))?;
    let name = field(&chart, "name");
    let mut md = String::new();
    let _ = writeln!(md, "# {name}\n");
    let _ = writeln!(
        md,
        "<!-- Generated from Chart.yaml and values.yaml by `make chart-readme`: do not edit. -->\n"
    );
    let _ = writeln!(md, "{}\n", field(&chart, "description").trim());
    let _ = writeln!(md, "| chart | app | Kubernetes | home |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    let _ = writeln!(
        md,
        "| {} | {} | `{}` | {} |\n",
        field(&chart, "version"),
        field(&chart, "appVersion"),
        field(&chart, "kubeVersion"),
        field(&chart, "home"),
    );
    let _ = writeln!(md, "## Install\n");
    let _ = writeln!(md, "```sh");
    let _ = writeln!(
        md,
        "helm install {name} charts/{name} --namespace datajob-system --create-namespace"
    );
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "Operating the chart (upgrades, GitOps, permissions, alerts): docs/operations.md.\n"
    );
    let _ = writeln!(md, "## Values\n");
    let _ = writeln!(md, "| key | type | default | description |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for d in documented(values_yaml)? {
        let value = d
            .path
            .iter()
            .try_fold(&values, |v, k| v.get(k.as_str()))
            .ok_or_else(|| {
                ReadmeError(format!(
                    "values.yaml: `{}` is documented but not found when the file is read",
                    d.path.join(".")
                ))
            })?;
        let default = serde_json::to_string(value).unwrap_or_default();
        let _ = writeln!(
            md,
            "| `{}` | {} | `{}` | {} |",
            d.path.join("."),
            type_of(value),
            cell(&default),
            cell(&d.doc)
        );
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: &str = "\
# A header comment, not a value's.

# -- Pods of the operator.
replicas: 2
image:
  # -- Image repository,
  # without tag.
  repository: datajob-operator
  tag: \"\"
";

    #[test]
    fn an_undocumented_leaf_is_refused_with_its_path_and_line() {
        assert_eq!(
            documented(VALUES),
            Err(ReadmeError(
                "values.yaml line 9: `image.tag` has no `# --` comment (document it, or the map it is in)"
                    .into()
            ))
        );
    }

    #[test]
    fn a_documented_map_covers_its_keys_and_comments_continue() {
        let values = "\
# -- Requests and limits.
resources:
  requests:
    cpu: 100m
image:
  # -- Image repository,
  # without tag.
  repository: datajob-operator
# -- Node labels | pipes are escaped.
nodeSelector:
  kubernetes.io/arch: amd64
";
        let docs = documented(values).unwrap();
        let paths: Vec<String> = docs.iter().map(|d| d.path.join(".")).collect();
        assert_eq!(paths, ["resources", "image.repository", "nodeSelector"]);
        assert_eq!(docs[1].doc, "Image repository, without tag.");
        let md = render("name: x\nversion: 1.0.0\n", values).unwrap();
        assert!(md.contains("| `resources` | object | `{\"requests\":{\"cpu\":\"100m\"}}` | Requests and limits. |"), "{md}");
        assert!(md.contains("| `image.repository` | string | `\"datajob-operator\"` | Image repository, without tag. |"), "{md}");
        assert!(md.contains("Node labels \\| pipes are escaped."), "{md}");
    }
}

//! Reading DataJobs from a YAML file (or stdin), as `kubectl apply -f` would: every
//! document, with other kinds skipped and type errors named by their field.
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::error::{CliError, Result};
use datajob_api::DataJob;
use datajob_core::validation::Problem;

pub(crate) const API_VERSION: &str = "datajob.dev/v1alpha1";

/// One document of the file.
#[derive(Debug)]
pub(crate) enum Document {
    DataJob(Box<DataJob>),
    /// Parses as YAML but is not a DataJob's shape; the problem names the field.
    Malformed {
        name: String,
        problem: Problem,
    },
    /// Another kind of object; left alone.
    Other {
        kind: String,
        name: String,
    },
}

/// Reads `path` (`-` for stdin).
pub(crate) fn read(path: &Path) -> Result<(String, Vec<Document>)> {
    let label = path.display().to_string();
    let text = if label == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| CliError::Read {
                path: path.into(),
                source,
            })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.into(),
            source,
        })?
    };
    let label = if label == "-" { "stdin".into() } else { label };
    let docs = parse(&text).map_err(|message| CliError::Manifest {
        path: label.clone(),
        message,
    })?;
    Ok((label, docs))
}

/// Parses a multi-document YAML stream.
pub(crate) fn parse(text: &str) -> Result<Vec<Document>, String> {
    // serde-saphyr (kube's own YAML crate) says the line and column of a mistake, and
    // drops empty documents.
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("is not valid YAML: {e}"))?;
    let mut docs = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        docs.push(document(value, i + 1)?);
    }
    Ok(docs)
}

fn document(value: Value, index: usize) -> Result<Document, String> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind != "DataJob" {
        if kind.is_empty() {
            return Err(format!(
                "document {index} has no kind; a DataJob starts with apiVersion: {API_VERSION} and kind: DataJob"
            ));
        }
        return Ok(Document::Other {
            kind: kind.to_string(),
            name,
        });
    }
    if api_version != API_VERSION {
        return Err(format!(
            "document {index} ({name}) has apiVersion {api_version:?}; DataJobs are {API_VERSION}"
        ));
    }
    if name.is_empty() {
        return Err(format!(
            "document {index} has no metadata.name; give the DataJob a name"
        ));
    }
    match serde_json::from_value::<DataJob>(value.clone()) {
        Ok(dj) => Ok(Document::DataJob(Box::new(dj))),
        Err(e) => Ok(Document::Malformed {
            problem: locate(&value, &e.to_string()),
            name,
        }),
    }
}

/// Finds which field of the spec does not have the type the DataJob's schema wants,
/// by reading each field on its own.
fn locate(value: &Value, error: &str) -> Problem {
    let problem = |field: String, v: &Value, e: String| Problem {
        field,
        value: match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        problem: format!("is not what the DataJob schema expects ({e})"),
        fix: "see docs/api.md for the type of this field".into(),
    };
    let probe = |key: &str, v: &Value| {
        let mut spec = serde_json::Map::new();
        spec.insert("image".into(), Value::String("probe".into()));
        spec.insert(key.into(), v.clone());
        serde_json::from_value::<datajob_api::DataJobSpec>(Value::Object(spec)).err()
    };
    if let Some(Value::Object(spec)) = value.get("spec") {
        for (key, v) in spec {
            let Some(e) = probe(key, v) else { continue };
            if key == "resources"
                && let Value::Object(inner) = v
            {
                for (k, iv) in inner {
                    let single = Value::Object([(k.clone(), iv.clone())].into_iter().collect());
                    if let Some(e) = probe(key, &single) {
                        return problem(format!("spec.{key}.{k}"), iv, e.to_string());
                    }
                }
            }
            return problem(format!("spec.{key}"), v, e.to_string());
        }
    } else if value.get("spec").is_none() {
        return Problem {
            field: "spec".into(),
            value: String::new(),
            problem: "is missing".into(),
            fix: "add a spec with at least an image".into(),
        };
    }
    problem("spec".into(), &Value::Null, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_yaml_is_told_with_its_line_and_column_and_empty_documents_are_dropped() {
        let e =
            parse("apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nspec:\n  image: [busybox\n")
                .err()
                .unwrap();
        assert!(
            e.contains("is not valid YAML") && e.contains("line 4 column 10"),
            "{e}"
        );
        let docs =
            parse("---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn reads_every_document_and_skips_other_kinds() {
        let docs = parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
             apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: a}\nspec: {image: busybox}\n---\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert!(matches!(&docs[0], Document::Other { kind, .. } if kind == "ConfigMap"));
        assert!(matches!(&docs[1], Document::DataJob(d) if d.spec.image == "busybox"));
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        let docs = parse(
            "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: a}\n\
             spec: {image: busybox, retries: three}\n",
        )
        .unwrap();
        let Document::Malformed { problem, .. } = &docs[0] else {
            panic!("{docs:?}")
        };
        assert_eq!(problem.field, "spec.retries");
        assert_eq!(problem.value, "three");
        let docs = parse(
            "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: a}\n\
             spec: {image: busybox, resources: {cpu: 1, gpu: lots}}\n",
        )
        .unwrap();
        let Document::Malformed { problem, .. } = &docs[0] else {
            panic!("{docs:?}")
        };
        assert_eq!(problem.field, "spec.resources.gpu");
    }

    #[test]
    fn not_a_datajob_at_all() {
        assert!(parse("kind: DataJob\napiVersion: v1\nmetadata: {name: a}\n").is_err());
        assert!(parse("foo: bar\n").unwrap_err().contains("no kind"));
        assert!(parse("a: [\n").is_err());
    }
}

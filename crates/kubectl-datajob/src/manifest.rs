//! Reading DataJobs from a YAML file (or stdin), as `kubectl apply -f` would: every
//! document, with other kinds skipped and type errors named by their field, line and column.
use std::cell::OnceCell;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_path_to_error::Segment;
use serde_saphyr::Spanned;

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
    let source = Source {
        text,
        spans: OnceCell::new(),
    };
    let mut docs = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        docs.push(document(&value, i, &source)?);
    }
    Ok(docs)
}

fn document(value: &Value, i: usize, source: &Source<'_>) -> Result<Document, String> {
    let index = i + 1;
    let at = |path: &[Segment]| source.at(i, path);
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
                "document {index}{} has no kind; a DataJob starts with apiVersion: {API_VERSION} and kind: DataJob",
                at(&[])
            ));
        }
        return Ok(Document::Other {
            kind: kind.to_string(),
            name,
        });
    }
    if api_version != API_VERSION {
        return Err(format!(
            "document {index} ({name}) has apiVersion {api_version:?}{}; DataJobs are {API_VERSION}",
            at(&[key("apiVersion")])
        ));
    }
    if name.is_empty() {
        return Err(format!(
            "document {index} has no metadata.name{}; give the DataJob a name",
            at(&[key("metadata"), key("name")])
        ));
    }
    if value.get("spec").is_none() {
        return Ok(Document::Malformed {
            problem: Problem {
                field: "spec".into(),
                value: String::new(),
                problem: format!("is missing from the document{}", at(&[])),
                fix: "add a spec with at least an image".into(),
            },
            name,
        });
    }
    // serde_path_to_error names the field the typed DataJob refuses (`spec.env[2].value`),
    // in the YAML's own spelling; the span map says where that field is.
    match serde_path_to_error::deserialize::<_, DataJob>(value) {
        Ok(dj) => Ok(Document::DataJob(Box::new(dj))),
        Err(e) => {
            let path: Vec<Segment> = e.path().iter().cloned().collect();
            let field = if path.is_empty() {
                format!("document {index}")
            } else {
                e.path().to_string()
            };
            Ok(Document::Malformed {
                problem: Problem {
                    field,
                    value: match value_at(value, &path) {
                        Value::String(s) => s.clone(),
                        // At a mapping, a field is missing or a mapping is not wanted
                        // there: the message says which; the mapping's JSON would bury it.
                        Value::Object(_) => String::new(),
                        other => other.to_string(),
                    },
                    problem: format!(
                        "is not what the DataJob schema expects ({}){}",
                        e.inner(),
                        at(&path)
                    ),
                    fix: "see docs/api.md for the type of this field".into(),
                },
                name,
            })
        }
    }
}

fn key(k: &str) -> Segment {
    Segment::Map { key: k.into() }
}

/// The value at `path`, or the deepest value on the way that exists.
fn value_at<'v>(mut value: &'v Value, path: &[Segment]) -> &'v Value {
    for segment in path {
        let next = match (segment, value) {
            (Segment::Map { key }, Value::Object(map)) => map.get(key),
            (Segment::Seq { index }, Value::Array(items)) => items.get(*index),
            _ => None,
        };
        let Some(next) = next else { break };
        value = next;
    }
    value
}

/// The stream's text and, from the first error on, its span map: serde-saphyr's
/// location (`Spanned`) of every node of every document.
///
/// The walk from a path to its node is ours, because the typed DataJob is read from
/// the `serde_json::Value` of the first pass, where serde-saphyr's own error locations
/// cannot reach: `from_multiple` and `read` read every document of a stream as one
/// type, `with_deserializer_from_str` takes a single document, and a document is known
/// to be a DataJob only once its `kind` is read. serde-saphyr's own path-to-location
/// map (`path_map`) exists only for the errors of its garde and validator features.
/// Reading from the `Value` also keeps the DataJob read exactly as before.
struct Source<'t> {
    text: &'t str,
    spans: OnceCell<Option<Vec<Spanned<Shape>>>>,
}

impl Source<'_> {
    /// ` (line L, column C)` of the node at `path` of the `i`th non-empty document (or
    /// of the deepest node on the way that exists, e.g. the mapping a missing field
    /// belongs to); empty if the spans are not known.
    fn at(&self, i: usize, path: &[Segment]) -> String {
        let spans = self.spans.get_or_init(|| {
            // Same stream, same documents: serde-saphyr drops the same empty ones.
            serde_saphyr::from_multiple::<Spanned<Shape>>(self.text).ok()
        });
        let Some(mut node) = spans.as_ref().and_then(|docs| docs.get(i)) else {
            return String::new();
        };
        for segment in path {
            let next = match (segment, &node.value) {
                (Segment::Map { key }, Shape::Map(entries)) => {
                    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
                }
                (Segment::Seq { index }, Shape::Seq(items)) => items.get(*index),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
        }
        let (used, defined) = (node.referenced, node.defined);
        if used.line() == 0 {
            return String::new();
        }
        if defined == used || defined.line() == 0 {
            format!(" (line {}, column {})", used.line(), used.column())
        } else {
            format!(
                " (line {}, column {}, from the anchor at line {}, column {})",
                used.line(),
                used.column(),
                defined.line(),
                defined.column()
            )
        }
    }
}

/// The shape of a YAML node: its keys and items, each with where serde-saphyr found it.
#[derive(Debug)]
enum Shape {
    Map(Vec<(String, Spanned<Shape>)>),
    Seq(Vec<Spanned<Shape>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_i128<E>(self, _: i128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_u128<E>(self, _: u128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_bytes<E>(self, _: &[u8]) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_none<E>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        Shape::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        Shape::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Shape::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Shape::Map(entries))
    }
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

    /// The one problem of the file's only malformed document.
    fn malformed(text: &str) -> Problem {
        let docs = parse(text).unwrap();
        let mut bad = docs.into_iter().filter_map(|d| match d {
            Document::Malformed { problem, .. } => Some(problem),
            _ => None,
        });
        let problem = bad.next().expect("a malformed document");
        assert!(bad.next().is_none());
        problem
    }

    const HEAD: &str = "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: a}\n";

    #[test]
    fn a_wrong_type_is_told_with_its_line_and_column_in_flow_and_block_style() {
        let p = malformed(&format!("{HEAD}spec: {{image: busybox, retries: three}}\n"));
        assert_eq!(
            p.to_string(),
            "spec.retries \"three\" is not what the DataJob schema expects (invalid type: \
             string \"three\", expected i32) (line 4, column 33); see docs/api.md for the \
             type of this field"
        );
        let p = malformed(&format!(
            "{HEAD}spec: {{image: busybox, resources: {{cpu: 1, gpu: lots}}}}\n"
        ));
        assert_eq!(
            (p.field.as_str(), p.value.as_str()),
            ("spec.resources.gpu", "lots")
        );
        assert!(p.problem.ends_with(" (line 4, column 49)"), "{p}");
        let p = malformed(&format!(
            "{HEAD}spec:\n  image: busybox\n  resources:\n    cpu: 1\n    memory: [16Gi]\n"
        ));
        assert_eq!(p.field, "spec.resources.memory");
        assert_eq!(p.value, r#"["16Gi"]"#);
        assert!(p.problem.ends_with(" (line 8, column 13)"), "{p}");
    }

    #[test]
    fn an_item_of_a_list_is_named_by_its_index_past_comments_and_flow_items() {
        let p = malformed(&format!(
            "{HEAD}# the job\nspec:\n  image: busybox # pinned elsewhere\n  env:\n    \
             # first\n    - name: A\n      value: x\n    - {{name: B, value: \"y\"}} # quoted: not a bool\n    \
             - name: C\n      # a list is not a string\n      value: [1, 2]\n"
        ));
        assert_eq!(p.field, "spec.env[2].value");
        assert_eq!(p.value, "[1,2]");
        assert!(
            p.problem.contains(
                "expects (invalid type: sequence, expected a string) (line 14, column 14)"
            ),
            "{p}"
        );
    }

    #[test]
    fn lines_count_from_the_top_of_the_stream_across_documents() {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n---\n{HEAD}spec: {{image: busybox}}\n\
             ---\n{HEAD}spec:\n  image: busybox\n  suspend: sometimes\n"
        );
        let docs = parse(&text).unwrap();
        assert_eq!(docs.len(), 3);
        assert!(matches!(&docs[1], Document::DataJob(_)));
        let Document::Malformed { problem, .. } = &docs[2] else {
            panic!("{docs:?}")
        };
        assert_eq!(problem.field, "spec.suspend");
        assert_eq!(problem.value, "sometimes");
        assert!(
            problem.problem.ends_with(" (line 16, column 12)"),
            "{problem}"
        );
        let e = parse(&format!(
            "{HEAD}spec: {{image: b}}\n---\nkind: DataJob\napiVersion: v1\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "document 2 () has apiVersion \"v1\" (line 7, column 13); DataJobs are datajob.dev/v1alpha1"
        );
        let e = parse(&format!("{HEAD}spec: {{image: b}}\n---\nfoo: bar\n")).unwrap_err();
        assert!(
            e.starts_with("document 2 (line 6, column 1) has no kind;"),
            "{e}"
        );
        let e =
            parse("apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {}\n").unwrap_err();
        assert_eq!(
            e,
            "document 1 has no metadata.name (line 3, column 11); give the DataJob a name"
        );
    }

    #[test]
    fn an_alias_is_pointed_at_with_its_anchor() {
        let p = malformed(&format!(
            "{HEAD}spec:\n  image: busybox\n  podAnnotations: {{count: &n three}}\n  retries: *n\n"
        ));
        assert_eq!(
            (p.field.as_str(), p.value.as_str()),
            ("spec.retries", "three")
        );
        assert!(
            p.problem
                .ends_with(" (line 7, column 12, from the anchor at line 6, column 30)"),
            "{p}"
        );
        let p = malformed(&format!(
            "{HEAD}spec:\n  env: &env\n    - {{name: A, value: \"1\"}}\n  image: busybox\n  args: *env\n"
        ));
        assert_eq!(p.field, "spec.args[0]");
        // The item of the alias: used at `*env`, written at its own line in the anchor.
        assert!(
            p.problem.ends_with(
                "(invalid type: map, expected a string) (line 8, column 9, from the anchor at line 6, column 7)"
            ),
            "{p}"
        );
        let p = malformed(
            "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata:\n  name: a\n  \
             annotations: &defaults {retries: three}\nspec:\n  <<: *defaults\n  image: busybox\n",
        );
        // A merge key: used at `<<: *defaults`, written in the anchored mapping.
        assert_eq!(
            (p.field.as_str(), p.value.as_str()),
            ("spec.retries", "three")
        );
        assert!(
            p.problem
                .ends_with(" (line 7, column 7, from the anchor at line 5, column 36)"),
            "{p}"
        );
    }

    #[test]
    fn a_missing_field_points_at_its_mapping() {
        let p = malformed(&format!("{HEAD}spec:\n  retries: 3\n"));
        assert_eq!(
            p.to_string(),
            "spec \"\" is not what the DataJob schema expects (missing field `image`) \
             (line 5, column 3); see docs/api.md for the type of this field"
        );
        let p = malformed(HEAD);
        assert_eq!(
            p.to_string(),
            "spec \"\" is missing from the document (line 1, column 1); add a spec with at least an image"
        );
    }
}

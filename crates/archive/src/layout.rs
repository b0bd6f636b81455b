//! Object keys: `{prefix}{namespace}/{datajob}/{run}/{created}-{pod}/{container}.log`.
//!
//! `created` is the pod's creation time in Unix seconds, zero-padded, so the attempts of
//! a run list in the order they were made: attempt 1 is the first.
use chrono::{DateTime, Utc};

/// The suffix of every log object.
const LOG: &str = ".log";

/// One attempt of a run: one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptKey<'a> {
    pub namespace: &'a str,
    pub datajob: &'a str,
    pub run: &'a str,
    pub pod: &'a str,
    pub created: DateTime<Utc>,
}

impl AttemptKey<'_> {
    /// The key of one container's log of this attempt.
    pub fn object(&self, prefix: &str, container: &str) -> String {
        format!(
            "{}{:012}-{}/{container}{LOG}",
            run_prefix(prefix, self.namespace, self.datajob, self.run),
            self.created.timestamp().max(0),
            self.pod,
        )
    }
}

/// The prefix under which all of a DataJob's runs are kept.
pub fn datajob_prefix(prefix: &str, namespace: &str, datajob: &str) -> String {
    format!("{prefix}{namespace}/{datajob}/")
}

/// The prefix under which all attempts of one run are kept.
pub fn run_prefix(prefix: &str, namespace: &str, datajob: &str, run: &str) -> String {
    format!("{}{run}/", datajob_prefix(prefix, namespace, datajob))
}

/// What a key under the archive's prefix names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub namespace: &'a str,
    pub datajob: &'a str,
    pub run: &'a str,
    /// `{created}-{pod}`: sorts in the order the attempts were made.
    pub attempt: &'a str,
    pub container: &'a str,
}

impl Parsed<'_> {
    /// The pod of the attempt.
    pub fn pod(&self) -> &str {
        self.attempt
            .split_once('-')
            .map_or(self.attempt, |(_, pod)| pod)
    }
}

/// Reads a key back; `None` for anything else in the bucket.
pub fn parse<'a>(prefix: &str, key: &'a str) -> Option<Parsed<'a>> {
    let rest = key.strip_prefix(prefix)?;
    let mut parts = rest.split('/');
    let parsed = Parsed {
        namespace: parts.next().filter(|s| !s.is_empty())?,
        datajob: parts.next().filter(|s| !s.is_empty())?,
        run: parts.next().filter(|s| !s.is_empty())?,
        attempt: parts.next().filter(|s| !s.is_empty())?,
        container: parts.next()?.strip_suffix(LOG).filter(|s| !s.is_empty())?,
    };
    parts.next().is_none().then_some(parsed)
}

/// One attempt found in the archive: its pod and the containers whose logs it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt of the run.
    pub number: usize,
    pub pod: String,
    /// `(container, key)`, in key order.
    pub logs: Vec<(String, String)>,
}

/// The attempts of one run from the keys listed under its [`run_prefix`], first first.
pub fn attempts(prefix: &str, keys: &[String]) -> Vec<Attempt> {
    let mut parsed: Vec<(Parsed<'_>, &String)> = keys
        .iter()
        .filter_map(|k| parse(prefix, k).map(|p| (p, k)))
        .collect();
    parsed.sort_by(|a, b| (a.0.attempt, a.0.container).cmp(&(b.0.attempt, b.0.container)));
    let mut out: Vec<Attempt> = Vec::new();
    let mut current: Option<&str> = None;
    for (p, key) in parsed {
        if current != Some(p.attempt) {
            current = Some(p.attempt);
            out.push(Attempt {
                number: out.len() + 1,
                pod: p.pod().to_string(),
                logs: Vec::new(),
            });
        }
        if let Some(a) = out.last_mut() {
            a.logs.push((p.container.to_string(), key.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_key_reads_back_and_attempts_sort_in_the_order_they_were_made() {
        let key = |pod: &str, created: &str, container: &str| {
            AttemptKey {
                namespace: "team-a",
                datajob: "nightly",
                run: "nightly-29934840",
                pod,
                created: at(created),
            }
            .object("logs/", container)
        };
        let first = key("nightly-29934840-zz9", "2026-12-01T02:00:05Z", "main");
        assert_eq!(
            first,
            "logs/team-a/nightly/nightly-29934840/001796090405-nightly-29934840-zz9/main.log"
        );
        let p = parse("logs/", &first).unwrap();
        assert_eq!(
            (p.namespace, p.datajob, p.run, p.pod(), p.container),
            (
                "team-a",
                "nightly",
                "nightly-29934840",
                "nightly-29934840-zz9",
                "main"
            )
        );
        // A second attempt made later sorts after, whatever its pod's random suffix.
        let second = key("nightly-29934840-aa1", "2026-12-01T02:03:00Z", "main");
        let stage = key("nightly-29934840-zz9", "2026-12-01T02:00:05Z", "stage");
        let found = attempts("logs/", &[second.clone(), first.clone(), stage.clone()]);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].number, found[0].pod.as_str()),
            (1, "nightly-29934840-zz9")
        );
        assert_eq!(
            found[0].logs,
            [("main".to_string(), first), ("stage".to_string(), stage)]
        );
        assert_eq!(
            (found[1].number, found[1].pod.as_str()),
            (2, "nightly-29934840-aa1")
        );
    }

    #[test]
    fn keys_that_are_not_ours_are_ignored() {
        for key in [
            "other/team-a/nightly/run/1-pod/main.log",
            "logs/team-a/nightly/run/1-pod/main.txt",
            "logs/team-a/nightly/run/1-pod/extra/main.log",
            "logs/team-a/nightly/run//main.log",
            "logs/team-a/nightly",
        ] {
            assert_eq!(parse("logs/", key), None, "{key}");
        }
    }
}

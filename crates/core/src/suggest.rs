//! "Did you mean …?": the names closest to a mistyped one.

/// Edit distance (insertions, deletions, substitutions) between `a` and `b`.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Up to three `candidates` close to `wanted`, closest first: a small edit distance
/// (a third of the length, at least 2) or one contains the other.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let limit = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .filter_map(|c| {
            let d = distance(wanted, c);
            let contains = wanted.len() >= 3 && (c.contains(wanted) || wanted.contains(c));
            (d <= limit || contains).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// `a`, `a or b`, `a, b or c`.
pub fn or_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("churn", "churn"), 0);
        assert_eq!(distance("chrun", "churn"), 2);
        assert_eq!(distance("churn-feature", "churn-features"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["churn-features", "raw-events", "train-ranker"];
        assert_eq!(closest("churn-feature", names), vec!["churn-features"]);
        assert_eq!(closest("churn", names), vec!["churn-features"]);
        assert!(closest("nightly", names).is_empty());
        assert_eq!(or_list(&["a".into(), "b".into(), "c".into()]), "a, b or c");
    }
}

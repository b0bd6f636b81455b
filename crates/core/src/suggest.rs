//! "Did you mean …?": the names closest to a mistyped one.

/// The longest name a suggestion is looked for, or offered: a Kubernetes name part (a DNS
/// label) has at most 63 characters, and one edit distance then costs a machine word
/// per character ([`Pattern`]). A longer "name" is no typo of a name.
pub const MAX_NAME_CHARS: usize = 64;
/// The most candidates one call compares: a suggestion costs at most this many distances
/// however many DataJobs a namespace holds (issue 25: expensive input). A DataJob with 64
/// mistyped inputs then costs 64 × 512 distances of at most 64 characters: about 10 ms.
pub const MAX_CANDIDATES: usize = 512;

/// Edit distance (insertions, deletions, substitutions) between `a` and `b`.
///
/// Linear when `a` is ASCII and 1 to [`MAX_NAME_CHARS`] long (every name [`closest`]
/// compares): [`Pattern`]. Otherwise the plain table, `a.len() × b.len()`.
#[cfg(test)]
fn distance(a: &str, b: &str) -> usize {
    match Pattern::new(a) {
        Some(pattern) => pattern.distance(b),
        None => table(a, b),
    }
}

/// A pattern of 1 to 64 ASCII characters, ready for Myers' bit-parallel edit distance
/// (Hyyrö's formulation for whole strings): built once, compared with many texts.
struct Pattern {
    /// For each ASCII character, the positions where the pattern has it.
    peq: [u64; 128],
    /// The bit of the pattern's last character.
    high: u64,
    len: usize,
}

impl Pattern {
    fn new(pattern: &str) -> Option<Pattern> {
        let bytes = pattern.as_bytes();
        if !pattern.is_ascii() || bytes.is_empty() || bytes.len() > MAX_NAME_CHARS {
            return None;
        }
        let mut peq = [0u64; 128];
        for (i, c) in bytes.iter().enumerate() {
            peq[usize::from(*c & 0x7f)] |= 1 << i;
        }
        Some(Pattern {
            peq,
            high: 1 << (bytes.len() - 1),
            len: bytes.len(),
        })
    }

    /// The edit distance to `text`: a few word operations per character of `text`.
    fn distance(&self, text: &str) -> usize {
        match text.is_ascii() {
            true => self.distance_to(text.bytes().map(usize::from)),
            false => self.distance_to(text.chars().map(|c| c as usize)),
        }
    }

    /// The edit distance to the characters `text` (as numbers).
    fn distance_to(&self, text: impl Iterator<Item = usize>) -> usize {
        let (mut pv, mut mv, mut score) = (!0u64, 0u64, self.len);
        for c in text {
            // A character not in the (ASCII) pattern matches nowhere.
            let eq = self.peq.get(c).copied().unwrap_or(0);
            let xv = eq | mv;
            let xh = (((eq & pv).wrapping_add(pv)) ^ pv) | eq;
            let ph = mv | !(xh | pv);
            let mh = pv & xh;
            // Without branches: which way the score goes is data, not worth predicting.
            score = score + usize::from(ph & self.high != 0) - usize::from(mh & self.high != 0);
            // The first row of the table counts up by one per character of `text`.
            let ph = (ph << 1) | 1;
            pv = (mh << 1) | !(xv | ph);
            mv = ph & xv;
        }
        score
    }
}

/// The dynamic-programming table, one row at a time: what [`Pattern`] is checked against.
#[cfg(test)]
fn table(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to three `candidates` close to `wanted`, closest first: a small edit distance
/// (a third of the length, at least 2) or one contains the other.
///
/// Bounded whatever it is given: no suggestion for a `wanted` longer than
/// [`MAX_NAME_CHARS`] or not ASCII (no name is), candidates of that kind are passed
/// over, and at most [`MAX_CANDIDATES`] are compared, each in time linear in its length.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let Some(pattern) = Pattern::new(wanted) else {
        return Vec::new();
    };
    let limit = (wanted.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| c.is_ascii() && c.len() <= MAX_NAME_CHARS && *c != wanted)
        .take(MAX_CANDIDATES)
        .filter_map(|c| {
            let contains = wanted.len() >= 3
                && match c.len().cmp(&wanted.len()) {
                    std::cmp::Ordering::Greater => c.contains(wanted),
                    std::cmp::Ordering::Less => wanted.contains(c),
                    std::cmp::Ordering::Equal => false,
                };
            // The distance is at least the difference of the lengths.
            if !contains && c.len().abs_diff(wanted.len()) > limit {
                return None;
            }
            let d = pattern.distance(c);
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
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("a", "\u{e9}a\u{e9}"), 2);
    }

    #[test]
    fn the_linear_distance_is_the_table_distance() {
        // Deterministic pseudo-random strings over a small alphabet (many near misses),
        // every pattern length up to the word size.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let alphabet: Vec<char> = "ab-c\u{e9}".chars().collect();
        for _ in 0..4000 {
            let len_a = 1 + next(MAX_NAME_CHARS as u64) as usize;
            let len_b = next(80) as usize;
            let mut word = |len: usize, ascii: bool| -> String {
                (0..len)
                    .map(|_| alphabet[next(alphabet.len() as u64 - u64::from(ascii)) as usize])
                    .collect()
            };
            let (a, b) = (word(len_a, true), word(len_b, false));
            assert_eq!(distance(&a, &b), table(&a, &b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn suggestions_stay_cheap_for_long_or_many_names() {
        assert!(closest(&"a".repeat(100_000), ["a"]).is_empty());
        assert!(closest("a", [&*"a".repeat(100_000)]).is_empty());
        // Past the cap, candidates are not compared.
        let many: Vec<String> = (0..MAX_CANDIDATES + 10)
            .map(|i| format!("job-{i:05}"))
            .collect();
        let last = format!("job-{:05}", MAX_CANDIDATES + 5);
        // `last` would be the closest (it is contained), but it is past the cap.
        let close = closest(&format!("{last}x"), many.iter().map(String::as_str));
        assert!(!close.contains(&last), "{close:?}");
        assert!(!closest("job-00001", many.iter().map(String::as_str)).is_empty());
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

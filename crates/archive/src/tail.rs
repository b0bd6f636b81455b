//! A bounded copy of a log: at most `max` bytes are held; past that, the oldest go and
//! the copy starts with a line that says how much was cut.
use std::collections::VecDeque;

/// The default bound of one container's log in the archive: 10 MiB.
pub const DEFAULT_MAX_BYTES: usize = 10 << 20;

/// The tail of a log, at most `max` bytes of it.
#[derive(Debug)]
pub struct Tail {
    max: usize,
    kept: VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    pub fn new(max: usize) -> Self {
        Tail {
            max,
            kept: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Appends what the log said next; the oldest bytes beyond the bound go.
    pub fn push(&mut self, bytes: &[u8]) {
        let take = if bytes.len() > self.max {
            let skip = bytes.len() - self.max;
            self.dropped += skip as u64;
            &bytes[skip..]
        } else {
            bytes
        };
        self.kept.extend(take);
        let over = self.kept.len().saturating_sub(self.max);
        if over > 0 {
            self.kept.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// Bytes cut from the front.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The copy to keep: the tail, after a line saying what was cut (from the first
    /// whole line on, so no line is kept half).
    pub fn finish(self) -> Vec<u8> {
        let mut kept: Vec<u8> = self.kept.into();
        if self.dropped == 0 {
            return kept;
        }
        let mut cut = self.dropped;
        if let Some(nl) = kept.iter().position(|b| *b == b'\n') {
            cut += nl as u64 + 1;
            kept.drain(..=nl);
        }
        let mut out = format!(
            "[datajob: the log was longer than the archive keeps; its first {cut} bytes were cut, the last {} follow]\n",
            kept.len()
        )
        .into_bytes();
        out.extend(kept);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_is_kept_whole() {
        let mut t = Tail::new(100);
        t.push(b"one\n");
        t.push(b"two\n");
        assert_eq!(t.finish(), b"one\ntwo\n");
    }

    #[test]
    fn a_long_log_keeps_its_whole_last_lines_after_a_line_that_says_so() {
        let mut t = Tail::new(12);
        for line in ["first\n", "second\n", "third\n", "fourth\n"] {
            t.push(line.as_bytes());
        }
        assert_eq!(t.dropped(), 26 - 12);
        let out = String::from_utf8(t.finish()).unwrap();
        assert_eq!(
            out,
            "[datajob: the log was longer than the archive keeps; its first 19 bytes were cut, the last 7 follow]\nfourth\n"
        );
    }

    #[test]
    fn one_push_larger_than_the_bound_keeps_only_its_end() {
        let mut t = Tail::new(4);
        t.push(b"abcdefgh");
        assert_eq!(t.dropped(), 4);
        assert!(String::from_utf8(t.finish()).unwrap().ends_with("efgh"));
    }
}

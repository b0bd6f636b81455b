//! Which Backfills may start runs: at most a few at once across the operator (issue 25
//! item 7: 50 Backfills of 10 000 times each all ran at once). Those with runs going
//! keep their place; the others take the free places oldest first (creation time, then
//! namespace and name), so the order is fair and every replica computes the same one.
use chrono::{DateTime, Utc};

use datajob_api::{BackfillState, BackfillStatus};

/// A Backfill that has times left, as the limit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    pub created: Option<DateTime<Utc>>,
    pub namespace: String,
    pub name: String,
    /// It has runs going (its status, for its current spec, counts some active).
    pub going: bool,
}

impl Contender {
    /// A Backfill with times left (it follows its current spec and is neither complete
    /// nor invalid, or its new spec was not looked at yet); `None` when it has none.
    pub fn of(
        namespace: &str,
        name: &str,
        created: Option<DateTime<Utc>>,
        generation: Option<i64>,
        status: Option<&BackfillStatus>,
    ) -> Option<Contender> {
        let current = status.filter(|s| s.observed_generation == generation);
        let finished = current.is_some_and(|s| {
            matches!(
                s.state,
                Some(BackfillState::Complete | BackfillState::Invalid)
            )
        });
        (!finished).then(|| Contender {
            created,
            namespace: namespace.to_string(),
            name: name.to_string(),
            going: current.is_some_and(|s| s.active > 0),
        })
    }

    fn order(&self) -> (bool, Option<DateTime<Utc>>, &str, &str) {
        (!self.going, self.created, &self.namespace, &self.name)
    }

    fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }
}

/// How the message of a Backfill that waits for a place begins (its `Complete`
/// condition's reason is then `WaitingForPlace`).
pub const WAITING: &str = "waiting: ";

/// Whether a Backfill may start runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Go,
    /// Every place is taken; `ahead` others wait before it.
    Wait {
        limit: usize,
        ahead: usize,
    },
}

impl Turn {
    /// The status message of a Backfill that waits.
    pub fn message(self, done: i32, total: i32) -> Option<String> {
        match self {
            Turn::Go => None,
            Turn::Wait { limit, ahead } => Some(format!(
                "{WAITING}{limit} Backfills are running (the operator runs at most {limit} at once){}; {done} of {total} times done, it carries on when one finishes",
                match ahead {
                    0 => String::new(),
                    1 => ", 1 waits before this one".to_string(),
                    n => format!(", {n} wait before this one"),
                }
            )),
        }
    }
}

/// The contenders that have a place: those going first, then the oldest; at most
/// `limit` (at least 1).
pub fn placed(contenders: &[Contender], limit: usize) -> Vec<&Contender> {
    let mut order: Vec<&Contender> = contenders.iter().collect();
    order.sort_by(|a, b| a.order().cmp(&b.order()));
    order.truncate(limit.max(1));
    order
}

/// The turn of Backfill `namespace/name` among `contenders` (itself included).
pub fn turn(namespace: &str, name: &str, contenders: &[Contender], limit: usize) -> Turn {
    let limit = limit.max(1);
    let mut order: Vec<&Contender> = contenders.iter().collect();
    order.sort_by(|a, b| a.order().cmp(&b.order()));
    match order.iter().position(|c| c.is(namespace, name)) {
        Some(i) if i >= limit => Turn::Wait {
            limit,
            ahead: i - limit,
        },
        // Not a contender (not in the cache yet): the caller's own view decides.
        _ => Turn::Go,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, minute: u32, going: bool) -> Contender {
        Contender {
            created: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, 0, minute, 0).single(),
            namespace: "data".into(),
            name: name.into(),
            going,
        }
    }

    #[test]
    fn at_most_the_limit_go_those_going_keep_their_place_and_the_oldest_come_next() {
        // d is the oldest but waits: a, c are going and keep their places.
        let all = vec![
            c("a", 5, true),
            c("b", 6, false),
            c("c", 9, true),
            c("d", 1, false),
        ];
        let turns: Vec<Turn> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| turn("data", n, &all, 3))
            .collect();
        assert_eq!(
            turns,
            [
                Turn::Go,
                Turn::Wait { limit: 3, ahead: 0 },
                Turn::Go,
                Turn::Go
            ]
        );
        let names: Vec<&str> = placed(&all, 3).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        // 50 waiting, none going: the 8 oldest go, in creation order, whatever the order
        // of the cache.
        let many: Vec<Contender> = (0..50)
            .rev()
            .map(|i| c(&format!("bf-{i:02}"), i, false))
            .collect();
        let going = many
            .iter()
            .filter(|x| turn("data", &x.name, &many, 8) == Turn::Go)
            .count();
        assert_eq!(going, 8);
        assert_eq!(turn("data", "bf-07", &many, 8), Turn::Go);
        assert_eq!(
            turn("data", "bf-10", &many, 8),
            Turn::Wait { limit: 8, ahead: 2 }
        );
    }

    #[test]
    fn a_complete_or_invalid_backfill_holds_no_place_unless_its_spec_changed() {
        let status = |state, active, generation| BackfillStatus {
            state: Some(state),
            active,
            observed_generation: Some(generation),
            ..Default::default()
        };
        let of = |s: &BackfillStatus, generation| {
            Contender::of("d", "b", None, Some(generation), Some(s))
        };
        assert_eq!(of(&status(BackfillState::Complete, 0, 1), 1), None);
        assert_eq!(of(&status(BackfillState::Invalid, 0, 1), 1), None);
        assert!(of(&status(BackfillState::Running, 2, 1), 1).is_some_and(|c| c.going));
        assert!(of(&status(BackfillState::Running, 0, 1), 1).is_some_and(|c| !c.going));
        // A new spec is a new backfill: it waits for a place; its old runs are not its.
        assert!(of(&status(BackfillState::Complete, 0, 1), 2).is_some_and(|c| !c.going));
        assert!(of(&status(BackfillState::Running, 2, 1), 2).is_some_and(|c| !c.going));
        assert!(Contender::of("d", "b", None, Some(1), None).is_some());
    }

    #[test]
    fn a_waiting_backfill_says_why_in_plain_words() {
        let w = Turn::Wait { limit: 8, ahead: 2 }.message(0, 10000);
        assert_eq!(
            w.as_deref(),
            Some(
                "waiting: 8 Backfills are running (the operator runs at most 8 at once), 2 wait before this one; 0 of 10000 times done, it carries on when one finishes"
            )
        );
        assert_eq!(Turn::Go.message(0, 1), None);
    }
}

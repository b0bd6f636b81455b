//! After each attempt of a local run: retry, or finish with which state and reason.
//! The same rules as the cluster's Job: at most `retries + 1` attempts, exit codes 126
//! and 127 never retried, and one deadline for the whole run.
use std::time::Duration;

use serde::Serialize;

use datajob_api::RunState;
use datajob_core::decide::children::UNRETRYABLE_EXIT_CODES;
use datajob_core::units;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    /// The process (or container) exited; `oom` when the engine says it was killed
    /// for memory.
    Exited { code: i32, oom: bool },
    /// The run's deadline passed and the attempt was stopped.
    DeadlineExceeded,
    /// The user pressed Ctrl-C.
    Interrupted,
}

impl AttemptEnd {
    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self {
            AttemptEnd::Exited { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The run's outcome, in the words the cluster uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    pub state: RunState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry,
    Finish(Outcome),
}

fn failed(reason: &str, message: String) -> Decision {
    Decision::Finish(Outcome {
        state: RunState::Failed,
        reason: Some(reason.into()),
        message,
    })
}

/// The outcome of a run stopped at its deadline.
pub(crate) fn deadline_exceeded(deadline: Duration) -> Outcome {
    Outcome {
        state: RunState::Failed,
        reason: Some("DeadlineExceeded".into()),
        message: format!(
            "the run took longer than its deadline ({}) and was stopped; raise spec.deadline or make the job faster",
            units::format_duration(deadline)
        ),
    }
}

/// The outcome of a run the user stopped.
pub(crate) fn interrupted() -> Outcome {
    Outcome {
        state: RunState::Failed,
        reason: Some("Interrupted".into()),
        message: "the run was interrupted (Ctrl-C) and stopped".into(),
    }
}

/// What follows attempt number `attempt` (1-based) of a run allowed `retries` retries.
pub(crate) fn decide(end: &AttemptEnd, attempt: u32, retries: u32, deadline: Duration) -> Decision {
    match *end {
        AttemptEnd::Exited { code: 0, .. } => Decision::Finish(Outcome {
            state: RunState::Succeeded,
            reason: None,
            message: format!(
                "the run succeeded on attempt {attempt} of at most {}",
                retries + 1
            ),
        }),
        AttemptEnd::DeadlineExceeded => Decision::Finish(deadline_exceeded(deadline)),
        AttemptEnd::Interrupted => Decision::Finish(interrupted()),
        AttemptEnd::Exited { code, .. } if UNRETRYABLE_EXIT_CODES.contains(&code) => {
            let what = if code == 127 {
                "the command was not found (exit code 127)"
            } else {
                "the command could not be executed (exit code 126)"
            };
            failed(
                "CommandNotRunnable",
                format!("{what}; retrying cannot fix it, so the run was not retried"),
            )
        }
        AttemptEnd::Exited { .. } if attempt <= retries => Decision::Retry,
        AttemptEnd::Exited { code, oom: true } => failed(
            "OutOfMemory",
            format!(
                "the container was killed for using more than its memory (exit code {code}) on its last attempt; raise spec.resources.memory"
            ),
        ),
        AttemptEnd::Exited { code, .. } => failed(
            "RetriesExhausted",
            format!(
                "the run failed {attempt} time(s) and has no retries left; the last attempt exited with code {code}"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(60);

    fn exited(code: i32) -> AttemptEnd {
        AttemptEnd::Exited { code, oom: false }
    }

    fn reason(d: Decision) -> Option<String> {
        match d {
            Decision::Finish(o) => o.reason,
            Decision::Retry => Some("retry".into()),
        }
    }

    #[test]
    fn success_finishes() {
        let Decision::Finish(o) = decide(&exited(0), 2, 2, D) else {
            panic!()
        };
        assert_eq!(o.state, RunState::Succeeded);
        assert_eq!(o.reason, None);
    }

    #[test]
    fn a_failure_is_retried_exactly_retries_times() {
        assert_eq!(decide(&exited(3), 1, 2, D), Decision::Retry);
        assert_eq!(decide(&exited(3), 2, 2, D), Decision::Retry);
        assert_eq!(
            reason(decide(&exited(3), 3, 2, D)).as_deref(),
            Some("RetriesExhausted")
        );
        assert_eq!(
            reason(decide(&exited(3), 1, 0, D)).as_deref(),
            Some("RetriesExhausted")
        );
    }

    #[test]
    fn what_retrying_cannot_fix_is_not_retried() {
        for code in [126, 127] {
            assert_eq!(
                reason(decide(&exited(code), 1, 5, D)).as_deref(),
                Some("CommandNotRunnable")
            );
        }
        assert_eq!(
            reason(decide(&AttemptEnd::DeadlineExceeded, 1, 5, D)).as_deref(),
            Some("DeadlineExceeded")
        );
        assert_eq!(
            reason(decide(&AttemptEnd::Interrupted, 1, 5, D)).as_deref(),
            Some("Interrupted")
        );
    }

    #[test]
    fn out_of_memory_on_the_last_attempt_says_so() {
        let oom = AttemptEnd::Exited {
            code: 137,
            oom: true,
        };
        assert_eq!(decide(&oom, 1, 1, D), Decision::Retry);
        assert_eq!(
            reason(decide(&oom, 2, 1, D)).as_deref(),
            Some("OutOfMemory")
        );
    }
}

//! Flag values that several commands take, parsed with the flag's name in the error.
use chrono::{DateTime, Utc};

use crate::error::{CliError, Result};
use datajob_core::labels;

/// The time a flag such as `--at` names, RFC 3339; now when the flag is not given.
pub(crate) fn time_or_now(flag: &str, value: Option<&str>) -> Result<DateTime<Utc>> {
    match value {
        Some(s) => labels::parse_rfc3339(s).ok_or_else(|| {
            CliError::Usage(format!(
                "{flag} {s:?} is not an RFC 3339 time; write e.g. 2026-11-25T03:00:00Z"
            ))
        }),
        None => Ok(Utc::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_flag_is_rfc_3339_or_now_and_a_bad_one_names_the_flag() {
        let t = time_or_now("--at", Some("2026-11-25T03:00:00Z")).unwrap();
        assert_eq!(labels::rfc3339(t), "2026-11-25T03:00:00Z");
        let before = Utc::now();
        assert!(time_or_now("--at", None).unwrap() >= before);
        let err = time_or_now("--logical-time", Some("tomorrow")).unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("--logical-time") && said.contains("\"tomorrow\""),
            "{said}"
        );
        assert!(said.contains("2026-11-25T03:00:00Z"), "{said}");
    }
}

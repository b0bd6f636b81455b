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

/// `--request-timeout`, as kubectl reads it: whole seconds (`30`), or a Go duration of
/// `h`, `m`, `s`, `ms` parts (`1m30s`, `500ms`); `0` is no limit.
pub(crate) fn request_timeout(value: &str) -> std::result::Result<std::time::Duration, String> {
    let bad = || {
        format!(
            "--request-timeout {value:?} is not a duration; write seconds (30) or a duration such as 30s, 1m or 500ms (0: no limit)"
        )
    };
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = ["ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let part = match unit {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            _ => std::time::Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_timeout_reads_as_kubectl_reads_it() {
        let d = |s: &str| request_timeout(s).map(|d| d.as_millis());
        assert_eq!(d("30"), Ok(30_000));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("30s"), Ok(30_000));
        assert_eq!(d("1m30s"), Ok(90_000));
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("2h"), Ok(7_200_000));
        for bad in ["", "soon", "1d", "5 s", "-1s", "1.5s", "s"] {
            let e = request_timeout(bad).unwrap_err();
            assert!(
                e.contains("--request-timeout") && e.contains("30s"),
                "{bad}: {e}"
            );
        }
    }

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

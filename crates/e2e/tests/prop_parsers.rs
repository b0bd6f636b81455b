//! Property tests of every parser of what users write, on generated and arbitrary input
//! (proptest): cron schedules, time zones, durations and quantities never panic; what
//! they accept reads back the same when formatted; and what DataJob's validation reads
//! from a quantity is exactly what Kubernetes reads from it.
//!
//! `PROPTEST_CASES=N` sets the number of cases of every property (default below);
//! `make fuzz` runs them long. docs/reliability.md has the figures.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datajob_e2e::strategies;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use datajob_core::resources::parse_quantity;
use datajob_core::schedule::{Schedule, parse_time_zone};
use datajob_core::units::{
    format_bytes, format_cpu, format_duration, parse_bytes, parse_cpu_millis, parse_duration,
};
use proptest::prelude::*;

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // A failure is shrunk and printed; it is not written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn durations_never_panic_and_read_back_the_same(s in prop_oneof![strategies::duration(), strategies::text()]) {
        if let Ok(d) = parse_duration(&s) {
            prop_assert!(d.as_secs() > 0, "{s:?} parsed to zero");
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{:?}", s);
        }
    }

    #[test]
    fn every_duration_is_formatted_so_that_it_parses_back(secs in 1u64..10_000_000_000) {
        let d = std::time::Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn quantities_never_panic_and_validation_reads_what_kubernetes_reads(s in prop_oneof![strategies::quantity(), strategies::text()]) {
        let k8s = parse_quantity(&s);
        // DataJob's validation accepts a subset of Kubernetes' grammar (no exponents, no
        // fractions of a byte or of a millicore), and reads each the same way.
        if let Ok(bytes) = parse_bytes(&s) {
            prop_assert_eq!(k8s.clone(), Ok(i128::from(bytes) * 1_000_000_000), "memory {:?}", s);
        }
        if let Ok(millis) = parse_cpu_millis(&s) {
            prop_assert_eq!(k8s, Ok(i128::from(millis) * 1_000_000), "cpu {:?}", s);
        }
    }

    #[test]
    fn what_the_pod_asks_for_is_exactly_what_was_resolved(bytes in any::<u64>(), millis in any::<u64>()) {
        let b = format_bytes(bytes);
        prop_assert_eq!(parse_bytes(&b), Ok(bytes), "{}", b);
        prop_assert_eq!(parse_quantity(&b), Ok(i128::from(bytes) * 1_000_000_000), "{}", b);
        let c = format_cpu(millis);
        prop_assert_eq!(parse_cpu_millis(&c), Ok(millis), "{}", c);
        prop_assert_eq!(parse_quantity(&c), Ok(i128::from(millis) * 1_000_000), "{}", c);
    }

    #[test]
    fn time_zones_never_panic(s in prop_oneof![strategies::time_zone(), strategies::text()]) {
        if let Ok(tz) = parse_time_zone(&s) {
            prop_assert_eq!(tz.name(), s.as_str());
        }
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn schedules_never_panic_and_an_accepted_one_always_fires(
        expr in prop_oneof![8 => strategies::schedule(), 1 => strategies::text()],
        tz in strategies::time_zone(),
        offset in 0i64..(20 * 365 * 86_400),
    ) {
        let tz = parse_time_zone(&tz).unwrap_or(Tz::UTC);
        let Ok(s) = Schedule::parse(&expr, tz) else { return Ok(()) };
        // What the CronJob gets is five fields or a macro Kubernetes knows.
        let macro_ = ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"];
        prop_assert!(
            s.cronjob.split_whitespace().count() == 5 || macro_.contains(&s.cronjob.as_str()),
            "{:?} -> {:?}", expr, s.cronjob
        );
        let t = Utc.timestamp_opt(1_767_225_600 + offset, 0).single().unwrap_or_else(Utc::now);
        let runs = s.upcoming(t, 4);
        prop_assert!(!runs.is_empty(), "{:?} accepted but never fires after {}", expr, t);
        prop_assert!(runs.windows(2).all(|w| w[0] < w[1]), "{:?}: {:?}", expr, runs);
        prop_assert!(runs[0] > t);
        prop_assert_eq!(s.next_after(t), Some(runs[0]));
        if let Some(gap) = s.min_interval(t) {
            prop_assert!(gap.num_seconds() >= 60, "{:?}: {:?}", expr, gap);
        }
    }

    #[test]
    fn kubernetes_quantities_never_panic(s in any::<String>()) {
        let _ = parse_quantity(&s);
    }
}

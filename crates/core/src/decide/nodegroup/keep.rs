//! The cost rule of the `Schedule` scale-down policy: keep an empty node for a scheduled
//! run due soon, or remove it now and boot another for the run?
//!
//! Keeping costs `price × idle time` (the node idles until the run is due). Removing it
//! costs `price × boot time` for the node booted for the run (or `price ×
//! warmUpBefore`, when the warm-up starts it earlier than a boot needs) plus the
//! lateness that boot causes the run: the part of the boot that no warm-up covers, when
//! the node is started only once the run's pod waits. Lateness is charged at the node's
//! price: a minute late costs as much as a minute of the node the run waits for. The
//! node stays when keeping costs no more. The price multiplies both sides, so the rule
//! is the same for every price (and for groups without one).
//!
//! Consequences: without warm-up a node is kept for a run due within twice the boot time
//! (the boot time, plus the lateness as the margin); with `warmUpBefore` at least the
//! boot time, only for a run due within `warmUpBefore` (a warm-up would start a node
//! for it then anyway, with the run on time).
use std::time::Duration;

/// Keeping an idle node until a run is due, against removing it and booting another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeepOrBoot {
    /// How long the node idles until the run is due, if kept.
    pub idle: Duration,
    /// How long a node booted for the run is paid for before the run starts on it.
    pub boot: Duration,
    /// How late that boot makes the run.
    pub lateness: Duration,
    /// `price × idle`.
    pub keep_cost: f64,
    /// `price × boot + price × lateness`.
    pub boot_cost: f64,
}

impl KeepOrBoot {
    /// Keeping costs no more than booting again.
    pub fn keep(&self) -> bool {
        self.idle <= self.boot + self.lateness
    }
}

/// The rule for a run due in `until_due` on a group whose nodes cost `price_per_hour`,
/// take `boot_time` to be Ready, and are started `warm_up_before` ahead of a scheduled
/// run (`None`: when the run's pod waits).
pub fn keep_or_boot(
    price_per_hour: f64,
    until_due: Duration,
    boot_time: Duration,
    warm_up_before: Option<Duration>,
) -> KeepOrBoot {
    // A node made for the run starts `warmUpBefore` ahead of it, or now when that time
    // has passed (`min`), or when its pod waits without warm-up (zero lead).
    let lead = warm_up_before.unwrap_or_default().min(until_due);
    let boot = boot_time.max(lead);
    let lateness = boot_time.saturating_sub(lead);
    let cost = |d: Duration| price_per_hour * d.as_secs_f64() / 3600.0;
    KeepOrBoot {
        idle: until_due,
        boot,
        lateness,
        keep_cost: cost(until_due),
        boot_cost: cost(boot) + cost(lateness),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_worked_example_of_the_operations_guide() {
        // 0.34 an hour, 90 s to boot, no warm-up: the next run is due in 2 minutes.
        let c = keep_or_boot(0.34, 2 * MIN, Duration::from_secs(90), None);
        assert!(approx(c.keep_cost, 0.34 * 120.0 / 3600.0));
        assert!(approx(c.boot_cost, 0.34 * (90.0 + 90.0) / 3600.0));
        assert_eq!(
            (c.boot, c.lateness),
            (Duration::from_secs(90), Duration::from_secs(90))
        );
        assert!(c.keep(), "2m idle < 90 s boot + 90 s late");
        // Due in 4 minutes: booting again (and being 90 s late) is cheaper.
        assert!(!keep_or_boot(0.34, 4 * MIN, Duration::from_secs(90), None).keep());
        // With warmUpBefore 2m the new node is there on time: keep only within 2 minutes.
        let warm = Some(2 * MIN);
        let c = keep_or_boot(0.34, 3 * MIN, Duration::from_secs(90), warm);
        assert_eq!((c.boot, c.lateness), (2 * MIN, Duration::ZERO));
        assert!(approx(c.boot_cost, 0.34 * 120.0 / 3600.0));
        assert!(!c.keep());
        assert!(keep_or_boot(0.34, 2 * MIN, Duration::from_secs(90), warm).keep());
    }

    #[test]
    fn the_horizon_is_twice_the_boot_without_warm_up_and_the_warm_up_with_it() {
        let boot = 3 * MIN;
        for (warm, horizon) in [
            (None, 6 * MIN),
            (Some(MIN), 5 * MIN), // paid 3m, 2m late
            (Some(3 * MIN), 3 * MIN),
            (Some(5 * MIN), 5 * MIN),
        ] {
            let at = |d: Duration| keep_or_boot(1.0, d, boot, warm).keep();
            assert!(at(horizon), "{warm:?}: keep at {horizon:?}");
            assert!(
                !at(horizon + Duration::from_secs(1)),
                "{warm:?}: boot after"
            );
            assert!(at(Duration::ZERO), "{warm:?}: a run due now keeps its node");
        }
    }

    #[test]
    fn a_run_due_sooner_than_a_boot_keeps_the_node_whatever_the_price() {
        for price in [0.0, 0.2, 30.0] {
            let c = keep_or_boot(price, Duration::from_secs(30), 2 * MIN, Some(2 * MIN));
            assert!(c.keep(), "{price}");
            // A boot started now is 90 s late; the warm-up cannot start in the past.
            assert_eq!(c.lateness, Duration::from_secs(90));
            assert!(c.keep_cost <= c.boot_cost);
        }
        // Free nodes: the rule is the same, in time.
        assert!(!keep_or_boot(0.0, 10 * MIN, MIN, None).keep());
    }
}

//! Tests of [`super`].
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

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
pub(crate) struct KeepOrBoot {
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
pub(crate) fn keep_or_boot(
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
#[path = "keep_tests.rs"]
mod tests;

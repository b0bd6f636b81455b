//! Benchmark (`cargo bench -p datajob-core --bench backfill`, `make bench-backfill`):
//! the Backfill planner under issue 25 item 7's load, 50 Backfills of 10 000 hourly
//! times each, 4 at a time, stepped pass after pass as the reconciler steps them (each
//! pass the runs started by the one before have succeeded). Prints one table: time per
//! pass (p50, p99, max, and the first pass, which counts the range once), schedule times
//! looked at per pass, and the peak heap and RSS.
//!
//! `BENCH_BACKFILLS`, `BENCH_SLOTS`, `BENCH_PASSES` change the load.
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datajob_api::{BackfillSpec, BackfillStatus, RunRecord, RunState};
use datajob_core::decide::backfill::{self, Member, SPEC};
use datajob_core::decide::dataflow::Upstream;
use datajob_core::labels;
use datajob_core::schedule::Schedule;

/// The system allocator, counting the bytes held now and at most.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak RSS of this process (VmHWM), in MiB.
fn rss_peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the DataJob says: the runs the Backfill waits for have succeeded.
fn view(schedule: &Schedule, status: &BackfillStatus) -> BTreeMap<String, Upstream> {
    let runs = status
        .data_jobs
        .iter()
        .flat_map(|p| &p.active)
        .map(|a| RunRecord {
            name: format!("raw-{}", a.logical_time),
            logical_time: a.logical_time.clone(),
            state: RunState::Succeeded,
            ..Default::default()
        })
        .collect();
    BTreeMap::from([(
        "raw".to_string(),
        Upstream {
            name: "raw".into(),
            schedule: Some(schedule.clone()),
            output: None,
            published: Vec::new(),
            runs,
        },
    )])
}

/// One pass of one Backfill, as the reconciler makes it: plan, then step.
/// Returns its status, the runs started and the schedule times looked at.
fn pass(
    spec: &BackfillSpec,
    members: &[Member],
    views: &BTreeMap<String, Upstream>,
    previous: &BackfillStatus,
    now: DateTime<Utc>,
) -> (BackfillStatus, usize, usize) {
    let inputs = BTreeMap::new();
    let Ok(times) = backfill::times(spec, "bench", members, now, SPEC, previous) else {
        return (previous.clone(), 0, 0);
    };
    let (status, starts) = backfill::step(spec, &times, views, &inputs, previous, now);
    let examined = times.iter().map(backfill::Times::examined).sum();
    (status, starts.len(), examined)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    let backfills = setting("BENCH_BACKFILLS", 50);
    let slots = setting("BENCH_SLOTS", 10_000);
    let passes = setting("BENCH_PASSES", 100);
    let Ok(schedule) = Schedule::parse("0 * * * *", chrono_tz::UTC) else {
        eprintln!("the hourly schedule does not parse");
        return;
    };
    let members = vec![Member {
        name: "raw".into(),
        schedule: Some(schedule.clone()),
        inputs: Vec::new(),
    }];
    let Some(start) = labels::parse_rfc3339("2025-01-01T00:00:00Z") else {
        return;
    };
    let now = start + chrono::Duration::hours(slots as i64 + 24);
    let specs: Vec<BackfillSpec> = (0..backfills)
        .map(|_| BackfillSpec {
            data_job: "raw".into(),
            from: labels::rfc3339(start),
            to: labels::rfc3339(start + chrono::Duration::hours(slots as i64 - 1)),
            parallel: Some(4),
            downstream: Some(false),
            max_slots: i32::try_from(slots).ok(),
            ..Default::default()
        })
        .collect();
    let mut statuses = vec![BackfillStatus::default(); backfills];
    let base = HELD.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (mut first, mut later) = (Vec::new(), Vec::new());
    let (mut examined_first, mut examined_later, mut started) = (0usize, 0usize, 0usize);
    let wall = Instant::now();
    for p in 0..passes {
        let at = now + chrono::Duration::seconds(p as i64);
        for (spec, status) in specs.iter().zip(statuses.iter_mut()) {
            let views = view(&schedule, status);
            let t0 = Instant::now();
            let (next, starts, examined) = pass(spec, &members, &views, status, at);
            let took = t0.elapsed();
            match p {
                0 => {
                    first.push(took);
                    examined_first += examined;
                }
                _ => {
                    later.push(took);
                    examined_later += examined;
                }
            }
            started += starts;
            *status = next;
        }
    }
    let wall = wall.elapsed();
    later.sort();
    first.sort();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base) as f64 / (1024.0 * 1024.0);
    let held = HELD.load(Ordering::Relaxed).saturating_sub(base) as f64 / (1024.0 * 1024.0);
    let later_passes = (backfills * passes.saturating_sub(1)).max(1);
    let done: i32 = statuses.iter().map(|s| s.succeeded).sum();
    println!(
        "{backfills} Backfills x {slots} times, parallel 4, {passes} passes each ({} passes, {started} runs started, {done} succeeded, {:.2} s in all)",
        backfills * passes,
        wall.as_secs_f64()
    );
    println!();
    println!(
        "| first pass p50 / max | later pass p50 / p99 / max | times looked at: first pass / later pass (mean) | one round of all {backfills} (later) | heap held / peak | RSS peak |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {:.0} / {:.0} µs | {:.1} / {:.1} / {:.1} µs | {} / {:.1} | {:.2} ms | {held:.2} / {peak:.2} MiB | {:.1} MiB |",
        us(percentile(&first, 0.5)),
        us(percentile(&first, 1.0)),
        us(percentile(&later, 0.5)),
        us(percentile(&later, 0.99)),
        us(percentile(&later, 1.0)),
        examined_first / backfills.max(1),
        examined_later as f64 / later_passes as f64,
        us(percentile(&later, 0.5)) * backfills as f64 / 1000.0,
        rss_peak_mib(),
    );
}

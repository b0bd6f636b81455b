//! The operator process's own figures, read from `/proc/self` at each scrape, under the
//! names every Prometheus client library uses (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`, `process_open_fds`, …), so
//! the dashboards and alerts people already have for processes work for it; and its heap,
//! which only DataJob's counting allocator knows, as `datajob_heap_bytes` and
//! `datajob_heap_peak_bytes`. Nothing is exposed where there is no `/proc`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

/// USER_HZ: the unit of the CPU times in `/proc/<pid>/stat`, 100 on every architecture
/// Kubernetes runs on (x86-64, arm64, ppc64le, s390x).
const USER_HZ: f64 = 100.0;

/// A `Key:   1234 kB` line of `/proc/self/status`, in bytes.
pub(crate) fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    let mut words = line[key.len() + 1..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Resident memory in bytes (`VmRSS`).
pub(crate) fn resident_memory(status: &str) -> Option<u64> {
    status_bytes(status, "VmRSS")
}

/// The fields of `/proc/self/stat` from field 3 (state) on. The command name (field 2)
/// is in parentheses and may hold spaces: the fields are counted after the last `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// User plus system CPU time in seconds (fields 14 and 15).
pub(crate) fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields = stat_fields(stat)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// When the process started, in Unix seconds: the boot time (`btime` of `/proc/stat`)
/// plus its start time after boot (field 22, in USER_HZ ticks).
pub(crate) fn start_time_seconds(stat: &str, proc_stat: &str) -> Option<f64> {
    let ticks: u64 = stat_fields(stat)?.get(19)?.parse().ok()?;
    let boot: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot as f64 + ticks as f64 / USER_HZ)
}

/// The soft limit of open files, from `/proc/self/limits` (`unlimited` gives none).
pub(crate) fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    if let Some(v) = value {
        let g = ConstGauge::new(v);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
    }
    Ok(())
}

/// `process_*`, in the root registry (no `datajob_` prefix).
#[derive(Debug)]
pub(crate) struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let status = read("/proc/self/status");
        let stat = read("/proc/self/stat");
        let as_f64 = |b: Option<u64>| b.map(|b| b as f64);
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes (VmRSS)",
            as_f64(status.as_deref().and_then(resident_memory)),
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes (VmSize)",
            as_f64(status.as_deref().and_then(|s| status_bytes(s, "VmSize"))),
        )?;
        if let Some(seconds) = stat.as_deref().and_then(cpu_seconds) {
            let c = ConstCounter::new(seconds);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            stat.as_deref()
                .zip(read("/proc/stat"))
                .and_then(|(s, p)| start_time_seconds(s, &p)),
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            as_f64(read("/proc/self/limits").as_deref().and_then(max_fds)),
        )?;
        Ok(())
    }
}

/// `heap_bytes` and `heap_peak_bytes`, in the `datajob_` registry.
#[derive(Debug)]
pub(crate) struct HeapMetrics;

impl Collector for HeapMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some((live, peak)) = crate::heap::usage() {
            for (name, help, bytes) in [
                (
                    "heap_bytes",
                    "Heap the operator allocated and has not freed (its counting allocator)",
                    live,
                ),
                (
                    "heap_peak_bytes",
                    "The most heap the operator held at once since it started",
                    peak,
                ),
            ] {
                let g = Gauge::<i64>::default();
                g.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_proc_files() {
        let status = "Name:\tdatajob-operator\nVmPeak:\t  200000 kB\nVmSize:\t  180000 kB\nVmRSS:\t   51200 kB\nThreads:\t8\n";
        assert_eq!(resident_memory(status), Some(51200 * 1024));
        assert_eq!(status_bytes(status, "VmSize"), Some(180000 * 1024));
        assert_eq!(resident_memory("Name:\tx\n"), None);
        assert_eq!(resident_memory("VmRSS:\t12 pages\n"), None);
        // The command name may hold spaces and parentheses.
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 8 0 100 1000000 12800 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("4242 (x) S 1 2"), None);
        assert_eq!(
            start_time_seconds(stat, "cpu  1 2 3\nbtime 1765000000\nprocesses 9\n"),
            Some(1_765_000_001.0)
        );
        assert_eq!(start_time_seconds(stat, "cpu 1 2 3\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_fds(limits), Some(1024));
        assert_eq!(
            max_fds("Max open files            unlimited            unlimited            files\n"),
            None
        );
    }

    #[test]
    fn the_live_process_has_standard_names() {
        let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
            return; // not Linux
        };
        assert!(resident_memory(&s).is_some_and(|b| b > 1024 * 1024), "{s}");
        let text = crate::metrics::Metrics::default().encode();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{started} vs {now}"
        );
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let (live, peak) = (
            value("datajob_heap_bytes"),
            value("datajob_heap_peak_bytes"),
        );
        assert!(0.0 < live && live <= peak, "{text}");
        assert!(!text.contains("datajob_process_"), "{text}");
    }
}

//! Process statistics from `/proc` (Linux): CPU time (utime + stime, and the kernel's part),
//! per-thread CPU time and resident memory.

use std::collections::BTreeMap;

/// USER_HZ, the unit of the times in `/proc/<pid>/stat`: 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, all threads) of a process in seconds; `pid` may be `self`.
pub fn cpu_seconds(pid: &str) -> Result<f64, String> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// [`cpu_seconds`] and its system (kernel) part, from one read: for a media server the kernel's
/// part is mostly its socket calls (on loopback including the delivery to the receiving socket).
pub fn cpu_and_system_seconds(pid: &str) -> Result<(f64, f64), String> {
    stat_times(&format!("/proc/{pid}/stat")).map(|(user, system)| (user + system, system))
}

/// Resident set size in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no VmRSS line in {path}"))
}

/// CPU seconds of a process's live threads, summed per thread name (`comm`), from
/// `/proc/<pid>/task/*/stat`.
pub fn thread_cpu(pid: &str) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // A thread may exit between the listing and the reads: skip it.
        let (Ok(name), Ok(cpu)) = (
            std::fs::read_to_string(path.join("comm")),
            stat_cpu(&path.join("stat").to_string_lossy()),
        ) else {
            continue;
        };
        *by_name.entry(name.trim().to_owned()).or_insert(0.0) += cpu;
    }
    by_name
}

/// The CPU seconds (utime + stime) in a `stat` file.
fn stat_cpu(path: &str) -> Result<f64, String> {
    stat_times(path).map(|(user, system)| user + system)
}

/// The user and system CPU seconds (utime, stime) in a `stat` file.
fn stat_times(path: &str) -> Result<(f64, f64), String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // The name (field 2) is in parentheses and may contain spaces.
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| format!("unexpected {path}"))?;
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("unexpected {path}"))
    };
    Ok((ticks(11)? / TICKS_PER_SECOND, ticks(12)? / TICKS_PER_SECOND))
}

/// CPU time the whole machine spent busy (every core, every process), in seconds, from
/// `/proc/stat`: user + nice + system + irq + softirq + steal.
pub fn machine_busy_seconds() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let fields: Vec<u64> = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .ok_or("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0) as f64;
    Ok((field(0) + field(1) + field(2) + field(5) + field(6) + field(7)) / TICKS_PER_SECOND)
}

/// The soft limit on open files of this process (`/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

//! Process statistics from `/proc` (Linux): resident memory and CPU time.

use std::collections::BTreeMap;

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

/// USER_HZ: the unit of the times in `/proc/<pid>/stat` and `/proc/stat`, 100 on every
/// Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, all threads) in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> Result<f64, String> {
    Ok(stat_cpu(&format!("/proc/{pid}/stat"))?.1)
}

/// CPU seconds of a process's live threads, summed per thread name (`/proc/<pid>/task/*/stat`).
pub fn thread_cpu_seconds(pid: &str) -> Result<BTreeMap<String, f64>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let Ok(entry) = entry else { continue };
        // A thread may exit between the listing and the read: skip it.
        if let Ok((name, seconds)) = stat_cpu(&entry.path().join("stat").to_string_lossy()) {
            *by_name.entry(name).or_insert(0.0) += seconds;
        }
    }
    Ok(by_name)
}

/// The name and the CPU seconds (utime + stime) in a `stat` file.
fn stat_cpu(path: &str) -> Result<(String, f64), String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // The name (field 2) is in parentheses and may contain spaces.
    let (head, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| format!("unexpected {path}"))?;
    let name = head.split_once('(').map_or("", |(_, n)| n).to_owned();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("unexpected {path}"))
    };
    Ok((name, (ticks(11)? + ticks(12)?) / TICKS_PER_SECOND))
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
    // user nice system idle iowait irq softirq steal …
    Ok((field(0) + field(1) + field(2) + field(5) + field(6) + field(7)) / TICKS_PER_SECOND)
}

/// CPU used by the server, the load generator and everything else over an interval.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    /// CPU seconds of each party.
    pub server: f64,
    pub client: f64,
    /// Anything else on the machine (other processes disturb the numbers).
    pub other: f64,
    /// Wall-clock seconds of the interval.
    pub wall: f64,
    /// The server's CPU seconds per thread name (e.g. `tokio-runtime-w`, `carillon-store`).
    pub server_threads: BTreeMap<String, f64>,
}

impl CpuUse {
    /// Average number of cores kept busy.
    pub fn cores(&self, seconds: f64) -> f64 {
        seconds / self.wall.max(1e-9)
    }
}

/// Marks the start of an interval; [`CpuMark::finish`] gives the CPU used since.
pub struct CpuMark {
    server_pid: String,
    server: f64,
    server_threads: BTreeMap<String, f64>,
    client: f64,
    machine: f64,
    at: std::time::Instant,
}

impl CpuMark {
    pub fn start(server_pid: u32) -> Result<CpuMark, String> {
        let server_pid = server_pid.to_string();
        Ok(CpuMark {
            server: cpu_seconds(&server_pid)?,
            server_threads: thread_cpu_seconds(&server_pid)?,
            client: cpu_seconds("self")?,
            machine: machine_busy_seconds()?,
            server_pid,
            at: std::time::Instant::now(),
        })
    }

    pub fn finish(&self) -> Result<CpuUse, String> {
        let wall = self.at.elapsed().as_secs_f64();
        let server = cpu_seconds(&self.server_pid)? - self.server;
        let client = cpu_seconds("self")? - self.client;
        let machine = machine_busy_seconds()? - self.machine;
        let mut server_threads = thread_cpu_seconds(&self.server_pid)?;
        for (name, seconds) in &mut server_threads {
            *seconds -= self.server_threads.get(name).copied().unwrap_or(0.0);
        }
        Ok(CpuUse {
            server,
            client,
            other: (machine - server - client).max(0.0),
            wall,
            server_threads,
        })
    }
}

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
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// Scheduler times of a group of threads, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTimes {
    /// Running on a CPU.
    pub running: f64,
    /// Runnable but waiting for a CPU (the machine is oversubscribed).
    pub waiting: f64,
}

/// Scheduler times of a process's live threads, summed per thread name, from
/// `/proc/<pid>/task/*/{comm,schedstat}`.
pub fn thread_times(pid: &str) -> Result<BTreeMap<String, ThreadTimes>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name: BTreeMap<String, ThreadTimes> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        // A thread may exit between the listing and the reads: skip it.
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = schedstat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0) as f64 / 1e9);
        let times = by_name.entry(name.trim().to_owned()).or_default();
        times.running += fields.next().unwrap_or(0.0);
        times.waiting += fields.next().unwrap_or(0.0);
    }
    Ok(by_name)
}

/// The CPU seconds (utime + stime) in a `stat` file.
fn stat_cpu(path: &str) -> Result<f64, String> {
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
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
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
    /// The server's threads by name (e.g. `tokio-rt-worker`, `carillon-store`).
    pub server_threads: BTreeMap<String, ThreadTimes>,
    /// The load generator's threads, together.
    pub client_threads: ThreadTimes,
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
    server_threads: BTreeMap<String, ThreadTimes>,
    client_threads: ThreadTimes,
    client: f64,
    machine: f64,
    at: std::time::Instant,
}

impl CpuMark {
    pub fn start(server_pid: u32) -> Result<CpuMark, String> {
        let server_pid = server_pid.to_string();
        Ok(CpuMark {
            server: cpu_seconds(&server_pid)?,
            server_threads: thread_times(&server_pid)?,
            client_threads: total(&thread_times("self")?),
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
        let mut server_threads = thread_times(&self.server_pid)?;
        for (name, times) in &mut server_threads {
            let before = self.server_threads.get(name).copied().unwrap_or_default();
            times.running -= before.running;
            times.waiting -= before.waiting;
        }
        let client_now = total(&thread_times("self")?);
        Ok(CpuUse {
            server,
            client,
            other: (machine - server - client).max(0.0),
            wall,
            server_threads,
            client_threads: ThreadTimes {
                running: client_now.running - self.client_threads.running,
                waiting: client_now.waiting - self.client_threads.waiting,
            },
        })
    }
}

fn total(threads: &BTreeMap<String, ThreadTimes>) -> ThreadTimes {
    threads
        .values()
        .fold(ThreadTimes::default(), |sum, t| ThreadTimes {
            running: sum.running + t.running,
            waiting: sum.waiting + t.waiting,
        })
}

//! The carillon process under test: started on an ephemeral port with a fresh data directory,
//! stopped (and its directory removed) when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Active-meeting quota the server is started with: the mix creates meetings continuously.
pub const MAX_ACTIVE_MEETINGS: usize = 100_000;

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin serve` and waits (up to 30 s) for its `api http://…` line.
    pub fn start(bin: &Path) -> Result<Server, String> {
        Server::start_with(bin, &[], &[])
    }

    /// The same with extra flags and environment variables.
    pub fn start_with(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let data_dir = tempfile::Builder::new()
            .prefix("carillon-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a data directory: {e}"))?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--max-active-meetings")
            .arg(MAX_ACTIVE_MEETINGS.to_string())
            .env("CARILLON_LOG", "warn")
            .env_remove("CARILLON_CREDENTIALS")
            .env_remove("CARILLON_CONFIG")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the life of the process so it can never block on a pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("api ") {
                        break url.to_owned();
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(match status {
                        Some(status) => format!("the server exited during start-up ({status})"),
                        None => "the server printed no `api` line within 30 s".to_owned(),
                    });
                }
            }
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("unexpected api line `{url}`: {e}"))?;
        Ok(Server {
            child,
            addr,
            _data_dir: data_dir,
        })
    }

    /// Fails if the process has exited (crashed) since it started.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the server exited unexpectedly ({status})")),
            Err(e) => Err(format!("cannot query the server process: {e}")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss_bytes(&self) -> Result<u64, String> {
        crate::procfs::rss_bytes(&self.child.id().to_string())
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills what is left.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

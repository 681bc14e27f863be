//! The carillon process under test: the release binary started on ephemeral ports with a fresh
//! data directory, stopped (and its directory removed) when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The media UDP address the server printed.
    pub media: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin serve` with `args` and waits (up to 30 s) for its endpoint lines.
    pub fn start(bin: &Path, args: &[String]) -> Result<Server, String> {
        let data_dir = tempfile::Builder::new()
            .prefix("carillon-media-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a data directory: {e}"))?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .env("CARILLON_LOG", "warn")
            .env_remove("CARILLON_CREDENTIALS")
            .env_remove("CARILLON_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the life of the process so it never blocks on the pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut media) = (None, None);
        while url.is_none() || media.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("api ") {
                        url = Some(u.trim().trim_end_matches('/').to_owned());
                    } else if let Some(m) = line.strip_prefix("media udp ") {
                        media = Some(m.trim().to_owned());
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(match status {
                        Some(status) => format!("the server exited during start-up ({status})"),
                        None => "the server printed no `api`/`media udp` lines within 30 s".into(),
                    });
                }
            }
        }
        Ok(Server {
            child,
            url: url.unwrap_or_default(),
            media: media.unwrap_or_default(),
            _data_dir: data_dir,
        })
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Fails if the process has exited since it started.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the server exited unexpectedly ({status})")),
            Err(e) => Err(format!("cannot query the server process: {e}")),
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL (by drop) if it has not exited within 5 s.
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

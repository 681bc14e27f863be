//! Starts the real `carillon` binary on an ephemeral port with its own data directory and
//! hands out clients for it: the official AWS SDK for Rust, and a raw HTTP/1.1 client for the
//! requests an SDK will not send (malformed bodies, unsigned requests...).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use aws_sdk_chimesdkmeetings::Client;
use aws_sdk_chimesdkmeetings::config::{BehaviorVersion, Credentials, Region};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const AKID: &str = "AKIDCARILLONDEV";
pub const SECRET: &str = "carillon-dev-secret";

pub struct Server {
    child: Child,
    pub url: String,
    pub addr: String,
    pub media: String,
    /// The server's log lines (ANSI colours removed), when started with `start_logged`.
    logs: Option<Arc<Mutex<Vec<String>>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server with a fresh data directory and the test clock enabled.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut server = Server::start_in(tmp.path(), args);
        server._tmp = Some(tmp);
        server
    }

    /// A server on an existing data directory (restart tests).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(data_dir, args, &[])
    }

    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(data_dir, args, env, false)
    }

    /// A server on `data_dir` logging at info level, its log kept for [`Server::wait_for_log`].
    pub fn start_logged(data_dir: &Path, args: &[&str]) -> Server {
        Server::launch(data_dir, args, &[("CARILLON_LOG", "info")], true)
    }

    fn launch(data_dir: &Path, args: &[&str], env: &[(&str, &str)], capture: bool) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_carillon"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--test-clock")
            .args(args)
            .env_remove("CARILLON_CREDENTIALS")
            .env("CARILLON_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn carillon");
        let logs = child.stderr.take().map(|stderr| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(strip_ansi(&line));
                }
            });
            lines
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let mut media = None;
        while url.is_none() || media.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("carillon printed its endpoints");
            if let Some(u) = line.strip_prefix("api ") {
                url = Some(u.to_owned());
            } else if let Some(m) = line.strip_prefix("media udp ") {
                media = Some(m.to_owned());
            }
        }
        let url = url.expect("api line");
        Server {
            child,
            addr: url.trim_start_matches("http://").to_owned(),
            url,
            media: media.expect("media line"),
            logs,
            _tmp: None,
        }
    }

    /// Waits (up to 10 s) for a log line containing every one of `parts`; returns it.
    pub fn wait_for_log(&self, parts: &[&str]) -> String {
        let logs = self.logs.as_ref().expect("started with start_logged");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {parts:?} in:\n{}",
                logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `carillon serve` with `args`, expecting it to refuse to start; returns its error
    /// output.
    pub fn refuses_to_start(args: &[&str]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(env!("CARGO_BIN_EXE_carillon"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("CARILLON_CREDENTIALS")
            .env("CARILLON_LOG", "error")
            .output()
            .expect("run carillon");
        assert!(!output.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The official SDK client, signing with the development pair, retries off.
    pub fn client(&self) -> Client {
        self.client_with(AKID, SECRET, "us-east-1")
    }

    pub fn client_with(&self, akid: &str, secret: &str, region: &str) -> Client {
        sdk_client(&self.url, akid, secret, region)
    }

    /// Moves the server's lifecycle clock forward.
    pub async fn advance_clock(&self, seconds: i64) {
        let body = format!("{{\"seconds\":{seconds}}}");
        let response = self
            .raw(
                "POST",
                "/_carillon/test/clock",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// Stops the process: SIGTERM (graceful) or SIGKILL (crash).
    pub fn stop(mut self, crash: bool) {
        let signal = if crash { "-KILL" } else { "-TERM" };
        let _ = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Sends one raw HTTP/1.1 request and reads the whole response.
    pub async fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connect");
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write head");
        // The server may answer (e.g. a 4xx for an oversized body) before reading everything.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        RawResponse::parse(&raw)
    }

    /// Sends a request signed with SigV4 (service `chime`) by the official `aws-sigv4` signer.
    pub async fn signed(&self, method: &str, target: &str, body: &[u8]) -> RawResponse {
        let headers = sign(
            method,
            &format!("http://{}{target}", self.addr),
            &self.addr,
            body,
            SystemTime::now(),
        );
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.raw(method, target, &pairs, body).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The official SDK client for the server at `url`, retries off.
pub fn sdk_client(url: &str, akid: &str, secret: &str, region: &str) -> Client {
    let config = aws_sdk_chimesdkmeetings::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(akid, secret, None, None, "test"))
        .endpoint_url(url)
        .retry_config(aws_sdk_chimesdkmeetings::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// A meeting created by CreateMeetingWithAttendees.
pub struct CreatedMeeting {
    pub id: String,
    pub signaling: String,
    /// In the order the users were given.
    pub attendees: Vec<aws_sdk_chimesdkmeetings::types::Attendee>,
}

/// Creates a meeting with one attendee per user (their ExternalUserIds) through the SDK.
pub async fn create_meeting_with(
    client: &Client,
    region: &str,
    external_id: &str,
    users: &[&str],
) -> CreatedMeeting {
    let mut request = client
        .create_meeting_with_attendees()
        .media_region(region)
        .external_meeting_id(external_id);
    for user in users {
        request = request.attendees(
            aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem::builder()
                .external_user_id(*user)
                .build()
                .unwrap(),
        );
    }
    let out = request.send().await.unwrap();
    let meeting = out.meeting().unwrap();
    CreatedMeeting {
        id: meeting.meeting_id().unwrap().to_owned(),
        signaling: meeting
            .media_placement()
            .unwrap()
            .signaling_url()
            .unwrap()
            .to_owned(),
        attendees: out.attendees().to_vec(),
    }
}

/// Signs a request; returns the headers to send (host excluded: the raw client sends it).
pub fn sign(
    method: &str,
    url: &str,
    host: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types_shim::credentials().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("chime")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let mut headers = vec![("host".to_owned(), host.to_owned())];
    if !body.is_empty() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers.retain(|(k, _)| k != "host");
    headers
}

/// The SDK's credentials type, reached through the re-export of the Chime crate.
mod aws_credential_types_shim {
    pub fn credentials() -> aws_sdk_chimesdkmeetings::config::Credentials {
        aws_sdk_chimesdkmeetings::config::Credentials::new(
            super::AKID,
            super::SECRET,
            None,
            None,
            "test",
        )
    }
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn parse(raw: &[u8]) -> RawResponse {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete HTTP response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        RawResponse {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.text()))
    }

    /// Asserts an AWS-shaped error: status, `X-Amzn-ErrorType`, request id, JSON body.
    pub fn assert_error(&self, status: u16, exception: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("x-amzn-errortype"),
            Some(exception),
            "{}",
            self.text()
        );
        let request_id = self
            .header("x-amzn-requestid")
            .expect("x-amzn-RequestId")
            .to_owned();
        let body = self.json();
        assert_eq!(body["RequestId"], request_id.as_str());
        assert!(body["Code"].is_string());
        let message = body["Message"].as_str().expect("Message").to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) so log lines can be matched as text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap_or("0");
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

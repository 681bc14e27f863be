//! One measured run: start the server, create the meetings and attendees, connect the clients
//! (a bounded number of joins at a time), wait until every client's media flows, warm up,
//! measure, stop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::api::Api;
use crate::client::{self, ClientSpec, Counters, Role, Shared};
use crate::media::{AudioLoop, Calibration};
use crate::procfs;
use crate::server::Server;

/// Settings common to every scenario.
#[derive(Debug, Clone)]
pub struct Common {
    pub server_bin: PathBuf,
    pub warmup: Duration,
    pub measure: Duration,
    pub join_concurrency: usize,
    pub setup_timeout: Duration,
    /// How often bulk-mode receivers are drained.
    pub bulk_interval: Duration,
}

/// One meeting and the clients that join it.
pub struct Group {
    pub name: String,
    /// Index (in the setup's groups) of the primary meeting this one replicates.
    pub replica_of: Option<usize>,
    pub clients: Vec<(Role, bool)>,
}

pub struct Setup {
    pub server_args: Vec<String>,
    pub groups: Vec<Group>,
}

/// Everything measured in one run.
pub struct Outcome {
    pub clients: usize,
    /// Wall-clock length of the measurement window, seconds.
    pub wall: f64,
    pub server_cpu: f64,
    /// The kernel's part of `server_cpu`.
    pub server_system_cpu: f64,
    pub client_cpu: f64,
    /// CPU seconds used by everything else on the machine in the window.
    pub other_cpu: f64,
    /// CPU seconds of the server's threads in the window, by thread name.
    pub server_threads: BTreeMap<String, f64>,
    pub rss_before: u64,
    pub rss_after: u64,
    pub counters: Counters,
    pub join: Vec<u64>,
    pub ws_open: Vec<u64>,
    pub join_ack: Vec<u64>,
    pub index_after_ack: Vec<u64>,
    pub subscribe_ack: Vec<u64>,
    pub ice: Vec<u64>,
    pub audio: Vec<u64>,
    pub video: Vec<u64>,
    pub tick_lag: Vec<u64>,
    pub rx_lag: Vec<u64>,
    /// Per speaker: bursts sent, onsets detected at all probes.
    pub per_speaker: Vec<client::SpeakerStats>,
    /// How long connecting every client took.
    pub connect_time: Duration,
    /// Clients dropped after their media flowed (during setup, warm-up or measurement).
    pub dropped: Vec<String>,
    /// How many of them dropped during the measurement window.
    pub dropped_in_window: usize,
    pub calibration: Calibration,
}

pub async fn run(common: &Common, setup: Setup) -> Result<Outcome, String> {
    let total: usize = setup.groups.iter().map(|g| g.clients.len()).sum();
    if let Some(limit) = procfs::open_files_limit() {
        // A UDP socket and a WebSocket per client, here and in the server.
        let need = 2 * total as u64 + 100;
        if limit < need {
            return Err(format!(
                "{total} clients need about {need} open files; the limit is {limit} (raise it with `ulimit -n`)"
            ));
        }
    }
    let audio = AudioLoop::new()?;
    let calibration = crate::media::calibrate()?;
    let mut server = Server::start(&common.server_bin, &setup.server_args)?;
    let pid = server.pid();
    eprintln!(
        "  server pid {pid}: api {}, media udp {}",
        server.url, server.media
    );
    let api = Api::new(&server.url);

    // Meetings (primaries first: a replica names its primary) and attendees.
    let mut meetings = Vec::new();
    let mut attendees = Vec::new();
    for group in &setup.groups {
        let primary = group
            .replica_of
            .map(|i| meetings.get(i).map(|m: &crate::api::Meeting| m.id.clone()))
            .map(|id| id.ok_or("a replica listed before its primary"))
            .transpose()?;
        let meeting = api.create_meeting(&group.name, primary.as_deref()).await?;
        attendees.push(
            api.create_attendees(&meeting, &group.name, group.clients.len())
                .await?,
        );
        meetings.push(meeting);
    }
    // Let the allocator settle after the REST burst before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = procfs::rss_bytes(&pid)?;

    let shared = Rc::new(Shared::new(audio, calibration));
    let joins = Arc::new(Semaphore::new(common.join_concurrency.max(1)));
    let sweeper =
        tokio::task::spawn_local(client::sweep_bulk(shared.clone(), common.bulk_interval));
    shared.tasks.borrow_mut().push(sweeper.abort_handle());
    let started = Instant::now();
    let deadline = started + common.setup_timeout;
    let mut session = 1u64;
    let mut progress = Progress::new(pid.clone());
    for ((group, meeting), attendees) in setup.groups.iter().zip(&meetings).zip(&attendees) {
        for ((role, probe), attendee) in group.clients.iter().zip(attendees) {
            let permit = tokio::time::timeout_at(deadline.into(), joins.clone().acquire_owned())
                .await
                .map_err(|_| "setup timed out while joining clients".to_owned())?
                .map_err(|e| e.to_string())?;
            if let Some(failure) = shared.failures.borrow().first() {
                return Err(format!(
                    "a client failed to join: {failure} ({})",
                    progress.line(&shared, total)
                ));
            }
            progress.report(&shared, total);
            let spec = ClientSpec {
                signaling_url: meeting.signaling_url.clone(),
                join_token: attendee.join_token.clone(),
                audio_session_id: session,
                role: *role,
                probe: *probe,
            };
            session += 1;
            client::spawn(spec, shared.clone(), permit);
        }
    }
    // Every client's media must flow before anything is measured.
    loop {
        if let Some(failure) = shared.failures.borrow().first() {
            return Err(format!(
                "{} client(s) failed during setup; first: {failure} ({})",
                shared.failures.borrow().len(),
                progress.line(&shared, total)
            ));
        }
        progress.report(&shared, total);
        if shared.ready.get() == total {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "setup timed out ({})",
                progress.line(&shared, total)
            ));
        }
        server.check_alive()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = started.elapsed();
    eprintln!(
        "  {total} clients connected in {:.1} s; warming up {:?}",
        connect_time.as_secs_f64(),
        common.warmup
    );
    tokio::time::sleep(common.warmup).await;
    server.check_alive()?;
    let dropped_before = shared.dropped.borrow().len();

    // The measurement window.
    let counters_before = *shared.counters.borrow();
    let threads_before = procfs::thread_cpu(&pid);
    let (server_before, server_system_before) = procfs::cpu_and_system_seconds(&pid)?;
    let client_before = procfs::cpu_seconds("self")?;
    let machine_before = procfs::machine_busy_seconds()?;
    let window = Instant::now();
    {
        let mut samples = shared.samples.borrow_mut();
        samples.audio.clear();
        samples.video.clear();
        samples.tick_lag.clear();
        samples.rx_lag.clear();
    }
    shared.per_speaker.borrow_mut().clear();
    shared.measuring.set(true);
    eprintln!("  measuring {:?}", common.measure);
    tokio::time::sleep(common.measure).await;
    shared.measuring.set(false);
    let wall = window.elapsed().as_secs_f64();
    let (server_after, server_system_after) = procfs::cpu_and_system_seconds(&pid)?;
    let server_cpu = server_after - server_before;
    let server_system_cpu = server_system_after - server_system_before;
    let client_cpu = procfs::cpu_seconds("self")? - client_before;
    let machine_cpu = procfs::machine_busy_seconds()? - machine_before;
    let mut server_threads = procfs::thread_cpu(&pid);
    for (name, cpu) in &mut server_threads {
        *cpu -= threads_before.get(name).copied().unwrap_or(0.0);
    }
    let counters = shared.counters.borrow().since(&counters_before);
    let rss_after = procfs::rss_bytes(&pid)?;
    server.check_alive()?;

    if std::env::var_os("MEDIA_LOAD_DEBUG").is_some() {
        let mut d = client::bulk_diagnostics(&shared);
        d.sort_unstable();
        eprintln!(
            "  bulk peers: {} ; audio rx min {:?} median {:?} max {:?}",
            d.len(),
            d.first(),
            d.get(d.len() / 2),
            d.last()
        );
    }
    // Stop the clients (their sockets close as the tasks drop), then the server.
    for task in shared.tasks.borrow_mut().drain(..) {
        task.abort();
    }
    // Bulk peers hold their sockets (and an Rc of `shared`): drop them now.
    shared.bulk.borrow_mut().clear();
    tokio::task::yield_now().await;
    server.stop();

    let dropped = shared.dropped.borrow().clone();
    let dropped_in_window = dropped.len() - dropped_before;
    let samples = std::mem::take(&mut *shared.samples.borrow_mut());
    Ok(Outcome {
        clients: total,
        wall,
        server_cpu,
        server_system_cpu,
        client_cpu,
        other_cpu: (machine_cpu - server_cpu - client_cpu).max(0.0),
        server_threads,
        rss_before,
        rss_after,
        counters,
        join: samples.join,
        ws_open: samples.ws_open,
        join_ack: samples.join_ack,
        index_after_ack: samples.index_after_ack,
        subscribe_ack: samples.subscribe_ack,
        ice: samples.ice,
        audio: samples.audio,
        video: samples.video,
        tick_lag: samples.tick_lag,
        rx_lag: samples.rx_lag,
        per_speaker: shared.per_speaker.borrow().values().cloned().collect(),
        connect_time,
        dropped,
        dropped_in_window,
        calibration,
    })
}

/// Progress of the setup phase, printed every few seconds: how many clients joined and have
/// media flowing, and how busy the server is (saturation shows here first).
struct Progress {
    pid: String,
    at: Instant,
    cpu: f64,
    media: f64,
    client: f64,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(pid: String) -> Progress {
        let cpu = procfs::cpu_seconds(&pid).unwrap_or(0.0);
        let media = media_thread_cpu(&pid);
        Progress {
            pid,
            at: Instant::now(),
            cpu,
            media,
            client: procfs::cpu_seconds("self").unwrap_or(0.0),
        }
    }

    /// The state since the last line.
    fn line(&mut self, shared: &Shared, total: usize) -> String {
        let cpu = procfs::cpu_seconds(&self.pid).unwrap_or(self.cpu);
        let media = media_thread_cpu(&self.pid);
        let client = procfs::cpu_seconds("self").unwrap_or(self.client);
        let wall = self.at.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "{} of {total} joined, {} with media flowing, {} dropped; server {:.0} % of a core (media thread {:.0} %), client {:.0} %",
            shared.joined.get(),
            shared.ready.get(),
            shared.dropped.borrow().len(),
            100.0 * (cpu - self.cpu) / wall,
            100.0 * (media - self.media) / wall,
            100.0 * (client - self.client) / wall
        );
        self.at = Instant::now();
        self.cpu = cpu;
        self.media = media;
        self.client = client;
        line
    }

    fn report(&mut self, shared: &Shared, total: usize) {
        if self.at.elapsed() >= Progress::EVERY {
            eprintln!("  setup: {}", self.line(shared, total));
        }
    }
}

fn media_thread_cpu(pid: &str) -> f64 {
    procfs::thread_cpu(pid)
        .get("carillon-media")
        .copied()
        .unwrap_or(0.0)
}

//! The running node: shared state, the HTTP router, the lifecycle sweeper, and the commit
//! verifier that keeps memory equal to the store when a commit fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use carillon_api::{Exception, Placement, RateLimiter};
use carillon_control::{Change, ControlPlane, Notice};
use carillon_sigv4::Verifier;
use carillon_store::{CommitTicket, SqliteStore, Store, StoreError, Synchronous};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::{client_events, rest};

/// Everything a request handler needs.
pub struct App {
    plane: Mutex<ControlPlane>,
    store: Arc<dyn Store>,
    /// Every submitted commit, in submission order, for [`verify_commits`].
    commits: mpsc::UnboundedSender<Submitted>,
    /// Number of the last submitted commit. Only changed with the plane lock held, so the
    /// numbers follow the order in which the store receives the commits.
    submitted: AtomicU64,
    /// Set while memory may differ from the store and rebuilding it has failed: requests are
    /// refused (503) until a rebuild succeeds.
    recovering: AtomicBool,
    pub verifier: Verifier,
    pub placement: Placement,
    pub rate_limiter: Option<Mutex<RateLimiter>>,
    pub validation: Exception,
    pub clock: Clock,
    /// Directory of the demo page.
    pub web_root: std::path::PathBuf,
    /// The live meeting plane (absent in unit tests of the HTTP layer).
    pub media: Option<crate::media::MediaHandle>,
}

/// A commit on its way to the store, with what depends on its outcome.
struct Submitted {
    seq: u64,
    ticket: CommitTicket,
    notices: Vec<Notice>,
    verdict: oneshot::Sender<Result<(), CommitError>>,
}

/// Why a mutation's answer cannot be a success.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store refused this mutation's changes; memory was rebuilt from the store.
    #[error("store commit failed: {0}")]
    Store(#[from] StoreError),
    /// This mutation was applied after one whose commit failed, so it may rest on a change
    /// that no longer exists; memory was rebuilt from the store (with this mutation's changes
    /// if they were committed).
    #[error("an earlier change this one may depend on could not be committed")]
    RolledBack,
    /// Memory may differ from the store and could not be rebuilt yet.
    #[error("the in-memory state is being rebuilt from the store")]
    Recovering,
}

impl App {
    /// Locks the control plane. A panic while holding the lock is a bug; the state is still
    /// consistent per operation, so keep serving rather than poisoning every later request.
    pub fn plane(&self) -> MutexGuard<'_, ControlPlane> {
        self.plane.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` against the control plane and submits the changes it queued, in order, while
    /// still holding the lock. Returns `f`'s result and the [`Pending`] outcome to await
    /// before answering; notices reach the live meeting plane once the commit is durable.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut ControlPlane) -> T) -> (T, Pending) {
        let mut plane = self.plane();
        let out = f(&mut plane);
        let changes: Vec<Change> = plane.take_changes();
        let notices = plane.take_notices();
        let pending = self.submit(&plane, changes, notices);
        drop(plane);
        (out, pending)
    }

    /// True while memory may differ from the store (a rebuild failed and is being retried).
    pub fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// Submits changes to the store and their verification to [`verify_commits`]. The plane
    /// lock must be held (`_held` proves it), so that the store and the verifier receive the
    /// commits in the order they were applied.
    fn submit(
        &self,
        _held: &MutexGuard<'_, ControlPlane>,
        changes: Vec<Change>,
        notices: Vec<Notice>,
    ) -> Pending {
        // A read changes nothing and has nothing to wait for.
        if changes.is_empty() && notices.is_empty() {
            return Pending { verdict: None };
        }
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        let ticket = self.store.commit(changes);
        let (verdict, rx) = oneshot::channel();
        let submitted = Submitted {
            seq,
            ticket,
            notices,
            verdict,
        };
        // The verifier only stops when the App is dropped; an answer then is moot, and the
        // receiver reports the lost sender as Recovering.
        let _ = self.commits.send(submitted);
        Pending { verdict: Some(rx) }
    }

    /// Makes memory equal to the store again: with the plane lock held (so nothing is
    /// applied in between), loads the store, whose writer answers only after flushing every
    /// commit submitted before, and reloads the plane from it. Returns the number of the last
    /// commit submitted before the load. Blocking: call it off the async workers.
    fn rebuild(&self) -> Result<u64, StoreError> {
        let mut plane = self.plane();
        let through = self.submitted.load(Ordering::Acquire);
        let snapshot = self.store.load()?;
        let (meetings, attendees) = (snapshot.meetings.len(), snapshot.attendees.len());
        plane.reload(snapshot, self.clock.now_ms());
        // Timer corrections and meetings that ended meanwhile are changes like any other.
        let changes = plane.take_changes();
        let notices = plane.take_notices();
        drop(self.submit(&plane, changes, notices));
        self.recovering.store(false, Ordering::Release);
        tracing::warn!(
            meetings,
            attendees,
            "in-memory state rebuilt from the store after a failed commit"
        );
        Ok(through)
    }
}

/// The outcome of a mutation's commit, to await before answering.
pub struct Pending {
    /// `None` when there was nothing to commit.
    verdict: Option<oneshot::Receiver<Result<(), CommitError>>>,
}

impl Pending {
    /// Waits until the changes are durable (and their notices handed to the live meeting
    /// plane), or until it is known that they, or changes they may rest on, were lost.
    pub async fn finish(self) -> Result<(), CommitError> {
        match self.verdict {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(CommitError::Recovering)),
        }
    }
}

/// Waits for every commit in submission order and decides what its request may answer.
///
/// Memory is changed before the store, so a failed commit leaves memory ahead of the disk.
/// Then, once, the plane is rebuilt from the store. The mutations submitted between the
/// failed one and the rebuild were applied on top of the lost change and may depend on it
/// (an attendee of a meeting that was never stored): their requests fail as well, with
/// 503, whether or not their own commit went through; the rebuilt memory holds exactly what
/// did. Taking the commits in order is what makes this decidable: by the time a commit is
/// judged, every earlier one has been.
async fn verify_commits(app: Weak<App>, mut commits: mpsc::UnboundedReceiver<Submitted>) {
    // Commits numbered up to here were submitted before the last rebuild (or while memory
    // could not be rebuilt: u64::MAX) on top of a lost change.
    let mut tainted_through: u64 = 0;
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = if tainted_through == u64::MAX {
            tokio::select! {
                next = commits.recv() => next,
                _ = retry.tick() => {
                    let Some(app) = app.upgrade() else { return };
                    if let Some(through) = rebuild(app).await {
                        tainted_through = through;
                    }
                    continue;
                }
            }
        } else {
            commits.recv().await
        };
        let Some(commit) = next else { return };
        let result = commit.ticket.await;
        let Some(app) = app.upgrade() else { return };
        let verdict = match result {
            Ok(()) => {
                // Durable: the live meeting plane acts on it even if the request fails below,
                // because the rebuilt memory holds this change too.
                for notice in commit.notices {
                    tracing::info!(?notice, "meeting lifecycle");
                    if let Some(media) = &app.media {
                        media.notice(notice);
                    }
                }
                if commit.seq <= tainted_through {
                    Err(CommitError::RolledBack)
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                tracing::error!(error = %e, seq = commit.seq, "store commit failed");
                // A commit submitted before the last rebuild is already reflected in it.
                if commit.seq > tainted_through {
                    tainted_through = rebuild(app).await.unwrap_or(u64::MAX);
                }
                Err(CommitError::Store(e))
            }
        };
        let _ = commit.verdict.send(verdict);
    }
}

/// Runs [`App::rebuild`] on a blocking thread. On failure, marks the node as recovering
/// (requests answer 503) and returns `None`; the verifier retries every second.
async fn rebuild(app: Arc<App>) -> Option<u64> {
    let worker = app.clone();
    match tokio::task::spawn_blocking(move || worker.rebuild()).await {
        Ok(Ok(through)) => Some(through),
        Ok(Err(e)) => {
            app.recovering.store(true, Ordering::Release);
            tracing::error!(error = %e, "cannot rebuild the in-memory state from the store; refusing requests until it can");
            None
        }
        Err(e) => {
            app.recovering.store(true, Ordering::Release);
            tracing::error!(error = %e, "rebuilding the in-memory state panicked");
            None
        }
    }
}

/// A bound, ready-to-run node.
pub struct Node {
    pub app: Arc<App>,
    pub http: tokio::net::TcpListener,
    pub http_addr: SocketAddr,
    pub media_addr: SocketAddr,
    pub public_url: String,
    media_upcalls: Option<crate::media::Upcalls>,
    events: crate::config::EventSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the store: {0}")]
    Store(#[from] carillon_store::StoreError),
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Node {
    /// Opens the store, restores the state and binds the sockets.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let db = config.data_dir.join("carillon.db");
        let synchronous = if config.full_sync {
            Synchronous::Full
        } else {
            Synchronous::Normal
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db, synchronous)?);
        tracing::info!(db = %db.display(), "store opened");
        Node::start_with_store(config, store).await
    }

    /// As [`Node::start`], on a store opened by the caller (`config.data_dir` is not used).
    pub async fn start_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Node, StartError> {
        let clock = if config.test_clock {
            Clock::adjustable()
        } else {
            Clock::system()
        };
        let snapshot = store.load()?;
        let (meetings, attendees) = (snapshot.meetings.len(), snapshot.attendees.len());
        let mut plane = ControlPlane::new(
            config.limits.clone(),
            config.account_id.clone(),
            Box::new(StdRng::from_os_rng()),
        );
        // Before loading: meetings that ended while the server was down report there too.
        plane.set_event_targets(config.events.global_targets());
        plane.load_snapshot(snapshot, clock.now_ms());
        store.commit(plane.take_changes()).await?;
        for notice in plane.take_notices() {
            tracing::info!(?notice, "ended while the server was down");
        }
        tracing::info!(meetings, attendees, "state restored");

        let http = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let media_udp = std::net::UdpSocket::bind(config.media_udp)
            .map_err(|e| StartError::Bind(config.media_udp, e))?;
        let media_addr = media_udp
            .local_addr()
            .map_err(|e| StartError::Bind(config.media_udp, e))?;
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            let host = if http_addr.ip().is_unspecified() {
                tracing::warn!(
                    "listening on all interfaces: set --public-url so clients get reachable URLs"
                );
                SocketAddr::new([127, 0, 0, 1].into(), http_addr.port())
            } else {
                http_addr
            };
            format!("http://{host}")
        });
        let candidate = media_candidate(media_addr, &public_url);
        let mut engine = carillon_media::EngineConfig::new(candidate);
        engine.max_video_publishers = config.media.max_video_publishers;
        engine.mixer.top_k = config.media.mixer_top_k;
        engine.reconnect_grace = config.media.reconnect_grace;
        engine.max_attendees = config.limits.max_attendees;
        let (media, media_upcalls) =
            crate::media::start(media_udp, engine).map_err(|e| StartError::Bind(media_addr, e))?;
        let (commits, verifier_queue) = mpsc::unbounded_channel();
        let app = Arc::new(App {
            plane: Mutex::new(plane),
            store,
            commits,
            submitted: AtomicU64::new(0),
            recovering: AtomicBool::new(false),
            verifier: Verifier::new("chime", config.credentials.clone()),
            placement: Placement::new(&public_url, media_addr.port()),
            rate_limiter: config
                .rate_limit
                .map(|(rate, burst)| Mutex::new(RateLimiter::new(rate, burst))),
            validation: if config.validation_exception {
                Exception::Validation
            } else {
                Exception::BadRequest
            },
            clock,
            web_root: config.web_root.clone(),
            media: Some(media),
        });
        // Weak: the verifier must not keep the App (and so its own queue) alive.
        tokio::spawn(verify_commits(Arc::downgrade(&app), verifier_queue));
        Ok(Node {
            app,
            http,
            http_addr,
            media_addr,
            public_url,
            media_upcalls: Some(media_upcalls),
            events: config.events.clone(),
        })
    }

    /// The lines printed at start-up, one per endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        let ws = self.public_url.replacen("http", "ws", 1);
        let media = self.media_addr;
        vec![
            format!("api {}", self.public_url),
            format!("signaling {ws}/control/<MeetingId>"),
            format!("client-events {}/v1/client-events", self.public_url),
            format!("health {}/healthz", self.public_url),
            format!("media udp {media}"),
        ]
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep_loop(self.app.clone()));
        let delivery = crate::events::start(&self.app, self.app.store.clone(), &self.events);
        let upcalls = self.media_upcalls.take().map(|up| {
            (
                tokio::spawn(crate::media::apply_events(self.app.clone(), up.events)),
                tokio::spawn(crate::media::authorize_promotions(
                    self.app.clone(),
                    up.promotions,
                )),
            )
        });
        // No Nagle: a signaling answer is several small WebSocket frames written back to back
        // (JOIN_ACK, INDEX, roster), and Nagle plus the client's delayed ACK holds the second
        // one for 40 ms.
        let listener = self.http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, router(self.app.clone()))
            .with_graceful_shutdown(shutdown)
            .await;
        sweeper.abort();
        if let Some((events, promotions)) = upcalls {
            events.abort();
            promotions.abort();
        }
        delivery.shutdown();
        result
    }
}

/// The address put in ICE host candidates: the media socket's, or when it listens on all
/// interfaces, the public URL's host if that is an IP address (else loopback).
fn media_candidate(media: SocketAddr, public_url: &str) -> SocketAddr {
    if !media.ip().is_unspecified() {
        return media;
    }
    let host = public_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|authority| {
            authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']')
        });
    match host.and_then(|h| h.parse::<std::net::IpAddr>().ok()) {
        Some(ip) => SocketAddr::new(ip, media.port()),
        None => {
            tracing::warn!(
                "media listens on all interfaces and --public-url has no IP: advertising 127.0.0.1"
            );
            SocketAddr::new([127, 0, 0, 1].into(), media.port())
        }
    }
}

/// The HTTP routes. Everything that is not a fixed path is the signed REST API.
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/v1/client-events",
            post(client_events::ingest).options(client_events::preflight),
        )
        .route("/control/{meeting}", get(crate::media::signaling));
    if app.clock.is_adjustable() {
        router = router.route("/_carillon/test/clock", post(advance_clock));
    }
    router
        .merge(crate::web::routes(&app.web_root))
        .fallback(rest::handle)
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

/// `POST /_carillon/test/clock {"seconds": N}`: moves the lifecycle clock forward. Anything
/// but a JSON object with an integer `seconds` the clock can absorb is a 400, never a panic.
async fn advance_clock(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let bad_request = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "message": message })),
        )
            .into_response()
    };
    let advance: Advance = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"seconds\": <integer from 0 to {}>}}: {e}",
                crate::clock::MAX_ADVANCE_SECONDS
            ));
        }
    };
    let now = match app.clock.advance_seconds(advance.seconds) {
        Ok(now) => now,
        Err(e) => return bad_request(e.to_string()),
    };
    // Apply the timers right away instead of waiting for the next sweep.
    let ((), pending) = app.mutate(|plane| plane.sweep(now));
    if let Err(e) = pending.finish().await {
        tracing::error!(error = %e, "store failure during sweep");
    }
    axum::Json(serde_json::json!({ "now_ms": now })).into_response()
}

/// Ends meetings whose timers ran out, once a second.
async fn sweep_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = app.clock.now_ms();
        // While memory may differ from the store, ending meetings would only add to that.
        let due = !app.is_recovering() && app.plane().next_deadline().is_some_and(|d| d <= now);
        if due {
            let ((), pending) = app.mutate(|plane| plane.sweep(now));
            if let Err(e) = pending.finish().await {
                tracing::error!(error = %e, "store failure during sweep");
            }
        }
    }
}

//! The running node: shared state, the HTTP router, the lifecycle sweeper.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use carillon_api::{Exception, Placement, RateLimiter};
use carillon_control::{Change, ControlPlane, Notice};
use carillon_sigv4::Verifier;
use carillon_store::{CommitTicket, SqliteStore, Store, Synchronous};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::clock::Clock;
use crate::config::Config;
use crate::{client_events, rest};

/// Everything a request handler needs.
pub struct App {
    plane: Mutex<ControlPlane>,
    store: Arc<dyn Store>,
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

impl App {
    /// Locks the control plane. A panic while holding the lock is a bug; the state is still
    /// consistent per operation, so keep serving rather than poisoning every later request.
    pub fn plane(&self) -> MutexGuard<'_, ControlPlane> {
        self.plane.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` against the control plane and submits the changes it queued, in order, while
    /// still holding the lock. Returns `f`'s result and the commit ticket to await before
    /// answering; notices are handed to the live meeting plane after the commit.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut ControlPlane) -> T) -> (T, Pending) {
        let mut plane = self.plane();
        let out = f(&mut plane);
        let changes: Vec<Change> = plane.take_changes();
        let notices = plane.take_notices();
        let ticket = self.store.commit(changes);
        (out, Pending { ticket, notices })
    }
}

/// Work queued by a mutation that must finish before the client gets its answer.
pub struct Pending {
    ticket: CommitTicket,
    notices: Vec<Notice>,
}

impl Pending {
    /// Waits for durability, then hands the notices to the live meeting plane.
    pub async fn finish(self, app: &App) -> Result<(), carillon_store::StoreError> {
        self.ticket.await?;
        for notice in self.notices {
            tracing::info!(?notice, "meeting lifecycle");
            if let Some(media) = &app.media {
                media.notice(notice);
            }
        }
        Ok(())
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
        tracing::info!(meetings, attendees, db = %db.display(), "state restored");

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
        let (media, media_upcalls) =
            crate::media::start(media_udp, engine).map_err(|e| StartError::Bind(media_addr, e))?;
        let app = Arc::new(App {
            plane: Mutex::new(plane),
            store,
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
struct Advance {
    seconds: i64,
}

async fn advance_clock(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    axum::Json(advance): axum::Json<Advance>,
) -> axum::Json<serde_json::Value> {
    let now = app
        .clock
        .advance(advance.seconds * 1000)
        .unwrap_or_default();
    // Apply the timers right away instead of waiting for the next sweep.
    let ((), pending) = app.mutate(|plane| plane.sweep(now));
    if let Err(e) = pending.finish(&app).await {
        tracing::error!(error = %e, "store failure during sweep");
    }
    axum::Json(serde_json::json!({ "now_ms": now }))
}

/// Ends meetings whose timers ran out, once a second.
async fn sweep_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = app.clock.now_ms();
        let due = app.plane().next_deadline().is_some_and(|d| d <= now);
        if due {
            let ((), pending) = app.mutate(|plane| plane.sweep(now));
            if let Err(e) = pending.finish(&app).await {
                tracing::error!(error = %e, "store failure during sweep");
            }
        }
    }
}

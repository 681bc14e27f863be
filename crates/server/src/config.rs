//! Configuration: command-line flags, `CARILLON_*` environment variables and an optional TOML
//! file (`--config`), in that order of precedence, over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The development key pair used when no credentials are configured.
pub const DEV_ACCESS_KEY_ID: &str = "AKIDCARILLONDEV";
/// Secret of the development key pair.
pub const DEV_SECRET_ACCESS_KEY: &str = "carillon-dev-secret";

#[derive(Debug, Parser)]
#[command(
    name = "carillon",
    version,
    about = "Self-hosted Amazon Chime SDK Meetings"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this node: REST API, signaling, media, lifecycle.
    Serve(ServeArgs),
}

/// Flags of `carillon serve`. Every flag also reads `CARILLON_<NAME>` (on/off flags take 1/0
/// as well as true/false there) and the config file.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML configuration file (keys are the flag names, e.g. `listen = "127.0.0.1:8080"`).
    #[arg(long, env = "CARILLON_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP address for the REST API, signaling WebSocket, client events and demo page.
    #[arg(long, env = "CARILLON_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// UDP address for media (port 0: any free port).
    #[arg(long, env = "CARILLON_MEDIA_UDP")]
    pub media_udp: Option<SocketAddr>,
    /// Directory for the SQLite database and other state.
    #[arg(long, env = "CARILLON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base URL clients use to reach this server (default: derived from --listen).
    #[arg(long, env = "CARILLON_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory of the demo page served at `/` (built by `npm --prefix web run build`).
    #[arg(long, env = "CARILLON_WEB_ROOT")]
    pub web_root: Option<PathBuf>,
    /// Account id used in ARNs.
    #[arg(long, env = "CARILLON_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Active meetings per account (Chime's default quota: 250).
    #[arg(long, env = "CARILLON_MAX_ACTIVE_MEETINGS")]
    pub max_active_meetings: Option<usize>,
    /// Replica meetings per primary meeting (default 4, at most 40).
    #[arg(long, env = "CARILLON_MAX_REPLICAS_PER_PRIMARY")]
    pub max_replicas_per_primary: Option<usize>,
    /// Attendees per meeting when MeetingFeatures.Attendee.MaxCount is not given (default 250).
    #[arg(long, env = "CARILLON_MAX_ATTENDEES")]
    pub max_attendees: Option<usize>,
    /// Highest MaxCount allowed with FHD video or UHD content (default 25).
    #[arg(long, env = "CARILLON_HIGH_RESOLUTION_MAX_ATTENDEES")]
    pub high_resolution_max_attendees: Option<u32>,
    /// A meeting with nobody connected ends after this long (default 5m).
    #[arg(long, env = "CARILLON_MEETING_IDLE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub meeting_idle_timeout: Option<Duration>,
    /// Every meeting ends this long after creation (default 24h).
    #[arg(long, env = "CARILLON_MEETING_MAX_DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub meeting_max_duration: Option<Duration>,
    /// Camera videos published per meeting (default 25).
    #[arg(long, env = "CARILLON_MAX_VIDEO_PUBLISHERS")]
    pub max_video_publishers: Option<usize>,
    /// Speakers mixed at once into each listener's audio (default 3).
    #[arg(long, env = "CARILLON_MIXER_TOP_K")]
    pub mixer_top_k: Option<usize>,
    /// How long a dropped client keeps its place in the roster for a reconnect (default 10s).
    #[arg(long, env = "CARILLON_RECONNECT_GRACE", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub reconnect_grace: Option<Duration>,
    /// Enforce per-operation API rate limits (AWS-like: 10 requests/s, burst 20).
    #[arg(long, env = "CARILLON_API_RATE_LIMIT", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(default)]
    pub api_rate_limit: bool,
    /// Requests per second per operation when rate limits are on (default 10).
    #[arg(long, env = "CARILLON_API_RATE")]
    pub api_rate: Option<f64>,
    /// Burst per operation when rate limits are on (default 20).
    #[arg(long, env = "CARILLON_API_BURST")]
    pub api_burst: Option<u32>,
    /// Answer schema violations with the unmodeled ValidationException (as Coral does)
    /// instead of BadRequestException.
    #[arg(long, env = "CARILLON_VALIDATION_EXCEPTION", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(default)]
    pub validation_exception: bool,
    /// fsync every commit (survives power loss; slower). Default: durable across crashes.
    #[arg(long, env = "CARILLON_FULL_SYNC", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(default)]
    pub full_sync: bool,
    /// Enables POST /_carillon/test/clock to move the lifecycle clock (tests only).
    #[arg(long, env = "CARILLON_TEST_CLOCK", hide = true, action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(default)]
    pub test_clock: bool,
    /// Webhook receiving every meeting event (repeatable; environment: comma-separated).
    #[arg(long = "webhook", env = "CARILLON_WEBHOOKS", value_delimiter = ',')]
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Deliver meeting events to EventBridge (default bus of the meeting's control region).
    #[arg(
        long,
        env = "CARILLON_EVENTBRIDGE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    #[serde(default)]
    pub eventbridge: bool,
    /// `Source` of EventBridge entries (default aws.chime, which real AWS reserves).
    #[arg(long, env = "CARILLON_EVENTBRIDGE_SOURCE")]
    pub eventbridge_source: Option<String>,
    /// Give up a failing event delivery once the event is older than this (default 24h).
    #[arg(long, env = "CARILLON_EVENT_MAX_AGE", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub event_max_age: Option<Duration>,
    /// Key of the webhook signatures. Environment (`CARILLON_WEBHOOK_SECRET`) or config file
    /// only, never a flag.
    #[arg(skip)]
    pub webhook_secret: Option<String>,
    /// SigV4 key pairs `AKID:SECRET[,AKID:SECRET…]` (config file: a list). Environment only
    /// (`CARILLON_CREDENTIALS`), never a flag, so secrets stay out of process listings.
    #[arg(skip)]
    pub credentials: Option<Vec<String>>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 300s, 5m, 24h)"))
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub media_udp: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub web_root: PathBuf,
    pub account_id: String,
    pub credentials: Vec<(String, String)>,
    /// True when no credentials were configured and the development pair is in use.
    pub dev_credentials: bool,
    pub limits: carillon_control::Limits,
    pub media: MediaSettings,
    pub rate_limit: Option<(f64, u32)>,
    pub validation_exception: bool,
    pub full_sync: bool,
    pub test_clock: bool,
    pub events: EventSettings,
}

/// Meeting event delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSettings {
    pub webhooks: Vec<String>,
    pub webhook_secret: Option<String>,
    pub eventbridge: bool,
    pub eventbridge_source: Option<String>,
    pub max_age: Duration,
}

impl EventSettings {
    /// The targets every meeting's events go to, besides its NotificationsConfiguration.
    pub fn global_targets(&self) -> Vec<carillon_control::EventTarget> {
        let mut targets: Vec<carillon_control::EventTarget> = self
            .webhooks
            .iter()
            .map(|url| carillon_control::EventTarget::Webhook(url.clone()))
            .collect();
        if self.eventbridge {
            targets.push(carillon_control::EventTarget::EventBridge);
        }
        targets
    }
}

/// Media-plane settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSettings {
    pub max_video_publishers: usize,
    pub mixer_top_k: usize,
    pub reconnect_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Merges flags/environment (`args`), the config file and the defaults, and checks the
    /// result. `credentials_env` is the value of `CARILLON_CREDENTIALS`, if set.
    pub fn resolve(
        args: ServeArgs,
        credentials_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => ServeArgs::default(),
        };
        let defaults = carillon_control::Limits::default();
        let credentials_list = match credentials_env {
            Some(env) => Some(
                env.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => args.credentials.or(file.credentials),
        };
        let mut credentials = Vec::new();
        for entry in credentials_list.unwrap_or_default() {
            let (akid, secret) = entry.split_once(':').ok_or_else(|| {
                ConfigError::Invalid(
                    "credentials must be AKID:SECRET pairs separated by commas".into(),
                )
            })?;
            if akid.is_empty() || secret.is_empty() {
                return Err(ConfigError::Invalid(
                    "credentials must be AKID:SECRET pairs with neither part empty".into(),
                ));
            }
            credentials.push((akid.to_owned(), secret.to_owned()));
        }
        let dev_credentials = credentials.is_empty();
        if dev_credentials {
            credentials.push((DEV_ACCESS_KEY_ID.into(), DEV_SECRET_ACCESS_KEY.into()));
        }
        let max_replicas = args
            .max_replicas_per_primary
            .or(file.max_replicas_per_primary)
            .unwrap_or(defaults.max_replicas_per_primary);
        if !(1..=40).contains(&max_replicas) {
            return Err(ConfigError::Invalid(format!(
                "max-replicas-per-primary must be between 1 and 40 (got {max_replicas})"
            )));
        }
        let rate_limit = (args.api_rate_limit || file.api_rate_limit).then(|| {
            (
                args.api_rate.or(file.api_rate).unwrap_or(10.0),
                args.api_burst.or(file.api_burst).unwrap_or(20),
            )
        });
        if let Some((rate, burst)) = rate_limit
            && (!rate.is_finite() || rate <= 0.0 || burst == 0)
        {
            return Err(ConfigError::Invalid(
                "api-rate must be positive and api-burst at least 1".into(),
            ));
        }
        // Bounded below, so the durations fit in u64 milliseconds with room to add them to a
        // timestamp.
        let ms = |d: Option<Duration>, default: u64| {
            d.map_or(default, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            })
        };
        let config = Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid literal")),
            media_udp: args
                .media_udp
                .or(file.media_udp)
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid literal")),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./carillon-data")),
            public_url: args.public_url.or(file.public_url),
            web_root: args
                .web_root
                .or(file.web_root)
                .unwrap_or_else(|| PathBuf::from("web/dist")),
            account_id: args
                .account_id
                .or(file.account_id)
                .unwrap_or_else(|| "000000000000".into()),
            credentials,
            dev_credentials,
            limits: carillon_control::Limits {
                max_active_meetings: args
                    .max_active_meetings
                    .or(file.max_active_meetings)
                    .unwrap_or(defaults.max_active_meetings),
                max_replicas_per_primary: max_replicas,
                max_attendees: args
                    .max_attendees
                    .or(file.max_attendees)
                    .unwrap_or(defaults.max_attendees),
                high_resolution_max_attendees: args
                    .high_resolution_max_attendees
                    .or(file.high_resolution_max_attendees)
                    .unwrap_or(defaults.high_resolution_max_attendees),
                idle_timeout_ms: ms(
                    args.meeting_idle_timeout.or(file.meeting_idle_timeout),
                    defaults.idle_timeout_ms,
                ),
                max_duration_ms: ms(
                    args.meeting_max_duration.or(file.meeting_max_duration),
                    defaults.max_duration_ms,
                ),
                max_tags: defaults.max_tags,
            },
            media: MediaSettings {
                max_video_publishers: args
                    .max_video_publishers
                    .or(file.max_video_publishers)
                    .unwrap_or(25),
                mixer_top_k: args.mixer_top_k.or(file.mixer_top_k).unwrap_or(3),
                reconnect_grace: args
                    .reconnect_grace
                    .or(file.reconnect_grace)
                    .unwrap_or(Duration::from_secs(10)),
            },
            rate_limit,
            validation_exception: args.validation_exception || file.validation_exception,
            full_sync: args.full_sync || file.full_sync,
            test_clock: args.test_clock || file.test_clock,
            events: EventSettings {
                webhooks: if args.webhooks.is_empty() {
                    file.webhooks
                } else {
                    args.webhooks
                },
                webhook_secret: args
                    .webhook_secret
                    .or(file.webhook_secret)
                    .filter(|s| !s.is_empty()),
                eventbridge: args.eventbridge || file.eventbridge,
                eventbridge_source: args.eventbridge_source.or(file.eventbridge_source),
                max_age: args
                    .event_max_age
                    .or(file.event_max_age)
                    .unwrap_or(Duration::from_secs(24 * 3600)),
            },
        };
        if let Some(url) = &config.public_url {
            check_public_url(url)?;
        }
        check_limits(&config.limits)?;
        if !config.account_id.chars().all(|c| c.is_ascii_digit()) || config.account_id.len() != 12 {
            return Err(ConfigError::Invalid(format!(
                "account id must be 12 digits (got '{}')",
                config.account_id
            )));
        }
        if !(1..=250).contains(&config.media.max_video_publishers) {
            return Err(ConfigError::Invalid(
                "max-video-publishers must be between 1 and 250".into(),
            ));
        }
        if !(1..=32).contains(&config.media.mixer_top_k) {
            return Err(ConfigError::Invalid(
                "mixer-top-k must be between 1 and 32".into(),
            ));
        }
        for url in &config.events.webhooks {
            let valid = url.parse::<axum::http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "webhook must be an http:// or https:// URL (got '{url}')"
                )));
            }
        }
        if !config.events.webhooks.is_empty() && config.events.webhook_secret.is_none() {
            return Err(ConfigError::Invalid(
                "webhooks are signed: set CARILLON_WEBHOOK_SECRET (or `webhook-secret` in the config file)".into(),
            ));
        }
        if config.events.max_age < Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "event-max-age must be at least 1m".into(),
            ));
        }
        if config.dev_credentials && !config.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback address {} with only the development credentials; set CARILLON_CREDENTIALS=AKID:SECRET (or `credentials` in the config file)",
                config.listen
            )));
        }
        Ok(config)
    }
}

/// `--public-url` becomes every URL in `MediaPlacement`, so a typo would only surface in the
/// browser: it must be `http://` or `https://` with a host (an optional port and path prefix
/// are fine), and nothing that cannot be the base of a URL (query, fragment, credentials).
fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid(format!(
            "public-url must be an http:// or https:// URL with a host, e.g. https://meet.example.com (got '{url}': {why})"
        ))
    };
    let uri: axum::http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("the scheme must be http or https"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("credentials are not allowed"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(())
}

/// Longest meeting timer accepted: a year. Longer would mean "never", which is not what
/// these settings are for, and keeps the millisecond arithmetic far from overflowing.
const MAX_TIMER: Duration = Duration::from_secs(366 * 24 * 3600);

/// Quotas and timers outside these bounds are refused at start-up rather than misbehaving
/// later: zero would make every meeting full or end at once, and attendee counts above
/// Chime's 250 (not adjustable at AWS) exceed what its clients are built for.
fn check_limits(limits: &carillon_control::Limits) -> Result<(), ConfigError> {
    let range = |name: &str, value: usize, max: usize| {
        if (1..=max).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!(
                "{name} must be between 1 and {max} (got {value})"
            )))
        }
    };
    range("max-active-meetings", limits.max_active_meetings, 100_000)?;
    range("max-attendees", limits.max_attendees, 250)?;
    range(
        "high-resolution-max-attendees",
        limits.high_resolution_max_attendees as usize,
        250,
    )?;
    let max_ms = MAX_TIMER.as_millis() as u64;
    for (name, value) in [
        ("meeting-idle-timeout", limits.idle_timeout_ms),
        ("meeting-max-duration", limits.max_duration_ms),
    ] {
        if !(1000..=max_ms).contains(&value) {
            return Err(ConfigError::Invalid(format!(
                "{name} must be between 1s and 366d (got {value} ms)"
            )));
        }
    }
    Ok(())
}

fn load_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_dev_credentials() {
        let c = Config::resolve(ServeArgs::default(), None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.media_udp.to_string(), "127.0.0.1:0");
        assert!(c.dev_credentials);
        assert_eq!(c.credentials[0].0, DEV_ACCESS_KEY_ID);
        assert_eq!(c.account_id, "000000000000");
        assert_eq!(c.rate_limit, None);
    }

    #[test]
    fn refuses_public_listen_with_dev_pair() {
        let args = ServeArgs {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::resolve(args, None).is_err());
        let args = ServeArgs {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::resolve(args, Some("AK1:s1, AK2:s:2".into())).unwrap();
        assert_eq!(
            c.credentials,
            vec![("AK1".into(), "s1".into()), ("AK2".into(), "s:2".into())]
        );
    }

    #[test]
    fn webhooks_need_a_secret_and_a_url() {
        let args = ServeArgs {
            webhooks: vec!["http://127.0.0.1:9/hook".into()],
            ..Default::default()
        };
        assert!(Config::resolve(args, None).is_err());
        let args = ServeArgs {
            webhooks: vec!["ftp://example.com/x".into()],
            webhook_secret: Some("s".into()),
            ..Default::default()
        };
        assert!(Config::resolve(args, None).is_err());
        let args = ServeArgs {
            webhooks: vec![
                "http://127.0.0.1:9/hook".into(),
                "https://example.com/h".into(),
            ],
            webhook_secret: Some("s".into()),
            eventbridge: true,
            ..Default::default()
        };
        let c = Config::resolve(args, None).unwrap();
        assert_eq!(c.events.global_targets().len(), 3);
        assert_eq!(c.events.max_age, Duration::from_secs(86_400));
    }

    #[test]
    fn public_url_must_be_http_with_a_host() {
        for good in [
            "http://127.0.0.1:8080",
            "https://meet.example.com",
            "https://meet.example.com/",
            "http://[::1]:8080",
            "https://example.com/carillon",
        ] {
            let args = ServeArgs {
                public_url: Some(good.into()),
                ..Default::default()
            };
            assert!(Config::resolve(args, None).is_ok(), "{good}");
        }
        for bad in [
            "meet.example.com",
            "127.0.0.1:8080",
            "ftp://meet.example.com",
            "ws://meet.example.com",
            "http://",
            "https:///path",
            "http://user:pw@meet.example.com",
            "https://meet.example.com/?x=1",
            "https://meet.example.com/#frag",
            "http://meet example.com",
            "",
        ] {
            let args = ServeArgs {
                public_url: Some(bad.into()),
                ..Default::default()
            };
            let err = Config::resolve(args, None).unwrap_err().to_string();
            assert!(err.contains("public-url must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn quotas_and_timers_are_bounded() {
        let check = |args: ServeArgs| Config::resolve(args, None).map(|c| c.limits);
        for (args, name) in [
            (
                ServeArgs {
                    max_attendees: Some(0),
                    ..Default::default()
                },
                "max-attendees",
            ),
            (
                ServeArgs {
                    max_attendees: Some(251),
                    ..Default::default()
                },
                "max-attendees",
            ),
            (
                ServeArgs {
                    high_resolution_max_attendees: Some(0),
                    ..Default::default()
                },
                "high-resolution-max-attendees",
            ),
            (
                ServeArgs {
                    high_resolution_max_attendees: Some(251),
                    ..Default::default()
                },
                "high-resolution-max-attendees",
            ),
            (
                ServeArgs {
                    max_active_meetings: Some(0),
                    ..Default::default()
                },
                "max-active-meetings",
            ),
            (
                ServeArgs {
                    max_active_meetings: Some(100_001),
                    ..Default::default()
                },
                "max-active-meetings",
            ),
            (
                ServeArgs {
                    meeting_idle_timeout: Some(Duration::ZERO),
                    ..Default::default()
                },
                "meeting-idle-timeout",
            ),
            (
                ServeArgs {
                    meeting_max_duration: Some(Duration::from_secs(u64::MAX)),
                    ..Default::default()
                },
                "meeting-max-duration",
            ),
        ] {
            let err = check(args).unwrap_err().to_string();
            assert!(err.starts_with(name), "{name}: {err}");
        }
        let limits = check(ServeArgs {
            max_attendees: Some(250),
            high_resolution_max_attendees: Some(1),
            max_active_meetings: Some(1),
            meeting_idle_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(limits.max_attendees, 250);
        assert_eq!(limits.high_resolution_max_attendees, 1);
    }

    #[test]
    fn file_values_sit_under_flags() {
        let dir = std::env::temp_dir().join(format!("carillon-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("carillon.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax-replicas-per-primary = 40\nmeeting-idle-timeout = \"2m\"\ncredentials = [\"A:B\"]\napi-rate-limit = true\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::resolve(args, None).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.limits.max_replicas_per_primary, 40);
        assert_eq!(c.limits.idle_timeout_ms, 120_000);
        assert_eq!(c.credentials, vec![("A".into(), "B".into())]);
        assert_eq!(c.rate_limit, Some((10.0, 20)));
        std::fs::write(&path, "max-replicas-per-primary = 41\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(Config::resolve(args, None).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

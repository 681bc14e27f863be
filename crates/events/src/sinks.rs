//! The target adapters: one delivery attempt of one event to one target.
//!
//! * webhooks: HTTP POST of the envelope, signed (see [`crate::signature`]);
//! * SQS `SendMessage` (queue URL from `GetQueueUrl`, cached), SNS `Publish`, Lambda `Invoke`
//!   with `InvocationType=Event`, EventBridge `PutEvents` on the default bus of the meeting's
//!   control region, through the AWS SDK for Rust and its standard configuration chain
//!   (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS`, ...).
//!
//! An attempt answers `Ok(())` or the reason it failed, as text for the log and the outbox.
//! The SDK's own retries are off: the outbox's policy retries.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use bytes::Bytes;
use carillon_control::{Event, EventTarget};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::envelope::{DETAIL_TYPE, Envelope};
use crate::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// Longest a single delivery attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed delivery future.
pub type Attempt<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Delivers one event to one target. Implemented by [`Sinks`]; tests substitute their own.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(&'a self, target: &'a EventTarget, event: &'a Event) -> Attempt<'a>;
}

/// Settings of the real adapters.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// Key of the webhook signatures.
    pub webhook_secret: Vec<u8>,
    /// `Source` of EventBridge entries (default `aws.chime`).
    pub eventbridge_source: Option<String>,
}

/// The real adapters.
pub struct Sinks {
    webhook: Webhook,
    aws: Aws,
}

impl Sinks {
    pub fn new(settings: SinkSettings) -> Sinks {
        Sinks {
            webhook: Webhook::new(settings.webhook_secret),
            aws: Aws::new(settings.eventbridge_source),
        }
    }
}

impl Deliver for Sinks {
    fn deliver<'a>(&'a self, target: &'a EventTarget, event: &'a Event) -> Attempt<'a> {
        Box::pin(async move {
            let attempt = async {
                match target {
                    EventTarget::Webhook(url) => self.webhook.post(url, event).await,
                    EventTarget::Sqs(arn) => self.aws.sqs(arn, event).await,
                    EventTarget::Sns(arn) => self.aws.sns(arn, event).await,
                    EventTarget::Lambda(arn) => self.aws.lambda(arn, event).await,
                    EventTarget::EventBridge => self.aws.eventbridge(event).await,
                }
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
            }
        })
    }
}

// ----- webhooks -----

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// HTTP(S) POST with keep-alive connections (hyper-util's pooled client).
struct Webhook {
    secret: Vec<u8>,
    plain: Client<HttpConnector, Full<Bytes>>,
    /// `Err` when the system has no CA certificates: https webhooks then fail with the reason.
    tls: Result<Client<HttpsConnector, Full<Bytes>>, String>,
}

impl Webhook {
    fn new(secret: Vec<u8>) -> Webhook {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(30));
            b
        };
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map(|b| {
                let mut inner = http.clone();
                inner.enforce_http(false);
                builder().build(b.https_only().enable_http1().wrap_connector(inner))
            })
            .map_err(|e| format!("no system CA certificates for https: {e}"));
        Webhook {
            secret,
            plain: builder().build(http),
            tls,
        }
    }

    async fn post(&self, url: &str, event: &Event) -> Result<(), String> {
        let body = Envelope::of(event).to_json();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = sign(&self.secret, &timestamp, body.as_bytes());
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("carillon/", env!("CARGO_PKG_VERSION")),
            )
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, event.id.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("invalid webhook URL: {e}"))?;
        let sent = if request.uri().scheme_str() == Some("https") {
            match &self.tls {
                Ok(client) => client.request(request).await,
                Err(reason) => return Err(reason.clone()),
            }
        } else {
            self.plain.request(request).await
        };
        let response = sent.map_err(|e| format!("POST failed: {}", error_chain(&e)))?;
        let status = response.status();
        // Read the body so the connection goes back to the pool (bounded).
        let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(format!("HTTP {status}: {}", text.trim()))
        }
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ----- AWS -----

/// The parts of an ARN this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Parses `arn:<partition>:<service>:<region>:<account>:<resource>`.
pub fn parse_arn(arn: &str) -> Result<Arn<'_>, String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!("not an ARN: {arn}"));
    };
    if region.is_empty() || resource.is_empty() {
        return Err(format!("ARN without a region or resource: {arn}"));
    }
    Ok(Arn {
        service,
        region,
        account,
        resource,
    })
}

/// Clients of one service, one per region, made from the shared SDK configuration.
struct PerRegion<C> {
    clients: Mutex<HashMap<String, C>>,
}

impl<C: Clone> PerRegion<C> {
    fn new() -> Self {
        PerRegion {
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, region: &str, make: impl FnOnce() -> C) -> C {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(make)
            .clone()
    }
}

struct Aws {
    config: tokio::sync::OnceCell<SdkConfig>,
    eventbridge_source: String,
    sqs: PerRegion<aws_sdk_sqs::Client>,
    sns: PerRegion<aws_sdk_sns::Client>,
    lambda: PerRegion<aws_sdk_lambda::Client>,
    eventbridge: PerRegion<aws_sdk_eventbridge::Client>,
    /// Queue ARN -> queue URL.
    queue_urls: Mutex<HashMap<String, String>>,
}

impl Aws {
    fn new(eventbridge_source: Option<String>) -> Aws {
        Aws {
            config: tokio::sync::OnceCell::new(),
            eventbridge_source: eventbridge_source
                .unwrap_or_else(|| crate::envelope::SOURCE.to_owned()),
            sqs: PerRegion::new(),
            sns: PerRegion::new(),
            lambda: PerRegion::new(),
            eventbridge: PerRegion::new(),
            queue_urls: Mutex::new(HashMap::new()),
        }
    }

    /// The standard configuration chain, loaded on first use (only nodes that deliver to
    /// AWS pay for it). Timeouts are ours; retries are the outbox's.
    async fn config(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| async {
                aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    )
                    .load()
                    .await
            })
            .await
    }

    async fn sqs(&self, arn: &str, event: &Event) -> Result<(), String> {
        let parsed = parse_arn(arn)?;
        let config = self.config().await;
        let client = self.sqs.get(parsed.region, || {
            let conf = aws_sdk_sqs::config::Builder::from(config)
                .region(Region::new(parsed.region.to_owned()))
                .build();
            aws_sdk_sqs::Client::from_conf(conf)
        });
        let cached = self
            .queue_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(arn)
            .cloned();
        let url = match cached {
            Some(url) => url,
            None => {
                let mut request = client.get_queue_url().queue_name(parsed.resource);
                if !parsed.account.is_empty() {
                    request = request.queue_owner_aws_account_id(parsed.account);
                }
                let out = request.send().await.map_err(|e| {
                    format!(
                        "SQS GetQueueUrl: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })?;
                let url = out
                    .queue_url()
                    .ok_or("SQS GetQueueUrl returned no QueueUrl")?
                    .to_owned();
                self.queue_urls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(arn.to_owned(), url.clone());
                url
            }
        };
        let body = Envelope::of(event).to_json();
        let sent = client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await;
        if let Err(e) = sent {
            // The queue may have been recreated elsewhere: look the URL up again next time.
            self.queue_urls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(arn);
            return Err(format!(
                "SQS SendMessage: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            ));
        }
        Ok(())
    }

    async fn sns(&self, arn: &str, event: &Event) -> Result<(), String> {
        let parsed = parse_arn(arn)?;
        let config = self.config().await;
        let client = self.sns.get(parsed.region, || {
            let conf = aws_sdk_sns::config::Builder::from(config)
                .region(Region::new(parsed.region.to_owned()))
                .build();
            aws_sdk_sns::Client::from_conf(conf)
        });
        client
            .publish()
            .topic_arn(arn)
            .message(Envelope::of(event).to_json())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SNS Publish: {}",
                    aws_sdk_sns::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }

    async fn lambda(&self, arn: &str, event: &Event) -> Result<(), String> {
        let parsed = parse_arn(arn)?;
        let config = self.config().await;
        let client = self.lambda.get(parsed.region, || {
            let conf = aws_sdk_lambda::config::Builder::from(config)
                .region(Region::new(parsed.region.to_owned()))
                .build();
            aws_sdk_lambda::Client::from_conf(conf)
        });
        let out = client
            .invoke()
            .function_name(arn)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(
                Envelope::of(event).to_json(),
            ))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Lambda Invoke: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                )
            })?;
        if let Some(error) = out.function_error() {
            return Err(format!("Lambda Invoke: function error {error}"));
        }
        Ok(())
    }

    async fn eventbridge(&self, event: &Event) -> Result<(), String> {
        let config = self.config().await;
        let region = event.meeting.control_region.as_str();
        let client = self.eventbridge.get(region, || {
            let conf = aws_sdk_eventbridge::config::Builder::from(config)
                .region(Region::new(region.to_owned()))
                .build();
            aws_sdk_eventbridge::Client::from_conf(conf)
        });
        let envelope = Envelope::of(event);
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(&self.eventbridge_source)
            .detail_type(DETAIL_TYPE)
            .detail(envelope.detail_json())
            .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                event.time as i64,
            ))
            .build();
        let out = client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "EventBridge PutEvents: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                )
            })?;
        if out.failed_entry_count() > 0 {
            let reason = out
                .entries()
                .first()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.error_code().unwrap_or("?"),
                        e.error_message().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            return Err(format!("EventBridge PutEvents refused the entry: {reason}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let a = parse_arn("arn:aws:sqs:us-east-1:123456789012:my-queue").unwrap();
        assert_eq!(
            a,
            Arn {
                service: "sqs",
                region: "us-east-1",
                account: "123456789012",
                resource: "my-queue"
            }
        );
        let l = parse_arn("arn:aws:lambda:eu-west-1:123456789012:function:f:1").unwrap();
        assert_eq!(l.resource, "function:f:1");
        assert!(parse_arn("https://sqs.us-east-1.amazonaws.com/1/q").is_err());
        assert!(parse_arn("arn:aws:sqs::123456789012:q").is_err());
    }
}

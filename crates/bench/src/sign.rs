//! Pre-signed requests. Signing happens before a timed phase starts, never in the hot loop:
//! a SigV4 signature stays valid for 15 minutes, so a request built now can be sent (and
//! re-sent) for the whole run.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

/// The development key pair a carillon server accepts when no credentials are configured.
pub const ACCESS_KEY_ID: &str = "AKIDCARILLONDEV";
pub const SECRET_ACCESS_KEY: &str = "carillon-dev-secret";
const REGION: &str = "us-east-1";

/// The operations the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Healthz,
    CreateMeeting,
    CreateAttendee,
    GetAttendee,
    ListAttendees,
    BatchCreateAttendee,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Healthz,
        Op::CreateMeeting,
        Op::CreateAttendee,
        Op::GetAttendee,
        Op::ListAttendees,
        Op::BatchCreateAttendee,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Healthz => "GET /healthz",
            Op::CreateMeeting => "CreateMeeting",
            Op::CreateAttendee => "CreateAttendee",
            Op::GetAttendee => "GetAttendee",
            Op::ListAttendees => "ListAttendees",
            Op::BatchCreateAttendee => "BatchCreateAttendee",
        }
    }

    /// Position in [`Op::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A request ready to send: everything but the body is shared, so building the
/// `http::Request` for each send costs a few reference-count bumps.
pub struct Prepared {
    pub op: Op,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Signs requests for one server with the development credentials and a fixed signing time.
pub struct Signer {
    identity: Identity,
    host: String,
    host_value: HeaderValue,
    time: SystemTime,
}

impl Signer {
    /// `host` is the `host:port` the requests are sent to (it is part of the signature).
    pub fn new(host: &str) -> Result<Signer, String> {
        let credentials = Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "carillon-loadgen",
        );
        Ok(Signer {
            identity: credentials.into(),
            host: host.to_owned(),
            host_value: HeaderValue::from_str(host).map_err(|e| format!("host {host}: {e}"))?,
            time: SystemTime::now(),
        })
    }

    /// A request without a signature (`/healthz`).
    pub fn unsigned(&self, op: Op, target: &str) -> Result<Prepared, String> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.host_value.clone());
        Ok(Prepared {
            op,
            method: Method::GET,
            uri: parse_uri(target)?,
            headers,
            body: Bytes::new(),
        })
    }

    /// A SigV4-signed request (service `chime`); a non-empty body is sent as JSON.
    pub fn sign(
        &self,
        op: Op,
        method: Method,
        target: &str,
        body: impl Into<Bytes>,
    ) -> Result<Prepared, String> {
        let body = body.into();
        let mut pairs = vec![("host", self.host.as_str())];
        if !body.is_empty() {
            pairs.push(("content-type", "application/json"));
        }
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(REGION)
            .name("chime")
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let url = format!("http://{}{target}", self.host);
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            pairs.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| format!("cannot sign {target}: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("cannot sign {target}: {e}"))?
            .into_parts();

        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.host_value.clone());
        if !body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            headers.insert(name, value);
        }
        Ok(Prepared {
            op,
            method,
            uri: parse_uri(target)?,
            headers,
            body,
        })
    }
}

fn parse_uri(target: &str) -> Result<Uri, String> {
    target
        .parse()
        .map_err(|e| format!("bad request target {target}: {e}"))
}

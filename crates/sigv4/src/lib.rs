//! Server-side verification of AWS Signature Version 4 (`AWS4-HMAC-SHA256`) request signatures.
//!
//! Carillon speaks the Amazon Chime SDK Meetings REST API, so its clients are the official AWS
//! SDKs and CLIs, which sign every request with SigV4. [`Verifier::verify`] recomputes the
//! signature exactly as those SDKs compute it for a non-S3 service (normalised, double-encoded
//! path; form-decoded, strictly re-encoded and sorted query; space-trimmed header values;
//! SHA-256 of the body) and compares it in constant time with the one the client sent.
//!
//! # Contract
//!
//! The crate is *sans-IO*: it never reads a clock, a socket or a file.
//!
//! * **Time is an argument.** The caller passes `now`; the request's `X-Amz-Date` must be
//!   within the allowed skew of it (15 minutes unless [`Verifier::with_max_skew`] says
//!   otherwise).
//! * **Credentials are data.** A [`Verifier`] is built from access-key-id → secret pairs and
//!   is immutable afterwards (apart from an internal cache of derived signing keys). To
//!   rotate keys, build a new one.
//! * **The request is given raw.** [`SignedRequest::path`] is the path exactly as received
//!   (still percent-encoded), [`SignedRequest::query`] the raw query string without '?', and
//!   [`SignedRequest::body`] the complete body: the payload hash is always computed here, so
//!   the body must be buffered before verification. The `host` header must be in the header
//!   map (for HTTP/2, copy `:authority` into it).
//!
//! Only header-based signing is supported: presigned URLs (`X-Amz-Signature` in the query),
//! `UNSIGNED-PAYLOAD`, streaming (chunked) payloads and SigV4a are rejected with a specific
//! [`SigV4Error`]. Any plausible region name in the credential scope (`us-east-1`,
//! `us-gov-west-1`, `eu-central-2`...: `^[a-z]{2}(-[a-z]+)+-[0-9]+$`, at most 32 characters)
//! is accepted and reported back in [`VerifiedRequest::region`]; the service must be the one
//! the verifier was built for.
//!
//! `verify` never panics, whatever the input, and is cheap enough to run on every request:
//! the canonical request is streamed into the hasher rather than built as a string, and
//! derived signing keys are cached per access key, date and region.
//!
//! ```
//! use carillon_sigv4::{SignedRequest, Verifier};
//! use std::time::SystemTime;
//!
//! let verifier = Verifier::new("chime", [("AKID".to_owned(), "secret".to_owned())]);
//! let headers = http::HeaderMap::new();
//! let req = SignedRequest {
//!     method: "GET",
//!     path: "/meetings",
//!     query: "",
//!     headers: &headers,
//!     body: b"",
//! };
//! let err = verifier.verify(&req, SystemTime::now()).unwrap_err();
//! assert_eq!(err, carillon_sigv4::SigV4Error::MissingAuthorization);
//! ```

mod auth;
mod canonical;
mod error;
mod time;

pub use error::SigV4Error;

use error::{ALGORITHM, echo, echo_bytes};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The clock skew [`Verifier::new`] allows, as AWS does.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Signing keys cached per access key. A client picks the region freely, so the cache must
/// be bounded; a well-behaved client uses one or two (date, region) pairs at a time.
const MAX_CACHED_KEYS_PER_CREDENTIAL: usize = 16;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// Verifies SigV4 signatures for one service against a fixed set of credentials
/// (access key id → secret access key).
///
/// `Verifier` is `Send + Sync`; share one (e.g. in an `Arc`) between all request handlers so
/// that they share its signing-key cache.
pub struct Verifier {
    service: Box<str>,
    credentials: HashMap<Box<str>, Credential>,
    max_skew: Duration,
}

struct Credential {
    /// `"AWS4" + secret`, the key of the first HMAC in the signing-key derivation.
    k_secret: Box<[u8]>,
    /// Derived signing keys, as ready-keyed HMAC states so that a cache hit also saves the
    /// key schedule. Per credential, so that unrelated clients do not contend on one lock.
    signing_keys: Mutex<Vec<CachedKey>>,
}

struct CachedKey {
    date: [u8; 8],
    region: Box<str>,
    mac: HmacSha256,
}

/// One request as received, borrowed from the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request method, e.g. `"POST"`.
    pub method: &'a str,
    /// The raw, still percent-encoded request path, e.g. `"/meetings/abc%2Fdef"`.
    pub path: &'a str,
    /// The raw query string without the leading '?'; `""` when there is none.
    pub query: &'a str,
    /// All request headers, including `host`.
    pub headers: &'a http::HeaderMap,
    /// The complete raw request body.
    pub body: &'a [u8],
}

/// What a successful verification establishes about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// The region from the credential scope (any plausible region name is accepted).
    pub region: String,
    /// The `yyyymmdd` date of the credential scope.
    pub date: String,
    /// The `X-Amz-Security-Token` header, if present. It is not validated.
    pub session_token: Option<String>,
}

impl Verifier {
    /// A verifier for `service` (the signing name in the credential scope; Carillon uses
    /// `"chime"`) accepting the given access key id → secret access key pairs. If an access
    /// key id appears more than once, the last secret wins.
    pub fn new(service: &str, credentials: impl IntoIterator<Item = (String, String)>) -> Self {
        let credentials = credentials
            .into_iter()
            .map(|(access_key_id, secret)| {
                let mut k_secret = Vec::with_capacity(4 + secret.len());
                k_secret.extend_from_slice(b"AWS4");
                k_secret.extend_from_slice(secret.as_bytes());
                let credential = Credential {
                    k_secret: k_secret.into_boxed_slice(),
                    signing_keys: Mutex::new(Vec::new()),
                };
                (access_key_id.into_boxed_str(), credential)
            })
            .collect();
        Verifier {
            service: service.into(),
            credentials,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }

    /// Sets the allowed difference between `X-Amz-Date` and the `now` given to
    /// [`verify`](Self::verify) (default [`DEFAULT_MAX_SKEW`], 15 minutes).
    pub fn with_max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// Verifies one request's signature as of `now`.
    ///
    /// Checks run from the cheapest and most informative to the most expensive: header
    /// syntax, credential scope, request time, signed-header list, access key, payload hash,
    /// and finally the signature itself.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<VerifiedRequest, SigV4Error> {
        let headers = req.headers;

        // --- Authorization header ---------------------------------------------------------
        let mut auth_values = headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(auth) = auth_values.next() else {
            return Err(if looks_presigned(req.query) {
                SigV4Error::PresignedUrlNotSupported
            } else {
                SigV4Error::MissingAuthorization
            });
        };
        if auth_values.next().is_some() {
            return Err(SigV4Error::MalformedAuthorization {
                part: "header",
                reason: "is present more than once".into(),
            });
        }
        let auth = auth
            .to_str()
            .map_err(|_| SigV4Error::MalformedAuthorization {
                part: "header",
                reason: "contains characters that are not visible ASCII".into(),
            })?;
        let auth = auth::parse_authorization(auth)?;

        // --- Credential scope ---------------------------------------------------------------
        let scope = auth::parse_scope(auth.credential)?;
        if scope.terminator != "aws4_request" {
            return Err(SigV4Error::WrongTerminator {
                terminator: echo(scope.terminator),
            });
        }
        if scope.service != &*self.service {
            return Err(SigV4Error::WrongService {
                service: echo(scope.service),
                expected: self.service.to_string(),
            });
        }
        // The region is recorded (Carillon puts it in meeting ARNs) and keys the signing-key
        // cache, so only a plausible region name is accepted, as AWS does.
        if !auth::is_plausible_region(scope.region) {
            return Err(SigV4Error::InvalidRegion {
                region: echo(scope.region),
            });
        }

        // --- Request time -------------------------------------------------------------------
        let amz_date = headers.get(X_AMZ_DATE).ok_or(SigV4Error::MissingDate)?;
        let malformed_date = || SigV4Error::MalformedDate {
            value: echo_bytes(amz_date.as_bytes()),
        };
        let request_secs = time::parse_amz_date(amz_date.as_bytes()).ok_or_else(malformed_date)?;
        // Cannot fail once the value parsed (it is then ASCII), but no unwrap on input paths.
        let request_time = amz_date.to_str().map_err(|_| malformed_date())?;
        if request_time.get(..8) != Some(scope.date) {
            return Err(SigV4Error::ScopeDateMismatch {
                scope_date: scope.date.to_owned(),
                request_time: request_time.to_owned(),
            });
        }
        let now_nanos = time::unix_nanos(now);
        let skew = now_nanos.abs_diff(i128::from(request_secs) * 1_000_000_000);
        if skew > self.max_skew.as_nanos() {
            let now_secs = i64::try_from(now_nanos.div_euclid(1_000_000_000))
                .unwrap_or(if now_nanos < 0 { i64::MIN } else { i64::MAX });
            return Err(SigV4Error::ClockSkew {
                request_time: request_time.to_owned(),
                server_time: time::format_amz_date(now_secs),
                max_skew: self.max_skew,
            });
        }

        // --- Signed headers -----------------------------------------------------------------
        let signs_content_sha256 = check_signed_headers(auth.signed_headers, headers)?;

        // --- Access key ---------------------------------------------------------------------
        let credential = self.credentials.get(scope.access_key_id).ok_or_else(|| {
            SigV4Error::UnknownAccessKey {
                access_key_id: echo(scope.access_key_id),
            }
        })?;

        // --- Payload --------------------------------------------------------------------------
        let payload_hash = canonical::hex_lower(&canonical::sha256(req.body));
        // A client may sign an explicit payload hash; if so it must be the hash of this body
        // (this also rejects UNSIGNED-PAYLOAD and the STREAMING-* markers).
        if signs_content_sha256
            && headers
                .get_all(X_AMZ_CONTENT_SHA256)
                .iter()
                .any(|v| v.as_bytes() != payload_hash)
        {
            return Err(SigV4Error::ContentSha256Mismatch);
        }

        // --- Canonical request --------------------------------------------------------------
        let mut h = Sha256::new();
        h.update(req.method.as_bytes());
        h.update(b"\n");
        canonical::write_uri(&mut h, req.path);
        h.update(b"\n");
        canonical::write_query(&mut h, req.query);
        h.update(b"\n");
        for name in auth.signed_headers.split(';') {
            h.update(name.as_bytes());
            h.update(b":");
            canonical::write_header_values(&mut h, headers.get_all(name).iter());
            h.update(b"\n");
        }
        h.update(b"\n");
        h.update(auth.signed_headers.as_bytes());
        h.update(b"\n");
        h.update(payload_hash);
        let canonical_request_hash = canonical::hex_lower(&h.finalize().into());

        // --- String to sign and signature ---------------------------------------------------
        let Some(mut mac) = signing_mac(credential, scope.date, scope.region, &self.service) else {
            // Unreachable: HMAC accepts keys of any length.
            return Err(SigV4Error::SignatureMismatch);
        };
        mac.update(ALGORITHM.as_bytes());
        mac.update(b"\n");
        mac.update(request_time.as_bytes());
        mac.update(b"\n");
        // Validated above to be exactly <date>/<region>/<service>/aws4_request.
        mac.update(scope.scope.as_bytes());
        mac.update(b"\n");
        mac.update(&canonical_request_hash);
        let computed = mac.finalize().into_bytes();
        if !bool::from(computed.as_slice().ct_eq(&auth.signature)) {
            return Err(SigV4Error::SignatureMismatch);
        }

        Ok(VerifiedRequest {
            access_key_id: scope.access_key_id.to_owned(),
            region: scope.region.to_owned(),
            date: scope.date.to_owned(),
            session_token: headers
                .get(X_AMZ_SECURITY_TOKEN)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        })
    }
}

impl fmt::Debug for Verifier {
    // Hand-written so that secrets never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("service", &self.service)
            .field("access_keys", &self.credentials.len())
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

/// Checks that `SignedHeaders` is a strictly sorted list of lower-case names, includes
/// `host` and `x-amz-date`, and names only headers present in the request. Returns whether
/// `x-amz-content-sha256` is signed.
fn check_signed_headers(
    signed_headers: &str,
    headers: &http::HeaderMap,
) -> Result<bool, SigV4Error> {
    let invalid = |reason: String| SigV4Error::InvalidSignedHeaders { reason };
    let (mut host, mut date, mut content_sha256) = (false, false, false);
    let mut previous: Option<&str> = None;
    for name in signed_headers.split(';') {
        if name.is_empty() {
            return Err(invalid("it contains an empty header name".into()));
        }
        if name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(format!("'{}' is not lower-case", echo(name))));
        }
        if let Some(prev) = previous {
            if prev == name {
                return Err(invalid(format!("'{}' is listed twice", echo(name))));
            }
            if prev > name {
                return Err(invalid(format!(
                    "'{}' must come before '{}'",
                    echo(name),
                    echo(prev)
                )));
            }
        }
        previous = Some(name);
        match name {
            "host" => host = true,
            X_AMZ_DATE => date = true,
            X_AMZ_CONTENT_SHA256 => content_sha256 = true,
            _ => {}
        }
    }
    // Both are required: without `host` a signature could be replayed against another
    // endpoint, and without `x-amz-date` the request time would not be covered by it.
    if !host {
        return Err(SigV4Error::RequiredHeaderNotSigned { name: "host" });
    }
    if !date {
        return Err(SigV4Error::RequiredHeaderNotSigned { name: X_AMZ_DATE });
    }
    if let Some(missing) = signed_headers
        .split(';')
        .find(|name| !headers.contains_key(*name))
    {
        return Err(SigV4Error::MissingSignedHeader {
            name: echo(missing),
        });
    }
    Ok(content_sha256)
}

/// The HMAC keyed with the signing key for (date, region, service), from the cache or freshly
/// derived: kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request"). `None` only if the HMAC implementation refused a key, which it never does.
fn signing_mac(
    credential: &Credential,
    date: &str,
    region: &str,
    service: &str,
) -> Option<HmacSha256> {
    let date_key: [u8; 8] = date.as_bytes().try_into().ok()?;
    let matches = |k: &CachedKey| k.date == date_key && *k.region == *region;
    if let Some(hit) = lock(&credential.signing_keys).iter().find(|k| matches(k)) {
        return Some(hit.mac.clone());
    }

    // Derive outside the lock: four HMACs are cheap but there is no need to serialise them.
    let k_date = hmac(&credential.k_secret, date.as_bytes())?;
    let k_region = hmac(&k_date, region.as_bytes())?;
    let k_service = hmac(&k_region, service.as_bytes())?;
    let k_signing = hmac(&k_service, b"aws4_request")?;
    let mac = HmacSha256::new_from_slice(&k_signing).ok()?;

    let mut cache = lock(&credential.signing_keys);
    if !cache.iter().any(matches) {
        if cache.len() >= MAX_CACHED_KEYS_PER_CREDENTIAL {
            // Oldest first: yesterday's key goes before today's.
            cache.remove(0);
        }
        cache.push(CachedKey {
            date: date_key,
            region: region.into(),
            mac: mac.clone(),
        });
    }
    Some(mac)
}

fn hmac(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// A poisoned cache is still a valid cache (entries are pushed whole), so keep using it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the query carries SigV4 presigned-URL parameters.
fn looks_presigned(query: &str) -> bool {
    !query.is_empty()
        && form_urlencoded::parse(query.as_bytes()).any(|(k, _)| {
            k.eq_ignore_ascii_case("X-Amz-Signature") || k.eq_ignore_ascii_case("X-Amz-Credential")
        })
}

#[cfg(test)]
mod tests;

//! Verification failures.
//!
//! Every variant's `Display` is written for the developer of the *client*: it says what is
//! wrong with the request and how to fix it. Messages never contain the signature the server
//! computed nor any secret; values echoed back from the request are truncated so that a
//! hostile client cannot make log lines arbitrarily long.

use std::fmt;
use std::time::Duration;

/// The name of the only supported signing algorithm.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request failed SigV4 verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// The request has no `Authorization` header (and no presigned-URL parameters either).
    #[error(
        "missing Authorization header: requests must be signed with AWS Signature Version 4 \
         (Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...)"
    )]
    MissingAuthorization,

    /// The request carries SigV4 parameters in the query string instead of an
    /// `Authorization` header.
    #[error(
        "presigned-URL (query string) authentication is not supported: send the signature in \
         an Authorization header instead of X-Amz-Signature/X-Amz-Credential query parameters"
    )]
    PresignedUrlNotSupported,

    /// The `Authorization` header names an algorithm other than `AWS4-HMAC-SHA256`.
    #[error(
        "unsupported signing algorithm '{algorithm}' in the Authorization header: only \
         AWS4-HMAC-SHA256 is supported"
    )]
    UnsupportedAlgorithm {
        /// The algorithm the client named (truncated).
        algorithm: String,
    },

    /// The `Authorization` header could not be parsed.
    #[error("malformed Authorization header: {part} {reason}")]
    MalformedAuthorization {
        /// Which part is wrong: `"Credential"`, `"SignedHeaders"`, `"Signature"`, or
        /// `"header"` for the header as a whole.
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The request has no `X-Amz-Date` header.
    #[error(
        "missing X-Amz-Date header: signed requests must carry the signing time as \
         X-Amz-Date: yyyymmddThhmmssZ (UTC)"
    )]
    MissingDate,

    /// The `X-Amz-Date` header is not of the form `yyyymmddThhmmssZ`.
    #[error(
        "malformed X-Amz-Date header '{value}': expected a UTC time formatted as \
         yyyymmddThhmmssZ, e.g. 20150830T123600Z"
    )]
    MalformedDate {
        /// The value received (truncated, lossily decoded).
        value: String,
    },

    /// The request was signed too long before or after the server's current time.
    #[error(
        "request time {request_time} (X-Amz-Date) is too far from server time {server_time}: \
         at most {} of clock skew is allowed; check the client's clock",
        HumanDuration(*.max_skew)
    )]
    ClockSkew {
        /// The `X-Amz-Date` of the request.
        request_time: String,
        /// The server's time, in the same format.
        server_time: String,
        /// The allowed skew.
        max_skew: Duration,
    },

    /// The date in the credential scope is not the date part of `X-Amz-Date`.
    #[error(
        "credential scope date '{scope_date}' does not match the date of X-Amz-Date \
         '{request_time}': both must be the same UTC day"
    )]
    ScopeDateMismatch {
        /// The `yyyymmdd` from the credential scope (truncated).
        scope_date: String,
        /// The `X-Amz-Date` value.
        request_time: String,
    },

    /// The credential scope names a service other than the one this server verifies.
    #[error(
        "credential scope service '{service}' is not '{expected}': sign the request with the \
         signing name '{expected}'"
    )]
    WrongService {
        /// The service in the credential scope (truncated).
        service: String,
        /// The service this verifier accepts.
        expected: String,
    },

    /// The region in the credential scope is not a plausible AWS region name.
    #[error(
        "credential scope region '{region}' is not a valid region: credentials should be \
         scoped to a region such as us-east-1 (lower-case letters, dashes, a final number; at \
         most 32 characters)"
    )]
    InvalidRegion {
        /// The region received (truncated).
        region: String,
    },

    /// The credential scope does not end with `aws4_request`.
    #[error("credential scope terminator '{terminator}' is not 'aws4_request'")]
    WrongTerminator {
        /// The terminator received (truncated).
        terminator: String,
    },

    /// No secret is known for the access key id in the credential scope.
    #[error("unknown access key id '{access_key_id}': it does not exist in our records")]
    UnknownAccessKey {
        /// The access key id received (truncated).
        access_key_id: String,
    },

    /// `SignedHeaders` is not a sorted, `;`-separated list of lower-case header names.
    #[error(
        "invalid SignedHeaders: {reason} (SignedHeaders must be the signed header names, \
         lower-case, sorted, separated by ';')"
    )]
    InvalidSignedHeaders {
        /// What is wrong.
        reason: String,
    },

    /// A header that must always be signed is not in `SignedHeaders`.
    #[error("SignedHeaders must include '{name}'")]
    RequiredHeaderNotSigned {
        /// `"host"` or `"x-amz-date"`.
        name: &'static str,
    },

    /// A header listed in `SignedHeaders` is not present in the request.
    #[error("header '{name}' is listed in SignedHeaders but is not present in the request")]
    MissingSignedHeader {
        /// The header name (truncated).
        name: String,
    },

    /// A signed `x-amz-content-sha256` header does not match the body.
    #[error(
        "the x-amz-content-sha256 header does not match the SHA-256 of the request body \
         (UNSIGNED-PAYLOAD and streaming payloads are not supported)"
    )]
    ContentSha256Mismatch,

    /// The signature is well-formed but wrong.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS secret access key and signing method."
    )]
    SignatureMismatch,
}

impl SigV4Error {
    /// `true` when the only problem is the distance between the request time and the server
    /// time (AWS reports this as a distinct, retryable-after-clock-sync condition).
    pub fn is_clock_skew(&self) -> bool {
        matches!(self, SigV4Error::ClockSkew { .. })
    }
}

/// Longest excerpt of client-provided text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 64;

/// Copies at most [`MAX_ECHO_CHARS`] characters of client input for an error message.
pub(crate) fn echo(s: &str) -> String {
    let mut chars = s.char_indices();
    match chars.nth(MAX_ECHO_CHARS) {
        None => s.to_owned(),
        Some((end, _)) => {
            let mut out = String::with_capacity(end + 3);
            out.push_str(&s[..end]);
            out.push_str("...");
            out
        }
    }
}

/// [`echo`] for header bytes that may not be UTF-8.
pub(crate) fn echo_bytes(b: &[u8]) -> String {
    echo(&String::from_utf8_lossy(b))
}

/// Formats a skew such as 900 s as "15 minutes".
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        if secs >= 60 && secs.is_multiple_of(60) {
            let mins = secs / 60;
            write!(f, "{mins} minute{}", plural(mins))
        } else if self.0.subsec_nanos() == 0 {
            write!(f, "{secs} second{}", plural(secs))
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_truncates_on_char_boundaries() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(100);
        let e = echo(&long);
        assert_eq!(e.chars().count(), MAX_ECHO_CHARS + 3);
        assert!(e.ends_with("..."));
        assert_eq!(echo_bytes(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn human_durations() {
        assert_eq!(
            HumanDuration(Duration::from_secs(900)).to_string(),
            "15 minutes"
        );
        assert_eq!(
            HumanDuration(Duration::from_secs(60)).to_string(),
            "1 minute"
        );
        assert_eq!(
            HumanDuration(Duration::from_secs(61)).to_string(),
            "61 seconds"
        );
        assert_eq!(
            HumanDuration(Duration::from_secs(1)).to_string(),
            "1 second"
        );
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1.5s"
        );
    }
}

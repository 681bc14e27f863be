//! Property tests against the official signer: whatever aws-sigv4 signs (for the "chime"
//! signing name, default settings, as the AWS SDK for Rust does), the verifier accepts; and
//! any single-byte change to the method, path, query, a signed header value, the date or the
//! signature makes it reject, unless SigV4's canonical form maps the change to the same
//! request (then it must accept, and the official signer must agree that it is the same).
//!
//! Plus: `verify` never panics, whatever it is given.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use carillon_sigv4::{SigV4Error, SignedRequest, VerifiedRequest, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::sample::Index;
use std::time::{Duration, SystemTime};

const SERVICE: &str = "chime";
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
    "us-gov-west-1",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
/// (base URI the client uses, Host header the server then sees).
const ENDPOINTS: &[(&str, &str)] = &[
    (
        "https://meetings-chime.us-east-1.amazonaws.com",
        "meetings-chime.us-east-1.amazonaws.com",
    ),
    ("http://127.0.0.1:8080", "127.0.0.1:8080"),
    ("https://localhost:443", "localhost"),
    ("http://carillon.test", "carillon.test"),
];

// ----------------------------------------------------------------------------------------
// Generators
// ----------------------------------------------------------------------------------------

/// One piece of a path segment: plain characters, characters the canonical form must encode,
/// and already percent-encoded sequences (which the canonical form encodes again).
fn path_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9]{1,4}",
        1 => "[-._~]",
        1 => "[!$&'()*+,;=:@]",
        2 => prop::sample::select(vec!["%20", "%2F", "%41", "%25", "%C3%A9", "%E2%82%AC", "%7B", "%2e"])
            .prop_map(str::to_owned),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(b, lower)| if lower {
            format!("%{b:02x}")
        } else {
            format!("%{b:02X}")
        }),
    ]
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::collection::vec(path_atom(), 1..5).prop_map(|v| v.concat()),
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
    ]
}

/// One piece of a query key or value. Percent escapes are of valid UTF-8 only: the SDKs
/// decode the query and replace invalid UTF-8 with U+FFFD, under which two different byte
/// strings can canonicalise alike, and the mutation tests rely on injectivity.
fn query_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9]{1,4}",
        1 => "[-._~+!$'()*,;:@/?]",
        2 => prop::sample::select(vec![
            "%20", "%2B", "%26", "%3D", "%2F", "%41", "%C3%A9", "%E2%82%AC", "%25", "%7E",
        ])
        .prop_map(str::to_owned),
    ]
}

fn query_param() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(query_atom(), 0..4).prop_map(|v| v.concat()),
        prop::option::of(prop::collection::vec(query_atom(), 0..4).prop_map(|v| v.concat())),
    )
        .prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
}

fn header_value() -> impl Strategy<Value = String> {
    // Inner runs of spaces, and leading/trailing ones, which canonicalisation trims.
    " {0,2}[A-Za-z0-9]{1,6}( {1,3}[A-Za-z0-9,;=/:._-]{1,6}){0,3} {0,2}"
}

fn extra_header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("content-type".to_owned()),
        "x-amz-meta-[a-z0-9]{1,8}",
        "x-carillon-[a-z]{1,6}",
        Just("X-Mixed-Case".to_owned()),
    ];
    let value = prop_oneof![
        Just("application/json".to_owned()),
        Just("application/x-amz-json-1.1; charset=utf-8".to_owned()),
        header_value(),
    ];
    (name, value)
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    endpoint: (&'static str, &'static str),
    segments: Vec<String>,
    params: Vec<String>,
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
    region: &'static str,
    access_key_id: String,
    secret: String,
    session_token: Option<String>,
    /// Signing time, seconds since the epoch.
    secs: u64,
}

impl Case {
    fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }

    fn query(&self) -> String {
        self.params.join("&")
    }

    fn uri(&self) -> String {
        let query = self.query();
        if query.is_empty() {
            format!("{}{}", self.endpoint.0, self.path())
        } else {
            format!("{}{}?{query}", self.endpoint.0, self.path())
        }
    }

    fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.secs)
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(
            SERVICE,
            [
                (self.access_key_id.clone(), self.secret.clone()),
                ("AKIDOTHERKEY".to_owned(), "other-secret".to_owned()),
            ],
        )
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop::sample::select(METHODS),
            prop::sample::select(ENDPOINTS),
            prop::collection::vec(path_segment(), 1..=4),
            prop::collection::vec(query_param(), 0..=4),
            prop::collection::vec(extra_header(), 0..=3),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        (
            prop::sample::select(REGIONS),
            "AKIA[A-Z0-9]{12}",
            "[A-Za-z0-9/+]{40}",
            prop::option::of("[A-Za-z0-9/+=]{16,64}"),
            // 2000-01-01 .. 2100-01-01
            946_684_800u64..4_102_444_800,
        ),
    )
        .prop_map(
            |(
                (method, endpoint, segments, params, extra_headers, body),
                (region, access_key_id, secret, session_token, secs),
            )| Case {
                method,
                endpoint,
                segments,
                params,
                extra_headers,
                body,
                region,
                access_key_id,
                secret,
                session_token,
                secs,
            },
        )
}

// ----------------------------------------------------------------------------------------
// Signing with the official crate, and the server's view of the result
// ----------------------------------------------------------------------------------------

/// What the server receives.
#[derive(Clone)]
struct Wire {
    method: String,
    path: String,
    query: String,
    /// Header list in order (repeated names allowed). Values are bytes: HTTP allows
    /// non-UTF-8 (obs-text) in them, and the mutations use that.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Wire {
    // Header values as (lossy) text: byte lists are unreadable in a failure report.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Wire")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

impl Wire {
    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("valid header name"),
                HeaderValue::from_bytes(v).expect("valid header value"),
            );
        }
        map
    }

    fn verify(&self, verifier: &Verifier, now: SystemTime) -> Result<VerifiedRequest, SigV4Error> {
        let headers = self.header_map();
        verifier.verify(
            &SignedRequest {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: &headers,
                body: &self.body,
            },
            now,
        )
    }

    fn header_mut(&mut self, name: &str) -> &mut Vec<u8> {
        &mut self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no {name} header"))
            .1
    }
}

/// Signs with the official crate; `None` if it refuses the request (a method, URI or header
/// value it cannot represent). Returns the headers it adds and the signature.
fn official_signature(
    case: &Case,
    service: &str,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
) -> Option<(Vec<(String, String)>, String)> {
    let identity: Identity = Credentials::new(
        case.access_key_id.clone(),
        case.secret.clone(),
        case.session_token.clone(),
        None,
        "proptest",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(case.region)
        .name(service)
        .time(case.time())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&case.body),
    )
    .ok()?;
    let (instructions, signature) = sign(signable, &params).ok()?.into_parts();
    let added = instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some((added, signature))
}

fn sdk_sign(case: &Case, service: &str) -> Wire {
    let uri = case.uri();
    let (added, _signature) =
        official_signature(case, service, case.method, &uri, &case.extra_headers)
            .unwrap_or_else(|| panic!("the official signer refused {uri}"));
    let mut headers = vec![("host".to_owned(), case.endpoint.1.as_bytes().to_vec())];
    headers.extend(
        case.extra_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec())),
    );
    headers.extend(added.into_iter().map(|(k, v)| (k, v.into_bytes())));
    Wire {
        method: case.method.to_owned(),
        path: case.path(),
        query: case.query(),
        headers,
        body: case.body.clone(),
    }
}

/// The official signer's verdict on a mutated wire: whether it signs the mutated request
/// exactly as the original (`None` when it cannot sign it, or would not send it as the wire
/// shows, e.g. a '#' in the path that a URI parser reads as a fragment).
fn official_says_same(case: &Case, wire: &Wire) -> Option<bool> {
    let (original_headers, original) =
        official_signature(case, SERVICE, case.method, &case.uri(), &case.extra_headers)?;
    let uri = if wire.query.is_empty() {
        format!("{}{}", case.endpoint.0, wire.path)
    } else {
        format!("{}{}?{}", case.endpoint.0, wire.path, wire.query)
    };
    let parsed: http::Uri = uri.parse().ok()?;
    if parsed.path() != wire.path || parsed.query().unwrap_or("") != wire.query {
        return None;
    }
    // The signer derives host from the URI and adds x-amz-date and the session token itself,
    // from the parameters: a change to those cannot be fed to it.
    let mut extra = Vec::new();
    for (k, v) in &wire.headers {
        let lower = k.to_ascii_lowercase();
        if lower == "host" {
            if v.as_slice() != case.endpoint.1.as_bytes() {
                return None;
            }
        } else if matches!(
            lower.as_str(),
            "authorization" | "x-amz-date" | "x-amz-security-token"
        ) {
            let signed = original_headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, value)| value.as_bytes());
            if lower != "authorization" && signed != Some(v.as_slice()) {
                return None;
            }
        } else {
            extra.push((k.clone(), String::from_utf8(v.clone()).ok()?));
        }
    }
    let mutated = official_signature(case, SERVICE, &wire.method, &uri, &extra)?.1;
    Some(mutated == original)
}

// ----------------------------------------------------------------------------------------
// Mutations
// ----------------------------------------------------------------------------------------

/// What replaces the chosen byte.
#[derive(Debug, Clone)]
enum Replacement {
    /// A byte value. In the method, path and query (strings) a value of 0x80 and above
    /// stands for the character U+0080..U+00FF, i.e. non-ASCII; in header values it is the
    /// raw byte (obs-text).
    Byte(u8),
    /// A non-ASCII character (strings); its first UTF-8 byte in header values.
    Char(char),
    /// The other case of a letter (the interesting change inside percent-escapes).
    FlipCase,
}

fn replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        // The characters that structure paths, queries and header values.
        4 => prop::sample::select(b"/&=%;:+ .?#,-_~@!$'()*[]{}<>|^`\\\"\t".to_vec())
            .prop_map(Replacement::Byte),
        2 => prop::sample::select(b"0123456789abcdefABCDEF".to_vec()).prop_map(Replacement::Byte),
        4 => any::<u8>().prop_map(Replacement::Byte),
        1 => prop::sample::select(vec!['é', 'ÿ', '€', '\u{80}', '\u{200b}', '\u{fffd}', '😀'])
            .prop_map(Replacement::Char),
        2 => Just(Replacement::FlipCase),
    ]
}

/// Replaces the byte at `at` of the ASCII string `s` with something else (never itself).
fn substitute_str(s: &str, at: usize, with: &Replacement) -> String {
    assert!(s.is_ascii(), "generated strings are ASCII: {s:?}");
    let old = s.as_bytes()[at];
    let mut new = match with {
        Replacement::Byte(b) => char::from(*b),
        Replacement::Char(c) => *c,
        Replacement::FlipCase if old.is_ascii_alphabetic() => char::from(old ^ 0x20),
        Replacement::FlipCase => '%',
    };
    if new == char::from(old) {
        new = if old == b'a' { 'b' } else { 'a' };
    }
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str(&s[..at]);
    out.push(new);
    out.push_str(&s[at + 1..]);
    out
}

/// Replaces the byte at `at` of a header value with another byte HTTP allows there (visible
/// ASCII, space, tab or obs-text: control characters cannot be sent).
fn substitute_bytes(v: &[u8], at: usize, with: &Replacement) -> Vec<u8> {
    let old = v[at];
    let mut new = match with {
        Replacement::Byte(b) => *b,
        Replacement::Char(c) => c.to_string().as_bytes()[0],
        Replacement::FlipCase if old.is_ascii_alphabetic() => old ^ 0x20,
        Replacement::FlipCase => b'%',
    };
    if (new < 0x20 && new != b'\t') || new == 0x7f {
        new ^= 0x40;
    }
    if new == old {
        new = if old == b'a' { b'b' } else { b'a' };
    }
    let mut out = v.to_vec();
    out[at] = new;
    out
}

// What SigV4 canonicalisation treats as equal. Everything else a single-byte change can do is
// a different request, and the verifier must reject it.
//
// * Method: used verbatim. No equivalences.
// * Path: dot segments ("." and "..", with the segment ".." removes) and empty segments are
//   removed, then the path is percent-encoded *again*, which is injective. So two paths are
//   the same request exactly when they normalise alike (e.g. "/a/./b" and "/a///b"). Case in
//   percent-escapes is NOT equivalent here: "%2f" is signed as "%252f", "%2F" as "%252F".
// * Query: parameters are split on '&' and the first '=', form-decoded ('+' is a space,
//   "%XX" a byte, in either case of hex), re-encoded strictly and sorted; empty parameters
//   vanish and "k" means "k=". So two queries are the same request exactly when they decode
//   to the same multiset of pairs: a single-byte change can flip the case of a hex digit of
//   an escape ("%2b" / "%2B"), swap '+' and a raw space, or turn the '=' of an empty value
//   into '&' ("k=&x" / "k&&x"), and it is still the same request. (The generator's escapes
//   are complete UTF-8 sequences, so decoding the original is never lossy.)
// * Header values: leading and trailing spaces are trimmed and inner runs of spaces folded
//   to one. That keeps every non-space byte and its order, so replacing one byte by another
//   always changes the canonical value: no equivalences. (Only the space is folded, as in
//   aws-sigv4; a tab is a different byte.)
// * X-Amz-Date and the signature: used verbatim (the signature as lower-case hex, the only
//   spelling SigV4 defines). No equivalences.

/// `path` after dot-segment and empty-segment removal (the lossy part of the canonical URI).
fn normalised_path(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = format!("/{}", kept.join("/"));
    if directory && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Form-decoding of one key or value: '+' is a space, "%XX" (either case of hex) a byte, any
/// other byte itself (a '%' without two hex digits after it included); invalid UTF-8 becomes
/// U+FFFD, as the SDKs decode it.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query as SigV4 sees it: the multiset of decoded (key, value) pairs, split on '&' and
/// the first '=', empty pairs dropped, a missing '=' an empty value.
fn query_meaning(query: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect();
    pairs.sort();
    pairs
}

#[derive(Debug, Clone)]
struct Picks {
    method: (Index, Replacement),
    path: (Index, Replacement),
    query: (Index, Replacement),
    header: Index,
    header_byte: (Index, Replacement),
    date: (Index, Replacement),
    signature: (Index, Replacement),
    body: Index,
    body_xor: u8,
    skew_sign: bool,
}

fn picks() -> impl Strategy<Value = Picks> {
    let at = || (any::<Index>(), replacement());
    (
        (at(), at(), at(), any::<Index>(), at()),
        (at(), at(), any::<Index>(), 1u8..=255, any::<bool>()),
    )
        .prop_map(
            |(
                (method, path, query, header, header_byte),
                (date, signature, body, body_xor, skew_sign),
            )| Picks {
                method,
                path,
                query,
                header,
                header_byte,
                date,
                signature,
                body,
                body_xor,
                skew_sign,
            },
        )
}

fn mismatch(
    what: &str,
    wire: &Wire,
    verifier: &Verifier,
    now: SystemTime,
) -> Result<(), TestCaseError> {
    let got = wire.verify(verifier, now);
    prop_assert_eq!(
        got,
        Err(SigV4Error::SignatureMismatch),
        "mutated {} but still accepted or wrong error: {:?}",
        what,
        wire
    );
    Ok(())
}

/// Checks one mutation of the request: accepted if `same` (SigV4 maps it to the original
/// request), else rejected; and wherever the official signer can sign the mutated request, it
/// must agree on whether it is the same request, so the rules above are neither too wide nor
/// too narrow.
fn check_mutation(
    what: &str,
    case: &Case,
    wire: &Wire,
    same: bool,
    verifier: &Verifier,
    now: SystemTime,
) -> Result<(), TestCaseError> {
    check_rejected_or_same(what, wire, same, verifier, now)?;
    if let Some(official) = official_says_same(case, wire) {
        prop_assert_eq!(
            official,
            same,
            "the official signer disagrees about a {} change: {:?}",
            what,
            wire
        );
    }
    Ok(())
}

/// The verifier's half of [`check_mutation`], alone for the date and the signature, which the
/// official signer computes rather than takes as input.
fn check_rejected_or_same(
    what: &str,
    wire: &Wire,
    same: bool,
    verifier: &Verifier,
    now: SystemTime,
) -> Result<(), TestCaseError> {
    let got = wire.verify(verifier, now);
    if same {
        prop_assert!(
            got.is_ok(),
            "{} change is canonically equal but rejected: {:?} {:?}",
            what,
            got,
            wire
        );
    } else {
        prop_assert!(
            got.is_err(),
            "{} changed but still accepted: {:?}",
            what,
            wire
        );
    }
    Ok(())
}

fn skewed(t: SystemTime, secs: u64, later: bool) -> SystemTime {
    if later {
        t + Duration::from_secs(secs)
    } else {
        t - Duration::from_secs(secs)
    }
}

// ----------------------------------------------------------------------------------------
// Properties
// ----------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn sdk_signed_requests_verify_and_single_mutations_do_not(case in case(), p in picks()) {
        let verifier = case.verifier();
        let now = case.time();
        let wire = sdk_sign(&case, SERVICE);

        // Accepted, with the scope reported back.
        let ok = wire.verify(&verifier, now);
        prop_assert!(ok.is_ok(), "rejected {:?}: {:?}", wire, ok);
        let ok = ok.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(&ok.access_key_id, &case.access_key_id);
        prop_assert_eq!(ok.region.as_str(), case.region);
        prop_assert_eq!(&ok.session_token, &case.session_token);
        prop_assert_eq!(ok.date.len(), 8);

        // Method.
        let (at, with) = &p.method;
        let mut w = wire.clone();
        w.method = substitute_str(&wire.method, at.index(wire.method.len()), with);
        check_mutation("method", &case, &w, false, &verifier, now)?;

        // Path: any byte, '/' and '.' included, so dot and empty segments come and go.
        let (at, with) = &p.path;
        let at = at.index(wire.path.len());
        let mut w = wire.clone();
        w.path = substitute_str(&wire.path, at, with);
        let same = normalised_path(&w.path) == normalised_path(&wire.path);
        check_mutation("path", &case, &w, same, &verifier, now)?;

        // Query.
        if !wire.query.is_empty() {
            let (at, with) = &p.query;
            let mut w = wire.clone();
            w.query = substitute_str(&wire.query, at.index(wire.query.len()), with);
            let same = query_meaning(&w.query) == query_meaning(&wire.query);
            check_mutation("query", &case, &w, same, &verifier, now)?;
        }

        // One signed header value other than the date: host, an extra header, or the
        // session token. Any byte, spaces included.
        let candidates: Vec<usize> = wire
            .headers
            .iter()
            .enumerate()
            .filter(|(_, (k, v))| {
                let k = k.to_ascii_lowercase();
                k != "authorization" && k != "x-amz-date" && !v.is_empty()
            })
            .map(|(i, _)| i)
            .collect();
        prop_assert!(!candidates.is_empty(), "host is always there");
        let i = *p.header.get(&candidates);
        let (at, with) = &p.header_byte;
        let mut w = wire.clone();
        let value = &wire.headers[i].1;
        w.headers[i].1 = substitute_bytes(value, at.index(value.len()), with);
        let name = w.headers[i].0.clone();
        check_mutation(&format!("header {name}"), &case, &w, false, &verifier, now)?;

        // X-Amz-Date: any byte. Depending on where, the date no longer parses, leaves the
        // scope's day, leaves the skew window, or only changes the string to sign.
        let (at, with) = &p.date;
        let mut w = wire.clone();
        let date = w.header_mut("x-amz-date");
        *date = substitute_bytes(date, at.index(16), with);
        check_rejected_or_same("x-amz-date", &w, false, &verifier, now)?;

        // Signature: any byte of the 64 hex digits.
        let (at, with) = &p.signature;
        let mut w = wire.clone();
        let auth = w.header_mut("authorization");
        let sig_start = auth.len() - 64;
        *auth = substitute_bytes(auth, sig_start + at.index(64), with);
        check_rejected_or_same("signature", &w, false, &verifier, now)?;

        // Body.
        let mut w = wire.clone();
        if w.body.is_empty() {
            w.body.push(p.body_xor);
        } else {
            let at = p.body.index(w.body.len());
            w.body[at] ^= p.body_xor;
        }
        mismatch("body", &w, &verifier, now)?;

        // Wrong secret.
        let wrong_secret = Verifier::new(
            SERVICE,
            [(case.access_key_id.clone(), format!("{}x", case.secret))],
        );
        prop_assert_eq!(wire.verify(&wrong_secret, now), Err(SigV4Error::SignatureMismatch));

        // Unknown access key.
        let other = Verifier::new(SERVICE, [("AKIDOTHERKEY".to_owned(), case.secret.clone())]);
        prop_assert_eq!(
            wire.verify(&other, now),
            Err(SigV4Error::UnknownAccessKey { access_key_id: case.access_key_id.clone() })
        );

        // Clock skew: 14 minutes is fine, 16 is not, in either direction.
        prop_assert!(wire.verify(&verifier, skewed(now, 14 * 60, p.skew_sign)).is_ok());
        let err = wire.verify(&verifier, skewed(now, 16 * 60, p.skew_sign));
        prop_assert!(matches!(&err, Err(e) if e.is_clock_skew()), "{:?}", err);

        // Signed for another service.
        let foreign = sdk_sign(&case, "chime-other");
        prop_assert_eq!(
            foreign.verify(&verifier, now),
            Err(SigV4Error::WrongService {
                service: "chime-other".to_owned(),
                expected: SERVICE.to_owned(),
            })
        );
    }
}

// ----------------------------------------------------------------------------------------
// Never panics
// ----------------------------------------------------------------------------------------

const NOW_SECS: u64 = 1_440_938_160; // 20150830T123600Z
const GOOD_CRED: &str = "AKIDPARSETEST/20150830/us-east-1/chime/aws4_request";

fn fuzz_verifier() -> Verifier {
    Verifier::new(SERVICE, [("AKIDPARSETEST".to_owned(), "secret".to_owned())])
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Authorization values that get past the algorithm check and exercise the component parser.
fn authorization_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Credential=".to_owned()),
        Just("SignedHeaders=".to_owned()),
        Just("Signature=".to_owned()),
        Just(GOOD_CRED.to_owned()),
        Just("host;x-amz-date".to_owned()),
        Just("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".to_owned()),
        "[ ,=;/]{1,3}",
        "[A-Za-z0-9_-]{0,10}",
        ".{0,4}",
    ];
    prop::collection::vec(piece, 0..12)
        .prop_map(|pieces| format!("AWS4-HMAC-SHA256 {}", pieces.concat()))
}

fn run_fuzz(
    auth: &[u8],
    date: &[u8],
    path: &str,
    query: &str,
    extra: &[(String, Vec<u8>)],
    body: &[u8],
) {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.com"));
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        headers.insert("authorization", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(date) {
        headers.insert("x-amz-date", v);
    }
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            headers.append(k, v);
        }
    }
    let req = SignedRequest {
        method: "GET",
        path,
        query,
        headers: &headers,
        body,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    // Only "does not panic" is asserted; a random signature that verified would be a miracle.
    let _ = fuzz_verifier().verify(&req, now);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_authorization(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        like in authorization_like(),
        date in prop_oneof![Just("20150830T123600Z".to_owned()), ".{0,20}"],
    ) {
        run_fuzz(&raw, date.as_bytes(), "/", "", &[], b"");
        run_fuzz(like.as_bytes(), date.as_bytes(), "/", "", &[], b"");
        run_fuzz(lossy(&raw).as_bytes(), b"20150830T123600Z", "/", "", &[], b"");
    }

    #[test]
    fn never_panics_on_arbitrary_dates(
        date in prop_oneof![
            "[0-9]{8}T[0-9]{6}Z",
            "[0-9TZ]{0,20}",
            prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| lossy(&b)),
        ],
        raw_date in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        );
        run_fuzz(auth.as_bytes(), date.as_bytes(), "/", "", &[], b"");
        run_fuzz(auth.as_bytes(), &raw_date, "/", "", &[], b"");
    }

    #[test]
    fn never_panics_on_arbitrary_paths_queries_and_headers(
        path in prop_oneof![any::<String>(), "[/.%A-Fa-f0-9]{0,30}"],
        query in prop_oneof![any::<String>(), "[&=+%A-Fa-f0-9]{0,30}"],
        raw_path in prop::collection::vec(any::<u8>(), 0..40),
        raw_query in prop::collection::vec(any::<u8>(), 0..40),
        signed in prop_oneof![
            Just("host;x-amz-date".to_owned()),
            Just("host;x-a;x-amz-date".to_owned()),
            "[a-zA-Z;: -]{0,30}",
        ],
        extra_value in prop::collection::vec(any::<u8>(), 0..30),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders={signed}, Signature={}",
            "a".repeat(64)
        );
        let extra = [("x-a".to_owned(), extra_value.clone()), ("x-a".to_owned(), extra_value)];
        run_fuzz(auth.as_bytes(), b"20150830T123600Z", &path, &query, &extra, &body);
        run_fuzz(
            auth.as_bytes(),
            b"20150830T123600Z",
            &lossy(&raw_path),
            &lossy(&raw_query),
            &extra,
            &body,
        );
    }
}

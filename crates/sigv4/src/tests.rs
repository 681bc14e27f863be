//! Unit tests: published AWS test-suite vectors, SDK-signed edge cases, and one test per
//! error class.

use super::*;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 20150830T123600Z, the time of the AWS signature test suite.
const SUITE_SECS: u64 = 1_440_938_160;
const VANILLA_SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn suite_verifier() -> Verifier {
    Verifier::new("service", [(AKID.to_owned(), SECRET.to_owned())])
}

/// A request as the HTTP layer would hand it over.
struct Req {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &str, path_and_query: &str, headers: &[(&str, &str)], body: &[u8]) -> Req {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Req {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: map,
            body: body.to_vec(),
        }
    }

    /// Parses "METHOD /path?query HTTP/1.1\nName:value\n...\n\nbody" (the test-suite format).
    fn parse(text: &str) -> Req {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let mut parts = request_line.splitn(2, ' ');
        let method = parts.next().unwrap();
        let target = parts.next().unwrap().strip_suffix(" HTTP/1.1").unwrap();
        let headers: Vec<(&str, &str)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                // An HTTP parser strips optional whitespace around the value.
                (k, v.trim_matches(|c| c == ' ' || c == '\t'))
            })
            .collect();
        Req::new(method, target, &headers, body.as_bytes())
    }

    fn signed(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn set(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }
}

/// Signs with the official aws-sigv4 crate (default settings, as the Rust SDK does) and
/// returns the request with the signing headers added.
#[allow(clippy::too_many_arguments)]
fn sdk_signed(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
    region: &str,
    secs: u64,
    session_token: Option<&str>,
) -> Req {
    let identity =
        Credentials::new(AKID, SECRET, session_token.map(str::to_owned), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at(secs))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let parsed: http::Uri = uri.parse().unwrap();
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let host = match (parsed.scheme_str(), parsed.port_u16()) {
            (Some("https"), Some(443)) | (Some("http"), Some(80)) | (_, None) => {
                parsed.host().unwrap().to_owned()
            }
            _ => parsed.authority().unwrap().to_string(),
        };
        all.push(("host".into(), host));
    }
    for (k, v) in instructions.headers() {
        all.push((k.to_owned(), v.to_owned()));
    }
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path_and_query = parsed.path_and_query().map_or("/", |p| p.as_str());
    Req::new(method, path_and_query, &borrowed, body)
}

fn chime_verifier() -> Verifier {
    Verifier::new("chime", [(AKID.to_owned(), SECRET.to_owned())])
}

fn sdk_chime(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Req {
    sdk_signed(
        method,
        uri,
        headers,
        body,
        "chime",
        "us-east-1",
        SUITE_SECS,
        None,
    )
}

fn verify_chime(req: &Req) -> Result<VerifiedRequest, SigV4Error> {
    chime_verifier().verify(&req.signed(), at(SUITE_SECS))
}

fn authorization(cred: &str, signed_headers: &str, sig: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed_headers}, Signature={sig}")
}

/// get-vanilla from the AWS SigV4 test suite, with a replaceable Authorization header.
fn vanilla(auth: &str) -> Req {
    Req::new(
        "GET",
        "/",
        &[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", auth),
        ],
        b"",
    )
}

fn vanilla_ok() -> Req {
    vanilla(&authorization(
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        "host;x-amz-date",
        VANILLA_SIG,
    ))
}

fn verify_suite(req: &Req) -> Result<VerifiedRequest, SigV4Error> {
    suite_verifier().verify(&req.signed(), at(SUITE_SECS))
}

// ----------------------------------------------------------------------------------------
// Known vectors
// ----------------------------------------------------------------------------------------

#[test]
fn aws_documentation_get_vanilla() {
    let got = verify_suite(&vanilla_ok()).unwrap();
    assert_eq!(
        got,
        VerifiedRequest {
            access_key_id: AKID.into(),
            region: "us-east-1".into(),
            date: "20150830".into(),
            session_token: None,
        }
    );
    // The same vector computed by the official signer.
    let sdk = sdk_signed(
        "GET",
        "https://example.amazonaws.com/",
        &[],
        b"",
        "service",
        "us-east-1",
        SUITE_SECS,
        None,
    );
    let sdk_auth = sdk.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(sdk_auth.ends_with(VANILLA_SIG), "{sdk_auth}");
    verify_suite(&sdk).unwrap();
}

/// Signed requests from the AWS SigV4 test suite (the "normalize: true" cases, i.e. what the
/// SDKs do for every service but S3). All are signed at 20150830T123600Z for
/// service/us-east-1 with the AKIDEXAMPLE credentials.
const SUITE: &[&str] = &[
    "GET /example/.. HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "GET /example1/example2/../.. HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "GET /./ HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "GET // HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "GET /./example HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
    "GET //example// HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    "GET /example space/ HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    "GET /-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    "GET /\u{1234} HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    "GET /?Param-3=Value3&Param=Value2&%E1%88%B4=Value1 HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
    "GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    "GET /?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    "GET /?\u{1234}=bar HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value2\nMy-Header1:value2\nMy-Header1:value1\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value4\nMy-Header1:value1\nMy-Header1:value3\nMy-Header1:value2\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1: value1\nMy-Header2: \"a   b   c\"\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Security-Token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    "POST / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    "POST / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value1\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    "POST / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:VALUE1\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    "POST /?Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\nHost:example.amazonaws.com\nContent-Length:13\nX-Amz-Date:20150830T123600Z\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\n\nParam1=value1",
];

#[test]
fn aws_signature_test_suite() {
    let verifier = suite_verifier();
    for text in SUITE {
        let req = Req::parse(text);
        let result = verifier.verify(&req.signed(), at(SUITE_SECS));
        assert!(result.is_ok(), "{result:?} for\n{text}");
        // Any change of the signature's last hex digit must be caught.
        let mut bad = req;
        let auth = bad.headers["authorization"].to_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            &auth[..auth.len() - 1],
            if auth.ends_with('0') { '1' } else { '0' }
        );
        bad.set("authorization", &flipped);
        assert_eq!(
            verifier.verify(&bad.signed(), at(SUITE_SECS)),
            Err(SigV4Error::SignatureMismatch),
            "{text}"
        );
    }
}

#[test]
fn session_token_is_reported() {
    let got = verify_suite(&Req::parse(SUITE[16])).unwrap();
    assert_eq!(
        got.session_token.as_deref(),
        Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")
    );
    let req = sdk_signed(
        "POST",
        "https://chime.us-east-1.amazonaws.com/meetings",
        &[],
        b"{}",
        "chime",
        "eu-west-2",
        SUITE_SECS,
        Some("token/with+chars=="),
    );
    let got = verify_chime(&req).unwrap();
    assert_eq!(got.session_token.as_deref(), Some("token/with+chars=="));
    assert_eq!(got.region, "eu-west-2");
}

// ----------------------------------------------------------------------------------------
// SDK-signed edge cases
// ----------------------------------------------------------------------------------------

#[test]
fn sdk_edge_cases_verify() {
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [u8]);
    let cases: &[Case<'_>] = &[
        (
            "GET",
            "https://chime.us-east-1.amazonaws.com/meetings?a=x+y",
            &[],
            b"",
        ),
        (
            "GET",
            "https://chime.us-east-1.amazonaws.com/meetings?p=a%2Fb&q=%2B&r=a/b",
            &[],
            b"",
        ),
        (
            "GET",
            "https://chime.us-east-1.amazonaws.com/meetings?flag&x=&y=1&flag",
            &[],
            b"",
        ),
        (
            "GET",
            "https://chime.us-east-1.amazonaws.com/a/./b/../c//d/",
            &[],
            b"",
        ),
        (
            "GET",
            "https://chime.us-east-1.amazonaws.com/a%20b/c%2Fd/%E2%82%AC/:@!$'()*+,;=",
            &[],
            b"",
        ),
        ("GET", "https://chime.us-east-1.amazonaws.com", &[], b""),
        (
            "GET",
            "http://127.0.0.1:8080/meetings?next-token=abc%3D%3D&max-results=5",
            &[],
            b"",
        ),
        (
            "POST",
            "https://chime.us-east-1.amazonaws.com/meetings",
            &[
                ("content-type", "application/json"),
                ("X-Amz-Meta-Thing", "  a   b  "),
            ],
            br#"{"ClientRequestToken":"abc"}"#,
        ),
        (
            "PUT",
            "https://localhost:443/meetings/1/attendees",
            &[
                ("x-custom", "one"),
                ("x-custom", "two  three"),
                ("x-custom", "four"),
            ],
            &[0, 1, 2, 255],
        ),
        (
            "DELETE",
            "https://chime.us-east-1.amazonaws.com/meetings/%7Bid%7D",
            &[],
            b"",
        ),
    ];
    for (method, uri, headers, body) in cases {
        let req = sdk_chime(method, uri, headers, body);
        let result = verify_chime(&req);
        assert!(result.is_ok(), "{result:?} for {method} {uri}");
    }
}

#[test]
fn empty_path_is_slash() {
    // The SDK signs "https://host" with the path "/"; a server may see the path as empty.
    let mut req = sdk_chime("GET", "https://chime.us-east-1.amazonaws.com", &[], b"");
    assert_eq!(req.path, "/");
    verify_chime(&req).unwrap();
    req.path.clear();
    verify_chime(&req).unwrap();
}

#[test]
fn authorization_whitespace_and_order_tolerated() {
    for auth in [
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date,Signature={VANILLA_SIG}"
        ),
        format!(
            "AWS4-HMAC-SHA256   Credential = AKIDEXAMPLE/20150830/us-east-1/service/aws4_request ,  SignedHeaders = host;x-amz-date ,\tSignature = {VANILLA_SIG} "
        ),
        format!(
            "AWS4-HMAC-SHA256 Signature={VANILLA_SIG}, Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date"
        ),
    ] {
        let result = verify_suite(&vanilla(&auth));
        assert!(result.is_ok(), "{result:?} for {auth}");
    }
}

#[test]
fn signing_keys_are_cached_and_bounded() {
    let verifier = chime_verifier();
    // More regions than the cache holds, twice round, all still verify.
    for round in 0..2 {
        for i in 0..(MAX_CACHED_KEYS_PER_CREDENTIAL + 3) {
            let region = format!("region-{i}");
            let req = sdk_signed(
                "GET",
                "https://chime.example.com/meetings",
                &[],
                b"",
                "chime",
                &region,
                SUITE_SECS,
                None,
            );
            let got = verifier.verify(&req.signed(), at(SUITE_SECS));
            assert_eq!(got.map(|v| v.region), Ok(region), "round {round}");
        }
    }
    let cred = verifier.credentials.get(AKID).unwrap();
    assert_eq!(
        lock(&cred.signing_keys).len(),
        MAX_CACHED_KEYS_PER_CREDENTIAL
    );
}

#[test]
fn debug_hides_secrets() {
    let dbg = format!("{:?}", chime_verifier());
    assert!(!dbg.contains(SECRET) && dbg.contains("chime"), "{dbg}");
}

// ----------------------------------------------------------------------------------------
// One test per error class
// ----------------------------------------------------------------------------------------

#[test]
fn missing_authorization() {
    let req = Req::new(
        "GET",
        "/",
        &[("host", "h"), ("x-amz-date", "20150830T123600Z")],
        b"",
    );
    let err = verify_suite(&req).unwrap_err();
    assert_eq!(err, SigV4Error::MissingAuthorization);
    assert!(err.to_string().contains("missing Authorization header"));
}

#[test]
fn presigned_urls_are_not_supported() {
    for q in [
        "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
        "/?x-amz-signature=abc",
    ] {
        let req = Req::new("GET", q, &[("host", "example.amazonaws.com")], b"");
        let err = verify_suite(&req).unwrap_err();
        assert_eq!(err, SigV4Error::PresignedUrlNotSupported);
        assert!(err.to_string().contains("presigned-URL"), "{err}");
    }
}

#[test]
fn unsupported_algorithm() {
    let err = verify_suite(&vanilla(
        "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported signing algorithm 'AWS4-ECDSA-P256-SHA256' in the Authorization header: \
         only AWS4-HMAC-SHA256 is supported"
    );
}

#[test]
fn malformed_authorization_names_the_part() {
    let cred = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    let cases = [
        (
            format!("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"),
            "Credential",
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={cred}, Signature={VANILLA_SIG}"),
            "SignedHeaders",
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date"),
            "Signature",
        ),
        (authorization(cred, "host;x-amz-date", "xyz"), "Signature"),
        (
            authorization(cred, "host;x-amz-date", &VANILLA_SIG[..63]),
            "Signature",
        ),
        (
            authorization(
                "AKIDEXAMPLE/20150830/us-east-1/service",
                "host;x-amz-date",
                VANILLA_SIG,
            ),
            "Credential",
        ),
        (
            authorization(
                "AKIDEXAMPLE/2015-08-30/us-east-1/service/aws4_request",
                "host;x-amz-date",
                VANILLA_SIG,
            ),
            "Credential",
        ),
    ];
    for (auth, part) in cases {
        let err = verify_suite(&vanilla(&auth)).unwrap_err();
        match &err {
            SigV4Error::MalformedAuthorization { part: p, .. } => assert_eq!(*p, part, "{auth}"),
            other => panic!("{other:?} for {auth}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("malformed Authorization header: {part} ")),
            "{err}"
        );
    }
    let err = verify_suite(&vanilla(&format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}, Foo=1"))).unwrap_err();
    assert!(err.to_string().contains("unknown component 'Foo'"), "{err}");

    // Two Authorization headers, or one that is not visible ASCII.
    let mut twice = vanilla_ok();
    let auth = twice.headers["authorization"].clone();
    twice.headers.append("authorization", auth);
    assert!(matches!(
        verify_suite(&twice),
        Err(SigV4Error::MalformedAuthorization { part: "header", .. })
    ));
    let mut binary = vanilla_ok();
    binary.headers.insert(
        "authorization",
        HeaderValue::from_bytes(b"AWS4-HMAC-SHA256 Credential=\xff").unwrap(),
    );
    assert!(matches!(
        verify_suite(&binary),
        Err(SigV4Error::MalformedAuthorization { part: "header", .. })
    ));
}

#[test]
fn missing_and_malformed_date() {
    let mut req = vanilla_ok();
    req.headers.remove("x-amz-date");
    let err = verify_suite(&req).unwrap_err();
    assert_eq!(err, SigV4Error::MissingDate);
    assert!(err.to_string().contains("missing X-Amz-Date"));

    for bad in [
        "2015-08-30T12:36:00Z",
        "20150830T123600",
        "20150832T123600Z",
        "Sun, 30 Aug 2015 12:36:00 GMT",
    ] {
        let mut req = vanilla_ok();
        req.set("x-amz-date", bad);
        let err = verify_suite(&req).unwrap_err();
        assert_eq!(err, SigV4Error::MalformedDate { value: bad.into() });
        assert!(err.to_string().contains("yyyymmddThhmmssZ"), "{err}");
    }
    let mut req = vanilla_ok();
    req.headers.insert(
        "x-amz-date",
        HeaderValue::from_bytes(b"2015\xff0830").unwrap(),
    );
    assert!(matches!(
        verify_suite(&req),
        Err(SigV4Error::MalformedDate { .. })
    ));
}

#[test]
fn clock_skew() {
    let v = suite_verifier();
    let req = vanilla_ok();
    for ok in [SUITE_SECS - 900, SUITE_SECS - 899, SUITE_SECS + 900] {
        v.verify(&req.signed(), at(ok)).unwrap();
    }
    let err = v.verify(&req.signed(), at(SUITE_SECS + 901)).unwrap_err();
    assert!(err.is_clock_skew());
    assert_eq!(
        err.to_string(),
        "request time 20150830T123600Z (X-Amz-Date) is too far from server time \
         20150830T125101Z: at most 15 minutes of clock skew is allowed; check the client's clock"
    );
    let err = v
        .verify(
            &req.signed(),
            at(SUITE_SECS - 900) - Duration::from_millis(1),
        )
        .unwrap_err();
    assert!(err.is_clock_skew(), "{err}");
    assert!(!SigV4Error::SignatureMismatch.is_clock_skew());

    let strict = suite_verifier().with_max_skew(Duration::from_secs(30));
    assert!(strict.verify(&req.signed(), at(SUITE_SECS + 30)).is_ok());
    let err = strict
        .verify(&req.signed(), at(SUITE_SECS + 31))
        .unwrap_err();
    assert!(err.to_string().contains("at most 30 seconds"), "{err}");

    // Times far from the epoch do not overflow anything.
    assert!(
        v.verify(&req.signed(), SystemTime::UNIX_EPOCH)
            .unwrap_err()
            .is_clock_skew()
    );
    let far = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(1 << 50));
    if let Some(far) = far {
        assert!(v.verify(&req.signed(), far).unwrap_err().is_clock_skew());
    }
}

#[test]
fn credential_scope_problems() {
    let sh = "host;x-amz-date";
    let err = verify_suite(&vanilla(&authorization(
        "AKIDEXAMPLE/20150829/us-east-1/service/aws4_request",
        sh,
        VANILLA_SIG,
    )))
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::ScopeDateMismatch {
            scope_date: "20150829".into(),
            request_time: "20150830T123600Z".into()
        }
    );

    let err = verify_suite(&vanilla(&authorization(
        "AKIDEXAMPLE/20150830/us-east-1/foo/aws4_request",
        sh,
        VANILLA_SIG,
    )))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("credential scope service 'foo' is not 'service'"),
        "{err}"
    );
    let chime = chime_verifier();
    let err = chime
        .verify(&vanilla_ok().signed(), at(SUITE_SECS))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("credential scope service 'service' is not 'chime'"),
        "{err}"
    );

    let err = verify_suite(&vanilla(&authorization(
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_reqest",
        sh,
        VANILLA_SIG,
    )))
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::WrongTerminator {
            terminator: "aws4_reqest".into()
        }
    );
    assert!(err.to_string().contains("is not 'aws4_request'"));
}

#[test]
fn unknown_access_key() {
    let err = verify_suite(&vanilla(&authorization(
        "AKIDOTHER/20150830/us-east-1/service/aws4_request",
        "host;x-amz-date",
        VANILLA_SIG,
    )))
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::UnknownAccessKey {
            access_key_id: "AKIDOTHER".into()
        }
    );
    assert!(
        err.to_string()
            .contains("unknown access key id 'AKIDOTHER'")
    );
}

#[test]
fn signed_header_list_problems() {
    let cred = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    let check = |signed_headers: &str| {
        verify_suite(&vanilla(&authorization(cred, signed_headers, VANILLA_SIG))).unwrap_err()
    };
    assert_eq!(
        check("host"),
        SigV4Error::RequiredHeaderNotSigned { name: "x-amz-date" }
    );
    assert_eq!(
        check("x-amz-date"),
        SigV4Error::RequiredHeaderNotSigned { name: "host" }
    );
    assert_eq!(
        check("x-amz-date").to_string(),
        "SignedHeaders must include 'host'"
    );
    assert_eq!(
        check("host;my-header;x-amz-date"),
        SigV4Error::MissingSignedHeader {
            name: "my-header".into()
        }
    );
    assert!(
        check("host;my-header;x-amz-date")
            .to_string()
            .contains("'my-header' is listed in SignedHeaders but is not present")
    );
    for (bad, says) in [
        ("x-amz-date;host", "'host' must come before 'x-amz-date'"),
        ("Host;x-amz-date", "'Host' is not lower-case"),
        ("host;host;x-amz-date", "'host' is listed twice"),
        ("host;;x-amz-date", "empty header name"),
    ] {
        let err = check(bad);
        assert!(
            matches!(err, SigV4Error::InvalidSignedHeaders { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}

#[test]
fn content_sha256_must_match_body() {
    // Correct hash, signed: accepted.
    let body = b"{\"a\":1}";
    let good = hex::encode(canonical::sha256(body));
    let req = sdk_chime(
        "POST",
        "https://chime.us-east-1.amazonaws.com/meetings",
        &[("x-amz-content-sha256", &good)],
        body,
    );
    verify_chime(&req).unwrap();

    // UNSIGNED-PAYLOAD, streaming markers and wrong hashes: rejected even though signed.
    let zeros = "0".repeat(64);
    for value in [
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        zeros.as_str(),
    ] {
        let req = sdk_chime(
            "POST",
            "https://chime.us-east-1.amazonaws.com/meetings",
            &[("x-amz-content-sha256", value)],
            body,
        );
        let err = verify_chime(&req).unwrap_err();
        assert_eq!(err, SigV4Error::ContentSha256Mismatch, "{value}");
        assert!(err.to_string().contains("UNSIGNED-PAYLOAD"));
    }
}

#[test]
fn signature_mismatch() {
    let wrong_secret = Verifier::new("service", [(AKID.to_owned(), "not-the-secret".to_owned())]);
    let err = wrong_secret
        .verify(&vanilla_ok().signed(), at(SUITE_SECS))
        .unwrap_err();
    assert_eq!(err, SigV4Error::SignatureMismatch);
    let msg = err.to_string();
    assert!(
        msg.starts_with("The request signature we calculated does not match"),
        "{msg}"
    );
    assert!(!msg.contains(VANILLA_SIG) && !msg.contains("not-the-secret"));

    // Same request, different body / method / path / query.
    let mut body = vanilla_ok();
    body.body = b"x".to_vec();
    let mut method = vanilla_ok();
    method.method = "POST".into();
    let mut path = vanilla_ok();
    path.path = "/x".into();
    let mut query = vanilla_ok();
    query.query = "a=b".into();
    let mut host = vanilla_ok();
    host.set("host", "example.amazonaws.co");
    for req in [body, method, path, query, host] {
        assert_eq!(verify_suite(&req), Err(SigV4Error::SignatureMismatch));
    }
    // Upper-case hex is the same signature.
    let upper = vanilla(&authorization(
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        "host;x-amz-date",
        &VANILLA_SIG.to_uppercase(),
    ));
    verify_suite(&upper).unwrap();
}

#[test]
fn non_utf8_signed_header_values_do_not_panic() {
    let mut req = vanilla(&authorization(
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        "host;my-header;x-amz-date",
        VANILLA_SIG,
    ));
    req.headers.insert(
        "my-header",
        HeaderValue::from_bytes(b"caf\xe9  \xff").unwrap(),
    );
    assert_eq!(verify_suite(&req), Err(SigV4Error::SignatureMismatch));
}

#[test]
fn verifier_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    let verifier = std::sync::Arc::new(suite_verifier());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let verifier = verifier.clone();
            std::thread::spawn(move || verifier.verify(&vanilla_ok().signed(), at(SUITE_SECS)))
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
}

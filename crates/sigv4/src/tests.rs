//! Unit tests: request shapes signed by the official signer (the `aws-sigv4` crate is the
//! oracle; no published signature is embedded), SDK-signed edge cases, and one test per error
//! class.

use super::*;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Made-up credentials for these tests.
const AKID: &str = "AKIDCARILLON";
const SECRET: &str = "carillon/Unit+Test/Secret/0123456789abcdefg";
/// 20240315T092653Z, the signing time of every request below.
const SIGNED_AT: u64 = 1_710_494_813;
const HOST: &str = "meetings.carillon.test";
/// Credential scope of the hand-built "vanilla" request (service "service", us-east-1).
const VANILLA_CRED: &str = "AKIDCARILLON/20240315/us-east-1/service/aws4_request";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A verifier for the signing name "service", as opposed to Carillon's "chime".
fn generic_verifier() -> Verifier {
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

    /// The hex signature of the Authorization header.
    fn signature(&self) -> String {
        let auth = self.headers["authorization"].to_str().unwrap();
        let (_, sig) = auth.rsplit_once("Signature=").unwrap();
        sig.to_owned()
    }
}

/// Signs with the official aws-sigv4 crate and returns the request with the signing headers
/// added, as the server would receive it.
#[allow(clippy::too_many_arguments)]
fn sdk_signed_with(
    settings: SigningSettings,
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
        .settings(settings)
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

/// [`sdk_signed_with`] the default settings, as the AWS SDK for Rust signs.
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
    sdk_signed_with(
        SigningSettings::default(),
        method,
        uri,
        headers,
        body,
        service,
        region,
        secs,
        session_token,
    )
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
        SIGNED_AT,
        None,
    )
}

fn verify_chime(req: &Req) -> Result<VerifiedRequest, SigV4Error> {
    chime_verifier().verify(&req.signed(), at(SIGNED_AT))
}

fn authorization(cred: &str, signed_headers: &str, sig: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed_headers}, Signature={sig}")
}

/// `GET /` on [`HOST`] with only the required headers, signed by the official signer for
/// service/us-east-1 at [`SIGNED_AT`].
fn sdk_vanilla() -> Req {
    sdk_signed(
        "GET",
        &format!("https://{HOST}/"),
        &[],
        b"",
        "service",
        "us-east-1",
        SIGNED_AT,
        None,
    )
}

/// The official signer's signature of [`sdk_vanilla`].
fn vanilla_sig() -> String {
    sdk_vanilla().signature()
}

/// The vanilla request built by hand, with a replaceable Authorization header.
fn vanilla(auth: &str) -> Req {
    Req::new(
        "GET",
        "/",
        &[
            ("Host", HOST),
            ("X-Amz-Date", "20240315T092653Z"),
            ("Authorization", auth),
        ],
        b"",
    )
}

fn vanilla_ok() -> Req {
    vanilla(&authorization(
        VANILLA_CRED,
        "host;x-amz-date",
        &vanilla_sig(),
    ))
}

fn verify_generic(req: &Req) -> Result<VerifiedRequest, SigV4Error> {
    generic_verifier().verify(&req.signed(), at(SIGNED_AT))
}

// ----------------------------------------------------------------------------------------
// Request shapes signed by the official signer
// ----------------------------------------------------------------------------------------

#[test]
fn vanilla_request_verifies() {
    let sdk = sdk_vanilla();
    let expected = VerifiedRequest {
        access_key_id: AKID.into(),
        region: "us-east-1".into(),
        date: "20240315".into(),
        session_token: None,
    };
    assert_eq!(verify_generic(&sdk), Ok(expected.clone()));
    // The same request assembled by hand around the signer's signature.
    assert_eq!(verify_generic(&vanilla_ok()), Ok(expected));
}

/// One request shape: what the client asks the signer to sign, and optionally the raw path
/// or query the server then sees instead of the percent-encoded form the signer was given.
struct Shape {
    what: &'static str,
    method: &'static str,
    /// Path and query, percent-encoded as on the wire.
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    session_token: Option<&'static str>,
    /// A path that arrives with raw (unencoded) characters. The verifier encodes such a path
    /// once, so the oracle is the signer in single-encoding mode given `target`'s path.
    raw_path: Option<&'static str>,
    /// A query that arrives with raw characters; the canonical query is the same either way.
    raw_query: Option<&'static str>,
}

const fn shape(what: &'static str, method: &'static str, target: &'static str) -> Shape {
    Shape {
        what,
        method,
        target,
        headers: &[],
        body: b"",
        session_token: None,
        raw_path: None,
        raw_query: None,
    }
}

/// Shapes that exercise each canonicalisation rule the SDKs apply for every service but S3:
/// dot segments and empty segments, encoding of spaces, unicode and unreserved characters,
/// query decoding and sorting, repeated and padded headers, session tokens and bodies.
const SHAPES: &[Shape] = &[
    shape("dot-dot back to the root", "GET", "/meetings/.."),
    shape("two dot-dots", "GET", "/meetings/attendees/../.."),
    shape("dot segment at the root", "GET", "/./"),
    shape("empty segment at the root", "GET", "//"),
    shape("leading dot segment", "GET", "/./meetings"),
    shape("empty segments around a name", "GET", "//meetings//"),
    shape("dots in the middle", "GET", "/a/./b/../c/./d/.."),
    shape("a dot inside a name", "GET", "/v1.2/..hidden/x..y"),
    shape("encoded space", "GET", "/two%20words/"),
    Shape {
        raw_path: Some("/two words/"),
        ..shape("raw space", "GET", "/two%20words/")
    },
    shape(
        "unreserved characters",
        "GET",
        "/Zz-Aa_09.~tilde/MIXED-case_name.v2~",
    ),
    shape(
        "encoded unicode",
        "GET",
        "/caf%C3%A9/%E2%82%AC/%F0%9F%94%94",
    ),
    Shape {
        raw_path: Some("/café/€/🔔"),
        ..shape("raw unicode", "GET", "/caf%C3%A9/%E2%82%AC/%F0%9F%94%94")
    },
    shape(
        "query keys out of order, upper case and unicode",
        "GET",
        "/?zulu=3&alpha=2&%E2%82%AC=1&Alpha=0&alpha1=5",
    ),
    shape("one key several values", "GET", "/?k=b&k=a&k=c&k="),
    shape(
        "unreserved characters in the query",
        "GET",
        "/?~Key-._09=~Value-._Zz",
    ),
    Shape {
        raw_query: Some("€=bell&ключ=значение"),
        ..shape(
            "raw unicode in the query",
            "GET",
            "/?%E2%82%AC=bell&%D0%BA%D0%BB%D1%8E%D1%87=%D0%B7%D0%BD%D0%B0%D1%87%D0%B5%D0%BD%D0%B8%D0%B5",
        )
    },
    Shape {
        headers: &[
            ("X-Carillon-Tag", "two"),
            ("X-Carillon-Tag", "two"),
            ("X-Carillon-Tag", "one"),
        ],
        ..shape("a header repeated with equal values", "GET", "/")
    },
    Shape {
        headers: &[
            ("x-carillon-tag", "delta"),
            ("x-carillon-tag", "alpha"),
            ("x-carillon-tag", "charlie"),
            ("x-carillon-tag", "bravo"),
        ],
        ..shape("a header repeated out of order", "GET", "/")
    },
    Shape {
        headers: &[
            ("X-Carillon-Padded", "  leading and trailing  "),
            ("X-Carillon-Quoted", "\"x   y   z\""),
        ],
        ..shape("header values with runs of spaces", "GET", "/")
    },
    Shape {
        session_token: Some("Carillon/Session+Token=="),
        ..shape("a session token", "GET", "/")
    },
    shape("an empty POST", "POST", "/"),
    Shape {
        headers: &[("X-Carillon-Case", "MiXeD VaLuE")],
        ..shape("header value case is kept", "POST", "/")
    },
    shape(
        "POST with a query",
        "POST",
        "/meetings?operation=create-attendees",
    ),
    Shape {
        headers: &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Content-Length", "17"),
            ("x-amz-content-sha256", "from the body"),
        ],
        body: b"name=value&flag=1",
        ..shape("a form body with a signed payload hash", "POST", "/")
    },
];

fn sign_shape(shape: &Shape) -> Req {
    let mut settings = SigningSettings::default();
    if shape.raw_path.is_some() {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
    }
    let payload_hash = hex::encode(canonical::sha256(shape.body));
    let headers: Vec<(&str, &str)> = shape
        .headers
        .iter()
        .map(|&(k, v)| match (k, v) {
            ("x-amz-content-sha256", "from the body") => (k, payload_hash.as_str()),
            other => other,
        })
        .collect();
    let mut req = sdk_signed_with(
        settings,
        shape.method,
        &format!("https://{HOST}{}", shape.target),
        &headers,
        shape.body,
        "service",
        "us-east-1",
        SIGNED_AT,
        shape.session_token,
    );
    if let Some(path) = shape.raw_path {
        req.path = path.into();
    }
    if let Some(query) = shape.raw_query {
        req.query = query.into();
    }
    req
}

#[test]
fn official_signer_shapes_verify() {
    let verifier = generic_verifier();
    for shape in SHAPES {
        let req = sign_shape(shape);
        let result = verifier.verify(&req.signed(), at(SIGNED_AT));
        assert!(result.is_ok(), "{}: {result:?}", shape.what);
        assert_eq!(
            result.unwrap().session_token.as_deref(),
            shape.session_token,
            "{}",
            shape.what
        );
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
            verifier.verify(&bad.signed(), at(SIGNED_AT)),
            Err(SigV4Error::SignatureMismatch),
            "{}",
            shape.what
        );
    }
}

#[test]
fn raw_and_encoded_forms_are_distinct_requests() {
    // A raw path is encoded once, an encoded one twice: a signature for one must not verify
    // the other, or "%20" and " " would name the same resource under one signature.
    let verifier = generic_verifier();
    for shape in SHAPES.iter().filter(|s| s.raw_path.is_some()) {
        let mut req = sign_shape(shape);
        req.path = shape.target.split('?').next().unwrap().into();
        assert_eq!(
            verifier.verify(&req.signed(), at(SIGNED_AT)),
            Err(SigV4Error::SignatureMismatch),
            "{}",
            shape.what
        );
    }
}

#[test]
fn session_token_is_reported() {
    let req = sdk_signed(
        "POST",
        "https://chime.us-east-1.amazonaws.com/meetings",
        &[],
        b"{}",
        "chime",
        "eu-west-2",
        SIGNED_AT,
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
    let sig = vanilla_sig();
    for auth in [
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDCARILLON/20240315/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date,Signature={sig}"
        ),
        format!(
            "AWS4-HMAC-SHA256   Credential = AKIDCARILLON/20240315/us-east-1/service/aws4_request ,  SignedHeaders = host;x-amz-date ,\tSignature = {sig} "
        ),
        format!(
            "AWS4-HMAC-SHA256 Signature={sig}, Credential=AKIDCARILLON/20240315/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date"
        ),
    ] {
        let result = verify_generic(&vanilla(&auth));
        assert!(result.is_ok(), "{result:?} for {auth}");
    }
}

#[test]
fn signing_keys_are_cached_and_bounded() {
    let verifier = chime_verifier();
    // More regions than the cache holds, twice round, all still verify.
    for round in 0..2 {
        for i in 0..(MAX_CACHED_KEYS_PER_CREDENTIAL + 3) {
            let region = format!("us-test-{i}");
            let req = sdk_signed(
                "GET",
                "https://chime.example.com/meetings",
                &[],
                b"",
                "chime",
                &region,
                SIGNED_AT,
                None,
            );
            let got = verifier.verify(&req.signed(), at(SIGNED_AT));
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
        &[("host", "h"), ("x-amz-date", "20240315T092653Z")],
        b"",
    );
    let err = verify_generic(&req).unwrap_err();
    assert_eq!(err, SigV4Error::MissingAuthorization);
    assert!(err.to_string().contains("missing Authorization header"));
}

#[test]
fn presigned_urls_are_not_supported() {
    for q in [
        "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDCARILLON%2F20240315%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20240315T092653Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/?x-amz-signature=abc",
    ] {
        let req = Req::new("GET", q, &[("host", HOST)], b"");
        let err = verify_generic(&req).unwrap_err();
        assert_eq!(err, SigV4Error::PresignedUrlNotSupported);
        assert!(err.to_string().contains("presigned-URL"), "{err}");
    }
}

#[test]
fn unsupported_algorithm() {
    let err = verify_generic(&vanilla(
        "AWS4-ECDSA-P256-SHA256 Credential=AKIDCARILLON/20240315/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
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
    let sig = vanilla_sig();
    let cred = VANILLA_CRED;
    let cases = [
        (
            format!("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={sig}"),
            "Credential",
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={cred}, Signature={sig}"),
            "SignedHeaders",
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date"),
            "Signature",
        ),
        (authorization(cred, "host;x-amz-date", "xyz"), "Signature"),
        (
            authorization(cred, "host;x-amz-date", &sig[..63]),
            "Signature",
        ),
        (
            authorization(
                "AKIDCARILLON/20240315/us-east-1/service",
                "host;x-amz-date",
                &sig,
            ),
            "Credential",
        ),
        (
            authorization(
                "AKIDCARILLON/2024-03-15/us-east-1/service/aws4_request",
                "host;x-amz-date",
                &sig,
            ),
            "Credential",
        ),
    ];
    for (auth, part) in cases {
        let err = verify_generic(&vanilla(&auth)).unwrap_err();
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
    let err = verify_generic(&vanilla(&format!(
        "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={sig}, Foo=1"
    )))
    .unwrap_err();
    assert!(err.to_string().contains("unknown component 'Foo'"), "{err}");

    // Two Authorization headers, or one that is not visible ASCII.
    let mut twice = vanilla_ok();
    let auth = twice.headers["authorization"].clone();
    twice.headers.append("authorization", auth);
    assert!(matches!(
        verify_generic(&twice),
        Err(SigV4Error::MalformedAuthorization { part: "header", .. })
    ));
    let mut binary = vanilla_ok();
    binary.headers.insert(
        "authorization",
        HeaderValue::from_bytes(b"AWS4-HMAC-SHA256 Credential=\xff").unwrap(),
    );
    assert!(matches!(
        verify_generic(&binary),
        Err(SigV4Error::MalformedAuthorization { part: "header", .. })
    ));
}

#[test]
fn missing_and_malformed_date() {
    let mut req = vanilla_ok();
    req.headers.remove("x-amz-date");
    let err = verify_generic(&req).unwrap_err();
    assert_eq!(err, SigV4Error::MissingDate);
    assert!(err.to_string().contains("missing X-Amz-Date"));

    for bad in [
        "2024-03-15T09:26:53Z",
        "20240315T092653",
        "20240332T092653Z",
        "Fri, 15 Mar 2024 09:26:53 GMT",
    ] {
        let mut req = vanilla_ok();
        req.set("x-amz-date", bad);
        let err = verify_generic(&req).unwrap_err();
        assert_eq!(err, SigV4Error::MalformedDate { value: bad.into() });
        assert!(err.to_string().contains("yyyymmddThhmmssZ"), "{err}");
    }
    let mut req = vanilla_ok();
    req.headers.insert(
        "x-amz-date",
        HeaderValue::from_bytes(b"2024\xff0315").unwrap(),
    );
    assert!(matches!(
        verify_generic(&req),
        Err(SigV4Error::MalformedDate { .. })
    ));
}

#[test]
fn clock_skew() {
    let v = generic_verifier();
    let req = vanilla_ok();
    for ok in [SIGNED_AT - 900, SIGNED_AT - 899, SIGNED_AT + 900] {
        v.verify(&req.signed(), at(ok)).unwrap();
    }
    let err = v.verify(&req.signed(), at(SIGNED_AT + 901)).unwrap_err();
    assert!(err.is_clock_skew());
    assert_eq!(
        err.to_string(),
        "request time 20240315T092653Z (X-Amz-Date) is too far from server time \
         20240315T094154Z: at most 15 minutes of clock skew is allowed; check the client's clock"
    );
    let err = v
        .verify(
            &req.signed(),
            at(SIGNED_AT - 900) - Duration::from_millis(1),
        )
        .unwrap_err();
    assert!(err.is_clock_skew(), "{err}");
    assert!(!SigV4Error::SignatureMismatch.is_clock_skew());

    let strict = generic_verifier().with_max_skew(Duration::from_secs(30));
    assert!(strict.verify(&req.signed(), at(SIGNED_AT + 30)).is_ok());
    let err = strict
        .verify(&req.signed(), at(SIGNED_AT + 31))
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
    let sig = vanilla_sig();
    let sh = "host;x-amz-date";
    let err = verify_generic(&vanilla(&authorization(
        "AKIDCARILLON/20240314/us-east-1/service/aws4_request",
        sh,
        &sig,
    )))
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::ScopeDateMismatch {
            scope_date: "20240314".into(),
            request_time: "20240315T092653Z".into()
        }
    );

    let err = verify_generic(&vanilla(&authorization(
        "AKIDCARILLON/20240315/us-east-1/foo/aws4_request",
        sh,
        &sig,
    )))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("credential scope service 'foo' is not 'service'"),
        "{err}"
    );
    let chime = chime_verifier();
    let err = chime
        .verify(&vanilla_ok().signed(), at(SIGNED_AT))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("credential scope service 'service' is not 'chime'"),
        "{err}"
    );

    let err = verify_generic(&vanilla(&authorization(
        "AKIDCARILLON/20240315/us-east-1/service/aws4_reqest",
        sh,
        &sig,
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
    let sig = vanilla_sig();
    let err = verify_generic(&vanilla(&authorization(
        "AKIDOTHER/20240315/us-east-1/service/aws4_request",
        "host;x-amz-date",
        &sig,
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
    let sig = vanilla_sig();
    let cred = VANILLA_CRED;
    let check = |signed_headers: &str| {
        verify_generic(&vanilla(&authorization(cred, signed_headers, &sig))).unwrap_err()
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
    let sig = vanilla_sig();
    let wrong_secret = Verifier::new("service", [(AKID.to_owned(), "not-the-secret".to_owned())]);
    let err = wrong_secret
        .verify(&vanilla_ok().signed(), at(SIGNED_AT))
        .unwrap_err();
    assert_eq!(err, SigV4Error::SignatureMismatch);
    let msg = err.to_string();
    assert!(
        msg.starts_with("The request signature we calculated does not match"),
        "{msg}"
    );
    assert!(!msg.contains(&sig) && !msg.contains("not-the-secret"));

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
    host.set("host", "meetings.carillon.tes");
    for req in [body, method, path, query, host] {
        assert_eq!(verify_generic(&req), Err(SigV4Error::SignatureMismatch));
    }
    // SigV4 signatures are lower-case hex: the upper-case spelling is refused as malformed.
    let upper = vanilla(&authorization(
        VANILLA_CRED,
        "host;x-amz-date",
        &sig.to_uppercase(),
    ));
    assert!(matches!(
        verify_generic(&upper),
        Err(SigV4Error::MalformedAuthorization {
            part: "Signature",
            ..
        })
    ));
}

#[test]
fn non_utf8_signed_header_values_do_not_panic() {
    let sig = vanilla_sig();
    let mut req = vanilla(&authorization(
        VANILLA_CRED,
        "host;my-header;x-amz-date",
        &sig,
    ));
    req.headers.insert(
        "my-header",
        HeaderValue::from_bytes(b"caf\xe9  \xff").unwrap(),
    );
    assert_eq!(verify_generic(&req), Err(SigV4Error::SignatureMismatch));
}

#[test]
fn verifier_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    let verifier = std::sync::Arc::new(generic_verifier());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let verifier = verifier.clone();
            std::thread::spawn(move || verifier.verify(&vanilla_ok().signed(), at(SIGNED_AT)))
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
}

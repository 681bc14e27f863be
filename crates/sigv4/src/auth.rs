//! Parsing of the `Authorization` header and of its credential scope.

use crate::error::{ALGORITHM, SigV4Error, echo};

/// The three components of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    pub(crate) credential: &'a str,
    pub(crate) signed_headers: &'a str,
    pub(crate) signature: [u8; 32],
}

/// `<access key id>/<yyyymmdd>/<region>/<service>/aws4_request`, split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scope<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) date: &'a str,
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
    pub(crate) terminator: &'a str,
    /// Everything after the access key id and its '/': the scope as it appears in the
    /// string to sign.
    pub(crate) scope: &'a str,
}

fn malformed(part: &'static str, reason: impl Into<String>) -> SigV4Error {
    SigV4Error::MalformedAuthorization {
        part,
        reason: reason.into(),
    }
}

/// Parses the header value. Whitespace around the algorithm, the commas and the '=' signs is
/// ignored, and the components may come in any order, because SDKs and hand-written clients
/// differ in exactly these ways.
pub(crate) fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        if algorithm.starts_with(ALGORITHM) {
            return Err(malformed(
                "header",
                format!("needs a space between {ALGORITHM} and the Credential component"),
            ));
        }
        return Err(SigV4Error::UnsupportedAlgorithm {
            algorithm: echo(algorithm),
        });
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in rest.split(',') {
        let component = component.trim();
        if component.is_empty() {
            continue;
        }
        let Some((name, v)) = component.split_once('=') else {
            return Err(malformed(
                "header",
                format!(
                    "component '{}' is not of the form Name=Value",
                    echo(component)
                ),
            ));
        };
        let (part, slot) = match name.trim() {
            "Credential" => ("Credential", &mut credential),
            "SignedHeaders" => ("SignedHeaders", &mut signed_headers),
            "Signature" => ("Signature", &mut signature),
            other => {
                return Err(malformed(
                    "header",
                    format!(
                        "has an unknown component '{}' (expected Credential, SignedHeaders \
                         and Signature)",
                        echo(other)
                    ),
                ));
            }
        };
        if slot.is_some() {
            return Err(malformed(part, "appears more than once"));
        }
        let v = v.trim();
        if v.is_empty() {
            return Err(malformed(part, "is empty"));
        }
        if v.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(malformed(
                part,
                "contains whitespace (separate the components with ', ')",
            ));
        }
        *slot = Some(v);
    }

    let credential = credential.ok_or_else(|| malformed("Credential", "is missing"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("SignedHeaders", "is missing"))?;
    let signature = signature.ok_or_else(|| malformed("Signature", "is missing"))?;
    // SigV4 defines the signature as lower-case hex; accepting upper case too would give one
    // signature two spellings, so only the defined one is accepted.
    let mut decoded = [0u8; 32];
    let lower_hex = signature
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if signature.len() != 64 || !lower_hex || hex::decode_to_slice(signature, &mut decoded).is_err()
    {
        return Err(malformed(
            "Signature",
            "must be 64 lower-case hexadecimal characters (the hex-encoded HMAC-SHA256)",
        ));
    }
    Ok(Authorization {
        credential,
        signed_headers,
        signature: decoded,
    })
}

/// Longest region name accepted; real ones are at most 14 characters (`ap-southeast-4`,
/// `us-gov-west-1`) and a little headroom keeps future ones in.
const MAX_REGION_LEN: usize = 32;

/// Whether `region` looks like an AWS region: `^[a-z]{2}(-[a-z]+)+-[0-9]+$`, at most
/// [`MAX_REGION_LEN`] characters. Hand-rolled: a regex engine for one pattern is not worth it.
pub(crate) fn is_plausible_region(region: &str) -> bool {
    if region.len() > MAX_REGION_LEN {
        return false;
    }
    let mut parts = region.split('-');
    // Two lower-case letters, then at least one word of lower-case letters, then a number.
    let prefix_ok = parts
        .next()
        .is_some_and(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_lowercase()));
    let rest: Vec<&str> = parts.collect();
    let Some((number, words)) = rest.split_last() else {
        return false;
    };
    prefix_ok
        && !words.is_empty()
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|c| c.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|c| c.is_ascii_digit())
}

/// Splits the `Credential` value into its five '/'-separated parts.
pub(crate) fn parse_scope(credential: &str) -> Result<Scope<'_>, SigV4Error> {
    const SHAPE: &str = "must be <access key id>/<yyyymmdd>/<region>/<service>/aws4_request";
    let bad = || malformed("Credential", SHAPE);
    let (access_key_id, scope) = credential.split_once('/').ok_or_else(bad)?;
    let mut parts = scope.split('/');
    let (Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if access_key_id.is_empty() {
        return Err(malformed("Credential", "has an empty access key id"));
    }
    if date.len() != 8 || !date.bytes().all(|c| c.is_ascii_digit()) {
        return Err(malformed(
            "Credential",
            format!("scope date '{}' is not of the form yyyymmdd", echo(date)),
        ));
    }
    if region.is_empty() {
        return Err(malformed("Credential", "scope has an empty region"));
    }
    Ok(Scope {
        access_key_id,
        date,
        region,
        service,
        terminator,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn part_of(e: SigV4Error) -> &'static str {
        match e {
            SigV4Error::MalformedAuthorization { part, .. } => part,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_canonical_form() {
        let v = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={SIG}"
        );
        let a = parse_authorization(&v).unwrap();
        assert_eq!(a.credential, "AKID/20150830/us-east-1/service/aws4_request");
        assert_eq!(a.signed_headers, "host;x-amz-date");
        assert_eq!(hex::encode(a.signature), SIG);
    }

    #[test]
    fn tolerates_whitespace_and_order() {
        let plain = format!(
            "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request,SignedHeaders=host,Signature={SIG}"
        );
        let want = parse_authorization(&plain).unwrap();
        for v in [
            format!(
                "  AWS4-HMAC-SHA256   Credential = A/20150830/r/s/aws4_request ,  \
                 SignedHeaders= host\t,Signature ={SIG}  "
            ),
            format!(
                "AWS4-HMAC-SHA256\tSignature={SIG}, SignedHeaders=host, \
                 Credential=A/20150830/r/s/aws4_request,"
            ),
        ] {
            assert_eq!(parse_authorization(&v).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn rejects_bad_headers_naming_the_part() {
        let cred = "Credential=A/20150830/r/s/aws4_request";
        let sh = "SignedHeaders=host;x-amz-date";
        let sig = format!("Signature={SIG}");
        assert_eq!(
            parse_authorization(&format!("AWS4-HMAC-SHA1 {cred}, {sh}, {sig}")).unwrap_err(),
            SigV4Error::UnsupportedAlgorithm {
                algorithm: "AWS4-HMAC-SHA1".into()
            }
        );
        assert!(matches!(
            parse_authorization("Bearer abc").unwrap_err(),
            SigV4Error::UnsupportedAlgorithm { .. }
        ));
        let cases = [
            (format!("AWS4-HMAC-SHA256 {sh}, {sig}"), "Credential"),
            (format!("AWS4-HMAC-SHA256 {cred}, {sig}"), "SignedHeaders"),
            (format!("AWS4-HMAC-SHA256 {cred}, {sh}"), "Signature"),
            (
                format!("AWS4-HMAC-SHA256 {cred}, {sh}, Signature=abc"),
                "Signature",
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 {cred}, {sh}, Signature={}",
                    "g".repeat(64)
                ),
                "Signature",
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, {sh}, {sig}, {sig}"),
                "Signature",
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=, {sig}"),
                "SignedHeaders",
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, {sh}, {sig}, Foo=bar"),
                "header",
            ),
            (format!("AWS4-HMAC-SHA256 {cred} {sh} {sig}"), "Credential"),
            (format!("AWS4-HMAC-SHA256{cred}, {sh}, {sig}"), "header"),
            ("AWS4-HMAC-SHA256".to_owned(), "Credential"),
        ];
        for (v, part) in cases {
            assert_eq!(part_of(parse_authorization(&v).unwrap_err()), part, "{v}");
        }
    }

    #[test]
    fn plausible_regions() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-4",
            "eu-central-2",
            "il-central-1",
            "cn-northwest-1",
            "us-test-0",
        ] {
            assert!(is_plausible_region(good), "{good}");
        }
        for bad in [
            "",
            "local",
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "u-east-1",
            "use-east-1",
            "us--1",
            "us-east--1",
            "us-east-1-",
            "-us-east-1",
            "us-east-x",
            "us-east-١",
            "us_east-1",
            "us-east-1 ",
            "us-ëast-1",
            &format!("us-{}-1", "a".repeat(28)),
        ] {
            assert!(!is_plausible_region(bad), "{bad}");
        }
        assert!(is_plausible_region(&format!("us-{}-1", "a".repeat(27))));
    }

    #[test]
    fn signature_must_be_lower_case_hex() {
        let cred = "Credential=A/20150830/us-east-1/s/aws4_request";
        let v = format!(
            "AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature={}",
            SIG.to_uppercase()
        );
        assert_eq!(part_of(parse_authorization(&v).unwrap_err()), "Signature");
    }

    #[test]
    fn scope_parsing() {
        let s = parse_scope("AKID/20150830/us-east-1/chime/aws4_request").unwrap();
        assert_eq!(
            s,
            Scope {
                access_key_id: "AKID",
                date: "20150830",
                region: "us-east-1",
                service: "chime",
                terminator: "aws4_request",
                scope: "20150830/us-east-1/chime/aws4_request",
            }
        );
        for bad in [
            "AKID",
            "AKID/20150830/us-east-1/chime",
            "AKID/20150830/us-east-1/chime/aws4_request/extra",
            "/20150830/us-east-1/chime/aws4_request",
            "AKID/2015083/us-east-1/chime/aws4_request",
            "AKID/2015083x/us-east-1/chime/aws4_request",
            "AKID/20150830//chime/aws4_request",
        ] {
            assert_eq!(
                part_of(parse_scope(bad).unwrap_err()),
                "Credential",
                "{bad}"
            );
        }
    }
}

//! The pieces of the SigV4 canonical request, written straight into a SHA-256 hasher.
//!
//! The rules are those the official SDKs apply for every service except S3 (aws-sigv4's
//! defaults, botocore, @smithy/signature-v4): the path is dot-segment-normalised and then
//! percent-encoded *again*, the query is form-decoded, strictly re-encoded and sorted, and
//! header values are space-trimmed. Streaming into the hasher avoids building the canonical
//! request as a string on every call.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Everything except the RFC 3986 unreserved characters `A-Za-z0-9-._~` is percent-encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// As [`STRICT`], but path separators stay.
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// Writes the canonical URI for the raw (still percent-encoded) request path.
pub(crate) fn write_uri(h: &mut Sha256, raw_path: &str) {
    let path = normalize_path(raw_path);
    // "Double encoding": the path is already percent-encoded on the wire, and the SDKs encode
    // it once more when signing, so '%' becomes "%25".
    for chunk in utf8_percent_encode(&path, PATH) {
        h.update(chunk.as_bytes());
    }
}

/// Removes dot segments and empty segments the way the SDKs do before signing (RFC 3986
/// section 5.2.4 plus dropping the empty segments of "//"). Percent-encoded dots ("%2E") are
/// not dots: normalisation runs on the raw path.
pub(crate) fn normalize_path(raw: &str) -> Cow<'_, str> {
    if raw.is_empty() {
        return Cow::Borrowed("/");
    }
    let path: Cow<'_, str> = if raw.starts_with('/') {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(format!("/{raw}"))
    };
    // Fast path: without '.' or "//" the algorithm below is the identity.
    if !path.contains('.') && !path.contains("//") {
        return path;
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    // A path ending in "/", "/." or "/.." denotes a directory: keep the trailing slash.
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Writes the canonical query string for the raw query (without '?').
pub(crate) fn write_query(h: &mut Sha256, raw_query: &str) {
    if raw_query.is_empty() {
        return;
    }
    // All encoded keys and values live in one buffer; `pairs` holds (key start, value start,
    // value end) offsets into it. Two allocations per request however many parameters.
    let mut buf = String::with_capacity(raw_query.len() + raw_query.len() / 2);
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        let start = buf.len();
        buf.extend(utf8_percent_encode(&k, STRICT));
        let mid = buf.len();
        buf.extend(utf8_percent_encode(&v, STRICT));
        pairs.push((start, mid, buf.len()));
    }
    let b = buf.as_bytes();
    // Sorted by encoded key, then encoded value (not by "k=v": '=' would sort between bytes).
    pairs.sort_unstable_by(|x, y| (&b[x.0..x.1], &b[x.1..x.2]).cmp(&(&b[y.0..y.1], &b[y.1..y.2])));
    for (i, &(start, mid, end)) in pairs.iter().enumerate() {
        if i > 0 {
            h.update(b"&");
        }
        h.update(&b[start..mid]);
        h.update(b"=");
        h.update(&b[mid..end]);
    }
}

/// Writes the canonical value of one header: every value in order, each with leading and
/// trailing spaces removed and inner runs of spaces collapsed, joined with ','. Only the space
/// character counts (as in aws-sigv4); values are treated as opaque bytes.
pub(crate) fn write_header_values<'a>(
    h: &mut Sha256,
    values: impl Iterator<Item = &'a http::HeaderValue>,
) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            h.update(b",");
        }
        let words = value
            .as_bytes()
            .split(|&c| c == b' ')
            .filter(|w| !w.is_empty());
        for (j, word) in words.enumerate() {
            if j > 0 {
                h.update(b" ");
            }
            h.update(word);
        }
    }
}

/// Lower-case hex of `bytes` into `out` (no allocation).
pub(crate) fn hex_lower(bytes: &[u8; 32]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, &b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// SHA-256 of `data` as 32 bytes.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(p: &str) -> String {
        let mut out = String::new();
        for chunk in utf8_percent_encode(&normalize_path(p), PATH) {
            out.push_str(chunk);
        }
        out
    }

    fn query(q: &str) -> String {
        // write_query only feeds a hasher, so compare digests of the expected string.
        let mut h = Sha256::new();
        write_query(&mut h, q);
        let got: [u8; 32] = h.finalize().into();
        got.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hash_of(s: &str) -> String {
        sha256(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn path_normalisation_matches_rfc3986_and_sdk() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("foo", "/foo"),
            ("/foo/bar/", "/foo/bar/"),
            ("/foo/./bar", "/foo/bar"),
            ("/foo/../bar", "/bar"),
            ("/foo/bar/..", "/foo/"),
            ("/foo/bar/.", "/foo/bar/"),
            ("/../foo", "/foo"),
            ("/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            ("//example//", "/example/"),
            ("/./example", "/example"),
            ("/example1/example2/../..", "/"),
            ("/a.json", "/a.json"),
            ("/a/%2E%2E/b", "/a/%2E%2E/b"),
            (".", "/"),
            ("..", "/"),
            ("a/.", "/a/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), want, "input {input:?}");
        }
    }

    #[test]
    fn path_is_double_encoded() {
        assert_eq!(uri("/a%20b/c%2Fd"), "/a%2520b/c%252Fd");
        assert_eq!(uri("/example space/"), "/example%20space/");
        assert_eq!(uri("/-._~AZaz09"), "/-._~AZaz09");
        assert_eq!(
            uri("/a:b@c!$&'()*+,;="),
            "/a%3Ab%40c%21%24%26%27%28%29%2A%2B%2C%3B%3D"
        );
        assert_eq!(uri("/\u{1234}"), "/%E1%88%B4");
    }

    #[test]
    fn query_canonicalisation() {
        let cases = [
            ("", ""),
            ("a=1", "a=1"),
            ("b=2&a=1", "a=1&b=2"),
            (
                "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
                "%E1%88%B4=Value1&Param=Value2&Param-3=Value3",
            ),
            ("a=x+y", "a=x%20y"),
            ("a=x%20y", "a=x%20y"),
            ("a=x%2By", "a=x%2By"),
            ("p=a%2Fb", "p=a%2Fb"),
            ("p=a/b", "p=a%2Fb"),
            ("flag", "flag="),
            ("flag=", "flag="),
            ("a=2&a=1", "a=1&a=2"),
            ("&&a=1&", "a=1"),
            ("k=%41", "k=A"),
            ("k=%ZZ", "k=%25ZZ"),
        ];
        for (input, want) in cases {
            assert_eq!(query(input), hash_of(want), "input {input:?} want {want:?}");
        }
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let vals = [
            http::HeaderValue::from_static("  a   b  c "),
            http::HeaderValue::from_static("x"),
            http::HeaderValue::from_static("\"a   b   c\""),
            http::HeaderValue::from_static("tab\tstays"),
        ];
        let mut h = Sha256::new();
        write_header_values(&mut h, vals.iter());
        let got: [u8; 32] = h.finalize().into();
        assert_eq!(got, sha256(b"a b c,x,\"a b c\",tab\tstays"));
    }

    #[test]
    fn hex_lower_matches_hex_crate() {
        let d = sha256(b"abc");
        assert_eq!(hex_lower(&d).as_slice(), hex::encode(d).as_bytes());
    }
}

//! `carillon_sigv4::Verifier::verify` on arbitrary header values, paths, queries and bodies.
//!
//! Input: `MODE` byte, then fields separated by '\n':
//! `AUTHORIZATION\nX-AMZ-DATE\nHOST\nMETHOD\nPATH\nQUERY\nHEADER-NAME\nHEADER-VALUE\nBODY`
//! (missing fields are empty; the body is the rest, raw bytes). Header values that no HTTP
//! parser would hand over (`HeaderValue::from_bytes` refuses them) are left out.
//!
//! With an odd `MODE` byte the Authorization header is built from a valid credential scope for
//! the verifier's key and date, the AUTHORIZATION field giving the SignedHeaders list and the
//! signature, and X-Amz-Date is the verifier's time unless given: every input then gets past
//! the header checks into canonicalisation (path normalisation, query sorting, header
//! folding). The verifier's clock is fixed at 20240315T092653Z.

#![no_main]

use std::time::{Duration, SystemTime};

use carillon_sigv4::{SignedRequest, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NOW_SECS: u64 = 1_710_494_813; // 20240315T092653Z
const AMZ_DATE: &[u8] = b"20240315T092653Z";
const CREDENTIAL: &str = "AKIDFUZZ/20240315/us-east-1/chime/aws4_request";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut fields = data.splitn(9, |&b| b == b'\n');
    let mut next = || fields.next().unwrap_or_default();
    let (auth, date, host, method, path, query) = (next(), next(), next(), next(), next(), next());
    let (header_name, header_value, body) = (next(), next(), next());

    let auth = if mode & 1 == 1 {
        // "SIGNED-HEADERS SIGNATURE", each defaulted when absent.
        let text = String::from_utf8_lossy(auth);
        let (signed, signature) = text.split_once(' ').unwrap_or((&text, ""));
        let signed = if signed.is_empty() {
            "host;x-amz-date"
        } else {
            signed
        };
        let signature = if signature.is_empty() {
            "0".repeat(64)
        } else {
            signature.to_owned()
        };
        format!(
            "AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={signed}, Signature={signature}"
        )
        .into_bytes()
    } else {
        auth.to_vec()
    };
    let date = if mode & 1 == 1 && date.is_empty() {
        AMZ_DATE
    } else {
        date
    };

    let mut headers = HeaderMap::new();
    for (name, value) in [
        (&b"authorization"[..], &auth[..]),
        (b"x-amz-date", date),
        (b"host", host),
        (header_name, header_value),
    ] {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let method = String::from_utf8_lossy(method);
    let path = String::from_utf8_lossy(path);
    let query = String::from_utf8_lossy(query);
    let request = SignedRequest {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body,
    };
    let verifier = Verifier::new("chime", [("AKIDFUZZ".to_owned(), "fuzz-secret".to_owned())]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    if let Err(e) = verifier.verify(&request, now) {
        // Every error renders (it becomes the response message).
        let _ = e.to_string();
    }
});

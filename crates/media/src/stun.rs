//! A sans-IO ICE-lite STUN responder: just enough STUN (RFC 8489) to answer ICE connectivity
//! and consent checks (RFC 8445, RFC 7675) without a `str0m::Rtc`.
//!
//! A hibernated viewer connection has dropped its `Rtc`, but the browser keeps sending Binding
//! requests to the server's candidate; if they go unanswered the browser declares the pair dead
//! after its consent timeout (about 30 s) and tears the connection down. We are the ICE-lite,
//! controlled side, so all we ever do is authenticate a request with our short-term credentials
//! and answer it with a success response; and since the controlling browser (re)nominates a pair
//! with USE-CANDIDATE, we report that flag so the caller can keep the nominating request and
//! replay it into a fresh `Rtc` when the connection wakes up.
//!
//! Everything here works on byte slices and never panics on input: the datagram comes straight
//! from the network.

use std::net::{IpAddr, SocketAddr};

use aws_lc_rs::{constant_time, hmac};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 STUN message.
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header: type (2), length (2), magic cookie (4), transaction id (12).
const HEADER_LEN: usize = 20;
/// Type, then length, of every attribute.
const ATTR_HEADER_LEN: usize = 4;

/// Method Binding (0x001) in class request (0b00).
const BINDING_REQUEST: u16 = 0x0001;
/// Method Binding (0x001) in class success response (0b10).
const BINDING_SUCCESS: u16 = 0x0101;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// HMAC-SHA1 output, the value of MESSAGE-INTEGRITY.
const INTEGRITY_LEN: usize = 20;
/// CRC-32, the value of FINGERPRINT.
const FINGERPRINT_LEN: usize = 4;
/// RFC 8489 §14.7: the CRC is xored with this ("STUN") so that a STUN message carried inside
/// another CRC-32-protected protocol does not produce a fingerprint that looks valid there.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// RFC 8489 §14.3: USERNAME is "a UTF-8-encoded sequence of fewer than 509 bytes"; be a bit
/// lenient (RFC 5389 allowed fewer than 513), anything longer is garbage.
const MAX_USERNAME_LEN: usize = 512;

/// RFC 7983: a datagram whose first byte is 0..=3 and that has the STUN magic cookie.
///
/// On our single UDP port STUN, DTLS (20..=63) and SRTP/SRTCP (128..=191) arrive mixed; the first
/// byte alone separates them, and the magic cookie makes a false positive on random garbage
/// unlikely. A datagram shorter than the 20-byte STUN header is not STUN.
pub fn is_stun(datagram: &[u8]) -> bool {
    match datagram.split_first_chunk::<HEADER_LEN>() {
        Some((header, _)) => {
            let [first, _, _, _, c0, c1, c2, c3, ..] = *header;
            first <= 3 && u32::from_be_bytes([c0, c1, c2, c3]) == MAGIC_COOKIE
        }
        None => false,
    }
}

/// An authenticated ICE connectivity check (or consent check) addressed to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// Echoed in the response: the browser matches responses to requests by it.
    pub transaction_id: [u8; 12],
    /// The request carried USE-CANDIDATE (the controlling agent nominates this pair).
    pub use_candidate: bool,
    /// The part of USERNAME after the colon: the sender's (remote) ufrag.
    pub remote_ufrag: String,
}

/// Why a datagram is not an authenticated Binding request for us.
///
/// Specific variants, so that the caller can tell noise (not STUN, not a Binding request) from
/// a check for another connection (wrong USERNAME) from a forgery or corruption (integrity or
/// fingerprint mismatch), and log or count them differently.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StunError {
    /// Shorter than the 20-byte STUN header.
    #[error("datagram of {len} bytes is shorter than a STUN header")]
    TooShort { len: usize },
    /// First byte outside 0..=3 or no magic cookie (RFC 7983 demultiplexing).
    #[error("not a STUN message")]
    NotStun,
    /// A STUN message, but not a Binding request (a response, an indication, a TURN method...).
    #[error("STUN message type {message_type:#06x} is not a Binding request")]
    NotBindingRequest { message_type: u16 },
    /// The header's message length is not a multiple of 4 or disagrees with the datagram size.
    #[error("STUN message length {declared} does not match the {actual} bytes after the header")]
    BadLength { declared: u16, actual: usize },
    /// An attribute is truncated or has a value of the wrong size for its type.
    #[error("malformed STUN attribute {attr_type:#06x} at offset {offset}: {reason}")]
    BadAttribute {
        attr_type: u16,
        offset: usize,
        reason: &'static str,
    },
    /// An attribute other than FINGERPRINT follows MESSAGE-INTEGRITY. RFC 8489 says to ignore
    /// such attributes; we refuse the message instead, because no ICE agent sends them and
    /// unauthenticated trailing bytes are only ever an attacker's or a corrupted datagram's.
    #[error("STUN attribute {attr_type:#06x} follows MESSAGE-INTEGRITY")]
    AttributeAfterIntegrity { attr_type: u16 },
    /// FINGERPRINT is not the last attribute (RFC 8489 §14.7).
    #[error("FINGERPRINT is not the last STUN attribute")]
    FingerprintNotLast,
    /// No USERNAME: the request cannot name the credentials it is authenticated with.
    #[error("Binding request without USERNAME")]
    MissingUsername,
    /// USERNAME is not UTF-8 "<local ufrag>:<remote ufrag>" with both parts non-empty.
    #[error("USERNAME is not of the form <ufrag>:<ufrag>")]
    MalformedUsername,
    /// USERNAME is for another ufrag: a check for another connection (or a stale one).
    #[error("USERNAME is for ufrag {addressed_to:?}, not ours")]
    WrongUsername { addressed_to: String },
    /// No MESSAGE-INTEGRITY: ICE checks are always authenticated (RFC 8445 §7.2.2).
    #[error("Binding request without MESSAGE-INTEGRITY")]
    MissingIntegrity,
    /// MESSAGE-INTEGRITY does not verify with our password: forged, corrupted, or for
    /// credentials we no longer have (e.g. after an ICE restart).
    #[error("MESSAGE-INTEGRITY mismatch")]
    IntegrityMismatch,
    /// FINGERPRINT does not match: corrupted, or not STUN at all.
    #[error("FINGERPRINT mismatch")]
    FingerprintMismatch,
}

/// Parses and authenticates a Binding request addressed to us: short-term credentials,
/// USERNAME must be "<local_ufrag>:<remote ufrag>", MESSAGE-INTEGRITY (HMAC-SHA1 keyed with
/// local_pwd, computed over the message up to that attribute with the header length
/// adjusted as RFC 8489 §14.5 says) must match (constant-time compare), and FINGERPRINT
/// (CRC-32 xor 0x5354554e, RFC 8489 §14.7), if present, must be the last attribute and match.
///
/// Attributes other than USERNAME, MESSAGE-INTEGRITY, USE-CANDIDATE and FINGERPRINT (PRIORITY,
/// ICE-CONTROLLING, ICE-CONTROLLED, GOOG-NETWORK-INFO, SOFTWARE...) are skipped: an ICE-lite
/// agent is always controlled and does not need them to answer. Checks run cheapest first:
/// framing, FINGERPRINT (CRC), USERNAME, and the HMAC last. The HMAC key is `local_pwd` as is:
/// the OpaqueString preparation RFC 8489 asks for is the identity on ICE passwords (ASCII).
pub fn parse_binding_request(
    datagram: &[u8],
    local_ufrag: &str,
    local_pwd: &str,
) -> Result<BindingRequest, StunError> {
    let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(StunError::TooShort {
            len: datagram.len(),
        });
    };
    if !is_stun(datagram) {
        return Err(StunError::NotStun);
    }
    let [t0, t1, l0, l1, _, _, _, _, transaction_id @ ..] = *header;
    let message_type = u16::from_be_bytes([t0, t1]);
    if message_type != BINDING_REQUEST {
        return Err(StunError::NotBindingRequest { message_type });
    }
    let declared = u16::from_be_bytes([l0, l1]);
    if !declared.is_multiple_of(4) || usize::from(declared) != body.len() {
        return Err(StunError::BadLength {
            declared,
            actual: body.len(),
        });
    }

    let attrs = Attributes::walk(datagram)?;

    if let Some(fingerprint) = attrs.fingerprint {
        let covered = datagram
            .get(..fingerprint.offset)
            .ok_or(StunError::FingerprintMismatch)?;
        let expected = (crc32(covered) ^ FINGERPRINT_XOR).to_be_bytes();
        if fingerprint.value != expected.as_slice() {
            return Err(StunError::FingerprintMismatch);
        }
    }

    let integrity = attrs.integrity.ok_or(StunError::MissingIntegrity)?;
    let username = attrs.username.ok_or(StunError::MissingUsername)?;
    let username = std::str::from_utf8(username).map_err(|_| StunError::MalformedUsername)?;
    let (addressed_to, remote_ufrag) = username
        .split_once(':')
        .ok_or(StunError::MalformedUsername)?;
    if addressed_to.is_empty() || remote_ufrag.is_empty() {
        return Err(StunError::MalformedUsername);
    }
    if addressed_to != local_ufrag {
        return Err(StunError::WrongUsername {
            addressed_to: addressed_to.to_owned(),
        });
    }

    // RFC 8489 §14.5: the HMAC covers the message up to MESSAGE-INTEGRITY, with the header's
    // length as if MESSAGE-INTEGRITY were the last attribute (so a FINGERPRINT added later does
    // not change it).
    let length_to_integrity =
        integrity.offset.saturating_sub(HEADER_LEN) + ATTR_HEADER_LEN + INTEGRITY_LEN;
    let length_to_integrity =
        u16::try_from(length_to_integrity).map_err(|_| StunError::IntegrityMismatch)?;
    let after_length = datagram
        .get(4..integrity.offset)
        .ok_or(StunError::IntegrityMismatch)?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local_pwd.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(&message_type.to_be_bytes());
    context.update(&length_to_integrity.to_be_bytes());
    context.update(after_length);
    let tag = context.sign();
    constant_time::verify_slices_are_equal(tag.as_ref(), integrity.value)
        .map_err(|_| StunError::IntegrityMismatch)?;

    Ok(BindingRequest {
        transaction_id,
        use_candidate: attrs.use_candidate,
        remote_ufrag: remote_ufrag.to_owned(),
    })
}

/// The ufrag a Binding request is addressed to (USERNAME before the colon), not
/// authenticated: only to find the one connection whose credentials then authenticate it.
pub fn addressed_to(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let username = Attributes::walk(datagram).ok()?.username?;
    let (ufrag, _) = std::str::from_utf8(username).ok()?.split_once(':')?;
    Some(ufrag)
}

/// The Binding success response to a request from `source`: XOR-MAPPED-ADDRESS (IPv4 and
/// IPv6), MESSAGE-INTEGRITY keyed with local_pwd, FINGERPRINT.
///
/// XOR-MAPPED-ADDRESS tells the browser the address we saw it at (it may learn a
/// peer-reflexive candidate from it); MESSAGE-INTEGRITY, keyed with the same password as the
/// request, is how the browser knows the answer comes from the peer it checks (it drops a
/// response without it); FINGERPRINT lets it demultiplex the response from DTLS/SRTP. An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`, from a dual-stack
/// socket) is reported as the IPv4 address it is, since that is what the browser sent from.
pub fn binding_success(transaction_id: &[u8; 12], source: SocketAddr, local_pwd: &str) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let [cookie_hi_0, cookie_hi_1, _, _] = cookie;
    let xor_port = source.port() ^ u16::from_be_bytes([cookie_hi_0, cookie_hi_1]);

    // XOR-MAPPED-ADDRESS value (RFC 8489 §14.2): reserved byte, family, x-port, x-address; the
    // address is xored with the magic cookie (IPv4) or the cookie then the transaction id (IPv6).
    let mut mapped = Vec::with_capacity(20);
    mapped.push(0);
    match source.ip().to_canonical() {
        IpAddr::V4(ip) => {
            mapped.push(0x01);
            mapped.extend_from_slice(&xor_port.to_be_bytes());
            mapped.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            mapped.push(0x02);
            mapped.extend_from_slice(&xor_port.to_be_bytes());
            let pad = cookie.iter().chain(transaction_id.iter());
            mapped.extend(ip.octets().iter().zip(pad).map(|(a, b)| a ^ b));
        }
    }

    let mut message = Vec::with_capacity(HEADER_LEN + 24 + 24 + 8);
    message.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    message.extend_from_slice(&[0, 0]); // length, set below
    message.extend_from_slice(&cookie);
    message.extend_from_slice(transaction_id);
    push_attribute(&mut message, ATTR_XOR_MAPPED_ADDRESS, &mapped);

    // The HMAC is computed with the length already counting MESSAGE-INTEGRITY (RFC 8489 §14.5).
    set_length(&mut message, ATTR_HEADER_LEN + INTEGRITY_LEN);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local_pwd.as_bytes());
    let tag = hmac::sign(&key, &message);
    push_attribute(&mut message, ATTR_MESSAGE_INTEGRITY, tag.as_ref());

    // And the CRC with the length counting FINGERPRINT (RFC 8489 §14.7).
    set_length(&mut message, ATTR_HEADER_LEN + FINGERPRINT_LEN);
    let fingerprint = crc32(&message) ^ FINGERPRINT_XOR;
    push_attribute(&mut message, ATTR_FINGERPRINT, &fingerprint.to_be_bytes());
    message
}

/// Appends one attribute, zero-padded to a multiple of 4. Only called with our own small values.
fn push_attribute(message: &mut Vec<u8>, attr_type: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    message.extend_from_slice(&attr_type.to_be_bytes());
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(value);
    message.resize(message.len() + padding(value.len()), 0);
}

/// Sets the header's message length to the attributes written so far plus `then` more bytes.
fn set_length(message: &mut [u8], then: usize) {
    let len = message.len().saturating_sub(HEADER_LEN) + then;
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    if let Some(field) = message.get_mut(2..4) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

/// Bytes of padding after a value of `len` bytes, to the next 4-byte boundary.
fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// An attribute's position (of its type field, in the datagram) and value.
#[derive(Clone, Copy)]
struct Located<'a> {
    offset: usize,
    value: &'a [u8],
}

/// The attributes of a Binding request that matter to an ICE-lite responder.
#[derive(Default)]
struct Attributes<'a> {
    username: Option<&'a [u8]>,
    use_candidate: bool,
    integrity: Option<Located<'a>>,
    fingerprint: Option<Located<'a>>,
}

impl<'a> Attributes<'a> {
    /// Walks the attributes after the header of a datagram whose header length was checked to
    /// equal the datagram's. Every access is bounds-checked: a bad length is an error, not a
    /// panic.
    fn walk(datagram: &'a [u8]) -> Result<Self, StunError> {
        let mut attrs = Attributes::default();
        let mut offset = HEADER_LEN;
        while offset < datagram.len() {
            let bad = |attr_type, reason| StunError::BadAttribute {
                attr_type,
                offset,
                reason,
            };
            let value_start = offset + ATTR_HEADER_LEN;
            let Some(&[t0, t1, l0, l1]) = datagram.get(offset..value_start) else {
                return Err(bad(0, "truncated attribute header"));
            };
            let attr_type = u16::from_be_bytes([t0, t1]);
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let value_end = value_start + len;
            let Some(value) = datagram.get(value_start..value_end) else {
                return Err(bad(attr_type, "value runs past the end of the message"));
            };
            let next = value_end + padding(len);
            if next > datagram.len() {
                return Err(bad(attr_type, "padding runs past the end of the message"));
            }
            if attrs.fingerprint.is_some() {
                return Err(StunError::FingerprintNotLast);
            }
            if attrs.integrity.is_some() && attr_type != ATTR_FINGERPRINT {
                return Err(StunError::AttributeAfterIntegrity { attr_type });
            }
            match attr_type {
                ATTR_USERNAME => {
                    if len > MAX_USERNAME_LEN {
                        return Err(bad(attr_type, "USERNAME too long"));
                    }
                    // RFC 8489 §14: only the first occurrence of an attribute counts.
                    if attrs.username.is_none() {
                        attrs.username = Some(value);
                    }
                }
                ATTR_MESSAGE_INTEGRITY => {
                    if len != INTEGRITY_LEN {
                        return Err(bad(attr_type, "MESSAGE-INTEGRITY is not 20 bytes"));
                    }
                    attrs.integrity = Some(Located { offset, value });
                }
                ATTR_FINGERPRINT => {
                    if len != FINGERPRINT_LEN {
                        return Err(bad(attr_type, "FINGERPRINT is not 4 bytes"));
                    }
                    attrs.fingerprint = Some(Located { offset, value });
                }
                ATTR_USE_CANDIDATE => {
                    if len != 0 {
                        return Err(bad(attr_type, "USE-CANDIDATE is not empty"));
                    }
                    attrs.use_candidate = true;
                }
                // PRIORITY, ICE-CONTROLLING/-CONTROLLED, SOFTWARE, GOOG-NETWORK-INFO, ...: an
                // ICE-lite responder needs none of them. Unknown comprehension-required types are
                // ignored too rather than answered with 420: browsers send none we would need.
                _ => {}
            }
            offset = next;
        }
        Ok(attrs)
    }
}

/// CRC-32 (IEEE 802.3: reflected, polynomial 0xEDB88320, initial and final xor 0xFFFFFFFF), as
/// FINGERPRINT requires; a 1 KiB table built at compile time.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0_u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0_u32, |crc, &byte| {
        let index = (crc ^ u32::from(byte)) & 0xFF;
        // `index` < 256 = the table's length.
        CRC32_TABLE[index as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::{Protocol, Receive, Transmit};
    use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

    use super::*;

    const SERVER_ADDR: &str = "127.0.0.1:5000";
    const CLIENT_ADDR: &str = "127.0.0.1:6000";

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c - b'A' + 10,
            })
            .collect();
        digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
    }

    /// RFC 5769 §2.1 "Sample Request" (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME padded with
    /// spaces, MESSAGE-INTEGRITY, FINGERPRINT).
    const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
        802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36\
        000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
        80280004e57a3bcf";
    const RFC5769_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
    const RFC5769_TID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// Test-only encoder of ICE Binding requests, independent of the parser under test (except
    /// for `crc32`, itself checked against the standard check value and RFC 5769).
    fn encode_request(
        transaction_id: &[u8; 12],
        username: &str,
        use_candidate: bool,
        extra: &[(u16, Vec<u8>)],
        password: &str,
        with_fingerprint: bool,
    ) -> Vec<u8> {
        fn attr(out: &mut Vec<u8>, t: u16, v: &[u8]) {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v);
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
        }
        fn set_len(out: &mut [u8], len: usize) {
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        let mut out = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
        out.extend_from_slice(transaction_id);
        attr(&mut out, 0x0006, username.as_bytes());
        attr(&mut out, 0x0024, &0x6e00_01ff_u32.to_be_bytes()); // PRIORITY
        attr(&mut out, 0x802A, &0x0123_4567_89ab_cdef_u64.to_be_bytes()); // ICE-CONTROLLING
        if use_candidate {
            attr(&mut out, 0x0025, &[]);
        }
        for (t, v) in extra {
            attr(&mut out, *t, v);
        }
        let body = out.len() - 20;
        set_len(&mut out, body + 24);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        let tag = hmac::sign(&key, &out);
        attr(&mut out, 0x0008, tag.as_ref());
        if with_fingerprint {
            let body = out.len() - 20;
            set_len(&mut out, body + 8);
            let crc = crc32(&out) ^ 0x5354_554E;
            attr(&mut out, 0x8028, &crc.to_be_bytes());
        }
        out
    }

    /// Test-only decoder of a success response: (transaction id, mapped address, attribute
    /// types in order). Verifies MESSAGE-INTEGRITY and FINGERPRINT independently of the encoder.
    fn decode_success(msg: &[u8], password: &str) -> ([u8; 12], SocketAddr, Vec<u16>) {
        assert!(is_stun(msg));
        assert_eq!(&msg[0..2], &[0x01, 0x01], "Binding success response");
        assert_eq!(
            usize::from(u16::from_be_bytes([msg[2], msg[3]])),
            msg.len() - 20
        );
        let tid: [u8; 12] = msg[8..20].try_into().unwrap();
        let mut types = vec![];
        let mut mapped = None;
        let mut at = 20;
        while at < msg.len() {
            let t = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
            let v = &msg[at + 4..at + 4 + len];
            types.push(t);
            match t {
                0x0020 => {
                    let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
                    let mut pad = vec![0x21, 0x12, 0xA4, 0x42];
                    pad.extend_from_slice(&tid);
                    let ip: Vec<u8> = v[4..].iter().zip(&pad).map(|(a, b)| a ^ b).collect();
                    let ip = match v[1] {
                        1 => IpAddr::from(<[u8; 4]>::try_from(ip).unwrap()),
                        2 => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap()),
                        f => panic!("family {f}"),
                    };
                    mapped = Some(SocketAddr::new(ip, port));
                }
                0x0008 => {
                    let mut covered = msg[..at].to_vec();
                    covered[2..4].copy_from_slice(&((at - 20 + 24) as u16).to_be_bytes());
                    let key =
                        hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
                    hmac::verify(&key, &covered, v).expect("MESSAGE-INTEGRITY verifies");
                }
                0x8028 => {
                    assert_eq!(at + 8, msg.len(), "FINGERPRINT is last");
                    assert_eq!(v, (crc32(&msg[..at]) ^ 0x5354_554E).to_be_bytes());
                }
                _ => {}
            }
            at += 4 + len + padding(len);
        }
        (tid, mapped.expect("XOR-MAPPED-ADDRESS"), types)
    }

    /// A Binding request the str0m client sent to the server's candidate.
    struct Captured {
        /// Simulated seconds since the start.
        at: f64,
        raw: Vec<u8>,
        request: BindingRequest,
        /// Answered by `binding_success` (hibernated) rather than by the server `Rtc`.
        answered_by_us: bool,
    }

    /// A full-ICE, controlling str0m client (it makes the offer) and an ICE-lite str0m server
    /// built like ours, wired in memory with no latency. While `server` is `Some` it answers
    /// everything itself; once hibernated (`None`) the client's STUN is answered by this module
    /// alone (or by no one, with `answer_stun` false) and everything else is dropped.
    struct Str0mPair {
        start: Instant,
        now: Instant,
        client: Rtc,
        server: Option<Rtc>,
        server_addr: SocketAddr,
        client_addr: SocketAddr,
        server_ufrag: String,
        server_pwd: String,
        answer_stun: bool,
        requests: Vec<Captured>,
        /// The client's ICE state changes, with when (simulated seconds).
        states: Vec<(f64, IceConnectionState)>,
        /// When the client reported `Event::Connected` (ICE and DTLS up).
        client_connected_at: Option<f64>,
        /// When and why the client `Rtc` gave up (its DTLS handshake times out if hibernated
        /// before DTLS completed).
        client_failed: Option<(f64, String)>,
    }

    impl Str0mPair {
        fn new() -> Self {
            let start = Instant::now();
            let server_addr: SocketAddr = SERVER_ADDR.parse().unwrap();
            let client_addr: SocketAddr = CLIENT_ADDR.parse().unwrap();

            let mut server = Rtc::builder()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                .build(start);
            let server_candidate = Candidate::host(server_addr, "udp").unwrap();
            server.add_local_candidate(server_candidate.clone());

            let mut client = Rtc::builder().build(start);
            client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
            client.add_remote_candidate(server_candidate);

            let mut change = client.sdp_api();
            change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = change.apply().unwrap();
            let answer = server.sdp_api().accept_offer(offer).unwrap();
            client.sdp_api().accept_answer(pending, answer).unwrap();

            let creds = server.direct_api().local_ice_credentials();
            Str0mPair {
                start,
                now: start,
                client,
                server: Some(server),
                server_addr,
                client_addr,
                server_ufrag: creds.ufrag,
                server_pwd: creds.pass,
                answer_stun: true,
                requests: vec![],
                states: vec![],
                client_connected_at: None,
                client_failed: None,
            }
        }

        /// Drops the server `Rtc`, as hibernation does.
        fn hibernate(&mut self) {
            self.server = None;
        }

        fn elapsed(&self) -> f64 {
            (self.now - self.start).as_secs_f64()
        }

        /// Polls the client until it is idle; returns its datagrams and its next timeout.
        fn poll_client(&mut self) -> Result<(Vec<Transmit>, Instant), RtcError> {
            let mut sent = vec![];
            loop {
                match self.client.poll_output()? {
                    Output::Timeout(at) => return Ok((sent, at)),
                    Output::Transmit(t) => sent.push(t),
                    Output::Event(Event::IceConnectionStateChange(state)) => {
                        self.states.push((self.elapsed(), state));
                    }
                    Output::Event(Event::Connected) => {
                        self.client_connected_at.get_or_insert(self.elapsed());
                    }
                    Output::Event(_) => {}
                }
            }
        }

        /// Runs the pair until `seconds` of simulated time since the start, or until the
        /// client fails (then recorded in `client_failed`).
        fn run_until(&mut self, seconds: u64) {
            let end = self.start + Duration::from_secs(seconds);
            while self.now < end && self.client_failed.is_none() {
                if let Err(e) = self.step(end) {
                    self.client_failed = Some((self.elapsed(), e.to_string()));
                }
            }
        }

        /// Handles the timeouts at `now`, exchanges datagrams (at `now`, no latency) until both
        /// sides are idle, and advances `now` to the next timeout. Errors are the client's.
        fn step(&mut self, end: Instant) -> Result<(), RtcError> {
            let now = self.now;
            self.client.handle_input(Input::Timeout(now))?;
            if let Some(server) = &mut self.server {
                server.handle_input(Input::Timeout(now)).unwrap();
            }
            let mut next = end;
            loop {
                let (to_server, client_next) = self.poll_client()?;
                next = next.min(client_next);
                let mut to_client: Vec<(SocketAddr, Vec<u8>)> = vec![];
                for t in to_server {
                    assert_eq!(
                        (t.source, t.destination),
                        (self.client_addr, self.server_addr)
                    );
                    let raw = Vec::from(t.contents);
                    if is_stun(&raw) {
                        let request =
                            parse_binding_request(&raw, &self.server_ufrag, &self.server_pwd)
                                .expect("str0m's Binding request is accepted");
                        let answered_by_us = self.server.is_none() && self.answer_stun;
                        if answered_by_us {
                            let reply = binding_success(
                                &request.transaction_id,
                                t.source,
                                &self.server_pwd,
                            );
                            to_client.push((self.server_addr, reply));
                        }
                        let at = self.elapsed();
                        self.requests.push(Captured {
                            at,
                            raw: raw.clone(),
                            request,
                            answered_by_us,
                        });
                    }
                    if let Some(server) = &mut self.server {
                        let receive =
                            Receive::new(Protocol::Udp, t.source, t.destination, &raw).unwrap();
                        server.handle_input(Input::Receive(now, receive)).unwrap();
                    }
                }
                if let Some(server) = &mut self.server {
                    loop {
                        match server.poll_output().unwrap() {
                            Output::Timeout(at) => {
                                next = next.min(at);
                                break;
                            }
                            Output::Transmit(t) => {
                                to_client.push((t.source, Vec::from(t.contents)));
                            }
                            Output::Event(_) => {}
                        }
                    }
                }
                if to_client.is_empty() {
                    break;
                }
                for (source, datagram) in to_client {
                    let receive =
                        Receive::new(Protocol::Udp, source, self.client_addr, &datagram).unwrap();
                    self.client.handle_input(Input::Receive(now, receive))?;
                }
            }
            self.now = next.clamp(
                now + Duration::from_millis(1),
                now + Duration::from_millis(50),
            );
            Ok(())
        }

        fn use_candidate_flags(&self) -> Vec<(f64, bool)> {
            self.requests
                .iter()
                .map(|c| (c.at, c.request.use_candidate))
                .collect()
        }

        fn reached(&self, wanted: &[IceConnectionState]) -> bool {
            self.states.iter().any(|(_, s)| wanted.contains(s))
        }
    }

    const UP: [IceConnectionState; 2] =
        [IceConnectionState::Connected, IceConnectionState::Completed];

    /// A str0m client gets its ICE checks answered by us alone from the very first one (the
    /// server `Rtc` never sees a byte): its ICE must reach Connected/Completed and stay there.
    /// Nobody answers the client's DTLS, so its handshake gives up after 25..35 s (dimpl's
    /// retransmission timing varies between runs); that failure is tolerated, ICE's is not.
    #[test]
    fn str0m_client_reaches_connected_on_our_responses_alone() {
        let mut pair = Str0mPair::new();
        pair.hibernate();
        pair.run_until(30);
        let flags = pair.use_candidate_flags();
        eprintln!("client ICE states: {:?}", pair.states);
        eprintln!("Binding requests (seconds, USE-CANDIDATE): {flags:?}");
        eprintln!("client failure: {:?}", pair.client_failed);

        assert!(
            pair.reached(&UP),
            "client never connected: {:?}",
            pair.states
        );
        assert!(
            !pair.reached(&[IceConnectionState::Disconnected]),
            "client lost the pair: {:?}",
            pair.states
        );
        assert!(pair.requests.iter().all(|c| c.answered_by_us));
        assert!(flags.iter().any(|(_, u)| *u), "no nominating request");
        let client_ufrag = &pair.requests[0].request.remote_ufrag;
        assert!(!client_ufrag.is_empty());
        assert!(
            pair.requests
                .iter()
                .all(|c| &c.request.remote_ufrag == client_ufrag)
        );
        if let Some((_, error)) = &pair.client_failed {
            assert!(error.contains("DTLS"), "{error}");
        }
        // str0m 0.25 as the controlling agent: the first check has no USE-CANDIDATE, the
        // nomination follows at once, and every later check on the nominated pair (consent
        // freshness, every 3 s once settled) repeats USE-CANDIDATE, each in a new transaction.
        assert!(!flags[0].1);
        assert!(flags[1..].iter().all(|(_, u)| *u), "{flags:?}");
        let mut tids: Vec<_> = pair
            .requests
            .iter()
            .map(|c| c.request.transaction_id)
            .collect();
        tids.sort();
        tids.dedup();
        assert_eq!(tids.len(), pair.requests.len(), "a check was retransmitted");
        assert!(flags.len() >= 8, "too few checks answered: {flags:?}");
    }

    /// The real hibernation: the pair connects fully (ICE, DTLS) with the server `Rtc`
    /// answering, then the `Rtc` is dropped and we answer the client's consent checks for a
    /// minute; the client must not notice. Without our answers, it must (the control).
    #[test]
    fn str0m_client_keeps_consent_after_hibernation() {
        for answer_stun in [true, false] {
            let mut pair = Str0mPair::new();
            pair.run_until(3);
            assert!(
                pair.client_connected_at.is_some(),
                "no DTLS: {:?}",
                pair.states
            );
            assert!(pair.reached(&UP));
            pair.hibernate();
            pair.answer_stun = answer_stun;
            pair.run_until(63);

            let after: Vec<(f64, bool)> = pair
                .requests
                .iter()
                .filter(|c| c.at >= 3.0)
                .map(|c| (c.at, c.request.use_candidate))
                .collect();
            eprintln!(
                "answer_stun={answer_stun}: client ICE states: {:?}",
                pair.states
            );
            eprintln!("answer_stun={answer_stun}: checks after hibernation: {after:?}");
            let lost = pair.reached(&[IceConnectionState::Disconnected]);
            assert_eq!(pair.client_failed, None);
            assert!(
                after.iter().all(|(_, u)| *u),
                "USE-CANDIDATE on every check: {after:?}"
            );
            if answer_stun {
                assert!(!lost, "client lost the pair: {:?}", pair.states);
                assert!(after.last().unwrap().0 > 55.0);
            } else {
                assert!(lost, "client never noticed: {:?}", pair.states);
            }
        }
    }

    #[test]
    fn str0m_request_for_other_credentials_is_refused() {
        let mut pair = Str0mPair::new();
        pair.hibernate();
        pair.run_until(2);
        let raw = &pair.requests[0].raw;
        assert_eq!(
            parse_binding_request(raw, "someoneelse", &pair.server_pwd),
            Err(StunError::WrongUsername {
                addressed_to: pair.server_ufrag.clone()
            })
        );
        assert_eq!(
            parse_binding_request(raw, &pair.server_ufrag, "not-the-password-at-all"),
            Err(StunError::IntegrityMismatch)
        );
    }

    #[test]
    fn every_single_byte_mutation_of_a_str0m_request_is_rejected() {
        let mut pair = Str0mPair::new();
        pair.hibernate();
        pair.run_until(2);
        let nominating = pair
            .requests
            .iter()
            .find(|c| c.request.use_candidate)
            .expect("a nominating request");
        for raw in [&pair.requests[0].raw, &nominating.raw] {
            for position in 0..raw.len() {
                for xor in 1..=255_u8 {
                    let mut mutated = raw.clone();
                    mutated[position] ^= xor;
                    let result =
                        parse_binding_request(&mutated, &pair.server_ufrag, &pair.server_pwd);
                    assert!(
                        result.is_err(),
                        "byte {position} ^ {xor:#04x} accepted: {result:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn rfc5769_sample_request_is_accepted() {
        let request = hex(RFC5769_REQUEST);
        assert!(is_stun(&request));
        assert_eq!(
            parse_binding_request(&request, "evtj", RFC5769_PASSWORD),
            Ok(BindingRequest {
                transaction_id: RFC5769_TID,
                use_candidate: false,
                remote_ufrag: "h6vY".into(),
            })
        );
        assert_eq!(
            parse_binding_request(&request, "h6vY", RFC5769_PASSWORD),
            Err(StunError::WrongUsername {
                addressed_to: "evtj".into()
            })
        );
        assert_eq!(
            parse_binding_request(&request, "evtj", "VOkJxbRl1RmTxUk/WvJxBu"),
            Err(StunError::IntegrityMismatch)
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn wrong_ufrag_or_password_is_refused_with_the_specific_error() {
        let tid = [7; 12];
        let request = encode_request(&tid, "srv1:cli1", true, &[], "server-password", true);
        assert_eq!(
            parse_binding_request(&request, "srv1", "server-password"),
            Ok(BindingRequest {
                transaction_id: tid,
                use_candidate: true,
                remote_ufrag: "cli1".into(),
            })
        );
        assert_eq!(
            parse_binding_request(&request, "srv2", "server-password"),
            Err(StunError::WrongUsername {
                addressed_to: "srv1".into()
            })
        );
        assert_eq!(
            parse_binding_request(&request, "srv1", "other-password"),
            Err(StunError::IntegrityMismatch)
        );
        // Routing looks at USERNAME only; authentication is the parser's.
        assert_eq!(addressed_to(&request), Some("srv1"));
        assert_eq!(addressed_to(&request[..19]), None);
        assert_eq!(addressed_to(&[0x80; 40]), None);
    }

    #[test]
    fn framing_errors_are_specific() {
        let tid = [9; 12];
        let good = encode_request(&tid, "a:b", false, &[], "pw", true);
        assert_eq!(
            parse_binding_request(&good, "a", "pw").map(|r| r.remote_ufrag),
            Ok("b".into())
        );

        assert_eq!(
            parse_binding_request(&good[..19], "a", "pw"),
            Err(StunError::TooShort { len: 19 })
        );
        let mut dtls = good.clone();
        dtls[0] = 22;
        assert_eq!(
            parse_binding_request(&dtls, "a", "pw"),
            Err(StunError::NotStun)
        );

        let response = binding_success(&tid, CLIENT_ADDR.parse().unwrap(), "pw");
        assert_eq!(
            parse_binding_request(&response, "a", "pw"),
            Err(StunError::NotBindingRequest {
                message_type: 0x0101
            })
        );
        let mut indication = good.clone();
        indication[1] = 0x11;
        assert_eq!(
            parse_binding_request(&indication, "a", "pw"),
            Err(StunError::NotBindingRequest {
                message_type: 0x0011
            })
        );

        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_binding_request(&longer, "a", "pw"),
            Err(StunError::BadLength {
                declared: (good.len() - 20) as u16,
                actual: good.len() - 16
            })
        );

        let no_fingerprint = encode_request(&tid, "a:b", false, &[], "pw", false);
        assert!(parse_binding_request(&no_fingerprint, "a", "pw").is_ok());
        let set_len = |m: &mut Vec<u8>| {
            let len = (m.len() - 20) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
        };
        let mut after_integrity = no_fingerprint.clone();
        after_integrity.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'e', b'v', b'i', b'l']);
        set_len(&mut after_integrity);
        assert_eq!(
            parse_binding_request(&after_integrity, "a", "pw"),
            Err(StunError::AttributeAfterIntegrity { attr_type: 0x8022 })
        );
        let mut after_fingerprint = good.clone();
        after_fingerprint.extend_from_slice(&[0x80, 0x28, 0x00, 0x00]);
        set_len(&mut after_fingerprint);
        assert_eq!(
            parse_binding_request(&after_fingerprint, "a", "pw"),
            Err(StunError::FingerprintNotLast)
        );
        let mut bad_fingerprint = good.clone();
        *bad_fingerprint.last_mut().unwrap() ^= 1;
        assert_eq!(
            parse_binding_request(&bad_fingerprint, "a", "pw"),
            Err(StunError::FingerprintMismatch)
        );

        // Without MESSAGE-INTEGRITY: a header and a USERNAME only.
        let mut bare = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42];
        bare.extend_from_slice(&tid);
        bare.extend_from_slice(&[0x00, 0x06, 0x00, 0x03, b'a', b':', b'b', 0]);
        assert_eq!(
            parse_binding_request(&bare, "a", "pw"),
            Err(StunError::MissingIntegrity)
        );

        let no_colon = encode_request(&tid, "ab", false, &[], "pw", true);
        assert_eq!(
            parse_binding_request(&no_colon, "a", "pw"),
            Err(StunError::MalformedUsername)
        );
        let empty_remote = encode_request(&tid, "a:", false, &[], "pw", true);
        assert_eq!(
            parse_binding_request(&empty_remote, "a", "pw"),
            Err(StunError::MalformedUsername)
        );

        // A truncated attribute: USERNAME claims more bytes than the message has.
        let mut truncated = bare.clone();
        truncated[23] = 0x20;
        assert!(matches!(
            parse_binding_request(&truncated, "a", "pw"),
            Err(StunError::BadAttribute {
                attr_type: 0x0006,
                offset: 20,
                ..
            })
        ));
    }

    #[test]
    fn unknown_and_ice_attributes_are_skipped() {
        let tid = [3; 12];
        let extra = vec![
            (0xC057, vec![0, 1, 0, 10]),       // GOOG-NETWORK-INFO
            (0x8029, vec![1; 8]),              // ICE-CONTROLLED
            (0x8022, b"chrome 1".to_vec()),    // SOFTWARE
            (0x7FFF, vec![5, 6, 7]),           // unknown comprehension-required, padded
            (0x0006, b"ignored:dup".to_vec()), // a second USERNAME: only the first counts
        ];
        let request = encode_request(&tid, "local:remote", true, &extra, "pw", true);
        assert_eq!(
            parse_binding_request(&request, "local", "pw"),
            Ok(BindingRequest {
                transaction_id: tid,
                use_candidate: true,
                remote_ufrag: "remote".into(),
            })
        );
    }

    fn xor_mapped_address_attribute(msg: &[u8]) -> &[u8] {
        let len = usize::from(u16::from_be_bytes([msg[22], msg[23]]));
        assert_eq!(
            &msg[20..22],
            &[0x00, 0x20],
            "XOR-MAPPED-ADDRESS comes first"
        );
        &msg[20..24 + len]
    }

    /// Our response to RFC 5769's sample request from `source`: its XOR-MAPPED-ADDRESS
    /// attribute is the RFC's (`expected`), and it decodes to the transaction and address,
    /// with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT in that order.
    fn assert_rfc5769_response(source: SocketAddr, expected: &str) -> Vec<u8> {
        let response = binding_success(&RFC5769_TID, source, RFC5769_PASSWORD);
        assert_eq!(xor_mapped_address_attribute(&response), hex(expected));
        let (tid, mapped, types) = decode_success(&response, RFC5769_PASSWORD);
        assert_eq!((tid, mapped), (RFC5769_TID, source));
        assert_eq!(types, vec![0x0020, 0x0008, 0x8028]);
        response
    }

    #[test]
    fn binding_success_ipv4_matches_rfc5769() {
        let source: SocketAddr = (Ipv4Addr::new(192, 0, 2, 1), 32853).into();
        // RFC 5769 §2.2, the XOR-MAPPED-ADDRESS attribute of the Sample IPv4 Response.
        let response = assert_rfc5769_response(source, "0020 0008 0001a147 e112a643");
        assert_eq!(response.len(), 20 + 12 + 24 + 8);
    }

    #[test]
    fn binding_success_ipv6_matches_rfc5769() {
        let ip: Ipv6Addr = "2001:db8:1234:5678:11:2233:4455:6677".parse().unwrap();
        // RFC 5769 §2.3, the XOR-MAPPED-ADDRESS attribute of the Sample IPv6 Response.
        assert_rfc5769_response(
            SocketAddr::from((ip, 32853)),
            "0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9",
        );
    }

    #[test]
    fn binding_success_reports_v4_mapped_ipv6_as_ipv4() {
        let v4 = Ipv4Addr::new(203, 0, 113, 9);
        let source = SocketAddr::from((v4.to_ipv6_mapped(), 40000));
        let response = binding_success(&[1; 12], source, "pw");
        let (_, mapped, _) = decode_success(&response, "pw");
        assert_eq!(mapped, SocketAddr::from((v4, 40000)));
    }

    #[test]
    fn binding_success_is_accepted_by_str0m_stun_parser() {
        let sha1_hmac = |key: &[u8], parts: &[&[u8]]| -> [u8; 20] {
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            let mut context = hmac::Context::with_key(&key);
            for part in parts {
                context.update(part);
            }
            context.sign().as_ref().try_into().unwrap()
        };
        for source in [
            SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3), 51000)),
            SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7), 51001)),
        ] {
            let response = binding_success(&[0xAB; 12], source, "server-pwd");
            let parsed = str0m::ice::StunMessage::parse(&response).unwrap();
            assert!(parsed.is_successful_binding_response());
            assert_eq!(parsed.mapped_address(), Some(source));
            assert!(parsed.verify(b"server-pwd", sha1_hmac));
            assert!(!parsed.verify(b"other-pwd", sha1_hmac));
        }
    }

    /// A random ICE ufrag (RFC 8445 ice-chars, 4..=32 here).
    fn ufrag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9+/]{4,32}"
    }

    /// Attributes a browser might add before MESSAGE-INTEGRITY; none named USERNAME,
    /// MESSAGE-INTEGRITY, FINGERPRINT or USE-CANDIDATE.
    fn extra_attributes() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
        let attr_type = any::<u16>().prop_filter("not a handled attribute", |t| {
            ![0x0006, 0x0008, 0x0025, 0x8028].contains(t)
        });
        prop::collection::vec((attr_type, prop::collection::vec(any::<u8>(), 0..24)), 0..4)
    }

    /// A binding request as a browser would encode it, with what it was built from.
    #[derive(Debug, Clone)]
    struct Generated {
        tid: [u8; 12],
        local: String,
        remote: String,
        password: String,
        use_candidate: bool,
        request: Vec<u8>,
    }

    prop_compose! {
        fn generated_request()(
            tid in any::<[u8; 12]>(),
            local in ufrag(),
            remote in ufrag(),
            password in "[A-Za-z0-9+/]{22,32}",
            use_candidate in any::<bool>(),
            with_fingerprint in any::<bool>(),
            extra in extra_attributes(),
        ) -> Generated {
            let username = format!("{local}:{remote}");
            let request =
                encode_request(&tid, &username, use_candidate, &extra, &password, with_fingerprint);
            Generated { tid, local, remote, password, use_candidate, request }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = is_stun(&bytes);
            let _ = parse_binding_request(&bytes, "ufrag", "password");
        }

        #[test]
        fn never_panics_behind_a_valid_header(
            tid in any::<[u8; 12]>(),
            body in prop::collection::vec(any::<u8>(), 0..600),
            exact_length in any::<bool>(),
        ) {
            let mut datagram = vec![0x00, 0x01];
            let len = if exact_length { body.len() } else { body.len() & !3 };
            datagram.extend_from_slice(&(len as u16).to_be_bytes());
            datagram.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            datagram.extend_from_slice(&tid);
            datagram.extend_from_slice(&body);
            let _ = parse_binding_request(&datagram, "ufrag", "password");
        }

        /// Well-formed attribute framing with adversarial types and lengths, so the walk gets
        /// past the first attribute and reaches the username and integrity checks.
        #[test]
        fn never_panics_on_structured_attributes(
            tid in any::<[u8; 12]>(),
            attrs in prop::collection::vec(
                (
                    prop_oneof![
                        Just(0x0006_u16), Just(0x0008), Just(0x0025), Just(0x8028),
                        Just(0x0024), Just(0x802A), any::<u16>(),
                    ],
                    prop::collection::vec(any::<u8>(), 0..40),
                    any::<bool>(),
                ),
                0..6,
            ),
        ) {
            let mut datagram = vec![0x00, 0x01, 0, 0];
            datagram.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            datagram.extend_from_slice(&tid);
            for (t, v, pad) in &attrs {
                datagram.extend_from_slice(&t.to_be_bytes());
                datagram.extend_from_slice(&(v.len() as u16).to_be_bytes());
                datagram.extend_from_slice(v);
                if *pad {
                    datagram.resize(datagram.len() + padding(v.len()), 0);
                }
            }
            let len = (datagram.len() - 20) as u16;
            datagram[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = parse_binding_request(&datagram, "ufrag", "password");
        }

        #[test]
        fn generated_requests_are_accepted(g in generated_request()) {
            prop_assert!(is_stun(&g.request));
            prop_assert_eq!(
                parse_binding_request(&g.request, &g.local, &g.password),
                Ok(BindingRequest {
                    transaction_id: g.tid,
                    use_candidate: g.use_candidate,
                    remote_ufrag: g.remote,
                })
            );
        }

        #[test]
        fn any_single_byte_mutation_is_rejected(
            g in generated_request(),
            position in any::<prop::sample::Index>(),
            xor in 1..=255_u8,
        ) {
            let mut request = g.request;
            let at = position.index(request.len());
            request[at] ^= xor;
            let result = parse_binding_request(&request, &g.local, &g.password);
            prop_assert!(result.is_err(), "byte {} ^ {:#04x} accepted: {:?}", at, xor, result);
        }

        #[test]
        fn binding_success_round_trips(
            tid in any::<[u8; 12]>(),
            ip in prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ],
            port in any::<u16>(),
            password in "[A-Za-z0-9+/]{22,32}",
        ) {
            let source = SocketAddr::new(ip, port);
            let response = binding_success(&tid, source, &password);
            let (got_tid, mapped, types) = decode_success(&response, &password);
            prop_assert_eq!(got_tid, tid);
            let expected = SocketAddr::new(ip.to_canonical(), port);
            prop_assert_eq!(mapped, expected);
            prop_assert_eq!(types, vec![0x0020, 0x0008, 0x8028]);
        }
    }
}

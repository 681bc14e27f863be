//! Our own SRTP send path for the mixed audio.
//!
//! Why: every listener gets the same mixed packet every 20 ms. Sent through str0m, each copy
//! pays the whole `Rtc` machinery (queueing, pacing, the stream and timeout bookkeeping of a
//! `poll_output` round): profiled at ~7 µs of a replica listener's ~15 µs per packet. The
//! packet itself needs only a 12-byte RTP header and one AEAD seal with the connection's key.
//!
//! The keys are the connection's own: str0m creates its DTLS instance through a pluggable
//! [`DtlsProvider`]; ours wraps the default one and copies the DTLS-SRTP keying material the
//! handshake exports (RFC 5764 §4.2) into a [`KeyCapture`] the engine keeps with the peer.
//! str0m keeps everything else (ICE, DTLS, RTCP, video, the audio the client sends): only the
//! mixed-audio stream's packets are sealed here, on the SSRC str0m announced for it.
//!
//! Profiles: the two AEAD ones (RFC 7714), which Chromium and str0m negotiate. For
//! `AES_CM_128_HMAC_SHA1_80` there is no [`RtpSealer`] and the engine keeps sending that
//! connection's audio through str0m.
//!
//! The same provider lets a connection outlive its `Rtc` (hibernation): the capture keeps the
//! peer's certificate too, and [`with_resumed_dtls`] builds an `Rtc` whose DTLS instance is
//! that connection's, established, without a handshake. The `Rtc` of a resumed connection
//! would start its SRTCP index at 0 again: [`SrtcpReindexer`] moves its RTCP past the indices
//! the connection already used.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion, SrtpProfile,
};
use str0m::crypto::{CryptoError, from_feature_flags};

/// Length of the RTP header we write (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;
/// RFC 7714: 16-byte authentication tag.
const TAG_LEN: usize = 16;
/// RFC 7714: 96-bit master salt (and session salt).
const SALT_LEN: usize = 12;
/// RFC 3711 §4.3.1 labels.
const LABEL_RTP_KEY: u8 = 0x00;
const LABEL_RTP_SALT: u8 = 0x02;
const LABEL_RTCP_KEY: u8 = 0x03;
const LABEL_RTCP_SALT: u8 = 0x05;
/// The RTCP header SRTCP leaves in the clear (and authenticates): the first 8 octets.
const RTCP_HEADER_LEN: usize = 8;
/// `E || SRTCP index`.
const SRTCP_INDEX_LEN: usize = 4;
const SRTCP_INDEX_MASK: u32 = 0x7fff_ffff;

/// What the DTLS handshake of one connection exported: the SRTP keys, and what a later `Rtc`
/// needs to continue the same connection without a new handshake ([`with_resumed_dtls`]).
#[derive(Clone)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    /// `client key | server key | client salt | server salt`.
    pub material: Vec<u8>,
    /// We were the DTLS client: our outbound keys are the client's.
    pub active: bool,
    /// The peer's certificate (DER) the handshake reported, which str0m checks against the
    /// offer's `a=fingerprint`. Empty if the handshake reported none.
    pub peer_cert: Vec<u8>,
    /// The DTLS version the handshake negotiated.
    pub version: ProtocolVersion,
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .field("peer_cert_len", &self.peer_cert.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Where one connection's keys land once its handshake completes.
pub type KeyCapture = Arc<OnceLock<SrtpKeys>>;

/// What the DTLS instance the next `Rtc` built on this thread is to be.
enum NextDtls {
    /// A real handshake that reports its keys into the capture.
    Capture(KeyCapture),
    /// No handshake: the connection of the keys in the capture, already established.
    Resume(KeyCapture),
}

thread_local! {
    static NEXT_DTLS: RefCell<Option<NextDtls>> = const { RefCell::new(None) };
}

/// Runs `build` (which builds one `Rtc` with [`capturing_provider`]) so that the DTLS
/// instance it creates reports its keys into the returned capture.
pub fn with_key_capture<T>(build: impl FnOnce() -> T) -> (T, KeyCapture) {
    let capture = KeyCapture::default();
    let built = building(NextDtls::Capture(capture.clone()), build);
    (built, capture)
}

/// Runs `build` (which builds one `Rtc` with [`capturing_provider`]) so that the `Rtc`
/// continues the connection whose handshake exported `keys`, without a handshake of its own.
///
/// Its DTLS instance reports, once str0m has set its role (on the first SDP offer), what the
/// original handshake reported, in dimpl's order: the peer's certificate, `Connected`, the
/// keying material. From then on it only asks for a timeout far away and drops any DTLS
/// record it receives (the peer's retransmitted last flight, a `close_notify`). It cannot
/// carry application data (no data channels) and closes without sending anything. A role
/// other than the original's (`a=setup` of a different offer) fails that offer.
///
/// The returned capture holds `keys` already.
///
/// `build` must use [`capturing_provider`] (whatever else the engine's configuration says):
/// with another provider the `Rtc` would start a handshake of its own.
pub fn with_resumed_dtls<T>(keys: &SrtpKeys, build: impl FnOnce() -> T) -> (T, KeyCapture) {
    let capture = KeyCapture::new(OnceLock::from(keys.clone()));
    let built = building(NextDtls::Resume(capture.clone()), build);
    debug_assert_eq!(
        Arc::strong_count(&capture),
        2,
        "the Rtc was built without capturing_provider()"
    );
    (built, capture)
}

fn building<T>(next: NextDtls, build: impl FnOnce() -> T) -> T {
    /// A builder that did not create a DTLS instance (or panicked) must not hand its
    /// instance to the next.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            NEXT_DTLS.with(|n| n.borrow_mut().take());
        }
    }
    NEXT_DTLS.with(|n| *n.borrow_mut() = Some(next));
    let _clear = Clear;
    build()
}

/// The default crypto provider with the key-capturing DTLS provider in it.
pub fn capturing_provider() -> Arc<CryptoProvider> {
    providers().0.clone()
}

/// Built once: the capturing provider, and the default DTLS provider it wraps.
fn providers() -> &'static (Arc<CryptoProvider>, &'static dyn DtlsProvider) {
    static PROVIDERS: OnceLock<(Arc<CryptoProvider>, &'static dyn DtlsProvider)> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let mut provider = from_feature_flags();
        let default = provider.dtls_provider;
        provider.dtls_provider = &CAPTURING_DTLS;
        (Arc::new(provider), default)
    })
}

static CAPTURING_DTLS: CapturingDtlsProvider = CapturingDtlsProvider;

#[derive(Debug)]
struct CapturingDtlsProvider;

fn default_dtls() -> &'static dyn DtlsProvider {
    providers().1
}

impl DtlsProvider for CapturingDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        default_dtls().generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let next = NEXT_DTLS.with(|next| next.borrow_mut().take());
        if let Some(NextDtls::Resume(keys)) = next {
            return Ok(Box::new(ResumedDtls::new(keys, now)));
        }
        let inner = default_dtls().new_dtls(cert, now, dtls_version, mtu)?;
        Ok(match next {
            Some(NextDtls::Capture(capture)) => Box::new(CapturingDtls {
                inner,
                capture,
                peer_cert: None,
            }),
            _ => inner,
        })
    }
}

/// A DTLS instance that hands its exported keying material (and the peer's certificate) to a
/// [`KeyCapture`] on its way to str0m.
#[derive(Debug)]
struct CapturingDtls {
    inner: Box<dyn DtlsInstance>,
    capture: KeyCapture,
    /// dimpl reports the certificate first, then `Connected`, then the keying material.
    peer_cert: Option<Vec<u8>>,
}

impl DtlsInstance for CapturingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        match &output {
            DtlsOutput::PeerCert(der) => self.peer_cert = Some(der.to_vec()),
            DtlsOutput::KeyingMaterial(material, profile) => {
                let _ = self.capture.set(SrtpKeys {
                    profile: *profile,
                    material: material.as_ref().to_vec(),
                    active: self.inner.is_active(),
                    peer_cert: self.peer_cert.take().unwrap_or_default(),
                    version: self
                        .inner
                        .protocol_version()
                        .unwrap_or(ProtocolVersion::DTLS1_2),
                });
            }
            _ => {}
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

/// Far enough to never come: the resumed instance has no timers.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a [`ResumedDtls`] reports next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resumed {
    PeerCert,
    Connected,
    KeyingMaterial,
    Done,
}

/// A DTLS instance of an established connection: it reports what that connection's
/// handshake reported and does nothing else (see [`with_resumed_dtls`]).
#[derive(Debug)]
struct ResumedDtls {
    /// Filled: holds the keys (shared with the engine, not copied).
    keys: KeyCapture,
    /// The role str0m set, `None` before the first offer.
    active: Option<bool>,
    next: Resumed,
    never: Instant,
    closed: bool,
}

impl ResumedDtls {
    fn new(keys: KeyCapture, now: Instant) -> Self {
        Self {
            keys,
            active: None,
            next: Resumed::PeerCert,
            never: far_from(now),
            closed: false,
        }
    }

    fn keys(&self) -> Option<&SrtpKeys> {
        self.keys.get()
    }

    /// str0m set the role the handshake had.
    fn in_role(&self) -> bool {
        self.active.is_some() && self.active == self.keys().map(|k| k.active)
    }
}

fn far_from(now: Instant) -> Instant {
    now.checked_add(NEVER)
        .unwrap_or_else(|| now + Duration::from_secs(24 * 3600))
}

impl DtlsInstance for ResumedDtls {
    fn set_active(&mut self, active: bool) {
        self.active = Some(active);
    }

    fn handle_packet(&mut self, _packet: &[u8]) -> Result<(), DtlsImplError> {
        // A retransmitted flight of the peer, an alert: the records of a handshake that is
        // over, under epoch keys we do not have. Dropped.
        Ok(())
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if !self.in_role() || self.closed {
            return DtlsOutput::Timeout(self.never);
        }
        let Some(keys) = self.keys.get() else {
            return DtlsOutput::Timeout(self.never);
        };
        match self.next {
            Resumed::PeerCert => {
                let len = keys.peer_cert.len();
                if buf.len() < len {
                    return DtlsOutput::BufferTooSmall { needed: len };
                }
                self.next = Resumed::Connected;
                buf[..len].copy_from_slice(&keys.peer_cert);
                DtlsOutput::PeerCert(&buf[..len])
            }
            Resumed::Connected => {
                self.next = Resumed::KeyingMaterial;
                DtlsOutput::Connected
            }
            Resumed::KeyingMaterial => {
                self.next = Resumed::Done;
                DtlsOutput::KeyingMaterial(KeyingMaterial::new(&keys.material), keys.profile)
            }
            Resumed::Done => DtlsOutput::Timeout(self.never),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.never = far_from(now);
        if self.active.is_some() && !self.in_role() {
            // Keys of one role used in the other would be swapped: not this connection.
            return Err(DtlsImplError::ConnectionClosed);
        }
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        // No record keys: nothing to send application data with.
        if data.is_empty() {
            Ok(0)
        } else {
            Err(DtlsImplError::ConnectionClosed)
        }
    }

    fn is_active(&self) -> bool {
        self.active
            .or_else(|| self.keys().map(|k| k.active))
            .unwrap_or(false)
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.keys().map(|k| k.version)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        // No record keys to send a close_notify with: the peer notices by ICE consent.
        self.closed = true;
        Ok(())
    }
}

/// Seals outgoing RTP packets of one SSRC with a connection's SRTP keys (AEAD AES-GCM,
/// RFC 7714).
#[derive(Debug)]
pub struct RtpSealer {
    session: AeadSession,
    ssrc: u32,
}

/// One RTP packet to seal.
#[derive(Debug, Clone, Copy)]
pub struct RtpOut<'a> {
    pub payload_type: u8,
    pub marker: bool,
    /// The extended sequence number (rollover counter above the 16 wire bits).
    pub seq: u64,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

impl RtpSealer {
    /// The sealer for our outbound RTP on `ssrc`, or `None` for a profile we do not seal
    /// ourselves (or material of the wrong length).
    pub fn new(keys: &SrtpKeys, ssrc: u32) -> Option<Self> {
        let session = AeadSession::outbound(keys, LABEL_RTP_KEY, LABEL_RTP_SALT)?;
        Some(Self { session, ssrc })
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The SRTP packet: header, encrypted payload, tag.
    pub fn seal(&self, packet: RtpOut<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + packet.payload.len() + TAG_LEN);
        out.push(0x80);
        out.push((u8::from(packet.marker) << 7) | (packet.payload_type & 0x7f));
        out.extend_from_slice(&(packet.seq as u16).to_be_bytes());
        out.extend_from_slice(&packet.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(packet.payload);
        let (header, body) = out.split_at_mut(RTP_HEADER_LEN);
        // RFC 7714 §8.1: the packet index is `ROC || SEQ`, the extended sequence number.
        let nonce = self.session.nonce(self.ssrc, packet.seq);
        let tag = self
            .session
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), body)
            .expect("AES-GCM seals any packet shorter than 2^36 bytes");
        out.extend_from_slice(tag.as_ref());
        out
    }
}

/// The AEAD session key and salt of one direction and kind (RTP or RTCP) of a connection.
struct AeadSession {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl fmt::Debug for AeadSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("AeadSession").finish_non_exhaustive()
    }
}

impl AeadSession {
    /// Our outbound direction's session for the labels (RTP or RTCP), or `None` for a
    /// profile we do not seal ourselves (or material of the wrong length).
    fn outbound(keys: &SrtpKeys, label_key: u8, label_salt: u8) -> Option<Self> {
        let (key_len, algorithm, prf) = match keys.profile {
            SrtpProfile::AEAD_AES_128_GCM => (16, &AES_128_GCM, &AES_128),
            SrtpProfile::AEAD_AES_256_GCM => (32, &AES_256_GCM, &AES_256),
            _ => return None,
        };
        let m = &keys.material;
        if m.len() != 2 * key_len + 2 * SALT_LEN {
            return None;
        }
        // Our outbound half: the client's when we are the DTLS client, else the server's.
        let (key_at, salt_at) = if keys.active {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + SALT_LEN)
        };
        let master_key = &m[key_at..key_at + key_len];
        let master_salt = &m[salt_at..salt_at + SALT_LEN];
        let mut session_key = [0u8; 32];
        let mut salt = [0u8; SALT_LEN];
        derive(
            prf,
            master_key,
            master_salt,
            label_key,
            &mut session_key[..key_len],
        )?;
        derive(prf, master_key, master_salt, label_salt, &mut salt)?;
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &session_key[..key_len]).ok()?);
        Some(Self { key, salt })
    }

    /// RFC 7714 §8.1 and §9.1: `00 00 || SSRC || 48-bit packet index` (for RTP `ROC || SEQ`,
    /// for RTCP `00 00 || 0 || SRTCP index`), XORed with the session salt.
    fn nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }
}

/// The SRTCP index of an SRTCP packet (RFC 3711 §3.4; RFC 7714 §9): the 31 bits after the E
/// flag, which follow the tag (AEAD) or precede it (`AES_CM_128_HMAC_SHA1_80`'s 10 bytes).
pub fn srtcp_index(profile: SrtpProfile, packet: &[u8]) -> Option<u32> {
    let tag_after = match profile {
        SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM => 0,
        SrtpProfile::AES128_CM_SHA1_80 => 10,
        _ => return None,
    };
    let end = packet.len().checked_sub(tag_after)?;
    let start = end.checked_sub(SRTCP_INDEX_LEN)?;
    if start < RTCP_HEADER_LEN + tag_len_before(profile) {
        return None;
    }
    let e_and_index = u32::from_be_bytes(packet[start..end].try_into().ok()?);
    Some(e_and_index & SRTCP_INDEX_MASK)
}

fn tag_len_before(profile: SrtpProfile) -> usize {
    match profile {
        SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM => TAG_LEN,
        _ => 0,
    }
}

/// Moves the outbound SRTCP of a resumed connection onto indices its first `Rtc` did not use.
///
/// Every `Rtc` starts its SRTCP index at 0 and str0m offers no way to set it, so the `Rtc` of
/// a resumed connection would seal its RTCP under the (SSRC, index) nonces the connection's
/// earlier `Rtc`s already used, with the same key: a reused AES-GCM nonce. And the browser's
/// SRTCP replay window (libsrtp) drops them as replays. This opens each of its outbound SRTCP
/// packets and seals it again under `index + offset` (mod 2^31), `offset` being the next index
/// the connection has not sent yet.
#[derive(Debug)]
pub struct SrtcpReindexer {
    session: AeadSession,
    offset: u32,
}

impl SrtcpReindexer {
    /// The reindexer of our outbound SRTCP, or `None` for a profile we do not seal ourselves.
    pub fn new(keys: &SrtpKeys, offset: u32) -> Option<Self> {
        Some(Self {
            session: AeadSession::outbound(keys, LABEL_RTCP_KEY, LABEL_RTCP_SALT)?,
            offset: offset & SRTCP_INDEX_MASK,
        })
    }

    /// The packet under its new index, or `None` when it is not an encrypted SRTCP packet
    /// of ours (it does not open).
    pub fn reindex(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let (index, mut plain) = self.open(packet)?;
        let body = plain.split_off(RTCP_HEADER_LEN);
        let header: [u8; RTCP_HEADER_LEN] = plain.try_into().ok()?;
        Some(self.seal(&header, body, index.wrapping_add(self.offset)))
    }

    /// The index and the RTCP packet of an encrypted SRTCP packet sealed with our key.
    fn open(&self, packet: &[u8]) -> Option<(u32, Vec<u8>)> {
        let len = packet.len();
        if len < RTCP_HEADER_LEN + TAG_LEN + SRTCP_INDEX_LEN {
            return None;
        }
        let e_and_index = u32::from_be_bytes(packet[len - SRTCP_INDEX_LEN..].try_into().ok()?);
        if e_and_index & !SRTCP_INDEX_MASK == 0 {
            // Not encrypted (str0m always encrypts).
            return None;
        }
        let index = e_and_index & SRTCP_INDEX_MASK;
        let header: [u8; RTCP_HEADER_LEN] = packet[..RTCP_HEADER_LEN].try_into().ok()?;
        let mut out = packet[..len - SRTCP_INDEX_LEN].to_vec();
        let plain_len = self
            .session
            .key
            .open_in_place(
                self.nonce(&header, index),
                Aad::from(aad(&header, e_and_index)),
                &mut out[RTCP_HEADER_LEN..],
            )
            .ok()?
            .len();
        out.truncate(RTCP_HEADER_LEN + plain_len);
        Some((index, out))
    }

    /// The SRTCP packet of `header || body` (encrypted) under `index` (mod 2^31).
    fn seal(&self, header: &[u8; RTCP_HEADER_LEN], body: Vec<u8>, index: u32) -> Vec<u8> {
        let index = index & SRTCP_INDEX_MASK;
        let e_and_index = index | !SRTCP_INDEX_MASK;
        let mut out = Vec::with_capacity(RTCP_HEADER_LEN + body.len() + TAG_LEN + SRTCP_INDEX_LEN);
        out.extend_from_slice(header);
        out.extend_from_slice(&body);
        let tag = self
            .session
            .key
            .seal_in_place_separate_tag(
                self.nonce(header, index),
                Aad::from(aad(header, e_and_index)),
                &mut out[RTCP_HEADER_LEN..],
            )
            .expect("AES-GCM seals any packet shorter than 2^36 bytes");
        out.extend_from_slice(tag.as_ref());
        out.extend_from_slice(&e_and_index.to_be_bytes());
        out
    }

    /// The sender's SSRC is the RTCP header's second word (RFC 7714 §9.1).
    fn nonce(&self, header: &[u8; RTCP_HEADER_LEN], index: u32) -> Nonce {
        let [.., s0, s1, s2, s3] = *header;
        self.session
            .nonce(u32::from_be_bytes([s0, s1, s2, s3]), u64::from(index))
    }
}

/// RFC 7714 §9.2: the first 8 octets, then `E || SRTCP index`.
fn aad(header: &[u8; RTCP_HEADER_LEN], e_and_index: u32) -> [u8; RTCP_HEADER_LEN + 4] {
    let mut aad = [0u8; RTCP_HEADER_LEN + 4];
    aad[..RTCP_HEADER_LEN].copy_from_slice(header);
    aad[RTCP_HEADER_LEN..].copy_from_slice(&e_and_index.to_be_bytes());
    aad
}

/// The SRTP key derivation (RFC 3711 §4.3, AES-CM PRF; RFC 7714 §11 with the 96-bit salt):
/// the AES counter-mode keystream of the master key from the block
/// `(master salt, with the label XORed into its 8th byte) || 00 00`, key derivation rate 0.
fn derive(
    prf: &'static aws_lc_rs::cipher::Algorithm,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Option<()> {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let key = EncryptingKey::ctr(UnboundCipherKey::new(prf, master_key).ok()?).ok()?;
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .ok()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(profile: SrtpProfile, key_len: usize, active: bool) -> SrtpKeys {
        SrtpKeys {
            profile,
            material: (0..(2 * key_len + 2 * SALT_LEN) as u8).collect(),
            active,
            peer_cert: Vec::new(),
            version: ProtocolVersion::DTLS1_2,
        }
    }

    /// RFC 3711 Appendix B.3: the key derivation test vectors (AES-128; the 14-byte master
    /// salt there, the same PRF).
    #[test]
    fn key_derivation_matches_rfc_3711() {
        let master_key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let master_salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut cipher_key = [0u8; 16];
        derive(&AES_128, &master_key, &master_salt, 0x00, &mut cipher_key).unwrap();
        assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&AES_128, &master_key, &master_salt, 0x02, &mut salt).unwrap();
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        derive(&AES_128, &master_key, &master_salt, 0x01, &mut auth).unwrap();
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_sealed_packet_is_header_ciphertext_and_tag() {
        let sealer = RtpSealer::new(&keys(SrtpProfile::AEAD_AES_256_GCM, 32, false), 0x1234_5678)
            .expect("AEAD profile");
        let payload = [7u8; 40];
        let packet = sealer.seal(RtpOut {
            payload_type: 111,
            marker: true,
            seq: 0x1_0002,
            timestamp: 960,
            payload: &payload,
        });
        assert_eq!(packet.len(), RTP_HEADER_LEN + payload.len() + TAG_LEN);
        assert_eq!(
            &packet[..RTP_HEADER_LEN],
            &[
                0x80,
                0x80 | 111,
                0x00,
                0x02,
                0,
                0,
                3,
                192,
                0x12,
                0x34,
                0x56,
                0x78
            ]
        );
        assert_ne!(&packet[RTP_HEADER_LEN..RTP_HEADER_LEN + 40], &payload[..]);
        // Another rollover count is another nonce: the same payload seals differently.
        let again = sealer.seal(RtpOut {
            payload_type: 111,
            marker: true,
            seq: 0x2_0002,
            timestamp: 960,
            payload: &payload,
        });
        assert_ne!(packet[RTP_HEADER_LEN..], again[RTP_HEADER_LEN..]);
    }

    #[test]
    fn the_roles_pick_different_halves_and_other_profiles_are_not_sealed_here() {
        let server = RtpSealer::new(&keys(SrtpProfile::AEAD_AES_128_GCM, 16, false), 1).unwrap();
        let client = RtpSealer::new(&keys(SrtpProfile::AEAD_AES_128_GCM, 16, true), 1).unwrap();
        assert_ne!(server.session.salt, client.session.salt);
        assert!(RtpSealer::new(&keys(SrtpProfile::AES128_CM_SHA1_80, 16, false), 1).is_none());
        let mut short = keys(SrtpProfile::AEAD_AES_256_GCM, 32, false);
        short.material.pop();
        assert!(RtpSealer::new(&short, 1).is_none());
    }
}

/// The hand-over of a live connection from one `Rtc` to a new one ([`with_resumed_dtls`]),
/// against a str0m client, all in memory.
#[cfg(test)]
mod resume_tests {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::crypto::dtls::{DtlsCert, ProtocolVersion};
    use str0m::format::Codec;
    use str0m::media::{Direction, MediaKind, Mid, Pt};
    use str0m::net::{Protocol, Receive};
    use str0m::rtp::RtpWrite;
    use str0m::rtp::rtcp::SenderInfo;
    use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};

    use super::{
        SrtcpReindexer, SrtpKeys, SrtpProfile, capturing_provider, srtcp_index, with_key_capture,
        with_resumed_dtls,
    };

    const CLIENT: &str = "10.0.0.1:50000";
    const SERVER: &str = "10.0.0.2:3478";
    /// The per-connection seed (the engine's: seed before the build, seed + k before the
    /// k-th offer).
    const SEED: u64 = 0x5eed;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[derive(Clone)]
    struct Datagram {
        source: SocketAddr,
        destination: SocketAddr,
        bytes: Vec<u8>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Stun,
        Dtls,
        Rtp,
        Rtcp,
    }

    /// RFC 7983 demultiplexing (and RFC 5761 for RTP/RTCP).
    fn kind(bytes: &[u8]) -> Kind {
        match bytes[0] {
            0..=3 => Kind::Stun,
            20..=63 => Kind::Dtls,
            _ if (192..=223).contains(&bytes[1]) => Kind::Rtcp,
            _ => Kind::Rtp,
        }
    }

    /// A STUN binding request with USE-CANDIDATE (0x0025).
    fn is_use_candidate(bytes: &[u8]) -> bool {
        if kind(bytes) != Kind::Stun || bytes.len() < 20 || bytes[..2] != [0x00, 0x01] {
            return false;
        }
        let mut at = 20;
        while at + 4 <= bytes.len() {
            let typ = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
            if typ == 0x0025 {
                return true;
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        false
    }

    /// One side: its `Rtc` and what it got.
    struct Side {
        rtc: Rtc,
        addr: SocketAddr,
        events: Vec<Event>,
    }

    impl Side {
        /// Feeds `input` (a datagram, or only the time) and polls until the next timeout.
        fn drive(&mut self, now: Instant, input: Option<&Datagram>) -> Vec<Datagram> {
            let input = match input {
                Some(d) => Input::Receive(
                    now,
                    Receive::new(Protocol::Udp, d.source, d.destination, &d.bytes).unwrap(),
                ),
                None => Input::Timeout(now),
            };
            self.rtc.handle_input(input).unwrap();
            let mut out = Vec::new();
            loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => out.push(Datagram {
                        source: t.source,
                        destination: t.destination,
                        bytes: t.contents.to_vec(),
                    }),
                    Output::Event(e) => self.events.push(e),
                }
            }
            out
        }

        fn rtp_payloads(&self) -> Vec<(u64, Vec<u8>)> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Event::RtpPacket(p) => Some((*p.seq_no, p.payload.to_vec())),
                    _ => None,
                })
                .collect()
        }

        /// The sender report behind the latest RTP packet this side received.
        fn last_sender_info(&self) -> Option<SenderInfo> {
            self.events.iter().rev().find_map(|e| match e {
                Event::RtpPacket(p) => p.last_sender_info,
                _ => None,
            })
        }

        fn connected(&self) -> bool {
            self.events.iter().any(|e| matches!(e, Event::Connected))
        }

        fn opus(&self) -> Pt {
            self.rtc
                .codec_config()
                .find(|p| p.spec().codec == Codec::Opus)
                .unwrap()
                .pt()
        }

        /// Writes one opus packet on `mid` (rtp mode: the extended sequence number).
        fn write_audio(&mut self, now: Instant, mid: Mid, seq: u64, payload: &[u8]) {
            let pt = self.opus();
            let mut api = self.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).expect("audio tx stream");
            tx.write_rtp(RtpWrite::new(
                pt,
                seq.into(),
                (seq as u32) * 960,
                now,
                payload,
            ));
        }
    }

    /// What the network between the client and the server holds.
    #[derive(Default)]
    struct Wire {
        to_server: VecDeque<Datagram>,
        to_client: VecDeque<Datagram>,
        /// The binding requests with USE-CANDIDATE the server received.
        use_candidate: Vec<Datagram>,
        /// Every datagram the server received, by kind.
        received: Vec<Kind>,
        /// Every datagram the client received, by kind.
        sent: Vec<Kind>,
        /// Binding requests the server received.
        binding_requests: usize,
        /// Moves the server's SRTCP onto fresh indices (a resumed server).
        reindex: Option<SrtcpReindexer>,
        /// The (SSRC, SRTCP index) nonces of the server's RTCP on the wire.
        rtcp_nonces: Vec<(u32, u32)>,
        /// The DTLS records the client sent.
        client_dtls: Vec<Datagram>,
    }

    impl Wire {
        /// One tick: delivers what is in flight, then the timeouts of both sides.
        fn tick(&mut self, now: Instant, client: &mut Side, server: &mut Side) {
            while let Some(d) = self.to_server.pop_front() {
                if is_use_candidate(&d.bytes) {
                    self.use_candidate.push(d.clone());
                }
                self.received.push(kind(&d.bytes));
                if kind(&d.bytes) == Kind::Dtls {
                    self.client_dtls.push(d.clone());
                }
                if d.bytes[..2] == [0x00, 0x01] {
                    self.binding_requests += 1;
                }
                let out = server.drive(now, Some(&d));
                self.put_from_server(out);
            }
            while let Some(d) = self.to_client.pop_front() {
                self.sent.push(kind(&d.bytes));
                self.to_server.extend(client.drive(now, Some(&d)));
            }
            self.to_server.extend(client.drive(now, None));
            let out = server.drive(now, None);
            self.put_from_server(out);
        }

        /// Puts what the server sent on the wire (its SRTCP reindexed if it is resumed).
        fn put_from_server(&mut self, out: Vec<Datagram>) {
            for mut d in out {
                if kind(&d.bytes) == Kind::Rtcp {
                    if let Some(reindex) = &self.reindex {
                        d.bytes = reindex.reindex(&d.bytes).expect("our SRTCP");
                    }
                    self.rtcp_nonces.push(nonce(&d.bytes));
                }
                self.to_client.push_back(d);
            }
        }
    }

    /// The (SSRC, SRTCP index) an AEAD SRTCP packet was sealed under.
    fn nonce(bytes: &[u8]) -> (u32, u32) {
        let ssrc = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
        let index = srtcp_index(SrtpProfile::AEAD_AES_128_GCM, bytes).unwrap();
        (ssrc, index)
    }

    fn cert() -> DtlsCert {
        capturing_provider()
            .dtls_provider
            .generate_certificate()
            .unwrap()
    }

    fn creds() -> IceCreds {
        IceCreds {
            ufrag: "srvufrag".into(),
            pass: "serverpassword0123456789".into(),
        }
    }

    /// A server `Rtc` as the engine builds one (`new_rtc`), with fixed ICE credentials:
    /// handshaking, or resuming the connection of `resume`.
    fn server(
        now: Instant,
        cert: &DtlsCert,
        resume: Option<&SrtpKeys>,
    ) -> (Side, super::KeyCapture) {
        let build = || {
            fastrand::seed(SEED);
            Rtc::builder()
                .set_crypto_provider(capturing_provider())
                .set_ice_lite(true)
                .set_dtls_cert(cert.clone())
                .set_local_ice_credentials(creds())
                .clear_codecs()
                .enable_opus(true, false)
                .enable_vp8(true)
                .set_rtp_mode(true)
                .build(now)
        };
        let (mut rtc, keys) = match resume {
            Some(keys) => with_resumed_dtls(keys, build),
            None => with_key_capture(build),
        };
        rtc.add_local_candidate(Candidate::host(addr(SERVER), "udp").unwrap());
        let side = Side {
            rtc,
            addr: addr(SERVER),
            events: Vec::new(),
        };
        (side, keys)
    }

    /// The engine's `on_subscribe`: the k-th offer under seed + k.
    fn accept(server: &mut Side, offer: &str, k: u64) -> String {
        fastrand::seed(SEED + k);
        let offer = SdpOffer::from_sdp_string(offer).unwrap();
        server
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .unwrap()
            .to_sdp_string()
    }

    /// A str0m client (full ICE, controlling) offering one sendrecv audio m-line.
    fn client(now: Instant) -> (Side, Mid, String, str0m::change::SdpPendingOffer) {
        fastrand::seed(7);
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .set_rtp_mode(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr(CLIENT), "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let side = Side {
            rtc,
            addr: addr(CLIENT),
            events: Vec::new(),
        };
        (side, mid, offer.to_sdp_string(), pending)
    }

    #[test]
    fn seeded_replays_of_an_offer_answer_byte_for_byte_the_same() {
        let now = Instant::now();
        let cert = cert();
        let (_client, _, offer, _) = client(now);
        let (mut a, _) = server(now, &cert, None);
        let (mut b, _) = server(now + Duration::from_secs(90), &cert, None);
        let answer_a = accept(&mut a, &offer, 0);
        let answer_b = accept(&mut b, &offer, 0);
        assert_eq!(answer_a, answer_b);
        // And without the seed they differ (so the seeding is what makes them equal).
        let (mut c, _) = server(now, &cert, None);
        let unseeded = c
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap()
            .to_sdp_string();
        assert_ne!(answer_a, unseeded);
    }

    /// Keys of the other role would be the other halves: the offer that sets that role fails.
    #[test]
    fn a_resumed_rtc_in_the_other_role_fails_the_offer() {
        let now = Instant::now();
        let cert = cert();
        let (_client, _, offer, _) = client(now);
        let keys = SrtpKeys {
            profile: SrtpProfile::AEAD_AES_128_GCM,
            material: vec![1; 56],
            active: true,
            peer_cert: vec![2; 300],
            version: ProtocolVersion::DTLS1_2,
        };
        let (mut b, capture) = server(now, &cert, Some(&keys));
        assert!(capture.get().is_some());
        fastrand::seed(SEED);
        let offer = SdpOffer::from_sdp_string(&offer).unwrap();
        let err = b.rtc.sdp_api().accept_offer(offer).unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        b.drive(now, None);
        assert!(!b.connected());
    }

    #[test]
    fn reindexing_moves_the_srtcp_index_and_back() {
        let keys = SrtpKeys {
            profile: SrtpProfile::AEAD_AES_128_GCM,
            material: (0..56).collect(),
            active: false,
            peer_cert: Vec::new(),
            version: ProtocolVersion::DTLS1_2,
        };
        let forward = SrtcpReindexer::new(&keys, 1000).unwrap();
        let back = SrtcpReindexer::new(&keys, (1 << 31) - 1000).unwrap();
        let header = [0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78];
        let body = vec![9u8; 20];
        let packet = forward.seal(&header, body.clone(), 7);
        assert_eq!(srtcp_index(keys.profile, &packet), Some(7));

        let moved = forward.reindex(&packet).unwrap();
        assert_eq!(moved.len(), packet.len());
        assert_eq!(srtcp_index(keys.profile, &moved), Some(1007));
        assert_eq!(moved[..8], header);
        let (index, plain) = forward.open(&moved).unwrap();
        assert_eq!((index, &plain[8..]), (1007, &body[..]));
        // Modulo 2^31: moving back gives the very packet (same nonce, same bytes).
        assert_eq!(back.reindex(&moved).unwrap(), packet);

        // Another key's packet, a damaged one: not ours.
        let other = SrtcpReindexer::new(
            &SrtpKeys {
                active: true,
                ..keys.clone()
            },
            0,
        )
        .unwrap();
        assert!(other.reindex(&packet).is_none());
        let mut damaged = packet.clone();
        damaged[10] ^= 1;
        assert!(forward.reindex(&damaged).is_none());
        let unprotected = SrtpKeys {
            profile: SrtpProfile::AES128_CM_SHA1_80,
            ..keys
        };
        assert!(SrtcpReindexer::new(&unprotected, 0).is_none());
        assert_eq!(srtcp_index(unprotected.profile, &[0u8; 30]), Some(0));
    }

    /// The whole hand-over: client ↔ A (handshake), then client ↔ B (resumed, no handshake).
    #[test]
    fn a_resumed_rtc_continues_the_connection_without_a_handshake() {
        const TICK: Duration = Duration::from_millis(10);
        let mut now = Instant::now();
        let cert = cert();
        let (mut client, mid, offer, pending) = client(now);
        let (mut a, keys_a) = server(now, &cert, None);
        let answer_a = accept(&mut a, &offer, 0);
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer_a).unwrap())
            .unwrap();

        let mut wire = Wire::default();
        for _ in 0..300 {
            now += TICK;
            wire.tick(now, &mut client, &mut a);
            if client.connected() && a.connected() {
                break;
            }
        }
        assert!(client.rtc.is_connected() && a.rtc.is_connected());
        let keys = keys_a.get().expect("the handshake's keys").clone();
        assert!(!keys.active, "the answerer of an actpass offer is passive");
        assert_eq!(keys.version, ProtocolVersion::DTLS1_2);
        assert!(!keys.peer_cert.is_empty());
        // str0m to str0m: AES-256-GCM (Chromium: AES-128-GCM). The reindexer takes either.
        assert_eq!(keys.profile, SrtpProfile::AEAD_AES_256_GCM);
        println!("{keys:?}");
        let dtls_at_a = wire.received.iter().filter(|k| **k == Kind::Dtls).count();
        assert!(dtls_at_a > 0);

        // Audio both ways, the client's sequence numbers crossing 65535 → 0 (ROC 0 → 1).
        let mut seq = 65_530u64;
        let mut server_seq = 100u64;
        for _ in 0..12 {
            client.write_audio(now, mid, seq, &seq.to_be_bytes());
            a.write_audio(now, mid, server_seq, &[0xa, server_seq as u8]);
            seq += 1;
            server_seq += 1;
            now += Duration::from_millis(20);
            wire.tick(now, &mut client, &mut a);
        }
        for _ in 0..10 {
            now += TICK;
            wire.tick(now, &mut client, &mut a);
        }
        let at_a = a.rtp_payloads();
        assert_eq!(at_a.len(), 12);
        assert_eq!(at_a.last().unwrap().0, seq - 1);
        assert!(seq - 1 > 65_535);
        assert_eq!(client.rtp_payloads().len(), 12);
        let client_ssrc = client
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .unwrap()
            .ssrc();

        // Whether a str0m client keeps USE-CANDIDATE on its keepalives: let ICE run a while.
        let nominations_before = wire.use_candidate.len();
        let requests_before = wire.binding_requests;
        for i in 0..1000 {
            now += TICK;
            if i % 100 == 99 {
                a.write_audio(now, mid, server_seq, &[0xa, server_seq as u8]);
                server_seq += 1;
            }
            wire.tick(now, &mut client, &mut a);
        }
        println!(
            "binding requests at A: {} ({} with USE-CANDIDATE); in the last 10 s: {} ({})",
            wire.binding_requests,
            wire.use_candidate.len(),
            wire.binding_requests - requests_before,
            wire.use_candidate.len() - nominations_before
        );
        let count = |kinds: &[Kind], k: Kind| kinds.iter().filter(|x| **x == k).count();
        println!(
            "A sent RTCP {}, RTP {}; the client sent RTCP {}",
            count(&wire.sent, Kind::Rtcp),
            count(&wire.sent, Kind::Rtp),
            count(&wire.received, Kind::Rtcp)
        );
        assert_eq!(
            wire.use_candidate.len() - nominations_before,
            wire.binding_requests - requests_before,
            "every keepalive of a str0m client nominates"
        );
        let saved = wire.use_candidate.last().unwrap().clone();
        assert_eq!(saved.source, client.addr);
        assert_eq!(saved.destination, a.addr);
        let a_answer_ssrc = a
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .unwrap()
            .ssrc();
        let a_nonces = std::mem::take(&mut wire.rtcp_nonces);
        let next_index = a_nonces.iter().map(|n| n.1).max().unwrap() + 1;
        let sender_info_of_a = client.last_sender_info().expect("A sent a sender report");

        // Hibernate: A goes, B comes (plus C, the same without the ROC).
        drop(a);
        now += Duration::from_secs(5);
        let (mut b, keys_b) = server(now, &cert, Some(&keys));
        let (mut c, _) = server(now, &cert, Some(&keys));
        assert_eq!(keys_b.get().unwrap().material, keys.material);
        assert_eq!(accept(&mut b, &offer, 0), answer_a);
        assert_eq!(accept(&mut c, &offer, 0), answer_a);
        assert_eq!(
            b.rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .unwrap()
                .ssrc(),
            a_answer_ssrc
        );
        b.rtc
            .direct_api()
            .stream_rx(&client_ssrc)
            .expect("the client's stream, from its offer")
            .reset_roc(seq >> 16);

        let mut from_b: Vec<Datagram> = Vec::new();
        from_b.extend(b.drive(now, None));
        let connected_before_stun = b.connected();
        from_b.extend(b.drive(now, Some(&saved)));
        let mut from_c = c.drive(now, None);
        from_c.extend(c.drive(now, Some(&saved)));
        assert!(b.connected() && b.rtc.is_connected(), "{:?}", b.events);
        // A retransmitted handshake flight of the client: dropped, nothing answered.
        for d in &wire.client_dtls {
            assert!(b.drive(now, Some(d)).is_empty());
        }
        assert!(c.rtc.is_connected());
        let kinds: Vec<Kind> = from_b.iter().map(|d| kind(&d.bytes)).collect();
        println!("B connected before the STUN request: {connected_before_stun}");
        println!("B sent right after connecting: {kinds:?}");
        println!("B's events: {:?}", b.events);

        // Client ↔ B, with C listening in on the client's datagrams.
        wire.reindex = Some(SrtcpReindexer::new(&keys, next_index).unwrap());
        wire.put_from_server(from_b);
        wire.received.clear();
        wire.sent.clear();
        let handed_over_at = seq;
        for _ in 0..10 {
            client.write_audio(now, mid, seq, &seq.to_be_bytes());
            b.write_audio(now, mid, server_seq, &[0xb, server_seq as u8]);
            seq += 1;
            server_seq += 1;
            now += Duration::from_millis(20);
            let to_server: Vec<Datagram> = wire.to_server.iter().cloned().collect();
            for d in &to_server {
                from_c.extend(c.drive(now, Some(d)));
            }
            wire.tick(now, &mut client, &mut b);
        }
        for i in 0..300 {
            now += TICK;
            if i % 20 == 10 {
                b.write_audio(now, mid, server_seq, &[0xb, server_seq as u8]);
                server_seq += 1;
            }
            let to_server: Vec<Datagram> = wire.to_server.iter().cloned().collect();
            for d in &to_server {
                from_c.extend(c.drive(now, Some(d)));
            }
            wire.tick(now, &mut client, &mut b);
        }
        assert!(
            !wire.received.contains(&Kind::Dtls),
            "no new handshake: {:?}",
            wire.received
        );
        let at_b = b.rtp_payloads();
        assert_eq!(
            at_b,
            (handed_over_at..seq)
                .map(|s| (s, s.to_be_bytes().to_vec()))
                .collect::<Vec<_>>()
        );
        let at_client = client.rtp_payloads();
        assert_eq!(at_client.len() as u64, server_seq - 100);
        assert_eq!(
            at_client.last().unwrap().1,
            vec![0xb, (server_seq - 1) as u8]
        );
        println!(
            "B sent RTCP {}, RTP {}; the client sent RTCP {}",
            count(&wire.sent, Kind::Rtcp),
            count(&wire.sent, Kind::Rtp),
            count(&wire.received, Kind::Rtcp)
        );
        assert!(client.rtc.is_connected() && b.rtc.is_connected());

        // B's SRTCP, reindexed, continues A's indices: no nonce used twice, and the client
        // takes B's sender reports (B's own counts, started again at 0).
        let b_nonces = std::mem::take(&mut wire.rtcp_nonces);
        assert!(!b_nonces.is_empty());
        let mut all: Vec<(u32, u32)> = a_nonces.iter().chain(&b_nonces).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), a_nonces.len() + b_nonces.len());
        assert_eq!(b_nonces.iter().map(|n| n.1).min(), Some(next_index));
        let sender_info_of_b = client.last_sender_info().unwrap();
        println!("the client's last SR from A: {sender_info_of_a:?}");
        println!("the client's last SR from B: {sender_info_of_b:?}");
        assert!(sender_info_of_b.ntp_time > sender_info_of_a.ntp_time);
        // Without reindexing, a resumed Rtc seals its RTCP under nonces A used.
        let c_nonces: Vec<(u32, u32)> = from_c
            .iter()
            .filter(|d| kind(&d.bytes) == Kind::Rtcp)
            .map(|d| nonce(&d.bytes))
            .collect();
        assert!(c_nonces.iter().any(|n| a_nonces.contains(n)));

        // Without the client's ROC, nothing decrypts; with it, the next packet does.
        assert!(c.rtp_payloads().is_empty());
        c.rtc
            .direct_api()
            .stream_rx(&client_ssrc)
            .unwrap()
            .reset_roc(seq >> 16);
        client.write_audio(now, mid, seq, &seq.to_be_bytes());
        now += TICK;
        for d in client.drive(now, None) {
            c.drive(now, Some(&d));
        }
        assert_eq!(c.rtp_payloads(), vec![(seq, seq.to_be_bytes().to_vec())]);
    }
}

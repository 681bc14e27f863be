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

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
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

/// What the DTLS handshake of one connection exported.
#[derive(Clone)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    /// `client key | server key | client salt | server salt`.
    pub material: Vec<u8>,
    /// We were the DTLS client: our outbound keys are the client's.
    pub active: bool,
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Where one connection's keys land once its handshake completes.
pub type KeyCapture = Arc<OnceLock<SrtpKeys>>;

thread_local! {
    /// The capture for the DTLS instance the next `Rtc` built on this thread creates.
    static NEXT_CAPTURE: RefCell<Option<KeyCapture>> = const { RefCell::new(None) };
}

/// Runs `build` (which builds one `Rtc` with [`capturing_provider`]) so that the DTLS
/// instance it creates reports its keys into the returned capture.
pub fn with_key_capture<T>(build: impl FnOnce() -> T) -> (T, KeyCapture) {
    let capture = KeyCapture::default();
    NEXT_CAPTURE.with(|next| *next.borrow_mut() = Some(capture.clone()));
    let built = build();
    // A builder that did not create a DTLS instance must not hand its capture to the next.
    NEXT_CAPTURE.with(|next| next.borrow_mut().take());
    (built, capture)
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
        let inner = default_dtls().new_dtls(cert, now, dtls_version, mtu)?;
        Ok(match NEXT_CAPTURE.with(|next| next.borrow_mut().take()) {
            Some(capture) => Box::new(CapturingDtls { inner, capture }),
            None => inner,
        })
    }
}

/// A DTLS instance that hands its exported keying material to a [`KeyCapture`] on its way
/// to str0m.
#[derive(Debug)]
struct CapturingDtls {
    inner: Box<dyn DtlsInstance>,
    capture: KeyCapture,
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
        if let DtlsOutput::KeyingMaterial(material, profile) = &output {
            let _ = self.capture.set(SrtpKeys {
                profile: *profile,
                material: material.as_ref().to_vec(),
                active: self.inner.is_active(),
            });
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

/// Seals outgoing RTP packets of one SSRC with a connection's SRTP keys (AEAD AES-GCM,
/// RFC 7714).
pub struct RtpSealer {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
    ssrc: u32,
}

impl fmt::Debug for RtpSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpSealer")
            .field("ssrc", &self.ssrc)
            .finish_non_exhaustive()
    }
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
            LABEL_RTP_KEY,
            &mut session_key[..key_len],
        )?;
        derive(prf, master_key, master_salt, LABEL_RTP_SALT, &mut salt)?;
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &session_key[..key_len]).ok()?);
        Some(Self { key, salt, ssrc })
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
        let nonce = Nonce::assume_unique_for_key(self.iv(packet.seq));
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), body)
            .expect("AES-GCM seals any packet shorter than 2^36 bytes");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// RFC 7714 §8.1: `00 00 || SSRC || ROC || SEQ`, XORed with the session salt.
    fn iv(&self, seq: u64) -> [u8; SALT_LEN] {
        let mut iv = [0u8; SALT_LEN];
        iv[2..6].copy_from_slice(&self.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&((seq >> 16) as u32).to_be_bytes());
        iv[10..12].copy_from_slice(&(seq as u16).to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        iv
    }
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
        assert_ne!(server.salt, client.salt);
        assert!(RtpSealer::new(&keys(SrtpProfile::AES128_CM_SHA1_80, 16, false), 1).is_none());
        let mut short = keys(SrtpProfile::AEAD_AES_256_GCM, 32, false);
        short.material.pop();
        assert!(RtpSealer::new(&short, 1).is_none());
    }
}

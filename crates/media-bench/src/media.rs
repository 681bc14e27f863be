//! What the simulated clients send and how they measure what they receive.
//!
//! Audio: every speaker plays the same pre-encoded loop of [`LOOP_FRAMES`] Opus frames (encoded
//! once at start-up, reused for every packet): a quiet 440 Hz tone (−41 dBov, so the speaker
//! stays in the mix like a real talker) with a loud 1 kHz burst in its first [`BURST_FRAMES`]
//! frames. Opus cannot carry a timestamp, so latency is measured on the burst: the speaker
//! notes when it sends the burst's first packet; a probe listener decodes the mix it receives
//! and notes the arrival of the packet in which the decoded signal first crosses
//! [`ONSET_THRESHOLD`]. Start-up calibration ([`calibrate`]) runs the same chain offline
//! (speaker encode → server decode → server encode → listener decode) to learn in which frame
//! the onset lands despite the two codecs' look-ahead, so the measured time is the transport and
//! mixing delay only.
//!
//! Video: VP8-looking frames whose bytes 8..16 hold the send time (µs since the process's
//! epoch, little-endian) and bytes 16..20 the publisher's index. A receiver's latency sample is
//! the arrival of the datagram that completed the frame minus that send time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// Samples per 20 ms Opus frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// One frame's duration.
pub const FRAME: Duration = Duration::from_millis(20);
/// Frames in the speakers' loop (500 ms).
pub const LOOP_FRAMES: usize = 25;
/// Loud frames at the start of the loop.
pub const BURST_FRAMES: usize = 2;
/// A decoded sample louder than this marks the burst (the quiet tones of three speakers sum to
/// at most ~900).
pub const ONSET_THRESHOLD: i16 = 4000;
const LOUD: (f32, f32, i8) = (1000.0, 16_000.0, -9);
const QUIET: (f32, f32, i8) = (440.0, 300.0, -41);

/// The pre-encoded speaker loop.
pub struct AudioLoop {
    pub packets: Vec<Arc<[u8]>>,
    /// RFC 6464 level (negative dBov) of each frame, for the `ssrc-audio-level` extension.
    pub levels: Vec<i8>,
}

fn loop_pcm() -> Vec<i16> {
    let mut pcm = Vec::with_capacity(LOOP_FRAMES * FRAME_SAMPLES);
    let (mut loud_phase, mut quiet_phase) = (0.0f32, 0.0f32);
    for frame in 0..LOOP_FRAMES {
        for _ in 0..FRAME_SAMPLES {
            let (freq, amplitude, _) = if frame < BURST_FRAMES { LOUD } else { QUIET };
            let phase = if frame < BURST_FRAMES {
                &mut loud_phase
            } else {
                &mut quiet_phase
            };
            pcm.push((phase.sin() * amplitude) as i16);
            *phase = (*phase + 2.0 * std::f32::consts::PI * freq / 48_000.0)
                % (2.0 * std::f32::consts::PI);
        }
        if frame + 1 == BURST_FRAMES {
            // Every burst starts at phase 0: the same sharp onset each time.
            loud_phase = 0.0;
        }
    }
    pcm
}

/// A speaker's encoder (a browser's: the speech modes) or, with `Application::LowDelay`,
/// one like the server mixer's (CELT-only).
fn encoder(application: Application, bitrate: i32, complexity: u8) -> Result<Encoder, String> {
    let mut encoder = Encoder::new(SampleRate::Hz48000, Channels::Mono, application)
        .map_err(|e| format!("opus encoder: {e}"))?;
    encoder
        .set_bitrate(Bitrate::BitsPerSecond(bitrate))
        .map_err(|e| format!("opus encoder: {e}"))?;
    encoder
        .set_complexity(complexity)
        .map_err(|e| format!("opus encoder: {e}"))?;
    Ok(encoder)
}

fn encode_frames(encoder: &mut Encoder, pcm: &[i16]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut packet = [0u8; 1500];
    for frame in pcm.chunks(FRAME_SAMPLES) {
        let n = encoder
            .encode(frame, &mut packet)
            .map_err(|e| format!("opus encode: {e}"))?;
        out.push(packet[..n].to_vec());
    }
    Ok(out)
}

fn decode_frames(decoder: &mut Decoder, packets: &[Vec<u8>]) -> Result<Vec<i16>, String> {
    let mut out = Vec::new();
    let mut pcm = vec![0i16; 5760];
    for p in packets {
        let n = decoder
            .decode(Some(&p[..]), &mut pcm[..], false)
            .map_err(|e| format!("opus decode: {e}"))?;
        out.extend_from_slice(&pcm[..n]);
    }
    Ok(out)
}

impl AudioLoop {
    /// Encodes the loop (twice, keeping the second pass so the encoder state is warm).
    pub fn new() -> Result<AudioLoop, String> {
        let pcm = loop_pcm();
        let mut speaker = encoder(Application::Voip, 32_000, 5)?;
        encode_frames(&mut speaker, &pcm)?;
        let packets = encode_frames(&mut speaker, &pcm)?;
        Ok(AudioLoop {
            packets: packets.into_iter().map(Arc::from).collect(),
            levels: (0..LOOP_FRAMES)
                .map(|f| if f < BURST_FRAMES { LOUD.2 } else { QUIET.2 })
                .collect(),
        })
    }
}

/// Where the burst's onset lands after the full codec chain, relative to the frame in which
/// the speaker sent it: (whole frames later, sample offset in that frame).
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    pub frames: usize,
    pub sample: usize,
}

/// Runs speaker encode → mixer decode → mixer encode (CELT-only, 40 kb/s, complexity 5, as the
/// server's mixer) → listener decode over a few loops and finds the onset of the last burst.
pub fn calibrate() -> Result<Calibration, String> {
    let mut pcm = Vec::new();
    for _ in 0..4 {
        pcm.extend(loop_pcm());
    }
    let mut speaker = encoder(Application::Voip, 32_000, 5)?;
    let mut mixer_in = Decoder::new(SampleRate::Hz48000, Channels::Mono)
        .map_err(|e| format!("opus decoder: {e}"))?;
    let mut mixer_out = encoder(Application::LowDelay, 40_000, 5)?;
    let mut listener = Decoder::new(SampleRate::Hz48000, Channels::Mono)
        .map_err(|e| format!("opus decoder: {e}"))?;
    let sent = encode_frames(&mut speaker, &pcm)?;
    let mixed = decode_frames(&mut mixer_in, &sent)?;
    let resent = encode_frames(&mut mixer_out, &mixed)?;
    let heard = decode_frames(&mut listener, &resent)?;
    // The last loop's burst starts at frame 3 × LOOP_FRAMES.
    let burst = 3 * LOOP_FRAMES * FRAME_SAMPLES;
    let onset = heard[burst - FRAME_SAMPLES..]
        .iter()
        .position(|s| s.unsigned_abs() > ONSET_THRESHOLD.unsigned_abs())
        .map(|i| i + burst - FRAME_SAMPLES)
        .ok_or("calibration: the burst never crossed the threshold")?;
    if onset < burst {
        return Err("calibration: the onset precedes the burst".into());
    }
    Ok(Calibration {
        frames: (onset - burst) / FRAME_SAMPLES,
        sample: (onset - burst) % FRAME_SAMPLES,
    })
}

/// Finds burst onsets in a probe's decoded stream.
pub struct OnsetDetector {
    decoder: Decoder,
    pcm: Vec<i16>,
    loud: bool,
}

impl OnsetDetector {
    pub fn new() -> Result<OnsetDetector, String> {
        Ok(OnsetDetector {
            decoder: Decoder::new(SampleRate::Hz48000, Channels::Mono)
                .map_err(|e| format!("opus decoder: {e}"))?,
            pcm: vec![0; 5760],
            loud: false,
        })
    }

    /// Decodes one packet; true when it holds the start of a burst (a loud frame after a
    /// quiet one).
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Ok(n) = self.decoder.decode(Some(packet), &mut self.pcm[..], false) else {
            return false;
        };
        let loud = self.pcm[..n]
            .iter()
            .any(|s| s.unsigned_abs() > ONSET_THRESHOLD.unsigned_abs());
        let onset = loud && !self.loud;
        self.loud = loud;
        onset
    }
}

/// Byte range of the send timestamp in a video frame.
const STAMP: std::ops::Range<usize> = 8..16;
/// Byte range of the publisher index.
const PUBLISHER: std::ops::Range<usize> = 16..20;

/// A VP8-looking frame of `size` bytes (at least 20) carrying its send time.
pub fn video_frame(size: usize, keyframe: bool, sent_us: u64, publisher: u32) -> Vec<u8> {
    let mut data = vec![0x10u8; size.max(PUBLISHER.end)];
    // Byte 0 bit 0 clear marks a keyframe (RFC 6386 frame tag), like the engine tests.
    data[0] = if keyframe { 0x10 } else { 0x11 };
    data[STAMP].copy_from_slice(&sent_us.to_le_bytes());
    data[PUBLISHER].copy_from_slice(&publisher.to_le_bytes());
    data
}

/// The send time stamped into a received video frame.
pub fn video_stamp(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(STAMP)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Microseconds from `epoch` to `t`.
pub fn micros_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_onset_stays_in_its_frame_and_is_detected() {
        let calibration = calibrate().unwrap();
        assert_eq!(calibration.frames, 0, "{calibration:?}");
        let audio = AudioLoop::new().unwrap();
        let mut detector = OnsetDetector::new().unwrap();
        let mut onsets = Vec::new();
        for round in 0..3 {
            for (i, p) in audio.packets.iter().enumerate() {
                if detector.push(p) {
                    onsets.push((round, i));
                }
            }
        }
        // Every loop's burst is found in its first frame (the decoder starts cold, so the
        // first one may be found a frame late).
        assert!(onsets.len() == 3, "{onsets:?}");
        assert!(onsets[1..].iter().all(|(_, i)| *i == 0), "{onsets:?}");
    }

    #[test]
    fn video_frames_carry_their_stamp() {
        let f = video_frame(1000, true, 123_456_789, 3);
        assert_eq!(f.len(), 1000);
        assert_eq!(f[0] & 1, 0);
        assert_eq!(video_stamp(&f), Some(123_456_789));
        assert_eq!(video_frame(10, false, 1, 0).len(), 20);
    }
}

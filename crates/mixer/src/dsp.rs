//! Small signal helpers: level smoothing, RMS level, soft clipping.

/// Smoothing per 20 ms of audio when the level rises (fast attack) …
const ATTACK: f32 = 0.5;
/// … and when it falls (slower release, so a speaker does not drop out between words).
const RELEASE: f32 = 0.15;

/// Exponential smoothing of a loudness (dB above the −127 dBov floor, i.e. `127 − level`),
/// scaled to the duration `frames20` of the new observation in units of 20 ms.
pub(crate) fn smooth(current: f32, observed: f32, frames20: f32) -> f32 {
    let alpha = if observed > current { ATTACK } else { RELEASE };
    let alpha = if (frames20 - 1.0).abs() < f32::EPSILON {
        alpha
    } else {
        1.0 - (1.0 - alpha).powf(frames20.clamp(0.125, 6.0))
    };
    current + alpha * (observed - current)
}

/// Converts a smoothed loudness back to an RFC 6464 level (0 loud … 127 silent).
pub(crate) fn loudness_to_level(loudness: f32) -> u8 {
    (127.0 - loudness).round().clamp(0.0, 127.0) as u8
}

/// Below one 16-bit LSB RMS (≈ −90 dBov) a signal counts as digital silence, as it does
/// for senders that measure 16-bit PCM (decoded Opus silence has sub-LSB residue).
const SILENCE_MEAN_SQUARE: f32 = 1.0 / (32768.0 * 32768.0);

/// RFC 6464 level (−dBov, 0 … 127) of a block of samples in [−1, 1].
pub(crate) fn rms_level(pcm: &[f32]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let mean_square = pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32;
    if mean_square < SILENCE_MEAN_SQUARE {
        return 127;
    }
    (-10.0 * mean_square.log10()).round().clamp(0.0, 127.0) as u8
}

/// Linear below this magnitude; above it a tanh knee approaches full scale smoothly.
const KNEE: f32 = 0.75;

/// Soft clipper with a continuous first derivative at the knee; output stays within ±1.
pub(crate) fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a <= KNEE {
        x
    } else {
        let head = 1.0 - KNEE;
        (KNEE + head * ((a - KNEE) / head).tanh()).copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_clip_is_transparent_below_knee_and_bounded_above() {
        for x in [-0.7f32, -0.1, 0.0, 0.3, 0.75] {
            assert_eq!(soft_clip(x), x);
        }
        for x in [0.8f32, 1.0, 2.0, 50.0] {
            let y = soft_clip(x);
            assert!(y > KNEE && y <= 1.0, "{x} -> {y}");
            assert_eq!(soft_clip(-x), -y);
        }
        // Monotonic.
        let mut prev = -2.0f32;
        for i in -300..=300 {
            let y = soft_clip(i as f32 / 100.0);
            assert!(y >= prev);
            prev = y;
        }
    }

    #[test]
    fn rms_level_matches_dbov() {
        assert_eq!(rms_level(&[0.0; 960]), 127);
        assert_eq!(rms_level(&[1e-5; 960]), 127);
        assert_eq!(rms_level(&[1e-4; 960]), 80);
        assert_eq!(rms_level(&[1.0; 960]), 0);
        assert_eq!(rms_level(&[0.1; 960]), 20);
        let sine: Vec<f32> = (0..960).map(|i| 0.5 * (i as f32 * 0.0576).sin()).collect();
        // 0.5 peak -> rms 0.354 -> 9 dBov
        assert_eq!(rms_level(&sine), 9);
    }

    #[test]
    fn smoothing_attacks_fast_and_releases_slowly() {
        let up = smooth(0.0, 100.0, 1.0);
        assert_eq!(up, 50.0);
        let down = smooth(100.0, 0.0, 1.0);
        assert!((down - 85.0).abs() < 1e-4);
        // Two 10 ms observations move as far as one 20 ms observation.
        let half = smooth(smooth(0.0, 100.0, 0.5), 100.0, 0.5);
        assert!((half - 50.0).abs() < 1e-3, "{half}");
        assert_eq!(loudness_to_level(0.0), 127);
        assert_eq!(loudness_to_level(127.0), 0);
        assert_eq!(loudness_to_level(0.4), 127);
    }
}

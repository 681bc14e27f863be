//! The little SDP knowledge the engine needs beyond str0m: the layout of the client's offer
//! (which m-line is what, in order) and the answer rewrite that lets the browser bind each
//! remote video to its attendee.

/// Media kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
    Other,
}

/// Direction attribute of an m-line, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: Kind,
    pub mid: String,
    pub direction: Direction,
    /// Port 0: a stopped transceiver.
    pub stopped: bool,
}

/// What the engine reads from an offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferLayout {
    pub sections: Vec<Section>,
    /// `a=ice-ufrag` (session or first media level): a new value means a new peer connection.
    pub ice_ufrag: Option<String>,
}

/// Why an offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the SDP offer is empty")]
    Empty,
    #[error("the SDP offer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("m-line {0} has no a=mid")]
    MissingMid(usize),
}

/// Largest offer accepted (the client's are a few kilobytes).
pub const MAX_OFFER_LEN: usize = 128 * 1024;

impl OfferLayout {
    /// Parses the m-line layout of an SDP offer. Tolerant of anything it does not need.
    pub fn parse(sdp: &str) -> Result<OfferLayout, OfferError> {
        if sdp.trim().is_empty() {
            return Err(OfferError::Empty);
        }
        if sdp.len() > MAX_OFFER_LEN {
            return Err(OfferError::TooLarge(MAX_OFFER_LEN));
        }
        let mut layout = OfferLayout::default();
        let mut current: Option<(Kind, Option<String>, Direction, bool)> = None;
        let finish = |layout: &mut OfferLayout,
                      current: Option<(Kind, Option<String>, Direction, bool)>|
         -> Result<(), OfferError> {
            if let Some((kind, mid, direction, stopped)) = current {
                let index = layout.sections.len();
                layout.sections.push(Section {
                    kind,
                    mid: mid.ok_or(OfferError::MissingMid(index))?,
                    direction,
                    stopped,
                });
            }
            Ok(())
        };
        for line in sdp.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("m=") {
                finish(&mut layout, current.take())?;
                let mut parts = rest.split_whitespace();
                let kind = match parts.next() {
                    Some("audio") => Kind::Audio,
                    Some("video") => Kind::Video,
                    _ => Kind::Other,
                };
                let stopped = parts.next() == Some("0");
                current = Some((kind, None, Direction::SendRecv, stopped));
            } else if let Some(mid) = line.strip_prefix("a=mid:") {
                if let Some(c) = current.as_mut() {
                    c.1 = Some(mid.trim().to_owned());
                }
            } else if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
                if layout.ice_ufrag.is_none() {
                    layout.ice_ufrag = Some(ufrag.trim().to_owned());
                }
            } else if let Some(c) = current.as_mut() {
                c.2 = match line {
                    "a=sendrecv" => Direction::SendRecv,
                    "a=sendonly" => Direction::SendOnly,
                    "a=recvonly" => Direction::RecvOnly,
                    "a=inactive" => Direction::Inactive,
                    _ => c.2,
                };
            }
        }
        finish(&mut layout, current)?;
        Ok(layout)
    }

    /// Video m-lines in offer order (what `receive_stream_ids` is positional over).
    pub fn video_sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.kind == Kind::Video)
    }

    /// The audio m-line, if any.
    pub fn audio(&self) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == Kind::Audio)
    }

    /// The camera m-line: the first video m-line (inactive until the client publishes).
    pub fn camera(&self) -> Option<&Section> {
        self.video_sections().next()
    }
}

/// Rewrites the msid stream id of the listed m-lines to `v_<mid>`, on both the `a=msid:` line
/// and `a=ssrc:<n> msid:` lines: the client maps a remote track to its stream through the
/// `v_<mid>` label it finds in SUBSCRIBE_ACK.tracks.
pub fn label_video_tracks(answer: &str, mids: &[String]) -> String {
    let mut out = String::with_capacity(answer.len() + 64);
    let mut current_mid: Option<String> = None;
    let mut section: Vec<&str> = Vec::new();
    let flush = |out: &mut String, section: &mut Vec<&str>, mid: &Option<String>| {
        let relabel = mid.as_ref().filter(|m| mids.contains(m));
        for line in section.drain(..) {
            match relabel {
                Some(mid) => out.push_str(&relabel_line(line, mid)),
                None => out.push_str(line),
            }
            out.push_str("\r\n");
        }
    };
    for line in answer.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            flush(&mut out, &mut section, &current_mid);
            current_mid = None;
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            current_mid = Some(mid.to_owned());
        }
        section.push(line);
    }
    flush(&mut out, &mut section, &current_mid);
    out
}

fn relabel_line(line: &str, mid: &str) -> String {
    if let Some(rest) = line.strip_prefix("a=msid:") {
        let track = rest.split_whitespace().nth(1).unwrap_or("-");
        return format!("a=msid:v_{mid} {track}");
    }
    if let Some(rest) = line.strip_prefix("a=ssrc:")
        && let Some((ssrc, attr)) = rest.split_once(' ')
        && let Some(value) = attr.strip_prefix("msid:")
    {
        let track = value.split_whitespace().nth(1).unwrap_or("-");
        return format!("a=ssrc:{ssrc} msid:v_{mid} {track}");
    }
    line.to_owned()
}

/// The transport-wide congestion control header extension (draft-holmer-rmcat).
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Drops transport-wide congestion control from the audio m-lines of an offer (the extmap
/// and the `transport-cc` feedback), so that the answer does not negotiate it for audio.
///
/// Why: the server runs no bandwidth estimation on its downstream, and with TWCC negotiated
/// every packet sent is recorded in the peer's TWCC history (a thousand entries, about
/// 100 KiB per connection once full); mixed audio is most of what a large meeting sends.
/// Video keeps TWCC both ways, and the browser's estimate of its uplink covers video, which
/// is what it adapts (as with Firefox, which never uses TWCC for audio).
pub fn without_audio_transport_cc(offer: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    let mut in_audio = false;
    for line in offer.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with("m=") {
            in_audio = bare.starts_with("m=audio ");
        } else if in_audio && is_transport_cc(bare) {
            continue;
        }
        out.push_str(line);
    }
    out
}

fn is_transport_cc(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("a=extmap:") {
        return rest.split_whitespace().nth(1) == Some(TRANSPORT_CC_URI);
    }
    line.strip_prefix("a=rtcp-fb:")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .is_some_and(|fb| fb == "transport-cc")
}

/// The first SSRC announced in each m-section of an SDP, by mid (the primary SSRC: the first
/// of an `a=ssrc-group:FID` pair).
pub fn ssrcs_by_mid(sdp: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut mid: Option<String> = None;
    let mut ssrc: Option<u32> = None;
    let mut push = |mid: &mut Option<String>, ssrc: &mut Option<u32>| {
        if let (Some(m), Some(s)) = (mid.take(), ssrc.take()) {
            out.push((m, s));
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            push(&mut mid, &mut ssrc);
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("a=ssrc-group:FID ") {
            if let Some(first) = rest.split_whitespace().next().and_then(|s| s.parse().ok()) {
                ssrc = Some(first);
            }
        } else if let Some(rest) = line.strip_prefix("a=ssrc:")
            && ssrc.is_none()
        {
            ssrc = rest.split_whitespace().next().and_then(|s| s.parse().ok());
        }
    }
    push(&mut mid, &mut ssrc);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=mid:0\r\na=sendrecv\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=inactive\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:2\r\na=recvonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\n";

    #[test]
    fn parses_layout() {
        let layout = OfferLayout::parse(OFFER).unwrap();
        assert_eq!(layout.ice_ufrag.as_deref(), Some("abcd"));
        assert_eq!(layout.sections.len(), 4);
        assert_eq!(layout.audio().unwrap().mid, "0");
        assert_eq!(layout.camera().unwrap().mid, "1");
        let video: Vec<_> = layout
            .video_sections()
            .map(|s| (s.mid.as_str(), s.direction, s.stopped))
            .collect();
        assert_eq!(
            video,
            [
                ("1", Direction::Inactive, false),
                ("2", Direction::RecvOnly, false),
                ("3", Direction::Inactive, true)
            ]
        );
        assert_eq!(OfferLayout::parse(""), Err(OfferError::Empty));
        assert_eq!(
            OfferLayout::parse("m=audio 9 X 1\r\n"),
            Err(OfferError::MissingMid(0))
        );
    }

    #[test]
    fn relabels_only_listed_sections() {
        let answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:s0 t0\r\na=ssrc:1 cname:c\r\n\
m=video 9 X 96\r\na=mid:2\r\na=msid:abc def\r\na=ssrc:5 cname:c\r\na=ssrc:5 msid:abc def\r\na=ssrc-group:FID 5 6\r\n";
        let out = label_video_tracks(answer, &["2".to_owned()]);
        assert!(out.contains("a=msid:s0 t0\r\n"));
        assert!(out.contains("a=msid:v_2 def\r\n"));
        assert!(out.contains("a=ssrc:5 msid:v_2 def\r\n"));
        assert!(out.contains("a=ssrc:5 cname:c\r\n"));
        assert_eq!(
            ssrcs_by_mid(&out),
            vec![("0".to_owned(), 1), ("2".to_owned(), 5)]
        );
    }

    #[test]
    fn drops_transport_cc_from_audio_only() {
        let offer = "v=0\r\n\
m=audio 9 X 111\r\na=mid:0\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack\r\n\
m=video 9 X 96\r\na=mid:1\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=rtcp-fb:96 transport-cc\r\n";
        let out = without_audio_transport_cc(offer);
        let (audio, video) = out.split_once("m=video").unwrap();
        assert!(!audio.contains("transport-wide-cc"));
        assert!(!audio.contains("transport-cc"));
        assert!(audio.contains("ssrc-audio-level\r\n"));
        assert!(audio.contains("a=rtcp-fb:111 nack\r\n"));
        assert!(video.contains("transport-wide-cc"));
        assert!(video.contains("a=rtcp-fb:96 transport-cc\r\n"));
        // Anything else passes through unchanged, byte for byte.
        assert_eq!(without_audio_transport_cc(OFFER), OFFER);
        assert_eq!(without_audio_transport_cc("a\nb"), "a\nb");
    }
}

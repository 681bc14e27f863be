//! The outbox's event record: a compact binary encoding of [`carillon_control::Event`].
//!
//! It is written on the API path, inside the transaction of the change that caused the event,
//! so it is kept small and cheap to produce: about 150 bytes instead of about 450 for the JSON
//! it replaces (schema version 4), which means fewer pages per commit for SQLite to write.
//! The targets are not part of it: each outbox row names its own.
//!
//! ```text
//! u8  format (1)
//! u8  kind (EventKind::code)
//! 16  event id
//! u64 time, epoch milliseconds, little-endian
//! 16  meeting id
//! str account, control region, media region, external meeting id
//! u8  flags: 1 attendee, 2 content share, 4 transcription
//! [16 attendee id, str external user id]          if flags & 1
//! [str transcription region, str configuration]   if flags & 4
//! ```
//!
//! `str` is a LEB128 length followed by that many bytes of UTF-8. A new layout gets a new
//! format byte; readers keep decoding the old ones.

use std::sync::Arc;

use carillon_control::{
    AttendeeId, Event, EventAttendee, EventId, EventKind, EventMeeting, EventTranscription,
    MeetingId,
};

const FORMAT: u8 = 1;
const HAS_ATTENDEE: u8 = 1;
const CONTENT: u8 = 2;
const HAS_TRANSCRIPTION: u8 = 4;

/// Appends the record of `event` to `out` (a buffer reused from one event to the next).
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(FORMAT);
    out.push(event.kind.code());
    out.extend_from_slice(&event.id.to_bytes());
    out.extend_from_slice(&event.time.to_le_bytes());
    let m = &event.meeting;
    out.extend_from_slice(&m.meeting_id.to_bytes());
    for s in [
        &m.account,
        &m.control_region,
        &m.media_region,
        &m.external_meeting_id,
    ] {
        put_str(out, s);
    }
    let mut flags = 0;
    if let Some(a) = &event.attendee {
        flags |= HAS_ATTENDEE;
        if a.content {
            flags |= CONTENT;
        }
    }
    if event.transcription.is_some() {
        flags |= HAS_TRANSCRIPTION;
    }
    out.push(flags);
    if let Some(a) = &event.attendee {
        out.extend_from_slice(&a.id.to_bytes());
        put_str(out, &a.external_user_id);
    }
    if let Some(t) = &event.transcription {
        put_str(out, &t.region);
        put_str(out, &t.configuration_json);
    }
}

/// The event of a record written by [`encode`]. The error says what is wrong with it.
pub fn decode(record: &[u8]) -> Result<Event, String> {
    let mut r = Reader(record);
    let format = r.byte()?;
    if format != FORMAT {
        return Err(format!("unknown record format {format}"));
    }
    let code = r.byte()?;
    let kind = EventKind::from_code(code).ok_or_else(|| format!("unknown event kind {code}"))?;
    let id = EventId::from_bytes(r.array()?);
    let time = u64::from_le_bytes(r.array()?);
    let meeting_id = MeetingId::from_bytes(r.array()?);
    let account = r.string()?;
    let control_region = r.string()?;
    let media_region = r.string()?;
    let external_meeting_id = r.string()?;
    let flags = r.byte()?;
    if flags & !(HAS_ATTENDEE | CONTENT | HAS_TRANSCRIPTION) != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let attendee = if flags & HAS_ATTENDEE != 0 {
        Some(EventAttendee {
            id: AttendeeId::from_bytes(r.array()?),
            content: flags & CONTENT != 0,
            external_user_id: r.string()?,
        })
    } else {
        None
    };
    let transcription = if flags & HAS_TRANSCRIPTION != 0 {
        Some(EventTranscription {
            region: r.string()?,
            configuration_json: r.string()?,
        })
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the record", r.0.len()));
    }
    Ok(Event {
        id,
        kind,
        time,
        meeting: Arc::new(EventMeeting {
            meeting_id,
            external_meeting_id,
            media_region,
            control_region,
            account,
            targets: Vec::new(),
        }),
        attendee,
        transcription,
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
}

/// Reads a record front to back; every read checks the bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated record".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn string(&mut self) -> Result<String, String> {
        let mut n: usize = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift > 28 {
                return Err("string length too long".into());
            }
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "a string is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carillon_control::EventTarget;

    fn event(kind: EventKind) -> Event {
        Event {
            id: "5ee6265a-0a40-404e-98fd-a3b4bdd78483".parse().unwrap(),
            kind,
            time: 1_647_864_000_123,
            meeting: Arc::new(EventMeeting {
                meeting_id: "4101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap(),
                external_meeting_id: "standup é".into(),
                media_region: "eu-west-2".into(),
                control_region: "us-east-1".into(),
                account: "111122223333".into(),
                targets: Vec::new(),
            }),
            attendee: None,
            transcription: None,
        }
    }

    #[test]
    fn every_shape_round_trips() {
        let plain = event(EventKind::MeetingStarted);
        let mut attendee = event(EventKind::AttendeeContentJoined);
        attendee.attendee = Some(EventAttendee {
            id: "61d83b5d-598d-319f-f4b3-b2062ed873cc".parse().unwrap(),
            content: true,
            external_user_id: "x".repeat(200) + "#content",
        });
        let mut transcription = event(EventKind::TranscriptionStarted);
        transcription.transcription = Some(EventTranscription {
            region: "us-east-2".into(),
            configuration_json: r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#.into(),
        });
        for e in [plain, attendee, transcription] {
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            assert_eq!(decode(&buf).unwrap(), e);
        }
    }

    #[test]
    fn targets_are_not_stored() {
        let mut e = event(EventKind::MeetingEnded);
        Arc::make_mut(&mut e.meeting).targets = vec![EventTarget::EventBridge];
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert!(decode(&buf).unwrap().meeting.targets.is_empty());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut e = event(EventKind::AttendeeAdded);
        e.attendee = Some(EventAttendee {
            id: "61d83b5d-598d-319f-f4b3-b2062ed873cc".parse().unwrap(),
            content: false,
            external_user_id: "alice".into(),
        });
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut format = buf.clone();
        format[0] = 9;
        assert!(decode(&format).is_err());
        let mut kind = buf.clone();
        kind[1] = 200;
        assert!(decode(&kind).is_err());
        // Every single-byte change decodes to something or fails cleanly.
        for i in 0..buf.len() {
            for v in [0u8, 0x7f, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] = v;
                let _ = decode(&b);
            }
        }
        assert!(decode(&[1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut long_len = buf[..2 + 16 + 8 + 16].to_vec();
        long_len.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(decode(&long_len).is_err());
    }

    #[test]
    fn a_typical_record_is_small() {
        let mut e = event(EventKind::AttendeeAdded);
        e.attendee = Some(EventAttendee {
            id: "61d83b5d-598d-319f-f4b3-b2062ed873cc".parse().unwrap(),
            content: false,
            external_user_id: "user-12345".into(),
        });
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert!(buf.len() < 120, "{} bytes", buf.len());
    }
}

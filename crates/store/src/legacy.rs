//! Records written before schema version 4: the JSON of `carillon_control::Event` as it was
//! then. Migration 4 moves the pending deliveries into the new outbox table with their JSON
//! text, and this re-encodes each one as a binary record (`crate::record`) in the same
//! transaction, so the running store only ever reads binary records.

use std::sync::Arc;

use carillon_control::{
    AttendeeId, Event, EventAttendee, EventId, EventKind, EventMeeting, EventTranscription,
    MeetingId,
};
use rusqlite::{Transaction, params};
use serde::Deserialize;

use crate::StoreError;

/// The version-3 JSON record (the field names of the `Event` of that time).
#[derive(Deserialize)]
struct LegacyEvent {
    id: String,
    kind: EventKind,
    time: u64,
    account: String,
    control_region: String,
    media_region: String,
    meeting_id: MeetingId,
    external_meeting_id: String,
    attendee_id: Option<String>,
    external_user_id: Option<String>,
    transcription: Option<LegacyTranscription>,
}

#[derive(Deserialize)]
struct LegacyTranscription {
    region: String,
    configuration_json: String,
}

/// The event of a version-3 JSON record.
pub(crate) fn parse(json: &str) -> Result<Event, String> {
    let old: LegacyEvent = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let id: EventId = old.id.parse().map_err(|e| format!("event id: {e}"))?;
    let attendee = match old.attendee_id {
        None => None,
        Some(text) => {
            let (base, content) = match text.strip_suffix("#content") {
                Some(base) => (base, true),
                None => (text.as_str(), false),
            };
            let id: AttendeeId = base.parse().map_err(|e| format!("attendee id: {e}"))?;
            Some(EventAttendee {
                id,
                content,
                external_user_id: old.external_user_id.unwrap_or_default(),
            })
        }
    };
    Ok(Event {
        id,
        kind: old.kind,
        time: old.time,
        meeting: Arc::new(EventMeeting {
            meeting_id: old.meeting_id,
            external_meeting_id: old.external_meeting_id,
            media_region: old.media_region,
            control_region: old.control_region,
            account: old.account,
            targets: Vec::new(),
        }),
        attendee,
        transcription: old.transcription.map(|t| EventTranscription {
            region: t.region,
            configuration_json: t.configuration_json,
        }),
    })
}

/// Migration 4's step in Rust: every text (JSON) record becomes a binary one. A record that
/// cannot be read could never be delivered: it is moved to the abandoned deliveries with the
/// reason, for an operator to look at (and pruned like any abandoned delivery). Abandoned
/// deliveries moved by the migration keep their JSON text: nothing reads it but operators.
pub(crate) fn reencode_outbox_records(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let rows: Vec<(i64, i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, seq, record FROM outbox WHERE typeof(record) = 'text' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut buf = Vec::new();
    let (mut converted, mut abandoned) = (0usize, 0usize);
    for (id, seq, json) in rows {
        match parse(&json) {
            Ok(event) => {
                buf.clear();
                crate::record::encode(&event, &mut buf);
                tx.prepare_cached("UPDATE outbox SET record = ?2 WHERE id = ?1")?
                    .execute(params![id, &buf])?;
                converted += 1;
            }
            Err(e) => {
                tracing::error!(seq, error = %e, "outbox: a version-3 record cannot be read; abandoning it");
                tx.prepare_cached(
                    "INSERT INTO outbox_abandoned (dead_at, id, created_at, attempts, last_error, record)
                     SELECT ?2, id, created_at, attempts, ?3, record FROM outbox WHERE id = ?1",
                )?
                .execute(params![id, now_ms, format!("unreadable version-3 record: {e}")])?;
                tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                    .execute([id])?;
                abandoned += 1;
            }
        }
    }
    if converted + abandoned > 0 {
        tracing::info!(
            converted,
            abandoned,
            "outbox: re-encoded the pending deliveries"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_3_record_reads_as_the_same_event() {
        let json = r#"{"id":"5ee6265a-0a40-404e-98fd-a3b4bdd78483","kind":"AttendeeContentJoined","time":1647864000123,"account":"111122223333","control_region":"us-east-1","media_region":"eu-west-2","meeting_id":"4101582d-72d2-451b-8ac0-f0f127992713","external_meeting_id":"standup","attendee_id":"61d83b5d-598d-319f-f4b3-b2062ed873cc#content","external_user_id":"alice#content","transcription":null}"#;
        let e = parse(json).unwrap();
        assert_eq!(e.id.to_string(), "5ee6265a-0a40-404e-98fd-a3b4bdd78483");
        assert_eq!(e.kind, EventKind::AttendeeContentJoined);
        assert_eq!(e.time, 1_647_864_000_123);
        assert_eq!(e.meeting.account, "111122223333");
        assert_eq!(e.meeting.control_region, "us-east-1");
        assert_eq!(e.meeting.media_region, "eu-west-2");
        assert_eq!(e.meeting.external_meeting_id, "standup");
        let a = e.attendee.unwrap();
        assert!(a.content);
        assert_eq!(
            a.attendee_id(),
            "61d83b5d-598d-319f-f4b3-b2062ed873cc#content"
        );
        assert_eq!(a.external_user_id, "alice#content");
        assert!(parse("{}").is_err());
        assert!(parse(&json.replace("61d83b5d", "nope")).is_err());
    }
}

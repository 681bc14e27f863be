//! SQLite backend: one file, WAL mode, one writer thread that groups concurrent commits into a
//! single transaction ("group commit"), so throughput does not pay one fsync per request.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;

use carillon_control::{Attendee, Capabilities, Change, MediaCapability, Meeting, Snapshot};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::{CommitTicket, Store, StoreError};

/// Schema migrations, applied in order. Never edit an entry once released; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../migrations/sqlite/0001_initial.sql"),
)];

/// Most submissions folded into one transaction.
const MAX_GROUP: usize = 1024;

/// SQLite's `synchronous` setting: what a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Durable across process crashes (the WAL is written before a commit returns) but not
    /// across power loss. SQLite's recommended setting for WAL mode, and the default here.
    Normal,
    /// Also fsyncs the WAL on every commit: durable across power loss, slower.
    Full,
}

enum Request {
    Commit(
        Vec<Change>,
        tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    ),
    Load(mpsc::Sender<Result<Snapshot, StoreError>>),
}

/// The embedded store. Cheap to share: it is a channel to the writer thread.
pub struct SqliteStore {
    tx: Mutex<mpsc::Sender<Request>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations and starts the
    /// writer thread.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match synchronous {
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("carillon-store".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore { tx: Mutex::new(tx) })
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(request)
            .map_err(|_| StoreError::Closed)
    }
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Request::Load(tx))?;
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    fn commit(&self, changes: Vec<Change>) -> CommitTicket {
        if changes.is_empty() {
            return CommitTicket::ready(Ok(()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.send(Request::Commit(changes, tx)) {
            Ok(()) => CommitTicket::pending(rx),
            Err(e) => CommitTicket::ready(Err(e)),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this binary's {newest}"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
            params![version, name],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied store migration");
    }
    Ok(())
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut commits = Vec::new();
        let mut pending = Some(first);
        while let Some(request) = pending.take() {
            match request {
                Request::Load(reply) => {
                    // Loads are rare (start-up): flush what is queued before answering.
                    flush(&mut conn, std::mem::take(&mut commits));
                    let _ = reply.send(load(&conn));
                }
                Request::Commit(changes, reply) => commits.push((changes, reply)),
            }
            if commits.len() < MAX_GROUP {
                pending = rx.try_recv().ok();
            }
        }
        flush(&mut conn, commits);
    }
}

type Pending = (
    Vec<Change>,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

/// Commits a group in one transaction. If that fails, each submission is retried alone so one
/// bad change cannot fail its neighbours.
fn flush(conn: &mut Connection, commits: Vec<Pending>) {
    if commits.is_empty() {
        return;
    }
    let group = conn.transaction().map_err(StoreError::from).and_then(|tx| {
        for (changes, _) in &commits {
            apply(&tx, changes)?;
        }
        tx.commit().map_err(StoreError::from)
    });
    match group {
        Ok(()) => {
            for (_, reply) in commits {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) if commits.len() == 1 => {
            tracing::error!(error = %e, "store commit failed");
            let (_, reply) = commits.into_iter().next().expect("one element");
            let _ = reply.send(Err(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, size = commits.len(), "group commit failed; retrying one by one");
            for one in commits {
                flush(conn, vec![one]);
            }
        }
    }
}

fn apply(tx: &Transaction<'_>, changes: &[Change]) -> Result<(), StoreError> {
    for change in changes {
        match change {
            Change::PutMeeting(m) => {
                let record = serde_json::to_string(m)
                    .map_err(|e| StoreError::Corrupt(format!("cannot encode meeting: {e}")))?;
                tx.prepare_cached(
                    "INSERT INTO meetings (meeting_id, primary_meeting_id, client_request_token, created_at, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (meeting_id) DO UPDATE SET record = excluded.record",
                )?
                .execute(params![
                    m.id.to_string(),
                    m.spec.primary_meeting_id.map(|p| p.to_string()),
                    m.client_request_token,
                    m.created_at as i64,
                    record
                ])?;
            }
            Change::RemoveMeeting(id) => {
                let id = id.to_string();
                tx.prepare_cached("DELETE FROM attendees WHERE meeting_id = ?1")?
                    .execute([&id])?;
                tx.prepare_cached("DELETE FROM meetings WHERE meeting_id = ?1")?
                    .execute([&id])?;
            }
            Change::PutAttendee(a) => {
                tx.prepare_cached(
                    "INSERT INTO attendees (attendee_id, meeting_id, seq, external_user_id, join_token, audio, video, content)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (attendee_id) DO UPDATE SET
                       audio = excluded.audio, video = excluded.video, content = excluded.content",
                )?
                .execute(params![
                    a.id.to_string(),
                    a.meeting_id.to_string(),
                    a.seq as i64,
                    a.external_user_id,
                    a.join_token,
                    a.capabilities.audio.as_str(),
                    a.capabilities.video.as_str(),
                    a.capabilities.content.as_str(),
                ])?;
            }
            Change::RemoveAttendee(_, attendee) => {
                tx.prepare_cached("DELETE FROM attendees WHERE attendee_id = ?1")?
                    .execute([attendee.to_string()])?;
            }
        }
    }
    Ok(())
}

fn load(conn: &Connection) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let mut stmt = conn.prepare("SELECT meeting_id, record FROM meetings ORDER BY created_at")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let record: String = row.get(1)?;
        let meeting: Meeting = serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("meeting {id}: {e}")))?;
        snapshot.meetings.push(meeting);
    }
    let mut stmt = conn.prepare(
        "SELECT attendee_id, meeting_id, seq, external_user_id, join_token, audio, video, content
         FROM attendees ORDER BY meeting_id, seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("attendee {id}: bad {what}"));
        let capability = |i: usize, what: &str| -> Result<MediaCapability, StoreError> {
            let text: String = row.get(i)?;
            MediaCapability::parse(&text).ok_or_else(|| corrupt(what))
        };
        let meeting_id: String = row.get(1)?;
        let seq: i64 = row.get(2)?;
        snapshot.attendees.push(Attendee {
            id: id.parse().map_err(|_| corrupt("id"))?,
            meeting_id: meeting_id.parse().map_err(|_| corrupt("meeting id"))?,
            seq: u64::try_from(seq).map_err(|_| corrupt("seq"))?,
            external_user_id: row.get(3)?,
            join_token: row.get(4)?,
            capabilities: Capabilities {
                audio: capability(5, "audio capability")?,
                video: capability(6, "video capability")?,
                content: capability(7, "content capability")?,
            },
        });
    }
    Ok(snapshot)
}

/// The schema version of a database file, without opening it for writing (operators, tests).
pub fn schema_version(path: &Path) -> Result<Option<i64>, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

//! SQLite backend: one file, WAL mode, one writer thread that groups concurrent commits into a
//! single transaction ("group commit"), so throughput does not pay one fsync per request.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use carillon_control::{
    Attendee, Capabilities, Change, EpochMillis, Event, MediaCapability, Meeting, Snapshot,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::{CommitTicket, Delivery, OutboxSignal, Settlement, Store, StoreError, TargetCounts};

/// Schema migrations, applied in order. Never edit an entry once released; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "outbox",
        include_str!("../migrations/sqlite/0002_outbox.sql"),
    ),
    (
        3,
        "clustered tables",
        include_str!("../migrations/sqlite/0003_clustered_tables.sql"),
    ),
];

/// How often the background checkpointer copies committed WAL frames into the database file.
const BACKGROUND_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The writer's own catch-up checkpoint (which lets the WAL restart from its beginning): when
/// it has been idle this long...
const CHECKPOINT_IDLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// ...or, under sustained load, after this many commits whatever the queue. The background
/// checkpointer has already copied nearly everything, so this one is short.
const CHECKPOINT_EVERY_COMMITS: u32 = 1_000;

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

/// What one submission writes.
enum Work {
    Changes(Vec<Change>),
    Settle(Vec<Settlement>),
    Prune(EpochMillis),
}

enum Request {
    Commit(Work, tokio::sync::oneshot::Sender<Result<(), StoreError>>),
    Load(mpsc::Sender<Result<Snapshot, StoreError>>),
}

/// The embedded store. Cheap to share: a channel to the writer thread, and a second
/// connection for the outbox reads (WAL lets it read while the writer writes).
pub struct SqliteStore {
    tx: Mutex<mpsc::Sender<Request>>,
    reader: Mutex<Connection>,
    signal: Arc<OutboxSignal>,
    /// Tells the background checkpointer to stop.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
        // Checkpoints never run inside a COMMIT that queued requests wait for: a background
        // thread copies WAL frames into the database file, and the writer does a short
        // catch-up checkpoint now and then (see writer_loop), which lets the WAL restart from
        // its beginning. The page cache is kept moderate: SQLite scans it at every commit's end.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "cache_size", -4_096)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        migrate(&mut conn)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", "ON")?;
        let signal = Arc::new(OutboxSignal::default());
        let (tx, rx) = mpsc::channel();
        let writer_signal = signal.clone();
        thread::Builder::new()
            .name("carillon-store".into())
            .spawn(move || writer_loop(conn, rx, &writer_signal))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(std::time::Duration::from_secs(5))?;
        let checkpoint_stop = stop.clone();
        thread::Builder::new()
            .name("carillon-checkpoint".into())
            .spawn(move || {
                while !checkpoint_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    thread::sleep(BACKGROUND_CHECKPOINT_INTERVAL);
                    checkpoint(&checkpointer);
                }
            })
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(SqliteStore {
            tx: Mutex::new(tx),
            reader: Mutex::new(reader),
            signal,
            stop,
        })
    }

    fn submit(&self, work: Work) -> CommitTicket {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.send(Request::Commit(work, tx)) {
            Ok(()) => CommitTicket::pending(rx),
            Err(e) => CommitTicket::ready(Err(e)),
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
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
        self.submit(Work::Changes(changes))
    }

    fn outbox_targets(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT target FROM outbox_deliveries WHERE dead_at IS NULL",
            )?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn outbox_due(
        &self,
        target: &str,
        now: EpochMillis,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT d.seq, d.attempts, e.record
                 FROM outbox_deliveries d JOIN outbox_events e ON e.seq = d.seq
                 WHERE d.target = ?1 AND d.dead_at IS NULL AND d.next_attempt <= ?2
                 ORDER BY d.seq
                 LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![target, sql_time(now), limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let attempts: i64 = row.get(1)?;
                let record: String = row.get(2)?;
                let event: Event = serde_json::from_str(&record)
                    .map_err(|e| StoreError::Corrupt(format!("outbox event {seq}: {e}")))?;
                out.push(Delivery {
                    seq: seq as u64,
                    target: target.to_owned(),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    event,
                });
            }
            Ok(out)
        })
    }

    fn outbox_next_due(&self, target: &str) -> Result<Option<EpochMillis>, StoreError> {
        self.read(|conn| {
            let next: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt) FROM outbox_deliveries
                     WHERE target = ?1 AND dead_at IS NULL",
                )?
                .query_row([target], |row| row.get(0))?;
            Ok(next.map(|n| n.max(0) as u64))
        })
    }

    fn outbox_counts(&self) -> Result<Vec<TargetCounts>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT target, SUM(dead_at IS NULL), SUM(dead_at IS NOT NULL)
                 FROM outbox_deliveries GROUP BY target ORDER BY target",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(TargetCounts {
                    target: row.get(0)?,
                    pending: row.get::<_, i64>(1)? as u64,
                    abandoned: row.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn outbox_settle(&self, settlements: Vec<Settlement>) -> CommitTicket {
        if settlements.is_empty() {
            return CommitTicket::ready(Ok(()));
        }
        self.submit(Work::Settle(settlements))
    }

    fn outbox_prune(&self, dead_before: EpochMillis) -> CommitTicket {
        self.submit(Work::Prune(dead_before))
    }

    fn outbox_signal(&self) -> &OutboxSignal {
        &self.signal
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

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Request>, signal: &OutboxSignal) {
    let mut since_checkpoint: u32 = 0;
    let mut last_checkpoint = std::time::Instant::now();
    loop {
        let first = match rx.try_recv() {
            Ok(request) => request,
            Err(mpsc::TryRecvError::Empty) => {
                // Nothing queued: nobody waits on a checkpoint now.
                if since_checkpoint > 0 && last_checkpoint.elapsed() >= CHECKPOINT_IDLE_INTERVAL {
                    checkpoint(&conn);
                    since_checkpoint = 0;
                    last_checkpoint = std::time::Instant::now();
                }
                match rx.recv_timeout(CHECKPOINT_IDLE_INTERVAL) {
                    Ok(request) => request,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let mut commits = Vec::new();
        let mut pending = Some(first);
        while let Some(request) = pending.take() {
            match request {
                Request::Load(reply) => {
                    // Loads are rare (start-up): flush what is queued before answering.
                    flush(&mut conn, std::mem::take(&mut commits), signal);
                    let _ = reply.send(load(&conn));
                }
                Request::Commit(work, reply) => commits.push((work, reply)),
            }
            if commits.len() < MAX_GROUP {
                pending = rx.try_recv().ok();
            }
        }
        since_checkpoint += 1;
        flush(&mut conn, commits, signal);
        if since_checkpoint >= CHECKPOINT_EVERY_COMMITS {
            checkpoint(&conn);
            since_checkpoint = 0;
            last_checkpoint = std::time::Instant::now();
        }
    }
    // A clean shutdown leaves the data in the main file.
    checkpoint(&conn);
}

/// Copies committed WAL frames into the database file (PASSIVE: never waits for the writer).
/// Run by the writer itself, the WAL then restarts from its beginning at the next commit, so
/// its size stays bounded even under sustained writes.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

type Pending = (Work, tokio::sync::oneshot::Sender<Result<(), StoreError>>);

/// Commits a group in one transaction. If that fails, each submission is retried alone so one
/// bad change cannot fail its neighbours. Once durable, the outbox signal is raised for the
/// targets of the events written.
fn flush(conn: &mut Connection, commits: Vec<Pending>, signal: &OutboxSignal) {
    if commits.is_empty() {
        return;
    }
    let mut targets: HashSet<String> = HashSet::new();
    let group = conn.transaction().map_err(StoreError::from).and_then(|tx| {
        for (work, _) in &commits {
            match work {
                Work::Changes(changes) => apply(&tx, changes, &mut targets)?,
                Work::Settle(settlements) => settle(&tx, settlements)?,
                Work::Prune(dead_before) => prune(&tx, *dead_before)?,
            }
        }
        tx.commit().map_err(StoreError::from)
    });
    match group {
        Ok(()) => {
            if !targets.is_empty() {
                signal.raise(targets.iter().map(String::as_str));
            }
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
                flush(conn, vec![one], signal);
            }
        }
    }
}

fn settle(tx: &Transaction<'_>, settlements: &[Settlement]) -> Result<(), StoreError> {
    for s in settlements {
        match s {
            Settlement::Delivered { seq, target } => {
                let removed = tx
                    .prepare_cached("DELETE FROM outbox_deliveries WHERE target = ?1 AND seq = ?2")?
                    .execute(params![target, *seq as i64])?;
                if removed > 0 {
                    settled_one(tx, *seq)?;
                }
            }
            Settlement::Retry {
                seq,
                target,
                next_attempt,
                error,
            } => {
                tx.prepare_cached(
                    "UPDATE outbox_deliveries
                     SET attempts = attempts + 1, next_attempt = ?3, last_error = ?4
                     WHERE seq = ?1 AND target = ?2 AND dead_at IS NULL",
                )?
                .execute(params![
                    *seq as i64,
                    target,
                    sql_time(*next_attempt),
                    error
                ])?;
            }
            Settlement::Abandon {
                seq,
                target,
                at,
                error,
            } => {
                tx.prepare_cached(
                    "UPDATE outbox_deliveries
                     SET attempts = attempts + 1, dead_at = ?3, last_error = ?4
                     WHERE seq = ?1 AND target = ?2 AND dead_at IS NULL",
                )?
                .execute(params![*seq as i64, target, sql_time(*at), error])?;
            }
            Settlement::AbandonOlder {
                target,
                created_before,
                at,
                error,
            } => {
                let n = tx
                    .prepare_cached(
                        "UPDATE outbox_deliveries SET dead_at = ?3, last_error = ?4
                         WHERE target = ?1 AND dead_at IS NULL AND created_at < ?2",
                    )?
                    .execute(params![
                        target,
                        sql_time(*created_before),
                        sql_time(*at),
                        error
                    ])?;
                tracing::debug!(target, abandoned = n, "outbox: gave up old deliveries");
            }
        }
    }
    Ok(())
}

/// Epoch milliseconds as SQLite's signed integer (far-future values saturate).
fn sql_time(t: EpochMillis) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// One delivery of event `seq` is gone: the event goes with its last one.
fn settled_one(tx: &Transaction<'_>, seq: u64) -> Result<(), StoreError> {
    let remaining: Option<i64> = tx
        .prepare_cached(
            "UPDATE outbox_events SET remaining = remaining - 1 WHERE seq = ?1 RETURNING remaining",
        )?
        .query_row([seq as i64], |row| row.get(0))
        .optional()?;
    if remaining.is_some_and(|r| r <= 0) {
        tx.prepare_cached("DELETE FROM outbox_events WHERE seq = ?1")?
            .execute([seq as i64])?;
    }
    Ok(())
}

fn prune(tx: &Transaction<'_>, dead_before: EpochMillis) -> Result<(), StoreError> {
    let seqs: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "DELETE FROM outbox_deliveries WHERE dead_at IS NOT NULL AND dead_at < ?1
             RETURNING seq",
        )?;
        let rows = stmt.query_map([sql_time(dead_before)], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for seq in &seqs {
        settled_one(tx, *seq as u64)?;
    }
    if !seqs.is_empty() {
        tracing::info!(pruned = seqs.len(), "outbox: removed abandoned deliveries");
    }
    Ok(())
}

/// Writes `changes`; adds the targets of the events written to `targets`.
fn apply(
    tx: &Transaction<'_>,
    changes: &[Change],
    targets: &mut HashSet<String>,
) -> Result<(), StoreError> {
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
                     ON CONFLICT (meeting_id, seq) DO UPDATE SET
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
            Change::RemoveAttendee(meeting, attendee) => {
                // A short scan within the meeting's clustered range (at most 250 rows).
                tx.prepare_cached(
                    "DELETE FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                )?
                .execute([meeting.to_string(), attendee.to_string()])?;
            }
            Change::Event(event) => {
                let mut keys: Vec<String> = event.targets.iter().map(|t| t.key()).collect();
                keys.sort_unstable();
                keys.dedup();
                let record = serde_json::to_string(event)
                    .map_err(|e| StoreError::Corrupt(format!("cannot encode event: {e}")))?;
                tx.prepare_cached(
                    "INSERT INTO outbox_events (created_at, remaining, record) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    sql_time(event.time),
                    keys.len() as i64,
                    record
                ])?;
                let seq = tx.last_insert_rowid();
                let mut insert = tx.prepare_cached(
                    "INSERT INTO outbox_deliveries (target, seq, created_at) VALUES (?1, ?2, ?3)",
                )?;
                for key in keys {
                    insert.execute(params![key, seq, sql_time(event.time)])?;
                    if !targets.contains(&key) {
                        targets.insert(key);
                    }
                }
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

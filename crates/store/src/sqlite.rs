//! SQLite backend: one file, WAL mode, one writer thread that groups concurrent commits into a
//! single transaction ("group commit"), so throughput does not pay one fsync per request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use carillon_control::{
    Attendee, Capabilities, Change, EpochMillis, Event, EventTarget, MediaCapability, Meeting,
    Snapshot,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::{CommitTicket, Delivery, OutboxSignal, Settlement, Store, StoreError, TargetCounts};

/// A migration's step in Rust, run inside its transaction.
type MigrationStep = fn(&Transaction<'_>) -> Result<(), StoreError>;

/// One schema migration: its SQL, then (for data SQL cannot convert) a step in Rust, both in
/// the same transaction.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
    then: Option<MigrationStep>,
}

/// Schema migrations, applied in order. Never edit an entry once released; add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/sqlite/0001_initial.sql"),
        then: None,
    },
    Migration {
        version: 2,
        name: "outbox",
        sql: include_str!("../migrations/sqlite/0002_outbox.sql"),
        then: None,
    },
    Migration {
        version: 3,
        name: "clustered tables",
        sql: include_str!("../migrations/sqlite/0003_clustered_tables.sql"),
        then: None,
    },
    Migration {
        version: 4,
        name: "compact outbox",
        sql: include_str!("../migrations/sqlite/0004_compact_outbox.sql"),
        then: Some(crate::legacy::reencode_outbox_records),
    },
];

/// How often the background checkpointer copies committed WAL frames into the database file.
const BACKGROUND_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The writer's own catch-up checkpoint (which lets the WAL restart from its beginning): when
/// it has been idle this long...
const CHECKPOINT_IDLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// ...or, under sustained load, after this many commits whatever the queue. The background
/// checkpointer has already copied nearly everything, so this one is short.
const CHECKPOINT_EVERY_COMMITS: u32 = 1_000;

/// Bits of an outbox rowid that hold the event's seq; the target's id is above them
/// (`(target << 44) | seq`, see migration 4).
const SEQ_BITS: u32 = 44;
/// Largest interned target id that fits in a rowid above the seq.
const MAX_TARGET_ID: i64 = (1 << (63 - SEQ_BITS)) - 1;
/// Largest seq.
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;
/// The rowid range of one target's deliveries, by its key (?1): no rows for an unknown key.
const TARGET_RANGE: &str = "BETWEEN (SELECT id << 44 FROM outbox_targets WHERE key = ?1)
        AND (SELECT (id << 44) | 17592186044415 FROM outbox_targets WHERE key = ?1)";
/// The rowid of one delivery, by the target's key (?1) and the event's seq (?2).
const DELIVERY_ID: &str = "((SELECT id FROM outbox_targets WHERE key = ?1) << 44) | ?2";

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
        let outbox = OutboxWriter::new(&conn)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", "ON")?;
        let signal = Arc::new(OutboxSignal::default());
        let (tx, rx) = mpsc::channel();
        let writer_signal = signal.clone();
        thread::Builder::new()
            .name("carillon-store".into())
            .spawn(move || writer_loop(conn, outbox, rx, &writer_signal))
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
                "SELECT key FROM outbox_targets t
                 WHERE EXISTS (SELECT 1 FROM outbox o
                               WHERE o.id BETWEEN t.id << 44 AND (t.id << 44) | 17592186044415)",
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
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id & {MAX_SEQ}, attempts, record FROM outbox
                 WHERE id {TARGET_RANGE} AND next_attempt <= ?2
                 ORDER BY id
                 LIMIT ?3"
            ))?;
            let mut rows = stmt.query(params![target, sql_time(now), limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let attempts: i64 = row.get(1)?;
                let event = match row.get_ref(2)? {
                    ValueRef::Blob(record) => crate::record::decode(record),
                    _ => Err("not a binary record".to_owned()),
                }
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
                .prepare_cached(&format!(
                    "SELECT MIN(next_attempt) FROM outbox WHERE id {TARGET_RANGE}"
                ))?
                .query_row([target], |row| row.get(0))?;
            Ok(next.map(|n| n.max(0) as u64))
        })
    }

    fn outbox_counts(&self) -> Result<Vec<TargetCounts>, StoreError> {
        self.read(|conn| {
            // Pending: each target's rowid range; abandoned: a scan of the (small) table of
            // given-up deliveries.
            let mut stmt = conn.prepare_cached(
                "SELECT key, pending, abandoned FROM (
                     SELECT t.key AS key,
                            (SELECT COUNT(*) FROM outbox o
                             WHERE o.id BETWEEN t.id << 44 AND (t.id << 44) | 17592186044415)
                              AS pending,
                            (SELECT COUNT(*) FROM outbox_abandoned a WHERE a.id >> 44 = t.id)
                              AS abandoned
                     FROM outbox_targets t)
                 WHERE pending + abandoned > 0
                 ORDER BY key",
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
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this binary's {newest}"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let (version, name) = (m.version, m.name);
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        if let Some(then) = m.then {
            then(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
            params![version, name],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied store migration");
    }
    Ok(())
}

fn writer_loop(
    mut conn: Connection,
    mut outbox: OutboxWriter,
    rx: mpsc::Receiver<Request>,
    signal: &OutboxSignal,
) {
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
                    flush(&mut conn, &mut outbox, std::mem::take(&mut commits), signal);
                    let _ = reply.send(load(&conn));
                }
                Request::Commit(work, reply) => commits.push((work, reply)),
            }
            if commits.len() < MAX_GROUP {
                pending = rx.try_recv().ok();
            }
        }
        since_checkpoint += 1;
        flush(&mut conn, &mut outbox, commits, signal);
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

/// The writer's side of the outbox: interned target ids, the next event number, and a
/// record buffer reused from one event to the next (the API path allocates nothing per event
/// here once its targets are known).
struct OutboxWriter {
    /// Target -> (id in outbox_targets, key). A memo of that table, valid within the current
    /// transaction: an entry added by a transaction that then fails would name a row that
    /// does not exist, so a failed transaction (and a prune that removed targets) clears it,
    /// and it is refilled from the table on demand.
    ids: HashMap<EventTarget, (i64, String)>,
    /// The `seq` of the next event. Numbers of a failed transaction are simply skipped.
    next_seq: i64,
    record: Vec<u8>,
    /// Targets that got events in the current flush (id, key): raised after the commit.
    touched: Vec<(i64, String)>,
}

impl OutboxWriter {
    fn new(conn: &Connection) -> Result<OutboxWriter, StoreError> {
        // The largest seq: from the end of each target's rowid range (no scan of the backlog)
        // and among the abandoned deliveries (a short table), so no number is ever reused.
        let last: i64 = conn.query_row(
            "SELECT MAX(
                 (SELECT COALESCE(MAX(
                      (SELECT MAX(o.id) FROM outbox o
                       WHERE o.id BETWEEN t.id << 44 AND (t.id << 44) | 17592186044415)
                      & 17592186044415), 0)
                  FROM outbox_targets t),
                 (SELECT COALESCE(MAX(id & 17592186044415), 0) FROM outbox_abandoned))",
            [],
            |row| row.get(0),
        )?;
        Ok(OutboxWriter {
            ids: HashMap::new(),
            next_seq: last + 1,
            record: Vec::with_capacity(256),
            touched: Vec::new(),
        })
    }

    /// The id of `target`, interning it if needed (inside the caller's transaction).
    fn target_id(&mut self, tx: &Transaction<'_>, target: &EventTarget) -> Result<i64, StoreError> {
        if let Some((id, _)) = self.ids.get(target) {
            return Ok(*id);
        }
        let key = target.key();
        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM outbox_targets WHERE key = ?1")?
            .query_row([&key], |row| row.get(0))
            .optional()?;
        let id: i64 = match existing {
            Some(id) => id,
            None => tx
                .prepare_cached("INSERT INTO outbox_targets (key) VALUES (?1) RETURNING id")?
                .query_row([&key], |row| row.get(0))?,
        };
        if !(0..=MAX_TARGET_ID).contains(&id) {
            return Err(StoreError::Corrupt(format!(
                "outbox target id {id} out of range"
            )));
        }
        self.ids.insert(target.clone(), (id, key));
        Ok(id)
    }

    /// Writes `event`: one row per distinct target, all with the same seq and record.
    fn write(&mut self, tx: &Transaction<'_>, event: &Event) -> Result<(), StoreError> {
        let targets = &event.meeting.targets;
        if targets.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq;
        if seq > MAX_SEQ {
            return Err(StoreError::Database(
                "the outbox ran out of event numbers".into(),
            ));
        }
        self.next_seq += 1;
        self.record.clear();
        crate::record::encode(event, &mut self.record);
        let mut insert =
            tx.prepare_cached("INSERT INTO outbox (id, created_at, record) VALUES (?1, ?2, ?3)")?;
        for (i, target) in targets.iter().enumerate() {
            // A handful of targets: a repeated one is found by looking back.
            if targets[..i].contains(target) {
                continue;
            }
            let id = self.target_id(tx, target)?;
            let rowid = (id << SEQ_BITS) | seq;
            insert.execute(params![rowid, sql_time(event.time), &self.record])?;
            if !self.touched.iter().any(|(t, _)| *t == id)
                && let Some((_, key)) = self.ids.get(target)
            {
                self.touched.push((id, key.clone()));
            }
        }
        Ok(())
    }
}

/// Commits a group in one transaction. If that fails, each submission is retried alone so one
/// bad change cannot fail its neighbours. Once durable, the outbox signal is raised for the
/// targets of the events written.
fn flush(
    conn: &mut Connection,
    outbox: &mut OutboxWriter,
    commits: Vec<Pending>,
    signal: &OutboxSignal,
) {
    if commits.is_empty() {
        return;
    }
    outbox.touched.clear();
    let group = conn.transaction().map_err(StoreError::from).and_then(|tx| {
        for (work, _) in &commits {
            match work {
                Work::Changes(changes) => apply(&tx, outbox, changes)?,
                Work::Settle(settlements) => settle(&tx, settlements)?,
                Work::Prune(dead_before) => prune(&tx, outbox, *dead_before)?,
            }
        }
        tx.commit().map_err(StoreError::from)
    });
    if group.is_err() {
        // Interned ids written by the failed transaction were rolled back with it.
        outbox.ids.clear();
    }
    match group {
        Ok(()) => {
            if !outbox.touched.is_empty() {
                signal.raise(outbox.touched.iter().map(|(_, key)| key.as_str()));
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
                flush(conn, outbox, vec![one], signal);
            }
        }
    }
}

fn settle(tx: &Transaction<'_>, settlements: &[Settlement]) -> Result<(), StoreError> {
    for s in settlements {
        match s {
            Settlement::Delivered { seq, target } => {
                tx.prepare_cached(&format!("DELETE FROM outbox WHERE id = {DELIVERY_ID}"))?
                    .execute(params![target, sql_seq(*seq)])?;
            }
            Settlement::Retry {
                seq,
                target,
                next_attempt,
                error,
            } => {
                tx.prepare_cached(&format!(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?3, last_error = ?4
                     WHERE id = {DELIVERY_ID}"
                ))?
                .execute(params![
                    target,
                    sql_seq(*seq),
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
                // Moved to the abandoned deliveries (a no-op if it is no longer pending).
                tx.prepare_cached(&format!(
                    "INSERT INTO outbox_abandoned (dead_at, id, created_at, attempts, last_error, record)
                     SELECT ?3, id, created_at, attempts + 1, ?4, record FROM outbox
                     WHERE id = {DELIVERY_ID}"
                ))?
                .execute(params![target, sql_seq(*seq), sql_time(*at), error])?;
                tx.prepare_cached(&format!("DELETE FROM outbox WHERE id = {DELIVERY_ID}"))?
                    .execute(params![target, sql_seq(*seq)])?;
            }
            Settlement::AbandonOlder {
                target,
                created_before,
                at,
                error,
            } => {
                let n = tx
                    .prepare_cached(&format!(
                        "INSERT INTO outbox_abandoned (dead_at, id, created_at, attempts, last_error, record)
                         SELECT ?3, id, created_at, attempts, ?4, record FROM outbox
                         WHERE id {TARGET_RANGE} AND created_at < ?2"
                    ))?
                    .execute(params![
                        target,
                        sql_time(*created_before),
                        sql_time(*at),
                        error
                    ])?;
                tx.prepare_cached(&format!(
                    "DELETE FROM outbox WHERE id {TARGET_RANGE} AND created_at < ?2"
                ))?
                .execute(params![target, sql_time(*created_before)])?;
                tracing::debug!(target, abandoned = n, "outbox: gave up old deliveries");
            }
        }
    }
    Ok(())
}

/// A delivery's seq as SQLite's integer (out-of-range values match no row).
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).map_or(-1, |s| if s > MAX_SEQ { -1 } else { s })
}

/// Epoch milliseconds as SQLite's signed integer (far-future values saturate).
fn sql_time(t: EpochMillis) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Removes deliveries abandoned before `dead_before`, and the targets left with no delivery
/// (so the target table stays as small as the set of targets in use).
fn prune(
    tx: &Transaction<'_>,
    outbox: &mut OutboxWriter,
    dead_before: EpochMillis,
) -> Result<(), StoreError> {
    let pruned = tx
        .prepare_cached("DELETE FROM outbox_abandoned WHERE dead_at < ?1")?
        .execute([sql_time(dead_before)])?;
    if pruned > 0 {
        tracing::info!(pruned, "outbox: removed abandoned deliveries");
    }
    let unused = tx
        .prepare_cached(
            "DELETE FROM outbox_targets
             WHERE NOT EXISTS (SELECT 1 FROM outbox o
                               WHERE o.id BETWEEN outbox_targets.id << 44
                                              AND (outbox_targets.id << 44) | 17592186044415)
               AND NOT EXISTS (SELECT 1 FROM outbox_abandoned a
                               WHERE a.id >> 44 = outbox_targets.id)",
        )?
        .execute([])?;
    if unused > 0 {
        // Later submissions of this transaction look their targets up again.
        outbox.ids.clear();
    }
    Ok(())
}

/// Writes `changes`, events included.
fn apply(
    tx: &Transaction<'_>,
    outbox: &mut OutboxWriter,
    changes: &[Change],
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
            Change::Event(event) => outbox.write(tx, event)?,
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

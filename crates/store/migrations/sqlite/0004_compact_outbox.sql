-- A cheaper outbox: one B-tree insert per event and target instead of two, with small rows
-- appended at the end of the table.
--
-- * outbox_targets interns the target keys (`sqs:<arn>`, `webhook:<url>`, ...): a row names
--   its target by a small integer instead of repeating a 50-100 byte text.
-- * outbox holds one row per event and target, with the event's record in the row itself: a
--   delivered row is one delete (no shared event row to count down). With the usual single
--   target per meeting, an event costs exactly one row.
-- * The key packs both into the rowid: id = (target << 44) | seq. A target's deliveries are
--   one contiguous rowid range in event order (what a worker pages through), and with one
--   target every new row is an append at the table's right edge, which SQLite does without
--   rebalancing and packs full (a composite WITHOUT ROWID key inserts as an index: a seek
--   and 2/3-full pages). target and seq stay readable as generated columns, computed on
--   read only. Limits: 2^19 interned targets, 2^44 events.
-- * Abandoned deliveries move to outbox_abandoned, so outbox has no secondary index at all.
-- * record is a compact binary encoding (carillon-store's record.rs, about 110 bytes for an
--   attendee event) instead of JSON (about 450). The rows moved here from version 3 still
--   hold their JSON text; the binary that applies this migration re-encodes them in the same
--   transaction.
--
-- seq is the event's number (the same in each of its rows); the writer hands them out in
-- increasing order, continuing from the largest one present at start-up.
CREATE TABLE outbox_targets (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- 0 for a delivery never attempted: due at once, whatever the workers' clock.
    next_attempt INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    record       BLOB NOT NULL,
    target       INTEGER GENERATED ALWAYS AS (id >> 44) VIRTUAL,
    seq          INTEGER GENERATED ALWAYS AS (id & 17592186044415) VIRTUAL
);

-- Deliveries given up (too old and still failing), kept for inspection until pruned. A table
-- of their own rather than a flag and an index in outbox: no index to maintain on the insert
-- of every event, and pruning is a range delete on the key.
CREATE TABLE outbox_abandoned (
    dead_at    INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    record     BLOB NOT NULL,
    PRIMARY KEY (dead_at, id)
) WITHOUT ROWID;

INSERT INTO outbox_targets (key) SELECT DISTINCT target FROM outbox_deliveries ORDER BY target;

INSERT INTO outbox (id, created_at, attempts, next_attempt, last_error, record)
    SELECT (t.id << 44) | d.seq, d.created_at, d.attempts, d.next_attempt, d.last_error, e.record
    FROM outbox_deliveries d
    JOIN outbox_events e ON e.seq = d.seq
    JOIN outbox_targets t ON t.key = d.target
    WHERE d.dead_at IS NULL;

INSERT INTO outbox_abandoned (dead_at, id, created_at, attempts, last_error, record)
    SELECT d.dead_at, (t.id << 44) | d.seq, d.created_at, d.attempts, d.last_error, e.record
    FROM outbox_deliveries d
    JOIN outbox_events e ON e.seq = d.seq
    JOIN outbox_targets t ON t.key = d.target
    WHERE d.dead_at IS NOT NULL;

DROP INDEX outbox_dead;
DROP TABLE outbox_deliveries;
DROP TABLE outbox_events;

-- The events outbox. An event is written in the same transaction as the state change that
-- caused it: one row in outbox_events (the JSON of carillon_control::Event) and one row per
-- target in outbox_deliveries. Workers read the due deliveries of one target in event order,
-- delete a delivery once it succeeded (and the event once none is left: `remaining`), or push
-- its next attempt back. Kept to two B-trees per event and target: the write cost sits on
-- every API call that emits an event.
CREATE TABLE outbox_events (
    seq        INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    -- Deliveries not yet delivered (abandoned ones included, until pruned).
    remaining  INTEGER NOT NULL,
    record     TEXT NOT NULL
);

CREATE TABLE outbox_deliveries (
    target       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- 0 for a delivery never attempted: due at once, whatever the workers' clock.
    next_attempt INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    -- Set when the delivery was given up (too old and still failing); pruned later.
    dead_at      INTEGER,
    PRIMARY KEY (target, seq)
) WITHOUT ROWID;

-- Abandoned deliveries, for pruning (only abandoned rows are in this index).
CREATE INDEX outbox_dead ON outbox_deliveries (dead_at) WHERE dead_at IS NOT NULL;

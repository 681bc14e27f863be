-- Meetings: the record is the JSON of carillon_control::Meeting; the columns beside it are
-- what start-up and operators query on.
CREATE TABLE meetings (
    meeting_id           TEXT PRIMARY KEY,
    primary_meeting_id   TEXT,
    client_request_token TEXT,
    created_at           INTEGER NOT NULL,
    record               TEXT NOT NULL
);

CREATE TABLE attendees (
    attendee_id      TEXT PRIMARY KEY,
    meeting_id       TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL
);

CREATE INDEX attendees_by_meeting ON attendees (meeting_id, seq);

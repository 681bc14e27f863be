-- Fewer B-trees per write: an attendee was a rowid row plus the index of its TEXT primary key
-- plus attendees_by_meeting (three B-tree inserts each); clustered on (meeting_id, seq) it is
-- one insert, appended within its meeting. (Meetings keep their rowid table: their JSON rows
-- are too large for a clustered table to pay off.)
CREATE TABLE attendees_v3 (
    meeting_id       TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    attendee_id      TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    PRIMARY KEY (meeting_id, seq)
) WITHOUT ROWID;

INSERT INTO attendees_v3 (meeting_id, seq, attendee_id, external_user_id, join_token, audio, video, content)
    SELECT meeting_id, seq, attendee_id, external_user_id, join_token, audio, video, content FROM attendees;
DROP TABLE attendees;
ALTER TABLE attendees_v3 RENAME TO attendees;

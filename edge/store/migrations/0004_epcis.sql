-- The EPCIS outbox and its delivery upstream (DESIGN invariants 4 and 6).
--
-- epcis_outbox gets one row per change the line reports upstream, in the transaction of the change itself:
-- a serial transition to commissioned, rejected, destroyed or sampled (written by the serial ledger with the
-- serials it moved and the state each left), or an aggregation event (written by the trigger below). The
-- EPCIS events are rendered from these rows and the append-only history they name, so an event's content and
-- its hash ID are fixed when the change commits, and a re-send is the same event with the same ID.

CREATE TABLE epcis_outbox (
    id                   INTEGER PRIMARY KEY,
    batch_id             INTEGER NOT NULL,
    transition_id        INTEGER,
    aggregation_event_id INTEGER,
    -- For a transition: JSON [[serial_id, from_state], ...] of the serials it moved.
    serials              TEXT,
    CHECK ((transition_id IS NULL) <> (aggregation_event_id IS NULL)),
    CHECK ((transition_id IS NULL) = (serials IS NULL))
) STRICT;

-- No foreign keys, like serial_history: both ids come from the transaction that writes this row, and the
-- checks would cost more than the row on the commissioning path.
CREATE INDEX epcis_outbox_batch ON epcis_outbox (batch_id, id);

CREATE TRIGGER aggregation_event_to_outbox AFTER INSERT ON aggregation_event
    WHEN NEW.action IN ('pack', 'unpack', 'replace', 'destroy', 'void_label')
BEGIN
    INSERT INTO epcis_outbox (batch_id, aggregation_event_id) VALUES (NEW.batch_id, NEW.id);
END;

CREATE TRIGGER epcis_outbox_append_only_update BEFORE UPDATE ON epcis_outbox
BEGIN
    SELECT RAISE(ABORT, 'epcis_outbox is append-only');
END;

CREATE TRIGGER epcis_outbox_append_only_delete BEFORE DELETE ON epcis_outbox
BEGIN
    SELECT RAISE(ABORT, 'epcis_outbox is append-only');
END;

-- A store written before this migration: its reportable history enters the outbox in the order it happened
-- (a commissioning before the packing at the same instant).
INSERT INTO epcis_outbox (batch_id, transition_id, aggregation_event_id, serials)
SELECT batch_id, transition_id, aggregation_event_id, serials FROM (
    SELECT t.at AS at, 0 AS kind, t.id AS source_id, t.batch_id AS batch_id, t.id AS transition_id,
           NULL AS aggregation_event_id, json_group_array(json_array(h.serial_id, h.from_state)) AS serials
      FROM transition AS t JOIN serial_history AS h ON h.transition_id = t.id
     WHERE t.batch_id IS NOT NULL AND t.to_state IN (4, 5, 6, 7)
     GROUP BY t.id
    UNION ALL
    SELECT e.at, 1, e.id, e.batch_id, NULL, e.id, NULL
      FROM aggregation_event AS e
     WHERE e.action IN ('pack', 'unpack', 'replace', 'destroy', 'void_label')
)
ORDER BY at, kind, source_id;

-- What every event of a batch shares, fixed the first time its events are rendered (read point, business
-- location, time zone, work-order transaction): changing the line configuration later changes no event and no
-- event ID of a batch already reported.
CREATE TABLE epcis_context (
    batch_id     INTEGER PRIMARY KEY REFERENCES batch (id),
    context_json TEXT NOT NULL CHECK (json_valid(context_json)),
    at           TEXT NOT NULL
) STRICT;

-- A delivery target as the line first saw it: batches closed before then are not sent unless an operator asks.
CREATE TABLE epcis_target (
    target      TEXT PRIMARY KEY,
    since       TEXT NOT NULL
) STRICT;

-- A batch on its way to one target, with the partner profile its documents are written with (a snapshot, so a
-- re-send is the same document). complete: every outbox row of the closed batch is cut into messages.
CREATE TABLE epcis_batch (
    target       TEXT NOT NULL,
    batch_id     INTEGER NOT NULL REFERENCES batch (id),
    profile_json TEXT NOT NULL CHECK (json_valid(profile_json)),
    complete     INTEGER NOT NULL CHECK (complete IN (0, 1)),
    created_at   TEXT NOT NULL,
    completed_at TEXT,
    PRIMARY KEY (target, batch_id)
) STRICT;

-- What goes upstream, per delivery target: a batch's outbox rows cut into documents. The rows of a message
-- are fixed when it is cut, so every attempt sends the same events with the same IDs. Messages of one target
-- are delivered in id order, never reordered: a message waits until the one before it was delivered.
CREATE TABLE epcis_message (
    id            INTEGER PRIMARY KEY,
    target        TEXT NOT NULL,
    batch_id      INTEGER NOT NULL REFERENCES batch (id),
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    first_outbox  INTEGER NOT NULL,
    last_outbox   INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,
    events        INTEGER,
    name          TEXT,
    sha256        TEXT,
    capture_id    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    delivered_at  TEXT,
    CHECK (first_outbox <= last_outbox),
    UNIQUE (target, batch_id, seq),
    FOREIGN KEY (target, batch_id) REFERENCES epcis_batch (target, batch_id)
) STRICT;

CREATE INDEX epcis_message_queue ON epcis_message (target, state, id);

-- Every attempt to deliver a message and how it ended, for the operator and the auditor.
CREATE TABLE epcis_attempt (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES epcis_message (id),
    at          TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('stored', 'duplicate', 'retry', 'failed', 'refused', 'resend')),
    status      INTEGER,
    detail      TEXT NOT NULL,
    operator    TEXT
) STRICT;

CREATE INDEX epcis_attempt_message ON epcis_attempt (message_id);

CREATE TRIGGER epcis_attempt_append_only_update BEFORE UPDATE ON epcis_attempt
BEGIN
    SELECT RAISE(ABORT, 'epcis_attempt is append-only');
END;

CREATE TRIGGER epcis_attempt_append_only_delete BEFORE DELETE ON epcis_attempt
BEGIN
    SELECT RAISE(ABORT, 'epcis_attempt is append-only');
END;

-- A message's content never changes once cut.
CREATE TRIGGER epcis_message_rows_fixed BEFORE UPDATE OF target, batch_id, seq, first_outbox, last_outbox
    ON epcis_message
BEGIN
    SELECT RAISE(ABORT, 'the outbox rows of an EPCIS message are fixed when it is cut');
END;

CREATE TRIGGER epcis_context_fixed BEFORE UPDATE ON epcis_context
BEGIN
    SELECT RAISE(ABORT, 'the EPCIS context of a batch is fixed once its events were rendered');
END;

CREATE TRIGGER epcis_batch_profile_fixed BEFORE UPDATE OF profile_json ON epcis_batch
BEGIN
    SELECT RAISE(ABORT, 'the partner profile of a batch on its way upstream is fixed');
END;

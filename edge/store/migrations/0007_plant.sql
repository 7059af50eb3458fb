-- Messages to the plant systems (MES batch record, ERP shipping manifest and production confirmation) and their
-- delivery (docs/plant-messages.md).
--
-- plant_outbox gets one row per change the plant systems hear of, written by the triggers below in the
-- transaction of the change itself (a batch closing, a pallet closing), whatever code made the change. The body
-- is rendered from the store's append-only history the first time the message is sent, and fixed from then on,
-- so every attempt and every target gets the same bytes under the same message id.

CREATE TABLE plant_outbox (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('batch_record', 'batch_manifest', 'pallet_manifest')),
    batch_id     INTEGER NOT NULL REFERENCES batch (id),
    -- The pallet of a pallet manifest; NULL otherwise.
    container_id INTEGER REFERENCES container (id),
    -- The change the message reports: a batch_event (batch close) or an aggregation_event (pallet close) id.
    event_id     INTEGER NOT NULL,
    -- The last aggregation_event when the change committed: a manifest shows the containers as they stood then,
    -- however they are reworked later.
    as_of        INTEGER NOT NULL,
    at           TEXT NOT NULL,
    body         TEXT CHECK (body IS NULL OR json_valid(body)),
    sha256       TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    rendered_at  TEXT,
    CHECK ((kind = 'pallet_manifest') = (container_id IS NOT NULL)),
    CHECK ((body IS NULL) = (sha256 IS NULL))
) STRICT;

CREATE TRIGGER batch_closed_to_plant_outbox AFTER INSERT ON batch_event WHEN NEW.to_state = 'closed'
BEGIN
    INSERT INTO plant_outbox (kind, batch_id, event_id, as_of, at)
    SELECT 'batch_record', NEW.batch_id, NEW.id, coalesce(max(id), 0), NEW.at FROM aggregation_event;
    INSERT INTO plant_outbox (kind, batch_id, event_id, as_of, at)
    SELECT 'batch_manifest', NEW.batch_id, NEW.id, coalesce(max(id), 0), NEW.at FROM aggregation_event;
END;

CREATE TRIGGER pallet_closed_to_plant_outbox AFTER INSERT ON aggregation_event
    WHEN NEW.action = 'close' AND (SELECT level FROM container WHERE id = NEW.container_id) = 'pallet'
BEGIN
    INSERT INTO plant_outbox (kind, batch_id, container_id, event_id, as_of, at)
    VALUES ('pallet_manifest', NEW.batch_id, NEW.container_id, NEW.id, NEW.id, NEW.at);
END;

CREATE TRIGGER plant_outbox_fixed BEFORE UPDATE ON plant_outbox
    WHEN OLD.body IS NOT NULL
      OR NEW.kind IS NOT OLD.kind OR NEW.batch_id IS NOT OLD.batch_id OR NEW.container_id IS NOT OLD.container_id
      OR NEW.event_id IS NOT OLD.event_id OR NEW.as_of IS NOT OLD.as_of OR NEW.at IS NOT OLD.at OR NEW.id IS NOT OLD.id
BEGIN
    SELECT RAISE(ABORT, 'a plant message is fixed once rendered; only its first rendering is stored');
END;

CREATE TRIGGER plant_outbox_never_deleted BEFORE DELETE ON plant_outbox
BEGIN
    SELECT RAISE(ABORT, 'plant_outbox is append-only');
END;

-- A plant target as the line first saw it: messages queued before then (outbox ids up to since_outbox) are not
-- sent to it, so configuring a new target does not flood it with history.
CREATE TABLE plant_target (
    target       TEXT PRIMARY KEY,
    since_outbox INTEGER NOT NULL,
    at           TEXT NOT NULL
) STRICT;

-- One message on its way to one target. Messages of a target go in outbox order; a failed one holds the rest
-- back until an operator re-sends it, so a manifest never arrives after the batch record that follows it.
CREATE TABLE plant_delivery (
    target       TEXT NOT NULL REFERENCES plant_target (target),
    outbox_id    INTEGER NOT NULL REFERENCES plant_outbox (id),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    reason       TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    delivered_at TEXT,
    PRIMARY KEY (target, outbox_id)
) STRICT;

CREATE INDEX plant_delivery_queue ON plant_delivery (target, state, outbox_id);

-- Every attempt and how it ended, and every operator's re-send, for the operator and the auditor.
CREATE TABLE plant_attempt (
    id        INTEGER PRIMARY KEY,
    target    TEXT NOT NULL,
    outbox_id INTEGER NOT NULL REFERENCES plant_outbox (id),
    at        TEXT NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('stored', 'duplicate', 'retry', 'failed', 'resend')),
    status    INTEGER,
    detail    TEXT NOT NULL,
    operator  TEXT
) STRICT;

CREATE INDEX plant_attempt_delivery ON plant_attempt (target, outbox_id);

CREATE TRIGGER plant_attempt_append_only_update BEFORE UPDATE ON plant_attempt
BEGIN
    SELECT RAISE(ABORT, 'plant_attempt is append-only');
END;

CREATE TRIGGER plant_attempt_append_only_delete BEFORE DELETE ON plant_attempt
BEGIN
    SELECT RAISE(ABORT, 'plant_attempt is append-only');
END;

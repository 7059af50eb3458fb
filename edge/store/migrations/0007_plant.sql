-- Messages to the plant systems (work-order acknowledgements and the batch record for the MES, shipping manifests
-- and the production confirmation for the ERP) and their delivery (docs/plant-messages.md).
--
-- plant_outbox gets one row per change the plant systems hear of, written by the triggers below in the
-- transaction of the change itself (a work order accepted or refused, a batch closing, a pallet closing),
-- whatever code made the change. The body
-- is rendered from the store's append-only history the first time the message is sent, and fixed from then on,
-- so every attempt and every target gets the same bytes under the same message id.

-- A work order the line refused (unreadable, not for this line, a product or market unknown, imported already),
-- with what was submitted, so the refusal can be acknowledged to the MES and audited.
CREATE TABLE work_order_refusal (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    line_id    TEXT NOT NULL,
    -- As the text names it, when it could be read that far.
    work_order TEXT,
    source     TEXT NOT NULL,
    operator   TEXT,
    reason     TEXT NOT NULL,
    text       TEXT NOT NULL,
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64)
) STRICT;

CREATE TRIGGER work_order_refusal_append_only_update BEFORE UPDATE ON work_order_refusal
BEGIN
    SELECT RAISE(ABORT, 'work_order_refusal is append-only');
END;

CREATE TRIGGER work_order_refusal_append_only_delete BEFORE DELETE ON work_order_refusal
BEGIN
    SELECT RAISE(ABORT, 'work_order_refusal is append-only');
END;

CREATE TABLE plant_outbox (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('work_order_ack', 'batch_record', 'batch_manifest', 'pallet_manifest')),
    -- The batch reported on; NULL only for the acknowledgement of a refused work order (refusal_id instead).
    batch_id     INTEGER REFERENCES batch (id),
    refusal_id   INTEGER REFERENCES work_order_refusal (id),
    -- The pallet of a pallet manifest; NULL otherwise.
    container_id INTEGER REFERENCES container (id),
    -- The change the message reports: a batch_event (work order accepted, batch closed), an aggregation_event
    -- (pallet closed) or a work_order_refusal id.
    event_id     INTEGER NOT NULL,
    -- The last aggregation_event when the change committed: a manifest shows the containers as they stood then,
    -- however they are reworked later.
    as_of        INTEGER NOT NULL,
    at           TEXT NOT NULL,
    body         TEXT CHECK (body IS NULL OR json_valid(body)),
    sha256       TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    rendered_at  TEXT,
    CHECK ((kind = 'pallet_manifest') = (container_id IS NOT NULL)),
    CHECK ((batch_id IS NULL) <> (refusal_id IS NULL)),
    CHECK (refusal_id IS NULL OR kind = 'work_order_ack'),
    CHECK ((body IS NULL) = (sha256 IS NULL))
) STRICT;

CREATE TRIGGER work_order_accepted_to_plant_outbox AFTER INSERT ON batch_event WHEN NEW.to_state = 'created'
BEGIN
    INSERT INTO plant_outbox (kind, batch_id, event_id, as_of, at)
    VALUES ('work_order_ack', NEW.batch_id, NEW.id, 0, NEW.at);
END;

CREATE TRIGGER work_order_refused_to_plant_outbox AFTER INSERT ON work_order_refusal
BEGIN
    INSERT INTO plant_outbox (kind, refusal_id, event_id, as_of, at) VALUES ('work_order_ack', NEW.id, NEW.id, 0, NEW.at);
END;

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
      OR NEW.refusal_id IS NOT OLD.refusal_id
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

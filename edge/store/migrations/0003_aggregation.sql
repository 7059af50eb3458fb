-- Aggregation: containers (bundles, cases, pallets), what each holds, SSCCs, and the log of every change
-- (DESIGN invariant 5). Nothing here is ever deleted: membership ends by marking the row unpacked, a voided
-- SSCC stays voided, and the event log is append-only (the triggers at the end refuse edits).

-- The SSCC serial reference counter per GS1 Company Prefix and extension digit: the next reference to try.
-- It only goes up, so an SSCC allocated once (used or voided) is never allocated again.
CREATE TABLE sscc_counter (
    company_prefix  TEXT NOT NULL CHECK (length(company_prefix) BETWEEN 6 AND 12),
    extension_digit INTEGER NOT NULL CHECK (extension_digit BETWEEN 0 AND 9),
    next_reference  INTEGER NOT NULL CHECK (next_reference >= 0),
    PRIMARY KEY (company_prefix, extension_digit)
) STRICT;

-- identifier: the 18-digit SSCC (kind sscc) or the SGTIN of a trade-item case (kind sgtin); a voided SSCC
-- leaves this column for sscc_voided and the container takes a fresh one. capacity: children per the recipe.
CREATE TABLE container (
    id             INTEGER PRIMARY KEY,
    batch_id       INTEGER NOT NULL REFERENCES batch (id),
    level          TEXT NOT NULL CHECK (level IN ('bundle', 'case', 'pallet')),
    identifier     TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL CHECK (kind IN ('sscc', 'sgtin')),
    capacity       INTEGER NOT NULL CHECK (capacity > 0),
    state          TEXT NOT NULL CHECK (state IN ('open', 'closed', 'destroyed')),
    partial_reason TEXT,
    closed_by      TEXT,
    opened_at      TEXT NOT NULL,
    closed_at      TEXT,
    opened_by      TEXT,
    station        TEXT,
    CHECK (kind <> 'sscc' OR length(identifier) = 18),
    -- A container closed short says why and who decided it.
    CHECK (partial_reason IS NULL OR closed_by IS NOT NULL)
) STRICT;

CREATE INDEX container_batch ON container (batch_id, level, state);

CREATE TABLE sscc_voided (
    sscc         TEXT PRIMARY KEY CHECK (length(sscc) = 18),
    container_id INTEGER NOT NULL REFERENCES container (id),
    reason       TEXT NOT NULL,
    operator     TEXT NOT NULL,
    at           TEXT NOT NULL
) STRICT;

-- The append-only log step 7 turns into EPCIS: pack (ADD), unpack (DELETE), destroy, and the container's own
-- life (open, close, void_label). serial_ids and container_ids are JSON arrays of the children the event
-- names; for replace, serial_ids is [old, new]. identifier is the container's identifier when the event
-- happened (for void_label the voided SSCC; new_identifier the one that replaces it).
CREATE TABLE aggregation_event (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    batch_id       INTEGER NOT NULL REFERENCES batch (id),
    action         TEXT NOT NULL CHECK (action IN
                       ('pack', 'unpack', 'replace', 'destroy', 'close', 'void_label', 'open')),
    container_id   INTEGER REFERENCES container (id),
    identifier     TEXT,
    new_identifier TEXT,
    serial_ids     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(serial_ids)),
    container_ids  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(container_ids)),
    operator       TEXT,
    reason         TEXT,
    station        TEXT
) STRICT;

CREATE INDEX aggregation_event_batch ON aggregation_event (batch_id, id);

-- One row per child put into a parent: a unit (serial_id) or a container (child_id). The row stays when the
-- child leaves; unpacked_event then names the event that took it out. The partial unique indexes make a
-- child be in at most one parent at a time, whatever the code above does.
CREATE TABLE aggregation_member (
    id             INTEGER PRIMARY KEY,
    parent_id      INTEGER NOT NULL REFERENCES container (id),
    serial_id      INTEGER REFERENCES serial (id),
    child_id       INTEGER REFERENCES container (id),
    packed_event   INTEGER NOT NULL REFERENCES aggregation_event (id),
    unpacked_event INTEGER REFERENCES aggregation_event (id),
    CHECK ((serial_id IS NULL) <> (child_id IS NULL)),
    CHECK (child_id IS NULL OR child_id <> parent_id)
) STRICT;

CREATE UNIQUE INDEX aggregation_member_unit ON aggregation_member (serial_id)
    WHERE serial_id IS NOT NULL AND unpacked_event IS NULL;
CREATE UNIQUE INDEX aggregation_member_child ON aggregation_member (child_id)
    WHERE child_id IS NOT NULL AND unpacked_event IS NULL;
CREATE INDEX aggregation_member_parent ON aggregation_member (parent_id) WHERE unpacked_event IS NULL;

-- Only a commissioned unit is packed, and a packed unit stays commissioned until it is unpacked: a move of
-- the serial ledger (a QA sample, a destroy) that would leave a decommissioned unit in a case is refused.
CREATE TRIGGER aggregation_member_commissioned BEFORE INSERT ON aggregation_member
    WHEN NEW.serial_id IS NOT NULL AND (SELECT state FROM serial WHERE id = NEW.serial_id) IS NOT 4
BEGIN
    SELECT RAISE(ABORT, 'only a commissioned unit is packed');
END;

CREATE TRIGGER serial_packed_stays_commissioned BEFORE UPDATE OF state ON serial
    WHEN OLD.state = 4 AND NEW.state <> 4 AND EXISTS (
        SELECT 1 FROM aggregation_member WHERE serial_id = NEW.id AND unpacked_event IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'a packed unit leaves commissioned only after it is unpacked');
END;

CREATE TRIGGER aggregation_event_append_only_update BEFORE UPDATE ON aggregation_event
BEGIN
    SELECT RAISE(ABORT, 'aggregation_event is append-only');
END;

CREATE TRIGGER aggregation_event_append_only_delete BEFORE DELETE ON aggregation_event
BEGIN
    SELECT RAISE(ABORT, 'aggregation_event is append-only');
END;

CREATE TRIGGER sscc_voided_append_only_update BEFORE UPDATE ON sscc_voided
BEGIN
    SELECT RAISE(ABORT, 'a voided SSCC stays voided');
END;

CREATE TRIGGER sscc_voided_append_only_delete BEFORE DELETE ON sscc_voided
BEGIN
    SELECT RAISE(ABORT, 'a voided SSCC stays voided');
END;

CREATE TRIGGER container_never_deleted BEFORE DELETE ON container
BEGIN
    SELECT RAISE(ABORT, 'containers are never deleted: destroy them');
END;

CREATE TRIGGER aggregation_member_never_deleted BEFORE DELETE ON aggregation_member
BEGIN
    SELECT RAISE(ABORT, 'membership rows are never deleted: unpack instead');
END;

-- A voided SSCC is never given to a container again (allocation checks too; this holds for supplied ones).
CREATE TRIGGER container_sscc_not_voided BEFORE UPDATE OF identifier ON container
    WHEN EXISTS (SELECT 1 FROM sscc_voided WHERE sscc = NEW.identifier)
BEGIN
    SELECT RAISE(ABORT, 'this SSCC was voided and is never reused');
END;

CREATE TRIGGER container_new_sscc_not_voided BEFORE INSERT ON container
    WHEN EXISTS (SELECT 1 FROM sscc_voided WHERE sscc = NEW.identifier)
BEGIN
    SELECT RAISE(ABORT, 'this SSCC was voided and is never reused');
END;

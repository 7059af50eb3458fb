-- OPEN-SCS (OPC 30260): serials requested from a Level-3 pool server, and the serial states reported back to it.
--
-- Written by edge.openscs only. A request is recorded (with its RequestToken) before it is sent, so a request
-- whose answer was lost is sent again with the same token and its serials are imported once (the import keeps
-- the token: serial_import.request_token). A report is recorded with the serials it names before it is sent, and
-- is sent until the server accepts it; its id goes with it, so a report sent twice (an answer lost) is applied
-- once.

-- A batch's serials may come over OPEN-SCS: serial_source takes 'open_scs'. SQLite changes a CHECK only by
-- rebuilding the table (foreign keys are off while a migration runs; ids are kept, so every reference holds).
CREATE TABLE batch_new (
    id           INTEGER PRIMARY KEY,
    line_id      TEXT NOT NULL,
    work_order   TEXT NOT NULL UNIQUE,
    product_id   TEXT NOT NULL,
    gtin         TEXT NOT NULL CHECK (length(gtin) = 14),
    lot          TEXT NOT NULL,
    expiry       TEXT NOT NULL CHECK (length(expiry) = 6),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    market       TEXT NOT NULL,
    serial_source TEXT NOT NULL CHECK (serial_source IN
                     ('local', 'upstream_list', 'external_complete_codes', 'open_scs')),
    state        TEXT NOT NULL CHECK (state IN
                     ('created', 'released', 'running', 'paused', 'completing', 'closed', 'cancelled')),
    product_json TEXT NOT NULL,
    order_json   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

INSERT INTO batch_new (id, line_id, work_order, product_id, gtin, lot, expiry, quantity, market, serial_source, state,
                       product_json, order_json, created_at, updated_at)
SELECT id, line_id, work_order, product_id, gtin, lot, expiry, quantity, market, serial_source, state, product_json,
       order_json, created_at, updated_at FROM batch;

DROP TABLE batch;

ALTER TABLE batch_new RENAME TO batch;

CREATE UNIQUE INDEX batch_one_active_per_line ON batch (line_id)
    WHERE state IN ('running', 'paused', 'completing');

CREATE TABLE openscs_request (
    id            INTEGER PRIMARY KEY,
    token         TEXT NOT NULL UNIQUE,
    -- SNRequestAllocated, SNRequestUnallocated or SNRequestUnassigned.
    kind          TEXT NOT NULL CHECK (kind IN ('allocated', 'unallocated', 'unassigned')),
    gtin          TEXT NOT NULL,
    product_id    TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    count         INTEGER NOT NULL CHECK (count > 0),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'imported', 'failed')),
    received      INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0),
    -- The server's ReturnStatus, or why the request failed.
    status        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

CREATE INDEX openscs_request_pending ON openscs_request (gtin, id) WHERE state = 'pending';

-- One OPEN-SCS method call to make: SNtoAllocated, SNtoEncoded, SIDCommissioningEvent, LabelsScrappingEvent,
-- LabelsSamplingEvent, SIDDestroyingEvent or SNReturnAllocated, for the serials it lists (JSON array of text),
-- sent in id order.
CREATE TABLE openscs_report (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER NOT NULL REFERENCES batch (id),
    gtin        TEXT NOT NULL,
    method      TEXT NOT NULL,
    serials     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
) STRICT;

CREATE INDEX openscs_report_unsent ON openscs_report (id) WHERE sent_at IS NULL;

-- What the server is told of each serial of an OPEN-SCS batch: the OPENSCSSerialNumberStateEnum value of the last
-- report queued for it (no row: the state it was received in).
CREATE TABLE openscs_serial (
    serial_id INTEGER PRIMARY KEY,
    told      INTEGER NOT NULL CHECK (told BETWEEN 0 AND 11)
) STRICT;

-- How far the reports of each OPEN-SCS batch have got: the highest serial id reported encoded (serials go to
-- printers in id order), whether its serials were reported allocated, and whether it is finished with (closed or
-- cancelled, its unused serials returned).
CREATE TABLE openscs_batch (
    batch_id        INTEGER PRIMARY KEY REFERENCES batch (id),
    encoded_through INTEGER NOT NULL DEFAULT 0,
    allocated_told  INTEGER NOT NULL DEFAULT 0 CHECK (allocated_told IN (0, 1)),
    done            INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1))
) STRICT;

-- The last EPCIS outbox row whose serial transition was turned into reports (commissioning and decommissioning
-- come from there, with the serials each moved). It starts past what a store already holds: no batch drew its
-- serials over OPEN-SCS before this migration.
CREATE TABLE openscs_cursor (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

INSERT INTO openscs_cursor (name, value) SELECT 'outbox', coalesce(max(id), 0) FROM epcis_outbox;

-- Batches, the serial ledger and its history (DESIGN invariants 1, 2 and 4).
-- Rows of serial, transition and serial_history are never deleted: a serial is unique per GTIN forever.

CREATE TABLE batch (
    id           INTEGER PRIMARY KEY,
    line_id      TEXT NOT NULL,
    work_order   TEXT NOT NULL UNIQUE,
    product_id   TEXT NOT NULL,
    gtin         TEXT NOT NULL CHECK (length(gtin) = 14),
    lot          TEXT NOT NULL,
    expiry       TEXT NOT NULL CHECK (length(expiry) = 6),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    market       TEXT NOT NULL,
    serial_source TEXT NOT NULL CHECK (serial_source IN ('local', 'upstream_list', 'external_complete_codes')),
    state        TEXT NOT NULL CHECK (state IN
                     ('created', 'released', 'running', 'paused', 'completing', 'closed', 'cancelled')),
    product_json TEXT NOT NULL,
    order_json   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

-- One batch on a line at a time, whatever the code above the store does.
CREATE UNIQUE INDEX batch_one_active_per_line ON batch (line_id)
    WHERE state IN ('running', 'paused', 'completing');

CREATE TABLE batch_event (
    id         INTEGER PRIMARY KEY,
    batch_id   INTEGER NOT NULL REFERENCES batch (id),
    at         TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    operator   TEXT,
    reason     TEXT NOT NULL
) STRICT;

CREATE INDEX batch_event_batch ON batch_event (batch_id);

-- Serials and complete codes received from upstream, one row per delivery.
CREATE TABLE serial_import (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    gtin          TEXT NOT NULL,
    source        TEXT NOT NULL,
    request_token TEXT,
    count         INTEGER NOT NULL,
    operator      TEXT
) STRICT;

-- origin: 0 generated at random here, 1 generated in sequence here, 2 an upstream list, 3 a complete code
-- supplied from outside (kept byte-exact in code).
CREATE TABLE serial (
    id        INTEGER PRIMARY KEY,
    gtin      TEXT NOT NULL,
    serial    TEXT NOT NULL,
    state     INTEGER NOT NULL CHECK (state BETWEEN 0 AND 9),
    batch_id  INTEGER REFERENCES batch (id),
    origin    INTEGER NOT NULL CHECK (origin BETWEEN 0 AND 3),
    import_id INTEGER REFERENCES serial_import (id),
    code      BLOB,
    UNIQUE (gtin, serial)
) STRICT;

-- Drawing the next serials of a batch for a printer, and counting a batch by state, read this index only.
CREATE INDEX serial_batch_state ON serial (batch_id, state);

-- The pool: serials received from upstream and not yet drawn, oldest first. Partial, so moves elsewhere
-- never touch it.
CREATE INDEX serial_pool ON serial (gtin, id) WHERE state = 0;

-- One row per move of one or more serials together: when, to what, by which device or station, why, who.
CREATE TABLE transition (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    batch_id INTEGER REFERENCES batch (id),
    to_state INTEGER NOT NULL CHECK (to_state BETWEEN 0 AND 9),
    count    INTEGER NOT NULL,
    device   TEXT,
    reason   TEXT NOT NULL,
    operator TEXT
) STRICT;

CREATE INDEX transition_batch ON transition (batch_id, to_state);

-- Each serial's moves. No foreign keys: at 100,000 moves a second the checks would cost more than
-- the rows, and both ids come from the same transaction that writes this row.
CREATE TABLE serial_history (
    serial_id     INTEGER NOT NULL,
    transition_id INTEGER NOT NULL,
    from_state    INTEGER NOT NULL,
    PRIMARY KEY (serial_id, transition_id)
) STRICT, WITHOUT ROWID;

-- The reconciliation report frozen when the batch closed (counts, checks, who closed it).
CREATE TABLE batch_report (
    batch_id  INTEGER PRIMARY KEY REFERENCES batch (id),
    at        TEXT NOT NULL,
    report    TEXT NOT NULL,
    sha256    TEXT NOT NULL
) STRICT;

-- Store identity, and one row per daemon run so a start can tell that the previous run died.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES ('store_id', :random_uuid), ('created_at', :now);

CREATE TABLE daemon_run (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    stopped_at    TEXT,
    clean         INTEGER NOT NULL DEFAULT 0 CHECK (clean IN (0, 1)),
    version       TEXT NOT NULL,
    config_sha256 TEXT
) STRICT;

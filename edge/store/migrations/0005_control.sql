-- Users, electronic signatures and the audit trail (21 CFR Part 11; DESIGN invariant 7).
--
-- Written by edge.control.accounts, edge.control.signatures and edge.control.audit only: the audit trail's
-- hash chain is computed in Python, so a row inserted any other way is refused by the trigger below.

-- A user account. Names are unique whatever their case, so "Alice" and "alice" can never be two people; a user
-- is disabled, never deleted, so a name stays bound to the records and signatures made under it (§11.100(a)).
CREATE TABLE app_user (
    name            TEXT NOT NULL PRIMARY KEY COLLATE NOCASE CHECK (length(name) BETWEEN 1 AND 64),
    full_name       TEXT,
    role            TEXT NOT NULL,
    -- argon2id, in its own encoding (parameters and salt included), so a change of parameters rehashes at login.
    password_hash   TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at      TEXT NOT NULL,
    password_set_at TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until    TEXT
) STRICT;

CREATE TRIGGER app_user_never_deleted BEFORE DELETE ON app_user
BEGIN
    SELECT RAISE(ABORT, 'a user is disabled, never deleted: the name stays bound to its records and signatures');
END;

CREATE TRIGGER app_user_name_fixed BEFORE UPDATE OF name, created_at ON app_user
BEGIN
    SELECT RAISE(ABORT, 'a user''s name and creation time never change');
END;

-- An electronic signature (§11.50, §11.70): who signed, with which role and full name at that moment, what it
-- means, and the sha256 of the canonical JSON of the record signed, which binds it to that content.
CREATE TABLE signature (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    user       TEXT NOT NULL REFERENCES app_user (name),
    full_name  TEXT NOT NULL,
    role       TEXT NOT NULL,
    meaning    TEXT NOT NULL,
    permission TEXT NOT NULL,
    subject    TEXT NOT NULL,
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64)
) STRICT;

CREATE INDEX signature_subject ON signature (subject, id);

CREATE TRIGGER signature_append_only_update BEFORE UPDATE ON signature
BEGIN
    SELECT RAISE(ABORT, 'signature is append-only');
END;

CREATE TRIGGER signature_append_only_delete BEFORE DELETE ON signature
BEGIN
    SELECT RAISE(ABORT, 'signature is append-only');
END;

-- The audit trail: hash = sha256(prev_hash || canonical JSON of [id, at, actor, action, subject, details_json]).
-- AUTOINCREMENT keeps the highest id ever issued in sqlite_sequence, so entries cut off the end are seen as
-- missing by `lineside audit verify`, and new entries after such a cut leave a gap instead of filling it.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    actor        TEXT,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details_json TEXT NOT NULL CHECK (json_valid(details_json)),
    prev_hash    TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash         TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;

CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_chained BEFORE INSERT ON audit_log
    WHEN NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), NEW.prev_hash)
      OR NEW.id <= coalesce((SELECT max(id) FROM audit_log), 0)
BEGIN
    SELECT RAISE(ABORT, 'an audit_log entry must follow the last one (its prev_hash); write it through AuditTrail');
END;

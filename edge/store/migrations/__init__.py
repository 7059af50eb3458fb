"""Schema migrations, one file each: NNNN_short_name.sql, applied in version order, never edited once released.

Each statement may use the named parameters :now (the store clock's UTC time, ISO 8601) and
:random_uuid (a fresh uuid4 per migration). Tables are declared STRICT; on SQLite older than 3.37
the runner drops that keyword. Foreign keys are off while a migration runs (so a table can be
rebuilt) and checked with PRAGMA foreign_key_check before it commits.
"""

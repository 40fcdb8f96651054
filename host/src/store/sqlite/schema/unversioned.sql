-- Test fixture: the schema every cosell made before versioned migrations (`CREATE TABLE IF NOT
-- EXISTS`), without the columns `add_missing_columns` added on top. Kept as it was released.
CREATE TABLE IF NOT EXISTS mapping_versions (
    step        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    wasm        BLOB    NOT NULL,
    size        INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    uploaded_at TEXT    NOT NULL,
    PRIMARY KEY (step, version)
);
CREATE TABLE IF NOT EXISTS mapping_activations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    step         TEXT NOT NULL,
    version      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    FOREIGN KEY (step, version) REFERENCES mapping_versions (step, version)
);
CREATE INDEX IF NOT EXISTS mapping_activations_by_step ON mapping_activations (step, id);
CREATE TABLE IF NOT EXISTS mapping_pins (
    step      TEXT NOT NULL,
    version   TEXT NOT NULL,
    pinned_at TEXT NOT NULL,
    PRIMARY KEY (step, version),
    FOREIGN KEY (step, version) REFERENCES mapping_versions (step, version)
);
CREATE TABLE IF NOT EXISTS sync_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    side         TEXT    NOT NULL,
    record_id    TEXT    NOT NULL,
    lock_key     TEXT    NOT NULL,
    origin       TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    last_error   TEXT,
    received_at  TEXT    NOT NULL,
    failed_at    TEXT
);
CREATE INDEX IF NOT EXISTS sync_events_ready ON sync_events (state, available_at, id);
CREATE INDEX IF NOT EXISTS sync_events_by_key ON sync_events (lock_key, state);
CREATE TABLE IF NOT EXISTS sync_links (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    referral_id    TEXT UNIQUE,
    opportunity_id TEXT UNIQUE,
    pc_hash        TEXT,
    pc_snapshot    TEXT,
    crm_hash       TEXT,
    crm_snapshot   TEXT,
    last_error     TEXT,
    updated_at     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_cursors (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_trail (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    record    TEXT NOT NULL,
    direction TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_trail_by_record ON audit_trail (record, id);
CREATE TABLE IF NOT EXISTS referral_intents (
    opportunity_id TEXT PRIMARY KEY,
    started_at_ms  INTEGER NOT NULL
);

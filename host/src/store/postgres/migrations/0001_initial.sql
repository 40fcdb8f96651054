-- The state of cosell on PostgreSQL: the tables of the SQLite schema at its version 3, in
-- PostgreSQL's types. Times the host reads back are text (RFC 3339, UTC, milliseconds), as on
-- SQLite, so both backends answer the same strings.
CREATE TABLE mapping_versions (
    step        TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    wasm        BYTEA  NOT NULL,
    size        BIGINT NOT NULL,
    source      TEXT   NOT NULL,
    uploaded_at TEXT   NOT NULL,
    -- Upload order among versions uploaded in the same millisecond (SQLite's rowid).
    seq         BIGSERIAL,
    PRIMARY KEY (step, version)
);
CREATE TABLE mapping_activations (
    id           BIGSERIAL PRIMARY KEY,
    step         TEXT NOT NULL,
    version      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    FOREIGN KEY (step, version) REFERENCES mapping_versions (step, version)
);
CREATE INDEX mapping_activations_by_step ON mapping_activations (step, id);
CREATE TABLE mapping_pins (
    step      TEXT NOT NULL,
    version   TEXT NOT NULL,
    pinned_at TEXT NOT NULL,
    PRIMARY KEY (step, version),
    FOREIGN KEY (step, version) REFERENCES mapping_versions (step, version)
);
CREATE TABLE sync_events (
    id             BIGSERIAL PRIMARY KEY,
    side           TEXT    NOT NULL,
    record_id      TEXT    NOT NULL,
    lock_key       TEXT    NOT NULL,
    origin         TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    -- ms since the epoch: when a pending event is ready; while it runs, when its attempt began.
    available_at   BIGINT  NOT NULL,
    last_error     TEXT,
    received_at    TEXT    NOT NULL,
    failed_at      TEXT,
    lease_until    BIGINT,
    parked_step    TEXT,
    parked_version TEXT
);
CREATE INDEX sync_events_ready ON sync_events (state, available_at, id);
CREATE INDEX sync_events_by_key ON sync_events (lock_key, state);
CREATE INDEX sync_events_by_record ON sync_events (record_id, side, state);
CREATE TABLE sync_links (
    id             BIGSERIAL PRIMARY KEY,
    referral_id    TEXT UNIQUE,
    opportunity_id TEXT UNIQUE,
    pc_hash        TEXT,
    pc_snapshot    TEXT,
    crm_hash       TEXT,
    crm_snapshot   TEXT,
    last_error     TEXT,
    updated_at     TEXT NOT NULL
);
CREATE TABLE sync_cursors (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE credentials (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE audit_trail (
    id        BIGSERIAL PRIMARY KEY,
    at        TEXT NOT NULL,
    record    TEXT NOT NULL,
    direction TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_trail_by_record ON audit_trail (record, id);
CREATE TABLE referral_intents (
    opportunity_id TEXT PRIMARY KEY,
    started_at_ms  BIGINT NOT NULL
);

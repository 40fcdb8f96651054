-- The shadow version of a step (at most one): a stored version that runs beside the active one
-- on live records, whose outputs are compared and never written (deploy/shadow.rs).
CREATE TABLE mapping_shadows (
    step     TEXT PRIMARY KEY,
    version  TEXT NOT NULL,
    since    TEXT NOT NULL,
    FOREIGN KEY (step, version) REFERENCES mapping_versions (step, version)
);
-- The last pipeline run of each record and direction (overwritten), what `cosell mapping
-- replay` runs again (with the same event and time). Pruned with the audit trail's age limit.
CREATE TABLE pipeline_last_runs (
    record          TEXT NOT NULL,
    direction       TEXT NOT NULL,
    event           TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    input           TEXT NOT NULL,
    current_doc     TEXT,
    config_revision BIGINT,
    output          TEXT,
    error           TEXT,
    at              TEXT NOT NULL,
    PRIMARY KEY (record, direction)
);
CREATE INDEX pipeline_last_runs_at ON pipeline_last_runs (at);
-- Every config a step has had, numbered per step (1, 2, …); the highest is in force.
CREATE TABLE step_config_revisions (
    step       TEXT NOT NULL,
    revision   BIGINT NOT NULL,
    config     TEXT NOT NULL,
    source     TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (step, revision)
);

-- The mapping step and version a parked event failed on.
ALTER TABLE sync_events ADD COLUMN parked_step TEXT;
ALTER TABLE sync_events ADD COLUMN parked_version TEXT;

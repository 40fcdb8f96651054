-- When a running event's lease ends (ms since the epoch): then another worker may take it.
ALTER TABLE sync_events ADD COLUMN lease_until INTEGER;

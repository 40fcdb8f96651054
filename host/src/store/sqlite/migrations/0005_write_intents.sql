-- A write to either service recorded before it is sent (sync/write_intent.rs): what it changes
-- and the record it was mapped from, so that a run after a crash tells cosell's own write from
-- the other side's change. NULL when no write is in flight.
ALTER TABLE sync_links ADD COLUMN pending_write TEXT;

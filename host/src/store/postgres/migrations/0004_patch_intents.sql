-- A Partner Center PATCH recorded before it is sent (sync/patch_intent.rs): the operations and
-- the opportunity they were mapped from, so that a run after a crash tells cosell's own write
-- from Microsoft's change. NULL when no PATCH is in flight.
ALTER TABLE sync_links ADD COLUMN pc_pending TEXT;

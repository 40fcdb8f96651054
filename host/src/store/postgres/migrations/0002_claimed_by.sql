-- Who claimed a running event: the replica id whose liveness lock proves its claimer alive
-- (store/postgres/liveness.rs). A running event whose claimer holds no such lock is taken
-- back at once by the next claim; NULL (a claim made before this version, or by a store that
-- never named its replica) is taken back by its lease only.
ALTER TABLE sync_events ADD COLUMN claimed_by TEXT;

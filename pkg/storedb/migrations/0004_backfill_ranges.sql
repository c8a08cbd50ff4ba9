-- 0004: ranged backfills. A backfill of a key range (ehrsync backfill --from
-- --to) keeps its own position under "<table>#backfill" in ehrsync.positions
-- and its row here under that name, with its bounds: a backfill started
-- again with the same bounds while unfinished resumes; with other bounds it
-- starts over. The bounds are key values in the JSON form of package
-- watermarks (a snapshot position whose last_key is the bound): as sensitive
-- as ehrsync.positions.
ALTER TABLE ehrsync.backfills
    ADD COLUMN range_from jsonb,
    ADD COLUMN range_to   jsonb;

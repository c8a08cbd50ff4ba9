-- 0006: a key reconciliation that deletes rows is recorded in
-- ehrsync.position_history (reason 'reconcile', from and to the position
-- it left as it was), so that the rows it soft-deletes, and its change-log
-- entries, name it in _ehrsync_batch like every other write.
--
-- The new check only allows more than the old one, which every existing row
-- met: it is added NOT VALID, enforced for new rows without a scan of the
-- history.
ALTER TABLE ehrsync.position_history DROP CONSTRAINT position_history_reason_check;
ALTER TABLE ehrsync.position_history ADD CONSTRAINT position_history_reason_check
    CHECK (reason IN ('sync', 'snapshot', 'backfill', 'reset', 'rewind', 'reconcile')) NOT VALID;

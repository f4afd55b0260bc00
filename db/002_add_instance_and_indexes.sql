-- Several gateway hosts share the table: each row names the transmitter that wrote it.
ALTER TABLE transmitter.batches ADD COLUMN IF NOT EXISTS instance text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'batches_status_check'
                   AND conrelid = 'transmitter.batches'::regclass) THEN
        ALTER TABLE transmitter.batches ADD CONSTRAINT batches_status_check
            CHECK (status IN ('pending', 'sending', 'sent', 'failed'));
    END IF;
END
$$;

-- The start-up sweep: rows this instance left pending or sending.
CREATE INDEX IF NOT EXISTS batches_instance_status_idx ON transmitter.batches (instance, status);
-- Operators look at recent batches first.
CREATE INDEX IF NOT EXISTS batches_created_at_idx ON transmitter.batches (created_at);

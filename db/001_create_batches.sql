-- The table of the Python service this daemon replaces, unchanged.
CREATE SCHEMA IF NOT EXISTS transmitter;

CREATE TABLE IF NOT EXISTS transmitter.batches (
    id              uuid PRIMARY KEY,
    status          text NOT NULL,
    item_count      integer NOT NULL DEFAULT 0,
    payload_size    bigint NOT NULL DEFAULT 0,
    destination_url text,
    http_status     integer,
    error_message   text,
    retry_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    completed_at    timestamptz
);

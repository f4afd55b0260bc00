#!/usr/bin/env python3
"""The daemon consumes nothing until the database has its schema (docs/architecture.md §6, §8): what it delivers
must be recorded, else it is sent again. Tried as a new user would, DATABASE_MIGRATE=false and
no `transmitter --migrate` yet: /ready answers 503 'database: schema missing, run transmitter
--migrate', nothing is consumed or sent, one warning is logged; once `transmitter --migrate` ran,
it starts by itself and delivers everything. The same with a schema older than the binary's
(a migration not applied), and a stop while it waits. With DATABASE_MIGRATE=true it applies the
missing migration itself; and against a database that does not exist yet, it starts once the
database is created."""

import os
import time
import uuid

from harness import check, free_port, log, main, wait_for

INTERVAL_S = 5  # the daemon's SCHEMA_INTERVAL
LAST = "002_add_instance_and_indexes.sql"


def ready_with(t, field, value, timeout=30):
    def seen():
        s, b = t.ready()
        return (s, b) if b and b.get(field) == value else None
    return wait_for(seen, timeout, f"/ready to say {field} {value}", interval=0.2)


def consumed_nothing(case, t, n, what):
    check(case.queue_counts() == (n, 0), f"{what}: all {n} events still ready in the queue, none taken "
          f"({case.queue_counts()})")
    check(not case.receiver.requests(), f"{what}: no request reached the destination")
    check(t.running(), f"{what}: the daemon keeps running")


def body(case):
    case.declare()
    ids = case.publish(300, prefix="schema")
    t = case.transmitter(DATABASE_MIGRATE="false", BATCH_SIZE=50, BATCH_INTERVAL_S=1)
    mark = t.log_offset()
    t.start()
    status, r = ready_with(t, "database", "schema_missing")
    log(f"/ready: {status} {r}")
    check(status == 503 and "database: schema missing, run transmitter --migrate" in r["reasons"]
          and r["checks"]["database"] == {"ok": False, "state": "schema_missing"},
          "no schema: /ready 503, 'database: schema missing, run transmitter --migrate'")
    check(t.stats()["database"]["schema"] == "missing", "stats: database.schema missing")
    time.sleep(INTERVAL_S + 2)
    consumed_nothing(case, t, len(ids), "schema missing")
    warnings = t.log_since(mark).count("Database schema missing, run transmitter --migrate")
    check(warnings == 1, f"logged once, not at every check ({warnings})")

    rc, out, err = case.cli("--migrate", settings={"DATABASE_MIGRATE": "false"})
    check(rc == 0, "transmitter --migrate")
    t0 = time.monotonic()
    t.wait_ready(timeout=INTERVAL_S + 20)
    log(f"ready {time.monotonic() - t0:.1f} s after the migration")
    case.wait_delivered(ids, timeout=60)
    case.wait_settled(timeout=60)
    rows = case.rows()
    check(all(r["status"] == "sent" for r in rows) and sum(int(r["item_count"]) for r in rows) == len(ids),
          f"every delivered event recorded: {len(rows)} 'sent' rows with {len(ids)} events")
    check("Database schema is current" in t.log_since(mark), "the start is logged")
    case.account(ids, name="schema_gate after --migrate")
    check(t.stop() == 0, "SIGTERM: exit status 0")

    # Older than the binary's: one migration not applied.
    case.sql(f"DELETE FROM transmitter.schema_migrations WHERE version = '{LAST}'")
    ids2 = case.publish(100, prefix="older")
    requests_before = len(case.receiver.requests())
    mark = t.log_offset()
    t.start()
    status, r = ready_with(t, "database", "schema_older")
    check(status == 503 and f"database: schema older than this transmitter ({LAST} not applied), run transmitter "
          "--migrate" in r["reasons"], f"a migration missing: /ready 503 naming {LAST}")
    time.sleep(2)
    check(case.queue_counts() == (len(ids2), 0) and len(case.receiver.requests()) == requests_before,
          "schema older: nothing consumed, nothing sent")
    t0 = time.monotonic()
    check(t.stop() == 0 and time.monotonic() - t0 < 5, "SIGTERM while waiting for the schema: exit 0 at once")

    # DATABASE_MIGRATE=true applies what is missing, then starts.
    t2 = case.transmitter(DATABASE_MIGRATE="true", BATCH_SIZE=50, BATCH_INTERVAL_S=1)
    t2.log_path = os.path.join(case.workdir, "transmitter-migrate.log")
    t2.start()
    t2.wait_ready(timeout=30)
    case.wait_delivered(ids2, timeout=60)
    check(f"Applied migration {LAST}" in t2.log_text(), f"DATABASE_MIGRATE=true applied {LAST} itself")
    case.wait_settled(timeout=60)
    check(t2.stop() == 0, "SIGTERM: exit status 0")

    # A database that does not exist yet: it waits, then migrates and starts once it is there.
    name = "t_schema_late_" + uuid.uuid4().hex[:8]
    url = case.db_url.rsplit("/", 1)[0] + "/" + name
    ids3 = case.publish(50, prefix="late")
    t3 = case.transmitter(DATABASE_MIGRATE="true", DATABASE_URL=url, SERVER_PORT=free_port(), BATCH_SIZE=50,
                          BATCH_INTERVAL_S=1)
    t3.log_path = os.path.join(case.workdir, "transmitter-late.log")
    t3.start()
    status, r = ready_with(t3, "database", "disconnected")
    check(status == 503 and "database: not connected, reconnecting in the background" in r["reasons"],
          "no database yet: /ready 503, database not connected")
    time.sleep(2)
    check(case.queue_counts() == (len(ids3), 0), "no database yet: nothing consumed")
    check("Cannot read the database schema yet" in t3.log_text(), "why is logged")
    case.devenv.psql_admin(f"CREATE DATABASE {name} OWNER discovery")
    t3.wait_ready(timeout=INTERVAL_S + 30)
    case.wait_delivered(ids3, timeout=60)
    check(True, "the database created: it migrated, started and delivered")
    check(t3.stop() == 0, "SIGTERM: exit status 0")
    case.devenv.psql_admin(f"DROP DATABASE {name}")


if __name__ == "__main__":
    main("schema_gate", body)

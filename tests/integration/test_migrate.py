#!/usr/bin/env python3
"""transmitter --migrate from the build tree, with no migrations directory anywhere: the migrations of
db/ are built into the binary. A fresh database gets the whole schema and one schema_migrations row per
file of db/; a second run applies nothing; the obsolete TRANSMITTER_MIGRATIONS_DIR is ignored with one
warning. A failed migration is logged once, by --migrate and by a daemon with DATABASE_MIGRATE=true
that reads the schema before it consumes anything and goes on trying (docs/architecture.md §6)."""

import os
import re
import subprocess
import tempfile
import time

from harness import SOURCE_ROOT, TRANSMITTER_BIN, check, free_port, log, main

COLUMNS = ["completed_at", "created_at", "destination_url", "error_message", "http_status", "id", "instance",
           "item_count", "payload_size", "retry_count", "sent_at", "status"]
INDEXES = ["batches_created_at_idx", "batches_instance_status_idx", "batches_pkey"]


def migrate(case, **extra):
    env = case.transmitter().environment()
    env.pop("TRANSMITTER_MIGRATIONS_DIR", None)
    env.update(extra)
    # From a directory of its own: nothing relative to the source tree can be what it reads.
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([TRANSMITTER_BIN, "--config", "/dev/null", "--migrate"], env=env, cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    log(f"transmitter --migrate: exit {r.returncode}\n{r.stdout.rstrip()}")
    return r


def body(case):
    sql_files = sorted(f for f in os.listdir(os.path.join(SOURCE_ROOT, "db")) if f.endswith(".sql"))
    check(len(sql_files) >= 2, f"db/ holds the migrations: {sql_files}")
    check(not case.sql("SELECT 1 FROM pg_namespace WHERE nspname = 'transmitter'"), "the database is fresh")

    r = migrate(case)
    check(r.returncode == 0, "transmitter --migrate succeeds without TRANSMITTER_MIGRATIONS_DIR")
    applied = re.findall(r"Applied migration (\S+)", r.stdout)
    check(applied == sql_files, f"it applies every file of db/, in order: {applied}")
    check("Failed" not in r.stdout and "obsolete" not in r.stdout, "without an error or a warning")

    rows = case.sql("SELECT version FROM transmitter.schema_migrations ORDER BY version")
    check([v for v, in rows] == sql_files, f"transmitter.schema_migrations has one row per file: {rows}")
    cols = [c for c, in case.sql("SELECT column_name FROM information_schema.columns "
                                 "WHERE table_schema = 'transmitter' AND table_name = 'batches' "
                                 "ORDER BY column_name")]
    check(cols == COLUMNS, f"transmitter.batches has its columns: {cols}")
    idx = [i for i, in case.sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'transmitter' "
                                "AND tablename = 'batches' ORDER BY indexname")]
    check(idx == INDEXES, f"and its indexes: {idx}")
    check(case.sql("SELECT 1 FROM pg_constraint WHERE conname = 'batches_status_check'") == [["1"]],
          "and its status check")
    # The schema is what the daemon writes: a row goes in, a bad status does not.
    case.sql("INSERT INTO transmitter.batches (id, status, instance) "
             "VALUES ('2ed6657d-e927-568b-95e1-2665a8aea6a2', 'pending', 'test')")
    bad = subprocess.run(["psql", case.db_url, "-Atqc",
                          "INSERT INTO transmitter.batches (id, status) VALUES (gen_random_uuid(), 'lost')"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    check(bad.returncode != 0 and "batches_status_check" in bad.stderr, "a status outside the four is refused")
    before = case.sql("SELECT version, applied_at FROM transmitter.schema_migrations ORDER BY version")

    r = migrate(case)
    check(r.returncode == 0, "a second transmitter --migrate succeeds")
    check(not re.findall(r"Applied migration", r.stdout), "and applies nothing")
    check(f"0 migration(s) applied now, {len(sql_files)} in all" in r.stdout, "and says so")
    check(case.sql("SELECT version, applied_at FROM transmitter.schema_migrations ORDER BY version") == before,
          "transmitter.schema_migrations is unchanged")
    check(case.sql("SELECT count(*) FROM transmitter.batches") == [["1"]], "and so is the data")

    # A configuration written for a version that read the migrations from a directory still works.
    r = migrate(case, TRANSMITTER_MIGRATIONS_DIR="/nonexistent/db")
    warnings = [l for l in r.stdout.splitlines() if "TRANSMITTER_MIGRATIONS_DIR" in l]
    check(r.returncode == 0, "with the obsolete TRANSMITTER_MIGRATIONS_DIR set, --migrate still succeeds")
    check(len(warnings) == 1 and "obsolete" in warnings[0], f"with one warning naming it obsolete: {warnings}")
    check("/nonexistent" not in r.stdout, "and the directory is not read")


    # Nothing listens there: the failure is one line, with libpq's reason and without the password.
    closed = f"postgresql://discovery:pw-not-shown@127.0.0.1:{free_port()}/nothing"
    r = migrate(case, TRANSMITTER_DATABASE_URL=closed)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    check(r.returncode == 1, f"--migrate against a closed port exits 1 (got {r.returncode})")
    check(len(lines) == 1 and "Failed to connect to PostgreSQL" in lines[0] and "refused" in lines[0],
          f"and logs the failure once, with its reason: {lines}")
    check("pw-not-shown" not in r.stdout, "without the password")

    # The daemon migrates once the database answers: until then it consumes nothing, says why once,
    # and goes on trying.
    t = case.transmitter(DATABASE_URL=closed)  # DATABASE_MIGRATE=true is the harness's default
    t.start()
    time.sleep(6)  # past a second reading of the schema
    running = t.running()
    t.stop()
    failures = [l for l in t.log_text().splitlines() if "refused" in l]
    check(running and len(failures) == 1 and "Cannot read the database schema yet, consuming nothing" in failures[0],
          f"a daemon with DATABASE_MIGRATE=true says once why it cannot migrate yet, and goes on: {failures}")
    check("pw-not-shown" not in t.log_text(), "without the password")


if __name__ == "__main__":
    main("migrate", body)

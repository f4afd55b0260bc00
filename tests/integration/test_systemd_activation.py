#!/usr/bin/env python3
"""Under a real systemd user manager and journald, with the product's units:

- transmitter.socket listens and transmitter.service stays inactive until the first GET /health,
  which starts it and is answered 200;
- the service runs sandboxed as a DynamicUser= with the unit's static Group= and reads its
  0640 configuration file through that group;
- `systemctl show -p StatusText` carries the summary and follows the events;
- the journal holds one native entry per batch whose BATCH_ID is the row in transmitter.batches,
  with EVENT_COUNT, HTTP_STATUS, ATTEMPT, PRIORITY, SYSLOG_IDENTIFIER; MESSAGE_ID marks a failed
  batch and the circuit opening and closing (with CIRCUIT_STATE).
"""

import grp
import os
import time

from harness import check, http_get, log, wait_for
from systemd_env import TransmitterService, case_settings, run_case

MESSAGE_ID_BATCH_FAILED = "9a5bd7c2e0f14d4f8b1e3a64c1f0b201"
MESSAGE_ID_CIRCUIT_OPENED = "9a5bd7c2e0f14d4f8b1e3a64c1f0b202"
MESSAGE_ID_CIRCUIT_CLOSED = "9a5bd7c2e0f14d4f8b1e3a64c1f0b203"


def proc_ids(pid):
    uid = gid = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


def body(case, m):
    case.declare()
    port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
    settings = case_settings(case, BATCH_SIZE=10, BATCH_INTERVAL_S=1, RETRY_MAX_ATTEMPTS=1,
                             CIRCUIT_FAILURE_THRESHOLD=2, CIRCUIT_RESET_TIMEOUT_S=2)
    svc = TransmitterService(m, settings, port, token_file=case.receiver.token_file).install()

    log("-- socket activation")
    m.systemctl("start", svc.SOCKET)
    sock = m.show(svc.SOCKET, "ActiveState", "SubState", "Listen")
    check(sock["ActiveState"] == "active" and sock["SubState"] == "listening",
          f"transmitter.socket is listening ({sock})")
    check(sock["Listen"] == f"127.0.0.1:{port} (Stream)", f"on the test's port: {sock['Listen']}")
    time.sleep(1)
    check(svc.active_state() == "inactive" and svc.main_pid() == 0,
          "transmitter.service is inactive until a connection")

    t0 = time.monotonic()
    status, body_, _ = http_get(svc.url + "/health", timeout=20)
    elapsed = time.monotonic() - t0
    check(status == 200 and b'"healthy"' in body_,
          f"the first GET /health starts it and gets 200 ({elapsed * 1000:.0f} ms)")
    m.wait_prop(svc.SERVICE, "ActiveState", lambda v: v == "active", 10)
    show = m.show(svc.SERVICE, "NRestarts", "Type", "NotifyAccess", "ExecMainStartTimestampMonotonic",
                  "ActiveEnterTimestampMonotonic")
    check(show["Type"] == "notify" and show["NotifyAccess"] == "main" and show["NRestarts"] == "0",
          f"Type=notify, started once ({show})")
    exec_to_ready = int(show["ActiveEnterTimestampMonotonic"]) - int(show["ExecMainStartTimestampMonotonic"])
    log(f"FIGURE exec to READY=1: {exec_to_ready / 1000:.1f} ms (DATABASE_MIGRATE=true)")
    started = [e for e in m.unit_journal(svc.SERVICE)
               if str(e.get("MESSAGE", "")).startswith("Started transmitter.service")]
    check(len(started) == 1, "the manager logged one start")

    log("-- sandbox: a transient user, the configuration read through the static group")
    pid = svc.main_pid()
    uid, gid = proc_ids(pid)
    st = os.stat(svc.conf)
    want_gid = grp.getgrnam(svc.group).gr_gid
    check(uid != 0 and 61184 <= uid <= 65519, f"DynamicUser=: runs as transient UID {uid}")
    check(gid == want_gid, f"with the static group {svc.group} ({gid})")
    check(st.st_uid == 0 and st.st_gid == want_gid and (st.st_mode & 0o777) == 0o640 and st.st_uid != uid,
          f"the configuration file is root:{svc.group} 0640, not the service's own")
    wait_for(lambda: any(case.queue in str(e.get("MESSAGE", "")) for e in svc.journal()), 15,
             "the log line naming the queue of the configuration file")
    check(True, f"and the service runs with its settings (consuming from {case.queue})")
    caps = open(f"/proc/{pid}/status").read()
    check("CapEff:\t0000000000000000" in caps and "NoNewPrivs:\t1" in caps and "Seccomp:\t2" in caps,
          "no capabilities, NoNewPrivileges, a seccomp filter")

    status, metrics, _ = http_get(svc.url + "/metrics")
    samples = dict(line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line and line[0] != "#")
    check(status == 200 and float(samples.get("process_start_time_seconds", 0)) > time.time() - 600
          and float(samples.get("process_open_fds", 0)) > 0,
          "the process metrics work in the sandbox (ProcSubset=pid): "
          f"start {samples.get('process_start_time_seconds')}, {samples.get('process_open_fds')} fds")

    log("-- StatusText")
    # The broker node in use last, its password hidden.
    shown = case.base_settings["TRANSMITTER_RABBITMQ_URL"].replace("discovery:discovery@", "discovery:***@")
    text = m.wait_prop(svc.SERVICE, "StatusText", lambda v: "broker connected, database connected" in v, 20)
    check(text == "sent 0 batches / 0 events, circuit closed, broker connected, database connected, in flight 0, "
          f"broker at {shown}", f"StatusText carries the summary: {text!r}")
    ids = case.publish(50, prefix="act")
    case.wait_delivered(ids, timeout=60)
    text = m.wait_prop(svc.SERVICE, "StatusText", lambda v: v.startswith("sent 5 batches / 50 events"), 15)
    check(True, f"and follows the events: {text!r}")

    log("-- journal: one entry per batch, BATCH_ID as in transmitter.batches")
    case.wait_settled()
    rows = case.sql("SELECT id, item_count, status FROM transmitter.batches ORDER BY created_at")
    check(len(rows) == 5 and all(r[2] == "sent" for r in rows), f"5 'sent' rows ({len(rows)})")
    row_id, item_count = rows[2][0], rows[2][1]
    entries = wait_for(lambda: svc.journal(BATCH_ID=row_id), 10, f"journal entries with BATCH_ID={row_id}")
    check(len(entries) == 1, f"journalctl -o json BATCH_ID={row_id} finds the batch's one entry")
    e = entries[0]
    log(f"entry: { {k: v for k, v in e.items() if not k.startswith('__')} }")
    check(e["BATCH_ID"] == row_id and row_id in e["MESSAGE"],
          "BATCH_ID equals the row's id, and the message names it")
    check(e["EVENT_COUNT"] == item_count and e["HTTP_STATUS"] == "200" and e["ATTEMPT"] == "1",
          f"EVENT_COUNT={e['EVENT_COUNT']} (row: {item_count}), HTTP_STATUS=200, ATTEMPT=1")
    check(e["PRIORITY"] == "6" and e["SYSLOG_IDENTIFIER"] == "transmitter" and e["_TRANSPORT"] == "journal",
          "PRIORITY=6, SYSLOG_IDENTIFIER=transmitter, sent with the native protocol")
    check(e["_SYSTEMD_USER_UNIT"] == svc.SERVICE and "CODE_FILE" in e, "filed under the unit, with CODE_FILE")
    batch_lines = [x for x in svc.journal() if "BATCH_ID" in x]
    check(len(batch_lines) == 5, f"one entry per batch at INFO ({len(batch_lines)} for 5 batches of 10 events)")
    check(not any(x.get("_TRANSPORT") == "stdout" for x in svc.journal()), "nothing came through stderr")

    log("-- journal: BROKER_URL, its password hidden")
    connected = wait_for(lambda: svc.journal(BROKER_URL=shown), 10, f"a journal entry with BROKER_URL={shown}")
    check(connected[0]["MESSAGE"].startswith(f"Connected to RabbitMQ at {shown}, consuming from"),
          f"the connect line carries BROKER_URL ({connected[0]['MESSAGE']!r})")
    check(not any("discovery:discovery@" in " ".join(x.values()) for x in svc.journal()),
          "no broker password anywhere in the journal")

    log("-- MESSAGE_ID: batch failed, circuit opened and closed")
    # A window rather than a count: a requeued batch may come back between two 503s and its
    # 200 would reset the consecutive failures before the threshold is reached.
    case.receiver.fault(status=503, for_s=3)
    ids2 = case.publish(20, prefix="flt")
    failed = wait_for(lambda: svc.journal(MESSAGE_ID=MESSAGE_ID_BATCH_FAILED), 30, "a 'batch failed' entry")
    check(failed[0]["PRIORITY"] == "3" and failed[0]["HTTP_STATUS"] == "503" and "BATCH_ID" in failed[0],
          f"batch failed: MESSAGE_ID, PRIORITY=3, HTTP_STATUS=503 ({failed[0]['MESSAGE']!r})")
    opened = wait_for(lambda: svc.journal(MESSAGE_ID=MESSAGE_ID_CIRCUIT_OPENED), 30, "a 'circuit opened' entry")
    check(opened[0]["CIRCUIT_STATE"] == "open" and opened[0]["PRIORITY"] == "3",
          f"circuit opened: CIRCUIT_STATE=open ({opened[0]['MESSAGE']!r})")
    closed = wait_for(lambda: svc.journal(MESSAGE_ID=MESSAGE_ID_CIRCUIT_CLOSED), 30, "a 'circuit closed' entry")
    check(closed[0]["CIRCUIT_STATE"] == "closed", f"circuit closed: CIRCUIT_STATE=closed ({closed[0]['MESSAGE']!r})")
    case.wait_delivered(ids2, timeout=60)
    check(True, "the requeued events arrived after the circuit closed")

    m.systemctl("stop", svc.SERVICE)
    show = m.show(svc.SERVICE, "ExecMainStatus", "Result", "ActiveState")
    check(show["ExecMainStatus"] == "0" and show["Result"] == "success", f"stop: exit 0 ({show})")
    check(m.prop(svc.SOCKET, "SubState") == "listening", "the socket keeps listening for the next start")


if __name__ == "__main__":
    import sys

    sys.exit(run_case("systemd_activation", body))

#!/usr/bin/python3
"""One end-to-end run of the INSTALLED package under a systemd user manager.

The installed units (/lib/systemd/system/transmitter.{socket,service}) and binary
(/usr/bin/transmitter) are linked into a `systemd --user` of tests/integration/systemd_env.py
(which runs as root and so applies the unit's sandbox for real: User=transmitter, mount
namespaces, seccomp). Its drop-ins change only what a test must: the listening port, the
configuration file (a test one, root:transmitter 0640 like the installed one), paths the
sandbox hides. Then: the first connection starts the service through the socket; events
published to the broker arrive at the HTTPS receiver, recorded in the ledger, with journal
entries carrying BATCH_ID=; a reload keeps it running; a stop ends it cleanly.

    e2e_user_manager.py --devenv DIR [--events N]

DIR is an environment of tests/env/devenv.sh that is up. Called by
packaging/tests/test-packages.sh after the .deb is installed, in a mount namespace of its own
(unshare --mount --propagation private): the mounts the helper makes for the manager (its
runtime tmpfs, /run bound onto itself) end with it. Ends with "N passed, N failed".
"""

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))

from harness import free_port, http_get, http_json, read_env_file  # noqa: E402
from systemd_env import TransmitterService, UserManager  # noqa: E402

UNIT_DIR = "/lib/systemd/system"
BINARY = "/usr/bin/transmitter"


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        print(f"[{time.strftime('%H:%M:%S')}] {'ok' if ok else 'FAIL'}: {what}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def wait(pred, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def proc_ids(pid):
    """(real UID, real GID) of a process."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("Uid:", "Gid:")):
                ids[line[:3]] = int(line.split()[1])
    return ids.get("Uid"), ids.get("Gid")


def unit_setting(path, key):
    value = None
    with open(path) as f:
        for line in f:
            if line.startswith(key + "="):
                value = line.strip().partition("=")[2]
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devenv", required=True)
    ap.add_argument("--events", type=int, default=1000)
    a = ap.parse_args()

    env = read_env_file(os.path.join(a.devenv, "env"))
    settings = read_env_file(os.path.join(a.devenv, "transmitter.env"))
    # The token comes from the credential of the unit's own LoadCredential= line
    # (/etc/transmitter/auth-token, written by the caller), not from a token file.
    settings.pop("TRANSMITTER_AUTH_TOKEN_FILE", None)
    settings.update({
        "TRANSMITTER_BATCH_SIZE": "100",
        "TRANSMITTER_BATCH_INTERVAL_S": "1",
        "TRANSMITTER_INSTANCE_ID": "package-e2e",
    })
    c = Checks()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="transmitter-pkg-e2e.")

    with UserManager(workdir) as m:
        svc = TransmitterService(m, settings, port=port, binary=BINARY,
                                 service_unit=os.path.join(UNIT_DIR, "transmitter.service"),
                                 socket_unit=os.path.join(UNIT_DIR, "transmitter.socket"))
        svc.install()
        try:
            m.systemctl("start", "transmitter.socket")
            c.check(svc.active_state("transmitter.socket") == "active", "transmitter.socket is active")
            c.check(svc.active_state() == "inactive", "transmitter.service waits for a connection")

            status, body, _ = http_get(f"{svc.url}/health", timeout=30)
            c.check(status == 200 and b"healthy" in body, f"the first connection started the service: /health {status}")
            c.check(wait(lambda: svc.active_state() == "active", 30), "transmitter.service is active (READY=1)")
            pid = svc.main_pid()
            unit = os.path.join(UNIT_DIR, "transmitter.service")
            user, group = unit_setting(unit, "User"), unit_setting(unit, "Group") or unit_setting(unit, "User")
            uid, gid = proc_ids(pid) if pid > 0 else (None, None)
            want_uid = pwd.getpwnam(user).pw_uid if user and unit_setting(unit, "DynamicUser") != "yes" else None
            c.check(uid not in (None, 0) and (want_uid is None or uid == want_uid)
                    and gid == grp.getgrnam(group).gr_gid,
                    f"PID {pid} runs as UID {uid} ({'DynamicUser=' if want_uid is None else user}), "
                    f"GID {gid} (the unit's group {group})")
            c.check(wait(lambda: http_get(f"{svc.url}/ready")[0] == 200, 60),
                    "/ready: broker and database connected")

            r = subprocess.run([env["PUBLISH"], "--url", env["RABBITMQ_URL"], "--count", str(a.events),
                                "--id-prefix", "pkg", "--declare-queue", settings.get(
                                    "TRANSMITTER_RABBITMQ_QUEUE", "transmitter.approved"), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            c.check(r.returncode == 0, f"published {a.events} events {r.stdout.strip()[-200:]}")

            admin = env["RECEIVER_ADMIN_URL"]
            counts = wait(lambda: (lambda x: x if x["unique_events"] >= a.events else None)(
                http_json(admin + "/counts")), 90) or http_json(admin + "/counts")
            c.check(counts["unique_events"] == a.events,
                    f"the receiver got every event: {counts['unique_events']}/{a.events} in "
                    f"{counts['unique_batches']} batches, {counts['rejected']} rejected")

            sent = wait(lambda: (lambda n: n if n == a.events else None)(int(subprocess.run(
                [env["PSQL"], "-Atqc", "SELECT coalesce(sum(item_count), 0) FROM transmitter.batches "
                 "WHERE status = 'sent' AND instance = 'package-e2e'"],
                stdout=subprocess.PIPE, text=True).stdout.strip() or 0)), 30)
            c.check(sent == a.events, f"the ledger shows them sent: {sent}")

            entries = svc.journal()
            with_batch = [e for e in entries if e.get("BATCH_ID")]
            c.check(bool(with_batch), f"journald has the unit's entries with BATCH_ID= ({len(with_batch)} "
                    f"of {len(entries)})")

            stats = http_json(f"{svc.url}/api/v1/stats")
            c.check(isinstance(stats, dict), "/api/v1/stats answers")

            m.systemctl("reload", "transmitter.service")
            c.check(wait(lambda: svc.active_state() == "active" and svc.main_pid() == pid, 15),
                    "systemctl reload: still active, same PID")

            m.systemctl("stop", "transmitter.socket", "transmitter.service")
            props = m.show("transmitter.service", "ActiveState", "Result", "ExecMainStatus")
            c.check(props.get("ActiveState") == "inactive" and props.get("Result") == "success"
                    and props.get("ExecMainStatus") == "0", f"systemctl stop: exited cleanly {props}")
        except Exception as e:  # a helper's error is a failed check, with the unit's log
            c.check(False, f"{type(e).__name__}: {e}")
        if c.failed:
            print("---- journal of transmitter.service ----")
            print(svc.log_text(60))

    shutil.rmtree(workdir, ignore_errors=True)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())

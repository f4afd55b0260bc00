#!/usr/bin/env python3
"""The unit without its credential file (the token is in the configuration file instead):
LoadCredential= of a missing file fails the start with 243/CREDENTIALS in systemd 252 unless a
SetCredential= of the same name gives a default; the unit's blank one (auth-token:\\n) is what
the daemon then finds, and takes as "no credential". The drop-in points LoadCredential= at a path
of the test that does not exist (/etc/transmitter/ is the machine's: another test or a package
may have put a token there); the unit's own SetCredential= stays.

The service starts, and its batches carry the token of the configuration file. And with no token
anywhere (a destination without authentication), it still starts: the blank credential is no
token, not an "empty token file" error."""

import os

from harness import check, http_get
from systemd_env import TransmitterService, case_settings, run_case

def body(case, m):
    source = os.path.join(case.workdir, "no-such-dir", "auth-token")
    check(not os.path.exists(source), f"the credential's source {source} does not exist")
    case.declare()
    port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
    settings = case_settings(case, AUTH_TOKEN="test-token", BATCH_SIZE=10, BATCH_INTERVAL_S=1)
    svc = TransmitterService(m, settings, port, token_file=source).install()
    check("SetCredential" not in svc.service_dropin(), "the unit's SetCredential= default is left alone")
    m.systemctl("start", svc.SOCKET)
    status, _, _ = http_get(svc.url + "/health", timeout=20)
    show = m.show(svc.SERVICE, "ActiveState", "Result", "ExecMainStatus")
    check(status == 200 and show["ActiveState"] == "active", f"the service starts ({status}, {show})")
    cred = os.path.join(m.runtime_dir, "credentials", svc.SERVICE, "auth-token")
    with open(cred) as f:
        check(f.read() == "\n", "its auth-token credential is the unit's blank default")
    ids = case.publish(30, prefix="crd")
    case.wait_delivered(ids, timeout=60)
    batches = case.receiver.batches()
    check(batches and all(b["token"] == "test-token" for b in batches),
          f"the batches carry the token of the configuration file ({len(batches)})")
    m.systemctl("stop", svc.SERVICE)
    check(m.prop(svc.SERVICE, "ExecMainStatus") == "0", "exit 0")

    del settings["TRANSMITTER_AUTH_TOKEN"]
    svc.write_config(settings)
    mark = m.journal_mark()
    m.systemctl("start", svc.SERVICE, check=False)
    show = m.show(svc.SERVICE, "ActiveState", "Result", "ExecMainStatus")
    errors = [e["MESSAGE"] for e in svc.journal(after=mark) if e.get("PRIORITY") == "3"]
    check(show["ActiveState"] == "active" and not errors,
          f"with no token anywhere it starts too ({show}; errors: {errors})")
    check(http_get(svc.url + "/health", timeout=10)[0] == 200, "and answers /health")
    m.systemctl("stop", svc.SERVICE)


if __name__ == "__main__":
    import sys

    sys.exit(run_case("systemd_credential", body))

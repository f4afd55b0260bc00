#!/usr/bin/env python3
"""The unit files, offline: systemd-analyze verify is clean for both (and notices a fault put in
on purpose); systemd-analyze security --offline=yes rates the service at 1.5 or lower (the figure
is printed); the settings the product promises are there; `meson install` puts the units where
pkg-config's systemd.pc says, the sysusers entry where systemd-sysusers reads it, and the
configuration file with mode 0640."""

import json
import os
import re
import subprocess
import sys
import tempfile
import traceback

from harness import BUILD_ROOT, SOURCE_ROOT, TRANSMITTER_BIN, TestFailure, check, log

SERVICE = os.path.join(BUILD_ROOT, "transmitter.service")
SOCKET = os.path.join(SOURCE_ROOT, "units", "transmitter.socket")


def run(*cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, **kw)


def parse_unit(path):
    """{section: {key: [values]}} of a unit file (no drop-ins; continuation lines joined)."""
    out, section = {}, None
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        section.setdefault(k.strip(), []).append(v.strip())
    return out


def verify(tmp):
    log("-- systemd-analyze verify")
    d = os.path.join(tmp, "verify")
    os.makedirs(d)
    with open(SERVICE) as f:
        text = f.read()
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
    # The one change: ExecStart= points at the build tree (verify checks the binary exists).
    text = text.replace(f"ExecStart={exec_start}", f"ExecStart={TRANSMITTER_BIN}", 1)
    with open(os.path.join(d, "transmitter.service"), "w") as f:
        f.write(text)
    with open(SOCKET) as f, open(os.path.join(d, "transmitter.socket"), "w") as g:
        g.write(f.read())
    # --man=no: there are no man pages yet for Documentation=man:transmitter(8).
    r = run("systemd-analyze", "verify", "--man=no", os.path.join(d, "transmitter.service"),
            os.path.join(d, "transmitter.socket"))
    check(r.returncode == 0 and r.stdout.strip() == "", f"verify is clean for both units (rc {r.returncode}: "
                                                        f"{r.stdout.strip()!r})")

    with open(os.path.join(d, "transmitter.service"), "a") as f:
        f.write("\n[Service]\nWatchdogSecs=30\nRestart=sometimes\n")
    r = run("systemd-analyze", "verify", "--man=no", os.path.join(d, "transmitter.service"),
            os.path.join(d, "transmitter.socket"))
    check("WatchdogSecs" in r.stdout and "restart specifier" in r.stdout, f"and it reports faults put in on purpose: "
                                                                f"{r.stdout.strip()!r}")


def security():
    log("-- systemd-analyze security --offline=yes")
    r = run("systemd-analyze", "security", "--offline=yes", "--no-pager", SERVICE)
    m = re.search(r"Overall exposure level for transmitter\.service: (\d+\.\d+) (\S+)", r.stdout)
    check(m is not None, "security prints an overall exposure level")
    exposure = float(m.group(1))
    for line in r.stdout.splitlines():
        if line.startswith("✗"):
            log(f"   {line.rstrip()}")
    log(f"FIGURE systemd-analyze security --offline=yes: exposure {exposure} {m.group(2)}")
    check(exposure <= 1.5, f"exposure {exposure} is 1.5 or lower")
    r = run("systemd-analyze", "security", "--offline=yes", "--threshold=15", "--no-pager", SERVICE)
    check(r.returncode == 0, "--threshold=15 (exposure x 10) passes")


def settings():
    log("-- the promised settings")
    svc = parse_unit(SERVICE)["Service"]
    sock = parse_unit(SOCKET)["Socket"]
    want = {
        "Type": ["notify"], "NotifyAccess": ["main"], "Restart": ["on-failure"], "RestartPreventExitStatus": ["78"],
        "DynamicUser": ["yes"], "ProtectSystem": ["strict"], "ProtectHome": ["yes"], "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"], "NoNewPrivileges": ["yes"], "RestrictNamespaces": ["yes"],
        "SystemCallArchitectures": ["native"], "MemoryDenyWriteExecute": ["yes"], "LockPersonality": ["yes"],
        "CapabilityBoundingSet": [""], "ProtectKernelTunables": ["yes"], "ProtectKernelModules": ["yes"],
        "ProtectKernelLogs": ["yes"], "ProtectControlGroups": ["yes"], "ProtectClock": ["yes"],
        "ProtectHostname": ["yes"], "UMask": ["0077"], "ProcSubset": ["pid"], "ProtectProc": ["invisible"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "LoadCredential": ["auth-token:/etc/transmitter/auth-token"],
    }
    for k, v in want.items():
        check(svc.get(k) == v, f"{k}={' '.join(v)} ({svc.get(k)})")
    check("@system-service" in svc.get("SystemCallFilter", []), "SystemCallFilter=@system-service")
    check(svc.get("SetCredential") == [r"auth-token:\n"],
          r"SetCredential=auth-token:\n: the default when the file is missing")
    for k in ("WatchdogSec", "TimeoutStopSec", "ExecReload"):
        check(svc.get(k), f"{k}= is set ({svc.get(k)})")
    check(len(svc["ExecReload"]) == 2 and svc["ExecReload"][-1] == "/bin/kill -HUP $MAINPID",
          "ExecReload=: a first command, then SIGHUP (credentials are copied again before the second)")
    check(sock.get("ListenStream") == ["8020"] and sock.get("Accept") == ["no"],
          "the socket: ListenStream=8020, Accept=no")
    check("EnvironmentFile" not in svc, "no EnvironmentFile= (the daemon reads its file itself, also at reload)")


def install(tmp):
    log("-- meson install")
    dest = os.path.join(tmp, "dest")
    r = run("meson", "install", "-C", BUILD_ROOT, "--destdir", dest, "--no-rebuild", "--quiet")
    check(r.returncode == 0, f"meson install --destdir succeeds ({r.stdout.strip()[-300:]})")
    introspect = run("meson", "introspect", "--buildoptions", BUILD_ROOT).stdout
    opts = {o["name"]: o["value"] for o in json.loads(introspect)}
    prefix = opts["prefix"]
    unit_dir = opts.get("systemd_system_unit_dir") or run(
        "pkg-config", f"--define-variable=prefix={prefix}", "--variable=systemdsystemunitdir",
        "systemd").stdout.strip()
    sysusers_dir = run("pkg-config", f"--define-variable=prefix={prefix}", "--variable=sysusersdir",
                       "systemd").stdout.strip()
    log(f"prefix {prefix}, unit directory {unit_dir}, sysusers directory {sysusers_dir}")
    for name, src in (("transmitter.service", SERVICE), ("transmitter.socket", SOCKET)):
        path = dest + os.path.join(unit_dir, name)
        check(os.path.exists(path) and open(path).read() == open(src).read(), f"{name} installed in {unit_dir}")
    exec_start = parse_unit(dest + os.path.join(unit_dir, "transmitter.service"))["Service"]["ExecStart"][0]
    check(os.access(dest + exec_start, os.X_OK), f"its ExecStart={exec_start} is the installed binary")
    sysusers = dest + os.path.join(sysusers_dir, "transmitter.conf")
    check(os.path.exists(sysusers), f"sysusers entry installed as {sysusers_dir}/transmitter.conf")
    root = os.path.join(tmp, "sysroot")
    os.makedirs(os.path.join(root, "etc"))
    r = run("systemd-sysusers", "--dry-run", f"--root={root}", sysusers)
    check(r.returncode == 0 and "Creating group 'transmitter-config'" in r.stdout,
          f"systemd-sysusers creates the unit's Group= from it: {r.stdout.strip().splitlines()[:1]}")
    group = parse_unit(SERVICE)["Service"]["Group"][0]
    check(group == "transmitter-config", f"the unit's Group= is that group ({group})")
    conf = dest + os.path.join(prefix, opts["sysconfdir"], "transmitter", "transmitter.conf")
    check(os.path.exists(conf) and (os.stat(conf).st_mode & 0o777) == 0o640,
          f"the configuration file is 0640 ({conf})")


def main():
    try:
        with tempfile.TemporaryDirectory(prefix="transmitter-units-") as tmp:
            verify(tmp)
            security()
            settings()
            install(tmp)
        log("PASS systemd_units")
        return 0
    except (TestFailure, Exception) as e:  # noqa: BLE001 - reported the same way as harness.run()
        log(f"FAIL systemd_units: {e}")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())

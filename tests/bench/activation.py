#!/usr/bin/env python3
"""Socket activation latency: from the connection that starts transmitter.service to READY=1,
with the broker and the database up.

    tests/bench/activation.py [--runs 20] [--build build] [--migrate]

Under a real systemd user manager (tests/integration/systemd_env.py) with the product's units
and their sandbox. Each run: the service is stopped, the socket listens; the script connects and
sends GET /health (t0, CLOCK_MONOTONIC), and reads from the manager when it forked the process
(ExecMainStartTimestampMonotonic) and when it took READY=1 (ActiveEnterTimestampMonotonic, same
clock), and when the answer to that first request arrived. For comparison it also runs the daemon
under systemd-socket-activate with a notify socket of its own (no manager, no sandbox).

The database schema is applied once beforehand (`transmitter --migrate`), so the runs have
DATABASE_MIGRATE=false as an installed service would; --migrate measures with
DATABASE_MIGRATE=true, whose migration check runs before READY=1.

Needs root and the shared development environment (started as the integration tests do).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))


def first_request(port, timeout=20):
    """Connects, sends GET /health, reads the whole answer: (t connected, t answered, status line)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return t0, time.monotonic(), data.split(b"\r\n", 1)[0].decode(errors="replace")


def schedstat(pid):
    """(ms on a CPU, ms waiting for one) of the process's main thread so far: the first part is
    what the start costs, the second what other load on the machine added."""
    with open(f"/proc/{pid}/schedstat") as f:
        on_cpu, waiting, _ = f.read().split()
    return int(on_cpu) / 1e6, int(waiting) / 1e6


def stats(values):
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    return f"median {statistics.median(v):6.1f}  p90 {p90:6.1f}  min {v[0]:6.1f}  max {v[-1]:6.1f} ms"


def bench_manager(case, binary, runs, migrate):
    from systemd_env import TransmitterService, UserManager, case_settings

    with UserManager(case.workdir) as m:
        port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
        settings = case_settings(case, DATABASE_MIGRATE="true" if migrate else "false")
        svc = TransmitterService(m, settings, port, token_file=case.receiver.token_file, binary=binary).install()
        m.systemctl("start", svc.SOCKET)
        rows = []
        for i in range(runs + 1):
            m.systemctl("stop", svc.SERVICE)
            m.wait_prop(svc.SERVICE, "ActiveState", lambda v: v in ("inactive", "failed"), 60)
            # Starts come faster than StartLimitBurst= allows (5 in 10 s) here.
            m.systemctl("reset-failed", svc.SERVICE, check=False)
            time.sleep(0.3)
            t0, t_answer, status = first_request(port)
            m.wait_prop(svc.SERVICE, "ActiveState", lambda v: v == "active", 30)
            p = m.show(svc.SERVICE, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic", "MainPID")
            # The main thread forked off the manager, set the sandbox up, then became the daemon.
            on_cpu, waiting = schedstat(p["MainPID"])
            fork = int(p["ExecMainStartTimestampMonotonic"]) / 1000 - t0 * 1000
            ready = int(p["ActiveEnterTimestampMonotonic"]) / 1000 - t0 * 1000
            answer = (t_answer - t0) * 1000
            if not status.startswith("HTTP/1.1 200"):
                raise SystemExit(f"run {i}: the activating request got {status!r}")
            if i == 0:
                print(f"  warm-up: READY=1 {ready:.1f} ms after the connection")
                continue
            rows.append((fork, ready, answer, on_cpu, waiting))
            print(f"  run {i:2d}: forked {fork:6.1f} ms, READY=1 {ready:6.1f} ms, first answer {answer:6.1f} ms; "
                  f"main thread {on_cpu:5.1f} ms on a CPU, {waiting:5.1f} ms waiting for one")
        m.systemctl("stop", svc.SERVICE, svc.SOCKET)
    return rows


def bench_socket_activate(case, binary, runs, migrate):
    from harness import free_port
    from test_systemd_standalone import NotifySocket

    rows = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSMITTER_", "NOTIFY_", "LISTEN_"))}
    env.update({k: v for k, v in case.base_settings.items() if k != "TRANSMITTER_AUTH_TOKEN_FILE"})
    env["TRANSMITTER_AUTH_TOKEN_FILE"] = case.receiver.token_file
    env["TRANSMITTER_DATABASE_MIGRATE"] = "true" if migrate else "false"
    for i in range(runs + 1):
        with tempfile.TemporaryDirectory() as d:
            notify = NotifySocket(d)
            env["NOTIFY_SOCKET"] = notify.path
            port = free_port()
            proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-E", "NOTIFY_SOCKET",
                                     *[a for k in env if k.startswith("TRANSMITTER_") for a in ("-E", k)],
                                     binary, "--config", "/dev/null"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.3)
                t0, t_answer, status = first_request(port)
                deadline = time.monotonic() + 20
                while not notify.having("READY", "1") and time.monotonic() < deadline:
                    time.sleep(0.005)
                ready = (notify.having("READY", "1")[0][0] - t0) * 1000
                answer = (t_answer - t0) * 1000
                on_cpu, waiting = schedstat(proc.pid)  # systemd-socket-activate exec()s the daemon
            finally:
                proc.terminate()
                proc.wait(30)
                notify.close()
        if i == 0:
            continue
        rows.append((ready, answer, on_cpu, waiting))
        print(f"  run {i:2d}: READY=1 {ready:6.1f} ms, first answer {answer:6.1f} ms; "
              f"main thread {on_cpu:5.1f} ms on a CPU, {waiting:5.1f} ms waiting for one")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--build", default=os.environ.get("BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build"))
    ap.add_argument("--migrate", action="store_true", help="DATABASE_MIGRATE=true in the measured runs")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    os.environ["BUILD_ROOT"] = build
    os.environ.setdefault("SOURCE_ROOT", SOURCE_ROOT)
    binary = os.path.join(build, "src", "transmitter")
    os.environ["TRANSMITTER_BIN"] = binary

    import harness

    case = harness.Case("bench_activation")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
        env.update(case.base_settings)
        subprocess.run([binary, "--config", "/dev/null", "--migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = os.getloadavg()
        print(f"transmitter activation benchmark: {args.runs} runs, DATABASE_MIGRATE={str(args.migrate).lower()}, "
              f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print("-- systemd user manager, the product's units (sandboxed)")
        rows = bench_manager(case, binary, args.runs, args.migrate)
        print("-- systemd-socket-activate, notify socket of the script (no manager, no sandbox)")
        rows2 = bench_socket_activate(case, binary, args.runs, args.migrate)
        print("== results (ms after the activating connection)")
        print(f"  manager: fork          {stats([r[0] for r in rows])}")
        print(f"  manager: READY=1       {stats([r[1] for r in rows])}")
        print(f"  manager: first answer  {stats([r[2] for r in rows])}")
        print(f"  manager: main thread on a CPU until READY=1   {stats([r[3] for r in rows])}")
        print(f"  manager: main thread waiting for a CPU        {stats([r[4] for r in rows])}")
        print(f"  socket-activate: READY=1      {stats([r[0] for r in rows2])}")
        print(f"  socket-activate: first answer {stats([r[1] for r in rows2])}")
        print(f"  socket-activate: main thread on a CPU until READY=1   {stats([r[2] for r in rows2])}")
        print(f"  socket-activate: main thread waiting for a CPU        {stats([r[3] for r in rows2])}")
    finally:
        case.cleanup()


if __name__ == "__main__":
    main()

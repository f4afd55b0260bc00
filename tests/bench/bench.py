#!/usr/bin/env python3
"""The benchmark of issue 7, driven by tests/bench/run.sh (which builds what is needed and brings a
throw-away tests/env environment up and down). Python standard library only.

  bench.py --devenv DIR --transmitter BIN --ceiling BIN [--quick] [--long] [--n N] [--only LIST]

Runs, in this order (--only picks some: ceiling and transmitter runs go in pairs):
  cpubench              the per-event CPU of each stage (cpubench.c), no broker
  ready                 10 starts: process start to READY=1 and to /ready 200
  b100, b1000, b100-l1  a preloaded queue of N events is fanned out into two queues; the ceiling
                        consumer (ceiling.c) drains one, then the transmitter the other, with the same
                        prefetch (BATCH_SIZE x (MAX_IN_FLIGHT+1)); gzip level 6 (default) or 1
  latency               the transmitter (BATCH_SIZE 100) while publish.c sends --latency-rate events/s
                        for --latency-seconds; receive time - data.published_at_us per event
  rss                   RABBITMQ_PREFETCH 1000: a preloaded backlog, then --rss-rate events/s for
                        --rss-seconds (300 with --long); VmRSS sampled every second

Every run prints one JSON line (prefix "BENCH "), and a table closes the output. CPU times come from
/proc/PID/stat (utime+stime) of each process (the broker's beam.smp, the receiver, PostgreSQL's
postmaster and its backends, the transmitter); "other" is the rest of the machine's busy time
(/proc/stat) in the same interval -- on a shared 2-core machine that is the noise to look at.
Utilisation = CPU s / wall s: a single-threaded process (the receiver, a Python server under the GIL;
the ceiling consumer) near 1.0 would be a bottleneck.
"""

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            k, _, v = line.partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def http_json(url, data=None, timeout=10):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def http_status(url, timeout=1):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


# ---- /proc

def proc_cpu_s(pid):
    """utime+stime of a process (all its threads), seconds; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "Threads", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_wakeups(pid):
    """Context switches and minor page faults of all a process's threads: (voluntary, involuntary,
    minflt, voluntary by thread name). A voluntary switch is a thread going to sleep (poll,
    epoll_wait), i.e. one wake-up."""
    vol = invol = minflt = 0
    by_name = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "voluntary_ctxt_switches":
                        vol += int(v)
                        by_name[name] = by_name.get(name, 0) + int(v)
                    elif k == "nonvoluntary_ctxt_switches":
                        invol += int(v)
        except OSError:
            continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        minflt = int(s[s.rindex(")") + 2:].split()[7])  # field 10
    except OSError:
        return None
    return vol, invol, minflt, by_name


def proc_pss(pid):
    """Pss, Pss_Anon, Pss_File (KiB) from smaps_rollup: shared library pages counted by their share."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Pss_Anon", "Pss_File", "Rss", "Anonymous"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_times(pid):
    """(utime, stime) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None, None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def all_ppids():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        m[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
    return m


def tree_pids(root, ppids):
    if root is None or root not in ppids:
        return []
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in ppids.items() if pp == p)
    return out


def machine_busy_s():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    # guest time is already inside user
    total = sum(v[:8])
    return (total - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds of named process trees (and the whole machine) between start() and stop()."""

    def __init__(self, roots):
        self.roots = roots  # name -> pid (root of a tree) or callable returning one

    def snapshot(self):
        ppids = all_ppids()
        snap = {"_machine": machine_busy_s(), "_t": time.monotonic()}
        for name, root in self.roots.items():
            pid = root() if callable(root) else root
            per = {}
            for p in tree_pids(pid, ppids):
                c = proc_cpu_s(p)
                if c is not None:
                    per[p] = c
            snap[name] = per
        return snap

    def start(self):
        self.a = self.snapshot()
        return self

    def stop(self):
        b = self.snapshot()
        out = {"wall_s": b["_t"] - self.a["_t"], "machine_busy_s": b["_machine"] - self.a["_machine"]}
        known = 0.0
        for name in self.roots:
            before, after = self.a.get(name, {}), b.get(name, {})
            d = sum(c - before.get(p, 0.0) for p, c in after.items())
            out[name] = round(d, 3)
            known += d
        out["other_s"] = round(max(out["machine_busy_s"] - known, 0.0), 3)
        out["machine_busy_s"] = round(out["machine_busy_s"], 3)
        out["wall_s"] = round(out["wall_s"], 3)
        return out


def with_publisher(cpu, pub_cpu):
    """The publisher has exited (its CPU is in its rusage, not in /proc): move it out of "other"."""
    cpu["publisher"] = round(pub_cpu, 3)
    cpu["other_s"] = round(max(cpu["other_s"] - pub_cpu, 0.0), 3)
    return cpu


# ---- the environment

class Env:
    def __init__(self, args):
        self.args = args
        self.dir = args.devenv
        self.env = read_env_file(os.path.join(self.dir, "env"))
        self.tx_env = read_env_file(os.path.join(self.dir, "transmitter.env"))
        self.url = self.env["RABBITMQ_URL"]
        self.publish_bin = self.env["PUBLISH"]
        self.receiver_admin = self.env["RECEIVER_ADMIN_URL"]
        self.receiver_pid = int(self.env["RECEIVER_PID"])
        self.work = tempfile.mkdtemp(prefix="bench-", dir=self.dir)

    def beam_pid(self):
        try:
            with open(self.env["RABBITMQ_BEAM_PID_FILE"]) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postmaster_pid(self):
        try:
            with open(self.env["POSTGRES_PID_FILE"]) as f:
                return int(f.readline().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def rabbitmqctl(self, *a):
        r = subprocess.run([self.env["RABBITMQCTL"], *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError(f"rabbitmqctl {' '.join(a)}: {r.stderr.strip()}")
        return r.stdout

    def queue_counts(self, queue):
        out = self.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                               "messages_unacknowledged")
        for line in out.splitlines():
            p = line.split()
            if len(p) == 3 and p[0] == queue:
                return int(p[1]), int(p[2])
        return None

    def delete_queue(self, queue):
        try:
            self.rabbitmqctl("delete_queue", queue)
        except BenchError as e:
            log(f"warning: {e}")

    def publish(self, *a, wait=True):
        cmd = [self.publish_bin, "--url", self.url, *a]
        if not wait:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=3600)
        if r.returncode != 0:
            raise BenchError(f"publish {' '.join(a)} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def declare(self, exchange, dlx, queue):
        self.publish("--exchange", exchange, "--dlx", dlx, "--declare-queue", queue, "--count", "0", "--quiet")

    def receiver_reset(self):
        http_json(self.receiver_admin + "/reset", {})

    def receiver_counts(self):
        return http_json(self.receiver_admin + "/counts")

    def cpu_meter(self, **extra):
        roots = {"broker": self.beam_pid, "receiver": self.receiver_pid, "postgres": self.postmaster_pid}
        roots.update(extra)
        return CpuMeter(roots)


def parse_publish_line(out):
    """publish.c's summary: '... 3.210 s, 6230 events/s, ...' -> (seconds, events/s)."""
    try:
        words = out.replace(",", "").split()
        i = words.index("events/s")
        return float(words[i - 3]), float(words[i - 1])
    except (ValueError, IndexError):
        return None, None


# ---- the transmitter

class NotifyListener:
    """A NOTIFY_SOCKET of our own: the time the first READY=1 datagram arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.ready_at = None
        self.messages = []
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            t = time.monotonic()
            msg = data.decode(errors="replace")
            self.messages.append((t, msg))
            if self.ready_at is None and "READY=1" in msg.split("\n"):
                self.ready_at = t

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Transmitter:
    def __init__(self, env, name, settings):
        self.env = env
        self.name = name
        self.settings = dict(env.tx_env)
        self.settings.update({
            "TRANSMITTER_DATABASE_MIGRATE": "false",  # migrated once beforehand: a default start is timed
        })
        self.settings.update(settings)
        self.port = int(self.settings["TRANSMITTER_SERVER_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(env.work, f"transmitter-{name}.log")
        self.proc = None
        self.notify = None

    def environment(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                  "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"):
            e.pop(k, None)
        e.update({k: v for k, v in self.settings.items() if k != "BIN"})
        e["NOTIFY_SOCKET"] = self.notify.path
        return e

    def start(self):
        self.notify = NotifyListener(os.path.join(self.env.work, f"notify-{self.name}.sock"))
        out = open(self.log_path, "ab")
        wrapper = shlex.split(self.env.args.wrapper or "")
        env = self.environment()
        self.t_spawn = time.monotonic()
        binary = self.settings.get("BIN") or self.env.args.transmitter
        self.proc = subprocess.Popen([*wrapper, binary, "--config", "/dev/null"], env=env,
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.notify.ready_at is None:
            if self.proc.poll() is not None:
                raise BenchError(f"transmitter exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"no READY=1 within {timeout} s:\n{self.tail()}")
            time.sleep(0.002)
        return (self.notify.ready_at - self.t_spawn) * 1000

    def wait_connected(self, timeout=30):
        deadline = time.monotonic() + timeout
        while http_status(self.base + "/ready") != 200:
            if self.proc.poll() is not None:
                raise BenchError(f"transmitter exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"/ready not 200 within {timeout} s:\n{self.tail()}")
            time.sleep(0.02)

    def stats(self):
        return http_json(self.base + "/api/v1/stats", timeout=10)

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def status(self):
        return proc_status(self.proc.pid)

    def stop(self, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                log(f"warning: transmitter {self.name} did not stop in {timeout} s; killed")
        if self.notify:
            self.notify.close()
            self.notify = None
        return self.proc.returncode if self.proc else None

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def wait_delivered(env, tx, expected, timeout, poll=0.02):
    """Until the receiver has every event and the transmitter has settled them all (nothing unacked):
    the time seen, and the last stats."""
    deadline = time.monotonic() + timeout
    while True:
        c = env.receiver_counts()
        if c["unique_events"] >= expected:
            break
        if tx.proc.poll() is not None:
            raise BenchError(f"transmitter exited with {tx.proc.returncode}:\n{tx.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {c['unique_events']} of {expected} events arrived in {timeout} s:\n{tx.tail()}")
        time.sleep(poll)
    while True:
        s = tx.stats()
        t = time.monotonic()
        if s["prefetch"]["in_use"] == 0 and s["events"]["pending"] == 0:
            return t, s
        if time.monotonic() > deadline:
            raise BenchError(f"transmitter still holds {s['prefetch']['in_use']} unacked events")
        time.sleep(poll)


class RssSampler:
    def __init__(self, pid, interval=1.0):
        self.pid, self.interval = pid, interval
        self.samples = []  # (t, VmRSS KiB)
        self.max_anon = self.max_file = 0
        self.stop_flag = threading.Event()
        self.t0 = time.monotonic()
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def loop(self):
        while not self.stop_flag.is_set():
            s = proc_status(self.pid)
            if "VmRSS" in s:
                self.samples.append((time.monotonic() - self.t0, s["VmRSS"]))
                self.max_anon = max(self.max_anon, s.get("RssAnon", 0))
                self.max_file = max(self.max_file, s.get("RssFile", 0))
            self.stop_flag.wait(self.interval)

    def stop(self):
        self.stop_flag.set()
        self.th.join()

    def window(self, a, b):
        v = [kib for t, kib in self.samples if a <= t < b]
        return (round(statistics.mean(v)), max(v)) if v else (None, None)


# ---- the runs

def add_cpu_budget(res, client_cpu_s):
    """CPU per event of every process in the run (ours: broker, receiver, PostgreSQL, and the consumer: the
    daemon or the ceiling), and what that allows at most on this machine's cores were nothing else running:
    when the sum is near the machine, the run is CPU-bound as a whole, not by any one process."""
    cpu, n = res["cpu_s"], res["events"]
    per = {k: round(cpu.get(k, 0) * 1e6 / n, 1) for k in ("broker", "receiver", "postgres")}
    per["consumer"] = round(client_cpu_s * 1e6 / n, 1)
    total = sum(per.values())
    res["cpu_us_per_event_by_process"] = per
    res["cpu_us_per_event_all"] = round(total, 1)
    res["cpu_bound_events_per_s"] = round(os.cpu_count() * 1e6 / total) if total else None


def emit(result, results):
    results.append(result)
    print("BENCH " + json.dumps(result, sort_keys=False), flush=True)


def preload(env, args, tag, queues, n, exchange_tag=None):
    """Declares the queues (as the daemon would) on one exchange (bench.EXCHANGE_TAG.events, TAG's by
    default) and publishes n events once: the broker fans them out, so every queue holds the same
    events. The events depend on tag and n only: two preloads of the same tag are the same events."""
    exchange_tag = exchange_tag or tag
    exchange, dlx = f"bench.{exchange_tag}.events", f"bench.{exchange_tag}.dlx"
    for q in queues:
        env.declare(exchange, dlx, q)
    log(f"{tag}: preloading {n} events into {', '.join(queues)}")
    out = env.publish("--exchange", exchange, "--count", str(n), "--id-prefix", tag, "--seed", "7")
    log(f"{tag}: {out}")
    time.sleep(args.settle)
    return exchange, dlx, parse_publish_line(out)[1]


def queue_loader(env, args, tag, queues, n):
    """load(queue) -> (exchange, dlx, publish rate): the same n events into each queue, published right
    before its run, or with --fan-out once into all of them at the first call."""
    fanned = []

    def load(q):
        if not args.fan_out:
            return preload(env, args, tag, [q], n, f"{tag}.{q.rsplit('.', 1)[1]}")
        if not fanned:
            fanned.append(preload(env, args, tag, queues, n))
        return fanned[0]

    return load


def wait_broker_quiet(env, limit=0.15, timeout=60.0):
    """Until the broker uses less than `limit` of a core over two half-second samples in a row (it goes on
    working after a preload, or after a queue of persistent messages was drained or deleted: message-store
    compaction, index flushes), so that one run's leftovers do not land on the next. Returns seconds waited."""
    t0 = time.monotonic()
    pid = env.beam_pid()
    quiet = 0
    while pid and time.monotonic() - t0 < timeout:
        a = proc_cpu_s(pid)
        time.sleep(0.5)
        b = proc_cpu_s(pid)
        if a is None or b is None:
            break
        quiet = quiet + 1 if (b - a) / 0.5 < limit else 0
        if quiet >= 2:
            break
    return round(time.monotonic() - t0, 1)


def ceiling_run(env, args, results, name, queue, n, batch, prefetch, preload_rate=None):
    waited = wait_broker_quiet(env)
    meter = env.cpu_meter().start()
    t0 = time.monotonic()
    r = subprocess.run([args.ceiling, "--url", env.url, "--queue", queue, "--count", str(n), "--prefetch",
                        str(prefetch), "--ack-every", str(batch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=1800)
    cpu = meter.stop()
    if r.returncode != 0:
        raise BenchError(f"ceiling failed: {r.stderr.strip()}")
    c = json.loads(r.stdout.strip().splitlines()[-1])
    ceil_s = c["t_end"] - t0  # spawn to the last ack written, as for the transmitter
    res = {
        "run": name, "kind": "ceiling", "events": c["received"], "batch_size": batch, "prefetch": prefetch,
        "seconds": round(ceil_s, 3), "events_per_s": round(c["received"] / ceil_s, 1),
        "steady_events_per_s": round((c["received"] - 1) / (c["t_last"] - c["t_first"]), 1)
        if c["t_last"] > c["t_first"] else None,
        "consumer_cpu_us_per_event": round((c["utime_s"] + c["stime_s"]) * 1e6 / c["received"], 2),
        "consumer_util": round((c["utime_s"] + c["stime_s"]) / ceil_s, 3),
        "body_bytes_mean": round(c["bytes"] / c["received"], 1),
        "cpu_s": cpu, "broker_util": round(cpu["broker"] / cpu["wall_s"], 3),
        "machine_util": round(cpu["machine_busy_s"] / cpu["wall_s"], 3),
        "preload_events_per_s": preload_rate, "broker_quiet_wait_s": waited,
    }
    add_cpu_budget(res, c["utime_s"] + c["stime_s"])
    emit(res, results)
    env.delete_queue(queue)
    return res


def transmitter_run(env, args, results, name, exchange, dlx, queue, n, settings, ceiling=None):
    batch = int(settings.get("TRANSMITTER_BATCH_SIZE", 100))
    level = int(settings.get("TRANSMITTER_COMPRESSION_LEVEL", 6))
    mif = int(settings.get("TRANSMITTER_MAX_IN_FLIGHT", 2))
    prefetch = int(settings.get("TRANSMITTER_RABBITMQ_PREFETCH", 0)) or batch * (mif + 1)
    waited = wait_broker_quiet(env)
    env.receiver_reset()
    rc0 = env.receiver_counts()
    tx = Transmitter(env, name, {
        "TRANSMITTER_BATCH_TIMELINE": "false" if args.no_timeline else "true",
        "TRANSMITTER_RABBITMQ_EXCHANGE": exchange,
        "TRANSMITTER_RABBITMQ_QUEUE": queue,
        "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": dlx,
        **settings,
    })
    meter = env.cpu_meter(transmitter=lambda: tx.proc.pid if tx.proc else None)
    meter.start()
    try:
        tx.start()
        sampler = RssSampler(tx.proc.pid, interval=0.2)
        ready_ms = tx.wait_ready()
        t_done, stats = wait_delivered(env, tx, n, timeout=args.timeout)
        cpu = meter.stop()
        tx_cpu = tx.cpu_s()
        ut, stt = proc_times(tx.proc.pid)
        wakeups = proc_wakeups(tx.proc.pid)
        st = tx.status()
        pss = proc_pss(tx.proc.pid)
        sampler.stop()
        rc = env.receiver_counts()
    finally:
        code = tx.stop()
    secs = t_done - tx.t_spawn
    raw, comp = stats["bytes"]["raw"], stats["bytes"]["compressed"]
    durations = request_durations(tx.log_path)
    timeline = batch_timeline(tx.log_path)
    res = {
        "run": name, "kind": "transmitter", "events": n, "batch_size": batch, "prefetch": prefetch,
        "max_in_flight": mif, "compression_level": level,
        "settings": {k[len("TRANSMITTER_"):]: v for k, v in settings.items()},
        "seconds": round(secs, 3), "events_per_s": round(n / secs, 1),
        "ratio_to_ceiling": round((n / secs) / ceiling["events_per_s"], 3) if ceiling else None,
        "cpu_us_per_event": round(tx_cpu * 1e6 / n, 2), "transmitter_util": round(tx_cpu / secs, 3),
        "utime_s": ut, "stime_s": stt,
        "wakeups_per_event": round(wakeups[0] / n, 3) if wakeups else None,
        "preemptions_per_event": round(wakeups[1] / n, 3) if wakeups else None,
        "minflt_per_event": round(wakeups[2] / n, 3) if wakeups else None,
        "wakeups_per_event_by_thread": {k: round(v / n, 3) for k, v in wakeups[3].items()} if wakeups else None,
        "vm_hwm_kib": st.get("VmHWM"), "vm_rss_kib": st.get("VmRSS"), "threads": st.get("Threads"),
        "rss_anon_max_kib": sampler.max_anon, "rss_file_max_kib": sampler.max_file, "pss_end_kib": pss,
        "batches": stats["batches"]["sent"], "batches_per_s": round(stats["batches"]["sent"] / secs, 1),
        "compression_ratio": round(raw / comp, 3) if comp else None, "bytes_raw": raw, "bytes_compressed": comp,
        "ready_ms": round(ready_ms, 1),
        "request_ms": durations,
        "timeline_ms": timeline,
        "receiver": {"requests": rc["requests"] - rc0["requests"], "duplicates": rc["duplicates"],
                     "rejected": rc["rejected"], "max_in_flight": rc["max_in_flight"],
                     "connections": rc["connections"] - rc0["connections"]},
        "failed_batches": stats["batches"]["failed"], "exit_status": code, "broker_quiet_wait_s": waited,
        "cpu_s": cpu, "broker_util": round(cpu["broker"] / cpu["wall_s"], 3),
        "receiver_util": round(cpu["receiver"] / cpu["wall_s"], 3),
        "machine_util": round(cpu["machine_busy_s"] / cpu["wall_s"], 3),
    }
    add_cpu_budget(res, tx_cpu)
    left = env.queue_counts(queue)
    res["queue_left"] = list(left) if left else None
    emit(res, results)
    env.delete_queue(queue)
    return res


def request_durations(log_path):
    """The daemon logs one line per batch sent, with the request's duration: its distribution (ms) tells
    how long the receiver (and TLS, and the network) held each batch."""
    v = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if " sent: " in line and ", attempt " in line and line.rstrip().endswith(" ms"):
                    try:
                        v.append(int(line.rstrip().rsplit(" ", 2)[-2]))
                    except ValueError:
                        pass
    except OSError:
        return None
    if not v:
        return None
    v.sort()
    return {"count": len(v), "p50": v[len(v) // 2], "p90": v[int(len(v) * 0.9)], "p99": v[int(len(v) * 0.99)],
            "max": v[-1], "mean": round(sum(v) / len(v), 2)}


TIMELINE_SPANS = ("fill", "flush", "encode", "slot", "http", "commit", "ack", "wire", "refill", "window")


def batch_timeline(log_path):
    """BATCH_TIMELINE=true makes the daemon log, per batch, where its time went ("Batch <id> timeline (ms):
    fill 3.10 flush 0.05 ..."): the median and p90 of each span over the run, in ms."""
    spans = {k: [] for k in TIMELINE_SPANS}
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                _, sep, rest = line.partition(" timeline (ms): ")
                if not sep:
                    continue
                words = rest.split()
                for name, value in zip(words[0::2], words[1::2]):
                    if name in spans and value != "-":
                        try:
                            spans[name].append(float(value))
                        except ValueError:
                            pass
    except OSError:
        return None
    out = {}
    for name, v in spans.items():
        if v:
            v.sort()
            out[name] = {"n": len(v), "p50": v[len(v) // 2], "p90": v[int(len(v) * 0.9)],
                         "mean": round(sum(v) / len(v), 2)}
    return out or None


def pair_run(env, args, results, tag, batch, level):
    n = args.n
    prefetch = batch * (args.max_in_flight + 1)
    q_ceiling, q_tx = f"bench.{tag}.ceiling", f"bench.{tag}.tx"
    load = queue_loader(env, args, tag, [q_ceiling, q_tx], n)
    ceiling = ceiling_run(env, args, results, f"ceiling-{tag}", q_ceiling, n, batch, prefetch, load(q_ceiling)[2])
    settings = {"TRANSMITTER_BATCH_SIZE": str(batch), "TRANSMITTER_COMPRESSION_LEVEL": str(level)}
    name = f"transmitter-{tag}"
    # A --fan-out queue is loaded once: there is nothing to run again on.
    reruns = 0 if args.fan_out else args.slow_broker_reruns
    for attempt in range(1 + reruns):
        exchange, dlx, _ = load(q_tx)
        res = transmitter_run(env, args, results, name, exchange, dlx, q_tx, n, settings, ceiling)
        if not broker_was_slow(res, results) or attempt == reruns:
            break
        log(f"{name}: the broker spent {broker_us_per_event(res)} µs per message, over "
            f"{broker_slow_threshold(results, 'transmitter'):.1f} (its slow mode): once more; both runs stay "
            "in the table")
        name = f"transmitter-{tag}#{attempt + 2}"


def sweep_run(env, args, results, variants):
    """The same events for every variant (and a ceiling before and after them), each queue loaded
    right before its run (one fanned-out preload with --fan-out), for comparing settings or builds."""
    n = args.n
    tag = "sweep"
    names = [v[0] for v in variants]
    queues = [f"bench.{tag}.ceiling-a"] + [f"bench.{tag}.{x}" for x in names] + [f"bench.{tag}.ceiling-b"]
    load = queue_loader(env, args, tag, queues, n)
    batch = args.sweep_batch
    prefetch = batch * (args.max_in_flight + 1)
    c1 = ceiling_run(env, args, results, "ceiling-a", queues[0], n, batch, prefetch, load(queues[0])[2])
    out = []
    for (name, settings), q in zip(variants, queues[1:-1]):
        settings = {"TRANSMITTER_BATCH_SIZE": str(batch), **settings}
        exchange, dlx, _ = load(q)
        out.append(transmitter_run(env, args, results, name, exchange, dlx, q, n, settings, c1))
    c2 = ceiling_run(env, args, results, "ceiling-b", queues[-1], n, batch, prefetch, load(queues[-1])[2])
    mean = (c1["events_per_s"] + c2["events_per_s"]) / 2
    for r in out:
        r["ratio_to_ceiling_mean"] = round(r["events_per_s"] / mean, 3)


def parse_variant(spec):
    """NAME:KEY=VALUE,KEY=VALUE (keys without the TRANSMITTER_ prefix; BIN=path runs another binary)."""
    name, _, rest = spec.partition(":")
    settings = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        k = k.strip().upper()
        settings[k if k.startswith("TRANSMITTER_") or k == "BIN" else "TRANSMITTER_" + k] = v.strip()
    return name, settings


def ready_run(env, args, results, starts=10):
    """Process start to READY=1 (the daemon's sd_notify on our NOTIFY_SOCKET) and to /ready answering 200
    (broker and database connected), over several starts on an idle queue."""
    tag = "ready"
    exchange, dlx, queue = f"bench.{tag}.events", f"bench.{tag}.dlx", f"bench.{tag}.tx"
    env.declare(exchange, dlx, queue)
    ready, connected, cpu = [], [], []
    for i in range(starts):
        tx = Transmitter(env, f"{tag}{i}", {
            "TRANSMITTER_RABBITMQ_EXCHANGE": exchange, "TRANSMITTER_RABBITMQ_QUEUE": queue,
            "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": dlx})
        try:
            tx.start()
            ready.append(tx.wait_ready())
            cpu.append(tx.cpu_s())
            tx.wait_connected()
            connected.append((time.monotonic() - tx.t_spawn) * 1000)
        finally:
            tx.stop()
    env.delete_queue(queue)
    emit({"run": "ready", "kind": "ready", "starts": starts, "ready_ms": None,
          "ready_ms_median": round(statistics.median(ready), 1), "ready_ms_max": round(max(ready), 1),
          "ready_ms_all": [round(x, 1) for x in ready],
          "connected_ms_median": round(statistics.median(connected), 1), "connected_ms_max": round(max(connected), 1),
          "cpu_at_ready_ms_median": round(statistics.median(cpu) * 1000, 1)}, results)


def cpubench_run(env, args, results):
    """The per-event CPU budget by stage, without broker or network: the daemon's own json-check, uuid and
    envelope code (and libdeflate / ISA-L when cpubench was built with them) on publish.c's events."""
    events = os.path.join(env.work, "events.ndjson")
    with open(events, "w") as f:
        subprocess.run([env.publish_bin, "--dry-run", "--count", "20000", "--seed", "7", "--id-prefix", "cpu"],
                       stdout=f, check=True)
    for batch, level in ((100, 6), (100, 1), (1000, 6), (1000, 1)):
        r = subprocess.run([args.cpubench, events, "--batch", str(batch), "--level", str(level), "--min-seconds",
                            "0.3" if args.quick else "1"], stdout=subprocess.PIPE, text=True, check=True)
        stages = {}
        for line in r.stdout.splitlines():
            if line.startswith("CPUBENCH "):
                d = json.loads(line[len("CPUBENCH "):])
                stages[d["stage"]] = {"ns_per_event": d["ns_per_event"], "ratio": d["ratio"] or None}
        emit({"run": f"cpubench-b{batch}-l{level}", "kind": "cpubench", "batch_size": batch, "compression_level": level,
              "stages": stages}, results)


def latency_run(env, args, results):
    tag = "latency"
    exchange, dlx, queue = f"bench.{tag}.events", f"bench.{tag}.dlx", f"bench.{tag}.tx"
    count = int(args.latency_rate * args.latency_seconds)
    count -= count % 100  # full batches only: a partial last batch would wait BATCH_INTERVAL_S
    env.declare(exchange, dlx, queue)
    wait_broker_quiet(env)
    env.receiver_reset()
    tx = Transmitter(env, tag, {
        "TRANSMITTER_RABBITMQ_EXCHANGE": exchange, "TRANSMITTER_RABBITMQ_QUEUE": queue,
        "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": dlx, "TRANSMITTER_BATCH_SIZE": "100",
        "TRANSMITTER_BATCH_TIMELINE": "false" if args.no_timeline else "true",
    })
    pub = None
    try:
        tx.start()
        ready_ms = tx.wait_ready()
        tx.wait_connected()
        meter = env.cpu_meter(transmitter=tx.proc.pid).start()
        cpu0 = tx.cpu_s()
        wake0 = proc_wakeups(tx.proc.pid)
        log(f"latency: publishing {count} events at {args.latency_rate:g}/s")
        t0 = time.monotonic()
        pub = subprocess.Popen([env.publish_bin, "--url", env.url, "--exchange", exchange, "--count", str(count),
                                "--rate", str(args.latency_rate), "--id-prefix", tag],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, wstatus, ru = os.wait4(pub.pid, 0)
        pub.returncode = os.waitstatus_to_exitcode(wstatus)
        pub_out = pub.stdout.read().strip()
        pub_err = pub.stderr.read().strip()
        if pub.returncode != 0:
            raise BenchError(f"publish failed: {pub_err}")
        pub_cpu = ru.ru_utime + ru.ru_stime
        t_done, stats = wait_delivered(env, tx, count, timeout=args.timeout)
        cpu = with_publisher(meter.stop(), pub_cpu)
        tx_cpu = tx.cpu_s() - cpu0
        wake1 = proc_wakeups(tx.proc.pid)
        st = tx.status()
        lat = http_json(env.receiver_admin + "/latency")
    finally:
        if pub and pub.poll() is None:
            pub.kill()
        tx.stop()
    pub_s, pub_rate = parse_publish_line(pub_out)
    res = {
        "run": "latency", "kind": "latency", "events": count, "batch_size": 100, "target_rate": args.latency_rate,
        "published_events_per_s": pub_rate, "publisher_cpu_s": round(pub_cpu, 3),
        "publisher_util": round(pub_cpu / pub_s, 3) if pub_s else None,
        "latency_count": lat.get("count"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
        "p99_ms": lat.get("p99_ms"), "max_ms": lat.get("max_ms"), "mean_ms": lat.get("mean_ms"),
        "cpu_us_per_event": round(tx_cpu * 1e6 / count, 2), "vm_hwm_kib": st.get("VmHWM"),
        "wakeups_per_event": round((wake1[0] - wake0[0]) / count, 3) if wake0 and wake1 else None,
        "ready_ms": round(ready_ms, 1), "seconds": round(t_done - t0, 3), "cpu_s": cpu,
        "broker_util": round(cpu["broker"] / cpu["wall_s"], 3),
        "receiver_util": round(cpu["receiver"] / cpu["wall_s"], 3),
        "machine_util": round(cpu["machine_busy_s"] / cpu["wall_s"], 3),
        "batches": stats["batches"]["sent"],
        "timeline_ms": batch_timeline(tx.log_path),
    }
    emit(res, results)
    env.delete_queue(queue)


def rss_run(env, args, results):
    tag = "rss"
    exchange, dlx, queue = f"bench.{tag}.events", f"bench.{tag}.dlx", f"bench.{tag}.tx"
    seconds = args.rss_seconds
    count = int(args.rss_rate * seconds)
    count -= count % 100
    backlog = args.rss_backlog - args.rss_backlog % 100
    env.declare(exchange, dlx, queue)
    if backlog:
        log(f"rss: preloading a backlog of {backlog} events")
        env.publish("--exchange", exchange, "--count", str(backlog), "--id-prefix", "rssb", "--quiet")
    wait_broker_quiet(env)
    env.receiver_reset()
    tx = Transmitter(env, tag, {
        "TRANSMITTER_RABBITMQ_EXCHANGE": exchange, "TRANSMITTER_RABBITMQ_QUEUE": queue,
        "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": dlx, "TRANSMITTER_BATCH_SIZE": "100",
        "TRANSMITTER_RABBITMQ_PREFETCH": "1000",
    })
    pub = None
    try:
        tx.start()
        tx.wait_ready()
        sampler = RssSampler(tx.proc.pid)
        meter = env.cpu_meter(transmitter=tx.proc.pid).start()
        log(f"rss: publishing {count} events at {args.rss_rate:g}/s for {seconds:g} s (prefetch 1000)")
        pub = subprocess.Popen([env.publish_bin, "--url", env.url, "--exchange", exchange, "--count", str(count),
                                "--rate", str(args.rss_rate), "--id-prefix", tag, "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, wstatus, ru = os.wait4(pub.pid, 0)
        pub.returncode = os.waitstatus_to_exitcode(wstatus)
        if pub.returncode != 0:
            raise BenchError(f"publish failed: {pub.stderr.read().strip()}")
        t_done, stats = wait_delivered(env, tx, count + backlog, timeout=args.timeout)
        cpu = with_publisher(meter.stop(), ru.ru_utime + ru.ru_stime)
        sampler.stop()
        st = tx.status()
        pss = proc_pss(tx.proc.pid)
        tx_cpu = tx.cpu_s()
    finally:
        if pub and pub.poll() is None:
            pub.kill()
        tx.stop()
    span = sampler.samples[-1][0] if sampler.samples else 0
    minute = 60.0 if span >= 240 else max(span / 4, 1.0)
    first = sampler.window(minute, 2 * minute)       # "minute 1" (after the first window of warm-up)
    last = sampler.window(span - minute, span + 1)   # "minute 5" (the last window)
    res = {
        "run": "rss", "kind": "rss", "events": count + backlog, "backlog": backlog, "rate": args.rss_rate,
        "prefetch": 1000, "batch_size": 100, "seconds": round(span, 1), "window_s": round(minute, 1),
        "vm_hwm_kib": st.get("VmHWM"), "rss_anon_max_kib": sampler.max_anon, "rss_file_max_kib": sampler.max_file,
        "pss_end_kib": pss,
        "rss_first_window_mean_kib": first[0], "rss_first_window_max_kib": first[1],
        "rss_last_window_mean_kib": last[0], "rss_last_window_max_kib": last[1],
        "rss_growth_kib": (last[0] - first[0]) if first[0] is not None and last[0] is not None else None,
        "rss_min_kib": min(k for _, k in sampler.samples) if sampler.samples else None,
        "cpu_us_per_event": round(tx_cpu * 1e6 / (count + backlog), 2), "cpu_s": cpu,
        "rss_samples": [[round(t, 1), k] for t, k in sampler.samples[::max(1, len(sampler.samples) // 60)]],
    }
    emit(res, results)
    env.delete_queue(queue)


# ---- the table

# The broker's two modes (README) differ about 2x in CPU per message; runs within one mode vary by
# less than a third. Feeding the daemon costs it 1.15-1.35x what feeding the ceiling consumer does.
BROKER_SLOW_FACTOR = 1.5
BROKER_DAEMON_COST = 1.3

def fmt(v, spec="", none="-"):
    if v is None:
        return none
    return format(v, spec)


def broker_us_per_event(r):
    return r.get("cpu_us_per_event_by_process", {}).get("broker") if r["kind"] in ("ceiling", "transmitter") else None


def broker_slow_threshold(results, kind):
    """Broker µs per message above which a run of this kind met the broker's slow mode: BROKER_SLOW_FACTOR x the
    lowest of the runs of that kind, where a ceiling run counts BROKER_DAEMON_COST times for a daemon run."""
    lowest = {k: min((b for r in results if r["kind"] == k for b in [broker_us_per_event(r)] if b), default=None)
              for k in ("ceiling", "transmitter")}
    if kind == "transmitter" and lowest["ceiling"]:
        from_ceiling = lowest["ceiling"] * BROKER_DAEMON_COST
        lowest["transmitter"] = min(lowest["transmitter"] or from_ceiling, from_ceiling)
    return lowest[kind] * BROKER_SLOW_FACTOR if lowest.get(kind) else None


def broker_was_slow(res, results):
    b, limit = broker_us_per_event(res), broker_slow_threshold(results, res["kind"])
    return bool(b and limit and b > limit)


def table(results):
    rows = [("run", "events/s", "vs ceiling", "µs/event", "VmHWM (anon) MiB", "batches/s", "gzip ratio", "READY ms",
             "req ms p50/p99", "broker", "receiver", "postgres", "tx", "other", "machine", "all µs/ev", "CPU bound",
             "broker µs/ev")]
    for r in results:
        cpu = r.get("cpu_s", {})
        w = cpu.get("wall_s") or 1

        def u(k):
            return fmt(cpu.get(k, 0) / w, ".2f")

        def broker_cell():
            return fmt(broker_us_per_event(r), ".1f") + (" *" if broker_was_slow(r, results) else "")

        if r["kind"] == "ceiling":
            rows.append((r["run"], fmt(r["events_per_s"], ".0f"), "1.000",
                         fmt(r["consumer_cpu_us_per_event"], ".2f") + " (c)", "-", "-", "-", "-", "-",
                         u("broker"), u("receiver"), u("postgres"), fmt(r["consumer_util"], ".2f") + " (c)",
                         u("other_s"), fmt(cpu.get("machine_busy_s", 0) / w, ".2f"),
                         fmt(r.get("cpu_us_per_event_all"), ".1f"), fmt(r.get("cpu_bound_events_per_s")),
                         broker_cell()))
        elif r["kind"] == "transmitter":
            q = r.get("request_ms") or {}
            rows.append((r["run"], fmt(r["events_per_s"], ".0f"), fmt(r["ratio_to_ceiling"], ".3f"),
                         fmt(r["cpu_us_per_event"], ".2f"),
                         f"{r['vm_hwm_kib'] / 1024:.1f} ({r.get('rss_anon_max_kib', 0) / 1024:.1f})",
                         fmt(r["batches_per_s"], ".1f"), fmt(r["compression_ratio"], ".2f"), fmt(r["ready_ms"], ".1f"),
                         f"{fmt(q.get('p50'))}/{fmt(q.get('p99'))}",
                         u("broker"), u("receiver"), u("postgres"), u("transmitter"), u("other_s"),
                         fmt(cpu.get("machine_busy_s", 0) / w, ".2f"),
                         fmt(r.get("cpu_us_per_event_all"), ".1f"), fmt(r.get("cpu_bound_events_per_s")),
                         broker_cell()))
    out = []
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows if len(rows) > 1 else []):
        out.append("  ".join(str(c).rjust(widths[i]) if i else str(c).ljust(widths[i]) for i, c in enumerate(row)))
        if k == 0:
            out.append("  ".join("-" * x for x in widths))
    if len(rows) > 1:
        out.append("(broker .. machine: CPU s per wall s during the run, i.e. cores busy (2 = the whole machine); "
                   "other = busy time of processes not ours; (c): the ceiling consumer itself; req ms: HTTP request "
                   "durations from the daemon's log; anon: the peak of RssAnon, the part of VmHWM that is the "
                   "daemon's own memory rather than shared library pages; all µs/ev: CPU per event of broker + "
                   "receiver + PostgreSQL + consumer; CPU bound: the events/s those allow on this machine's cores; "
                   f"broker µs/ev: the broker's CPU per message, * where over {BROKER_SLOW_FACTOR}x the lowest of "
                   f"its kind (a ceiling's counting {BROKER_DAEMON_COST}x for the daemon's): its slow mode (README), "
                   "which alone can halve a run's events/s -- compare such runs only with each other)")
    tl = [r for r in results if r["kind"] in ("transmitter", "latency") and r.get("timeline_ms")]
    if tl:
        out.append("where a batch's time went (BATCH_TIMELINE; ms, median/p90 over the run's batches; window = first "
                   "event read to its ack on the wire):")
        out.append("  " + " ".join(f"{n:>13s}" for n in ("run",) + TIMELINE_SPANS))
        for r in tl:
            t = r["timeline_ms"]
            cells = [r["run"].replace("transmitter-", "")]
            for n in TIMELINE_SPANS:
                cells.append(f"{t[n]['p50']:.2f}/{t[n]['p90']:.2f}" if n in t else "-")
            out.append("  " + " ".join(f"{c:>13s}" for c in cells))
    tw = [r for r in results if r["kind"] == "transmitter" and r.get("wakeups_per_event") is not None]
    if tw:
        out.append("the daemon per event (all threads, start included): CPU in user and kernel mode, wake-ups "
                   "(voluntary context switches: a thread going to sleep in poll or epoll_wait), preemptions, "
                   "minor page faults:")
        out.append("  " + " ".join(f"{n:>13s}" for n in ("run", "user µs", "sys µs", "wake-ups", "preempted",
                                                            "minflt")) + "  wake-ups by thread")
        for r in tw:
            cells = (r["run"].replace("transmitter-", ""), f"{r['utime_s'] * 1e6 / r['events']:.2f}",
                     f"{r['stime_s'] * 1e6 / r['events']:.2f}", f"{r['wakeups_per_event']:.3f}",
                     f"{r['preemptions_per_event']:.3f}", f"{r['minflt_per_event']:.3f}")
            threads = ", ".join(f"{k} {v:.3f}" for k, v in sorted((r.get("wakeups_per_event_by_thread") or {}).items()))
            out.append("  " + " ".join(f"{c:>13s}" for c in cells) + "  " + threads)
    for r in results:
        if r["kind"] == "latency":
            cpu = r["cpu_s"]
            out.append(f"latency @ {r['target_rate']:g}/s target ({fmt(r['published_events_per_s'], '.0f')}/s "
                       f"published, BATCH_SIZE 100): p50 {fmt(r['p50_ms'], '.1f')} ms, p99 {fmt(r['p99_ms'], '.1f')} "
                       f"ms, max {fmt(r['max_ms'], '.1f')} ms over {r['latency_count']} events; transmitter "
                       f"{fmt(r['cpu_us_per_event'], '.2f')} µs/event, {fmt(r.get('wakeups_per_event'), '.2f')} "
                       f"wake-ups/event, VmHWM {r['vm_hwm_kib'] / 1024:.1f} MiB; cores "
                       f"busy: publisher {fmt(r['publisher_util'], '.2f')}, receiver {r['receiver_util']:.2f}, broker "
                       f"{r['broker_util']:.2f}, other {cpu['other_s'] / cpu['wall_s']:.2f}, machine "
                       f"{r['machine_util']:.2f}")
        elif r["kind"] == "rss":
            out.append(f"rss (prefetch 1000, {r['events']} events over {r['seconds']:g} s): VmHWM "
                       f"{r['vm_hwm_kib'] / 1024:.2f} MiB (RssAnon max {r['rss_anon_max_kib'] / 1024:.2f} MiB, RssFile "
                       f"max {r['rss_file_max_kib'] / 1024:.2f} MiB: shared libraries; PSS at the end "
                       f"{fmt((r.get('pss_end_kib') or {}).get('Pss', 0) / 1024, '.2f')} MiB, of which anonymous "
                       f"{fmt((r.get('pss_end_kib') or {}).get('Pss_Anon', 0) / 1024, '.2f')} MiB); VmRSS mean {fmt(r['rss_first_window_mean_kib'])} KiB in "
                       f"[{r['window_s']:g}, {2 * r['window_s']:g}) s vs {fmt(r['rss_last_window_mean_kib'])} KiB in the "
                       f"last {r['window_s']:g} s: growth {fmt(r['rss_growth_kib'])} KiB; {r['cpu_us_per_event']:.2f} "
                       f"µs/event")
    cb = [r for r in results if r["kind"] == "cpubench"]
    if cb:
        names = list(cb[0]["stages"])
        out.append("per-event CPU by stage (cpubench: ns of thread CPU per event, gzip ratio in brackets):")
        out.append("  " + " ".join(f"{n:>15s}" for n in ["batch/level"] + names))
        for r in cb:
            cells = [f"b{r['batch_size']}/l{r['compression_level']}"]
            for n in names:
                st = r["stages"].get(n, {})
                v = st.get("ns_per_event")
                cells.append(("-" if v is None else f"{v:.0f}") + (f" ({st['ratio']:.2f})" if st.get("ratio") else ""))
            out.append("  " + " ".join(f"{c:>15s}" for c in cells))
    for r in results:
        if r["kind"] == "ready":
            out.append(f"start to READY=1 over {r['starts']} starts: median {r['ready_ms_median']} ms, max "
                       f"{r['ready_ms_max']} ms ({r['cpu_at_ready_ms_median']} ms CPU); to /ready 200 (broker and "
                       f"database connected): median {r['connected_ms_median']} ms, max {r['connected_ms_max']} ms")
    readies = [r["ready_ms"] for r in results if r.get("ready_ms") is not None]
    if readies:
        out.append(f"start to READY=1: median {statistics.median(readies):.1f} ms, max {max(readies):.1f} ms "
                   f"over {len(readies)} starts")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devenv", required=True)
    ap.add_argument("--transmitter", required=True)
    ap.add_argument("--ceiling", required=True)
    ap.add_argument("--quick", action="store_true", help="N=20000, 10 s latency run, 20 s rss run")
    ap.add_argument("--long", action="store_true", help="the rss run lasts 300 s (minute 1 vs minute 5)")
    ap.add_argument("--n", type=int, help="preloaded events per throughput run (default 200000)")
    ap.add_argument("--only", default="cpubench,ready,b100,b1000,b100-l1,latency,rss",
                    help="comma-separated subset of cpubench,ready,b100,b1000,b100-l1,b1000-l1,latency,rss")
    ap.add_argument("--max-in-flight", type=int, default=2, help="the daemon's default MAX_IN_FLIGHT (for prefetch)")
    ap.add_argument("--latency-rate", type=float, default=5000)
    ap.add_argument("--latency-seconds", type=float)
    ap.add_argument("--rss-rate", type=float, default=4000)
    ap.add_argument("--rss-seconds", type=float)
    ap.add_argument("--rss-backlog", type=int, default=20000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of quiet after a preload")
    ap.add_argument("--fan-out", action="store_true",
                    help="preload the queues of a pair or sweep at once (the broker fans the events out) rather "
                         "than each right before its run (the queues that waited were the slow ones in our "
                         "sweeps: tests/bench/README.md)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--slow-broker-reruns", type=int, default=1,
                    help="run a b100/b1000/b100-l1 daemon run again (up to this many times) when the broker met its "
                         f"slow mode in it (the table's star: broker CPU per message over {BROKER_SLOW_FACTOR}x the lowest "
                         "of its kind so far); "
                         "every run is shown")
    ap.add_argument("--no-timeline", action="store_true",
                    help="do not set BATCH_TIMELINE=true in the throughput runs (one log line per batch)")
    ap.add_argument("--wrapper", help="run the transmitter under this command (e.g. valgrind ...)")
    ap.add_argument("--cpubench", help="cpubench binary: the per-stage CPU budget on publish.c events, first")
    ap.add_argument("--json-out", help="also write the JSON lines here")
    ap.add_argument("--sweep", action="append", metavar="NAME:KEY=V,...",
                    help="instead of the standard runs: one preload, a ceiling before and after, and one "
                         "transmitter run per --sweep variant (e.g. pf1000:RABBITMQ_PREFETCH=1000; BIN=path for "
                         "another binary)")
    ap.add_argument("--sweep-batch", type=int, default=100, help="BATCH_SIZE (and ceiling ack interval) of a sweep")
    args = ap.parse_args()

    if args.n is None:
        args.n = 20000 if args.quick else 200000
    args.n -= args.n % 1000
    if args.n <= 0:
        ap.error("--n must be at least 1000")
    if args.latency_seconds is None:
        args.latency_seconds = 10 if args.quick else 30
    if args.rss_seconds is None:
        args.rss_seconds = 300 if args.long else (20 if args.quick else 60)
    if args.quick:
        args.rss_backlog = min(args.rss_backlog, 5000)
    runs = [x.strip() for x in args.only.split(",") if x.strip()]

    env = Env(args)
    results = []
    log(f"transmitter {args.transmitter}; N={args.n}; runs {','.join(runs)}; work dir {env.work}")
    # Migrate once: each run then starts as an operator's would, with DATABASE_MIGRATE=false.
    r = subprocess.run([args.transmitter, "--config", "/dev/null", "--migrate"],
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}, **env.tx_env},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise BenchError(f"--migrate failed: {r.stdout}")

    try:
        if args.cpubench and "cpubench" in runs:
            cpubench_run(env, args, results)
        if args.sweep:
            sweep_run(env, args, results, [parse_variant(v) for v in args.sweep])
            runs = []
        for name in runs:
            if name == "b100":
                pair_run(env, args, results, "b100", 100, 6)
            elif name == "b1000":
                pair_run(env, args, results, "b1000", 1000, 6)
            elif name == "b100-l1":
                pair_run(env, args, results, "b100-l1", 100, 1)
            elif name == "b1000-l1":
                pair_run(env, args, results, "b1000-l1", 1000, 1)
            elif name == "cpubench":
                pass
            elif name == "ready":
                ready_run(env, args, results)
            elif name == "latency":
                latency_run(env, args, results)
            elif name == "rss":
                rss_run(env, args, results)
            else:
                raise BenchError(f"unknown run {name}")
    finally:
        if args.json_out:
            with open(args.json_out, "w") as f:
                for r in results:
                    f.write(json.dumps(r) + "\n")
        if results:
            print()
            print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)

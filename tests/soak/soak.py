#!/usr/bin/env python3
"""The chaos soak (tests/soak/README.md): the real broker, database and HTTPS receiver
(tests/env), two transmitters consuming one queue, a publisher at a steady rate, and random faults
drawn from a seed for a number of minutes; then, with the faults off, one check of everything:

  - every event id the broker confirmed is at the receiver or in the dead-letter queue, and every
    dead letter is one of the events an injected fault poisoned, with the reason that fault gives;
  - the queue is empty, nothing unacknowledged;
  - every event at the receiver was in a batch the receiver accepted and the ledger shows 'sent',
    and every 'sent' row is a batch the receiver accepted;
  - no daemon died but by our kill -9, and both stop with status 0;
  - memory (VmRSS) and descriptors of each daemon did not grow from the first quarter of the run
    to the last (medians, with a tolerance stated in the output).

Run by tests/soak/run.sh, which gives it an environment of its own (a network namespace when it
can, so that `tc` on the loopback touches nobody else). The seed is printed first; --seed replays
the same schedule of faults."""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from harness import Case, TestFailure, log  # noqa: E402

MARKER = "SOAKPOISON"
MARKER_PREFIX = "poison"
CHUNK_S = 2.0  # the publisher publishes this many seconds' worth per connection

# Faults, by lane. Each lane runs one fault at a time; the two lanes run side by side, so that
# faults of the infrastructure and of the destination overlap.
INFRA_FAULTS = ["kill9", "broker_restart", "broker_freeze", "database_stop", "token_rotation", "network"]
DEST_FAULTS = ["dest_5xx", "dest_429", "dest_slow", "dest_marker", "dest_closed"]

# The dead-letter reason each fault may cause, for the check that every dead letter has one.
REASONS = {"dest_marker": {"http_400"}}

SETTINGS = dict(
    BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, REQUEST_TIMEOUT_S=5, CONNECT_TIMEOUT_S=3,
    RETRY_MAX_ATTEMPTS=3, RETRY_BACKOFF_MULTIPLIER=2, RETRY_MAX_DELAY_S=4, CIRCUIT_FAILURE_THRESHOLD=5,
    CIRCUIT_RESET_TIMEOUT_S=3, RABBITMQ_HEARTBEAT_S=5, SHUTDOWN_TIMEOUT_S=15, LOG_LEVEL="INFO",
)

# Growth allowed from the first quarter's median to the last's: the allocator keeps what the
# busiest moment took, and descriptors come and go with connections.
RSS_SLACK_RATIO = 1.25
RSS_SLACK_KIB = 4096
FD_SLACK = 8


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.duration = args.minutes * 60.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.faults = []          # {"kind", "lane", "start", "end", "detail"}
        self.confirmed = []       # event ids the broker confirmed
        self.unconfirmed = []     # ids of publish attempts that failed (maybe published, maybe not)
        self.poisoned = []        # marker event ids the broker confirmed
        self.chunks_failed = 0
        self.samples = []         # (t, slot, pid, rss_kib, fds)
        self.crashes = []         # (slot, exit status, log tail)
        self.fault_errors = []    # faults that could not be injected or healed
        self.expected_down = {}   # slot -> True while we keep it down
        self.receiver_snapshots = []  # (event counts, batches) of receivers stopped by dest_closed
        self.token_n = 0
        self.poison_next = 1
        self.net = None           # the tc fault available: "netem", "tbf" or None
        self.net_why = ""
        self.t0 = None

    # ---- setup

    def setup(self):
        self.case = Case("soak", receiver_args=("--batch-ids",))
        c = self.case
        c.declare()
        self.daemon_token = os.path.join(c.workdir, "daemon-token")
        self.set_tokens("soak-token-0", daemon_too=True)
        settings = dict(SETTINGS, AUTH_TOKEN_FILE=self.daemon_token)
        self.daemons = {"a": c.another_transmitter("a", **settings), "b": c.another_transmitter("b", **settings)}
        for t in self.daemons.values():
            t.start()
        for t in self.daemons.values():
            t.wait_ready(60)
        c.receiver.fault(reject_marker=MARKER)
        self.probe_tc()
        log(f"soak: queue {c.queue}, database {c.database}, work dir {c.workdir}, "
            f"daemons a (:{self.daemons['a'].port}) and b (:{self.daemons['b'].port}), "
            f"network faults: {self.net or 'none'} {self.net_why}")

    def set_tokens(self, token, daemon_too):
        self.case.receiver.set_token(token)
        if daemon_too:
            with open(self.daemon_token + ".tmp", "w") as f:
                f.write(token + "\n")
            os.replace(self.daemon_token + ".tmp", self.daemon_token)

    def probe_tc(self):
        if not os.environ.get("SOAK_NETNS"):
            self.net_why = "(not in a network namespace of our own: the loopback is shared)"
            return
        if not shutil.which("tc"):
            self.net_why = "(no tc: apt-get install iproute2)"
            return
        for kind, args in (("netem", ["netem", "delay", "1ms"]), ("tbf", ["tbf", "rate", "100mbit", "burst",
                                                                          "64kb", "latency", "100ms"])):
            r = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", *args], capture_output=True, text=True)
            if r.returncode == 0:
                subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
                self.net = kind
                self.net_why = "" if kind == "netem" else "(the kernel has no netem: a bandwidth cap instead)"
                return
        self.net_why = "(tc cannot add a qdisc to lo here)"

    # ---- the publisher

    def publisher(self):
        c = self.case
        rate = self.args.rate
        n = int(rate * CHUNK_S)
        start = 1
        next_t = time.monotonic()
        while not self.stop.is_set():
            ids = [f"soak-{i:06d}" for i in range(start, start + n)]
            try:
                ok = self.publish(["--count", str(n), "--start", str(start), "--id-prefix", "soak",
                                   "--rate", str(rate)], timeout=CHUNK_S + 15)
            except OSError as e:
                log(f"publisher: {e!r}")
                ok = False
            with self.lock:
                (self.confirmed if ok else self.unconfirmed).extend(ids)
                if not ok:
                    self.chunks_failed += 1
            start += n
            next_t += CHUNK_S
            self.stop.wait(max(0.0, next_t - time.monotonic()))
            if time.monotonic() - next_t > 30:
                next_t = time.monotonic()  # after a long outage, no burst to catch up

    def publish(self, extra, timeout):
        c = self.case
        args = [c.devenv["PUBLISH"], "--url", c.devenv["RABBITMQ_URL"], "--exchange", c.exchange,
                "--dlx", c.dlx, "--quiet", "--window", "256", *extra]
        try:
            r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
            return r.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # ---- faults

    def fault(self, lane, kind, detail, fn):
        f = {"kind": kind, "lane": lane, "start": time.monotonic() - self.t0, "end": None, "detail": detail}
        with self.lock:
            self.faults.append(f)
        log(f"fault {kind} ({lane}): {detail}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a fault that could not be injected or healed is reported
            log(f"fault {kind} ({lane}) went wrong: {e!r}")
            with self.lock:
                self.fault_errors.append(f"{kind}: {e!r}")
        finally:
            f["end"] = time.monotonic() - self.t0

    def lane(self, name, kinds):
        rng = random.Random(f"{self.args.seed}-{name}")
        while True:
            gap = rng.uniform(3, 12)
            if self.stop.wait(gap) or time.monotonic() - self.t0 > self.duration - 10:
                return
            kind = rng.choice(kinds)
            if kind == "network" and not self.net:
                kind = "token_rotation"
            getattr(self, "fault_" + kind)(name, rng)

    def hold(self, seconds):
        """Sleeps through a fault, cut short at the end of the run."""
        self.stop.wait(seconds)

    def fault_kill9(self, lane, rng):
        slot = rng.choice(["a", "b"])
        down = rng.uniform(1, 8)
        t = self.daemons[slot]

        def run():
            self.expected_down[slot] = True
            try:
                if t.running():
                    t.kill9()
                self.hold(down)
            finally:
                self.start_daemon(slot)
        self.fault(lane, "kill9", f"daemon {slot}, down {down:.1f} s", run)

    def start_daemon(self, slot):
        t = self.daemons[slot]
        try:
            if not t.running():
                t.start()
        finally:
            self.expected_down[slot] = False

    def fault_broker_restart(self, lane, rng):
        self.fault(lane, "broker_restart", "rabbitmq.sh restart", lambda: self.case.devenv.broker("restart"))

    def fault_broker_freeze(self, lane, rng):
        d = rng.uniform(2, 15)

        def run():
            self.case.devenv.broker("pause")
            try:
                self.hold(d)
            finally:
                self.case.devenv.broker("resume")
        self.fault(lane, "broker_freeze", f"SIGSTOP for {d:.1f} s", run)

    def fault_database_stop(self, lane, rng):
        d = rng.uniform(2, 20)

        def run():
            self.case.devenv.database("stop")
            try:
                self.hold(d)
            finally:
                self.case.devenv.database("start")
        self.fault(lane, "database_stop", f"stopped for {d:.1f} s", run)

    def fault_token_rotation(self, lane, rng):
        lag = rng.uniform(0.2, 3)

        def run():
            self.token_n += 1
            token = f"soak-token-{self.token_n}"
            # The destination takes the new token first: until the daemons reload, they get 401.
            self.set_tokens(token, daemon_too=False)
            self.hold(lag)
            self.set_tokens(token, daemon_too=True)
            for t in self.daemons.values():
                if t.running():
                    t.signal(signal.SIGHUP)
        self.fault(lane, "token_rotation", f"SIGHUP {lag:.1f} s after the destination switched", run)

    def fault_network(self, lane, rng):
        d = rng.uniform(5, 20)
        if self.net == "netem":
            delay = rng.choice([20, 50, 100, 200])
            qdisc = ["netem", "delay", f"{delay}ms", f"{delay // 4}ms"]
            detail = f"netem delay {delay} ms ± {delay // 4} for {d:.1f} s"
        else:
            rate = rng.choice([2, 5, 10])
            qdisc = ["tbf", "rate", f"{rate}mbit", "burst", "32kb", "latency", "400ms"]
            detail = f"tbf {rate} Mbit/s for {d:.1f} s"

        def run():
            subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", *qdisc], check=True, capture_output=True)
            try:
                self.hold(d)
            finally:
                subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        self.fault(lane, "network", detail, run)

    def fault_dest_5xx(self, lane, rng):
        d = rng.uniform(2, 20)
        status = rng.choice([500, 502, 503, 504])
        self.dest_rule(lane, "dest_5xx", f"{status} for {d:.1f} s", d, status=status)

    def fault_dest_429(self, lane, rng):
        d = rng.uniform(2, 15)
        ra = rng.choice(["1", "2", "3"])
        self.dest_rule(lane, "dest_429", f"429 Retry-After {ra} for {d:.1f} s", d, status=429, retry_after=ra)

    def fault_dest_slow(self, lane, rng):
        d = rng.uniform(3, 15)
        delay = rng.choice([0.5, 2, 7])  # 7 s is past REQUEST_TIMEOUT_S
        self.dest_rule(lane, "dest_slow", f"answers after {delay} s for {d:.1f} s", d, delay_s=delay)

    def dest_rule(self, lane, kind, detail, d, **rule):
        def run():
            self.case.receiver.fault(for_s=d, **rule)
            self.hold(d)
        self.fault(lane, kind, detail, run)

    def fault_dest_marker(self, lane, rng):
        k = rng.randint(1, 5)

        def run():
            start = self.poison_next
            self.poison_next += k
            ids = [f"{MARKER_PREFIX}-{i:06d}" for i in range(start, start + k)]
            ok = self.publish(["--count", str(k), "--start", str(start), "--id-prefix", MARKER_PREFIX,
                               "--marker", MARKER, "--marker-every", "1"], timeout=20)
            with self.lock:
                (self.poisoned if ok else self.unconfirmed).extend(ids)
        self.fault(lane, "dest_marker", f"{k} events the destination refuses with 400", run)

    def fault_dest_closed(self, lane, rng):
        d = rng.uniform(2, 15)
        r = self.case.receiver

        def run():
            # Refuse first, so that nothing is accepted after the records are taken; then stop.
            # Without its records (a slow answer under a network fault) it stays up, refusing
            # nothing more.
            r.fault(status=503)
            try:
                self.hold(1)
                records = self.receiver_records()
            except Exception:
                r.clear_faults()
                r.fault(reject_marker=MARKER)
                raise
            self.receiver_snapshots.append(records)
            r.stop()
            try:
                self.hold(d)
            finally:
                r.start()
                r.fault(reject_marker=MARKER)
        self.fault(lane, "dest_closed", f"port closed for {d:.1f} s", run)

    # ---- watching

    def sampler(self):
        while not self.stop.wait(2.0):
            now = time.monotonic() - self.t0
            for slot, t in self.daemons.items():
                if t.proc is None:
                    continue
                code = t.proc.poll()
                if code is not None:
                    if not self.expected_down.get(slot) and code != -signal.SIGKILL:
                        self.crashes.append((slot, code, t.tail(60)))
                        log(f"daemon {slot} exited with {code}: restarting it")
                        try:
                            self.start_daemon(slot)
                        except TestFailure as e:
                            log(f"restarting {slot}: {e}")
                    continue
                try:
                    rss = read_rss_kib(t.proc.pid)
                    fds = len(os.listdir(f"/proc/{t.proc.pid}/fd"))
                except OSError:
                    continue
                with self.lock:
                    self.samples.append((now, slot, t.proc.pid, rss, fds))

    # ---- the run

    def run(self):
        self.setup()
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.publisher, name="publisher"),
                   threading.Thread(target=self.sampler, name="sampler"),
                   threading.Thread(target=self.lane, args=("infra", INFRA_FAULTS), name="infra"),
                   threading.Thread(target=self.lane, args=("dest", DEST_FAULTS), name="dest")]
        for th in threads:
            th.daemon = True
            th.start()
        last = 0
        while time.monotonic() - self.t0 < self.duration:
            time.sleep(1)
            el = time.monotonic() - self.t0
            if el - last >= 60:
                last = el
                with self.lock:
                    log(f"soak: {el / 60:.0f} of {self.args.minutes} min, {len(self.confirmed)} published, "
                        f"{len(self.faults)} faults")
        self.stop.set()
        for th in threads:
            th.join(120)
        self.run_s = time.monotonic() - self.t0
        return self.settle_and_check()

    def heal(self):
        c = self.case
        if self.net:
            subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        c.devenv.heal()
        r = c.receiver
        if r.proc.poll() is not None:
            r.start()
        r.clear_faults()
        r.fault(reject_marker=MARKER)
        self.set_tokens(f"soak-token-{self.token_n}", daemon_too=True)
        for slot, t in self.daemons.items():
            if t.running():
                t.signal(signal.SIGHUP)
            else:
                self.start_daemon(slot)

    def receiver_records(self):
        """(event counts, accepted batches) of the receiver, both from one answer: every accepted
        batch with its event ids (--batch-ids), so that a batch accepted meanwhile cannot be in
        one and not the other."""
        batches = harness.http_json(self.case.receiver.admin + "/batches", timeout=120)["batches"]
        counts = {}
        for b in batches:
            for i in b.get("event_ids", ()):
                counts[i] = counts.get(i, 0) + 1
        return counts, batches

    def settle_and_check(self):
        c = self.case
        log(f"soak: faults off after {self.run_s:.0f} s; settling")
        self.heal()
        want = set(self.confirmed) | set(self.poisoned)
        deadline = time.monotonic() + max(180, self.args.minutes * 10)
        settled_for = 0
        while time.monotonic() < deadline:
            q = c.queue_counts()
            counts = self.merged_counts(c.receiver.event_counts())
            missing = [i for i in self.confirmed if i not in counts]
            if q == (0, 0) and len(missing) == 0:
                settled_for += 1
                if settled_for >= 3:
                    break
            else:
                settled_for = 0
            time.sleep(2)
        return self.check()

    def merged_counts(self, final):
        out = dict(final)
        for counts, _ in self.receiver_snapshots:
            for k, n in counts.items():
                out[k] = out.get(k, 0) + n
        return out

    def check(self):
        c = self.case
        problems = []
        final_counts, final_batches = self.receiver_records()
        counts = self.merged_counts(final_counts)
        batches = [b for _, bs in self.receiver_snapshots for b in bs] + final_batches
        queue = c.queue_counts()
        dead = c.dead_letters()
        rows = c.rows("id, status, instance")

        confirmed = set(self.confirmed)
        poisoned = set(self.poisoned)
        unconfirmed = set(self.unconfirmed)
        delivered = {i for i in confirmed if i in counts}
        dead_by_id = {}
        reasons = {}
        for m in dead:
            reason = m["headers"].get("x-transmitter-reason") or ("x-death" if "x-death" in m["headers"] else None)
            reasons[reason] = reasons.get(reason, 0) + 1
            if m["event_id"] is not None:
                dead_by_id.setdefault(m["event_id"], set()).add(reason)
        lost = sorted(i for i in confirmed | poisoned if i not in counts and i not in dead_by_id)
        if lost:
            problems.append(f"{len(lost)} published events neither delivered nor dead-lettered, e.g. {lost[:5]}")
        allowed = set().union(*REASONS.values()) | {"x-death"}
        for i, rs in dead_by_id.items():
            if i not in poisoned and i not in unconfirmed:
                problems.append(f"{i} dead-lettered ({', '.join(map(str, rs))}) but no fault poisoned it")
            elif not rs <= allowed:
                problems.append(f"{i} dead-lettered as {rs}, not as its fault gives ({allowed})")
        wrongly_delivered = sorted(i for i in poisoned if i in counts)
        if wrongly_delivered:
            problems.append(f"{len(wrongly_delivered)} poisoned events reached the receiver: {wrongly_delivered[:5]}")
        if queue != (0, 0):
            problems.append(f"queue {c.queue} not empty: {queue[0]} ready, {queue[1]} unacknowledged")

        sent = {r["id"] for r in rows if r["status"] == "sent"}
        accepted = {b["batch_id"] for b in batches}
        in_sent_batch = set()
        for b in batches:
            if b["batch_id"] in sent:
                in_sent_batch.update(b.get("event_ids", ()))
        no_row = sorted(i for i in counts if i not in in_sent_batch)
        if no_row:
            problems.append(f"{len(no_row)} delivered events in no batch with a 'sent' row, e.g. {no_row[:5]}")
        phantom = sorted(sent - accepted)
        if phantom:
            problems.append(f"{len(phantom)} 'sent' rows for batches the receiver never accepted: {phantom[:3]}")
        unfinished = [r for r in rows if r["status"] in ("pending", "sending")]

        for slot, code, tail in self.crashes:
            problems.append(f"daemon {slot} died by itself (status {code}); its log ended:\n{tail}")
        for e in self.fault_errors:
            problems.append(f"a fault went wrong (the schedule is not what the seed says): {e}")

        growth = self.growth()
        for slot, g in growth.items():
            if g["rss_last"] > g["rss_first"] * RSS_SLACK_RATIO + RSS_SLACK_KIB:
                problems.append(f"daemon {slot}: VmRSS grew from {g['rss_first']} to {g['rss_last']} KiB")
            if g["fds_last"] > g["fds_first"] + FD_SLACK:
                problems.append(f"daemon {slot}: descriptors grew from {g['fds_first']} to {g['fds_last']}")

        stops = {}
        for slot, t in self.daemons.items():
            stops[slot] = t.stop(60) if t.running() else None
            if stops[slot] != 0:
                problems.append(f"daemon {slot} stopped with status {stops[slot]} on SIGTERM")

        duplicates = sum(1 for i in confirmed if counts.get(i, 0) > 1)
        extra = sum(counts.get(i, 0) - 1 for i in confirmed if counts.get(i, 0) > 1)
        unconf_arrived = sum(1 for i in unconfirmed if i in counts or i in dead_by_id)
        dead_poisoned = sum(1 for i in poisoned if i in dead_by_id)

        self.print_table(dead_poisoned)
        status = "PASS" if not problems else "FAIL"
        by_kind = {}
        for f in self.faults:
            by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
        mem = " ".join(f"{slot}: rss {g['rss_first'] / 1024:.1f}->{g['rss_last'] / 1024:.1f} MiB "
                       f"fds {g['fds_first']}->{g['fds_last']}" for slot, g in sorted(growth.items()))
        reasons_s = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: str(kv[0]))) or "none"
        print(f"SOAK {status} seed={self.args.seed} minutes={self.args.minutes} rate={self.args.rate}/s "
              f"published={len(confirmed) + len(poisoned)} (poisoned {len(poisoned)}; unconfirmed attempts "
              f"{len(unconfirmed)}, {unconf_arrived} of them arrived anyway) delivered={len(delivered)} "
              f"dead-lettered={len(dead)} ({reasons_s}) duplicates={duplicates} ({extra} extra copies) "
              f"lost={len(lost)} queue={queue[0]}/{queue[1]} batches={len(accepted)} sent-rows={len(sent)} "
              f"unfinished-rows={len(unfinished)} faults={len(self.faults)} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(by_kind.items()))}) {mem}", flush=True)
        for p in problems:
            print(f"SOAK PROBLEM: {p}", flush=True)
        if problems:
            for slot, t in self.daemons.items():
                print(f"---- transmitter {slot} log ({t.log_path}) ----\n{t.tail(60)}")
        return not problems

    def growth(self):
        q = self.run_s / 4
        out = {}
        for slot in self.daemons:
            first = [(r, f) for t, s, _, r, f in self.samples if s == slot and t < q]
            last = [(r, f) for t, s, _, r, f in self.samples if s == slot and t >= 3 * q]
            if not first or not last:
                continue
            out[slot] = {
                "rss_first": int(statistics.median(r for r, _ in first)),
                "rss_last": int(statistics.median(r for r, _ in last)),
                "fds_first": int(statistics.median(f for _, f in first)),
                "fds_last": int(statistics.median(f for _, f in last)),
                "pids": sorted({p for t, s, p, _, _ in self.samples if s == slot}),
            }
        return out

    def print_table(self, dead_poisoned):
        rows = {}
        for f in self.faults:
            r = rows.setdefault(f["kind"], {"n": 0, "s": 0.0})
            r["n"] += 1
            r["s"] += (f["end"] or self.run_s) - f["start"]
        print(f"{'fault':<16} {'injected':>8} {'total s':>8}  effect to look for")
        effects = {
            "kill9": "redelivery to the other daemon; duplicates",
            "broker_restart": "reconnects; publishes refused meanwhile",
            "broker_freeze": "heartbeat timeout, reconnect",
            "database_stop": "rows and acks wait; consumption stops at the prefetch",
            "token_rotation": "401 until SIGHUP, then 2xx",
            "network": f"{self.net or '-'} on lo",
            "dest_5xx": "retries, circuit open/half-open",
            "dest_429": "Retry-After honoured",
            "dest_slow": "timeouts past REQUEST_TIMEOUT_S, retries",
            "dest_marker": f"400, split, {dead_poisoned} dead-lettered as http_400",
            "dest_closed": "connection refused, retries",
        }
        for kind in INFRA_FAULTS + DEST_FAULTS:
            r = rows.get(kind, {"n": 0, "s": 0.0})
            print(f"{kind:<16} {r['n']:>8} {r['s']:>8.0f}  {effects[kind]}")

    def cleanup(self):
        self.stop.set()
        if self.net:
            subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        try:
            self.case.devenv.heal()
        except Exception:  # noqa: BLE001 - cleaning up after a failure already reported
            pass
        self.case.cleanup()


def read_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--rate", type=int, default=100, help="events/s (default 100)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    print(f"SOAK seed={args.seed} minutes={args.minutes} rate={args.rate}/s "
          f"(replay: tests/soak/run.sh --minutes {args.minutes:g} --seed {args.seed})", flush=True)
    s = Soak(args)
    ok = False
    try:
        ok = s.run()
    except Exception as e:  # noqa: BLE001 - reported, and the environment is cleaned up
        import traceback
        traceback.print_exc()
        print(f"SOAK FAIL seed={args.seed}: {e}", flush=True)
    finally:
        if hasattr(s, "case"):
            s.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Database failover (architecture §6, §10; issue 12 item 5): a PostgreSQL primary with a synchronous
standby of the test's own (tests/env/postgres-ha.sh). Mid-flow the primary is killed (kill -9 of
the postmaster and every backend) and the standby promoted a second later. Two daemons write to
it, each with both hosts and target_session_attrs=read-write: one with a URL naming the hosts
(localhost: the threaded host lookup and pg-targets' hostaddr expansion, each host keeping its
port), one with a key=value conninfo of addresses. Both must be ready again within seconds and
deliver every event; the new primary's ledger must have a 'sent' row for every batch the
receiver took; --migrate must find the new primary.

What it caught: libpq, moving on from the dead primary to the standby, closes one socket and
opens the next, which gets the same descriptor number; the ledger kept watching "the same" fd,
which epoll had dropped with the old socket, so every attempt hung until "connect timed out",
for ever (reported: unready for minutes while psql connected at once).

Then a first host that drops SYNs (a machine that is gone, no RST) and one that takes the
connection but never answers (a frozen server): a daemon whose URL names such a host first must
still reach the new primary, one CONNECT_TIMEOUT_S later. libpq's own connect_timeout does not
apply to PQconnectPoll, and the ledger's timer used to end the whole attempt on the first host:
never ready."""

import socket
import subprocess
import threading
import time

import harness
from harness import TRANSMITTER_BIN, PostgresHA, Sampler, check, log

N = 10_000
RATE = 800


class DeadHost:
    """A TCP port on 127.0.0.1 that connects to nothing alive, from a listener that never accepts:
    "gone" drops SYNs, as a host that is down does (its backlog, listen(0): one connection, is kept
    full); "frozen" takes the connection and never answers, as a stopped server does (room in its
    backlog)."""

    def __init__(self, kind):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0 if kind == "gone" else 16)
        self.port = self.listener.getsockname()[1]
        self.fill = []
        for _ in range(2 if kind == "gone" else 0):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fill.append(s)
        time.sleep(0.2)

    def close(self):
        for s in self.fill:
            s.close()
        self.listener.close()


def ready_after(since, samples):
    """Seconds from since to the first 200 of /ready after a non-200, from a Sampler's samples."""
    went_down = False
    for when, status in samples:
        if when < since:
            continue
        if status != 200:
            went_down = True
        elif went_down:
            return when - since
    return None


def body(case, pg):
    p1, p2 = pg["PRIMARY_PORT"], pg["STANDBY_PORT"]
    # Host names: looked up on the lookup thread, each expanded to its addresses with its own port.
    url = case.db_url.replace("127.0.0.1", "localhost")
    conninfo = (f"host=127.0.0.1,127.0.0.1 port={p1},{p2} dbname={case.database} user=discovery "
                f"password=discovery target_session_attrs=read-write")
    case.declare()
    a = case.transmitter(DATABASE_URL=url, BATCH_INTERVAL_S=1).start()
    b = case.another_transmitter("conninfo", DATABASE_URL=conninfo, BATCH_INTERVAL_S=1).start()
    a.wait_ready(30)
    b.wait_ready(30)

    published = []
    publisher = threading.Thread(target=lambda: published.extend(case.publish(N, prefix="fo", rate=RATE)))
    publisher.start()
    with Sampler(lambda: a.ready()[0], 0.1) as ready_a, Sampler(lambda: b.ready()[0], 0.1) as ready_b:
        case.wait_for_count(N * 3 // 10, 60)
        delivered_before = case.receiver.counts()["unique_events"]
        t_kill = time.time()
        pg.kill_primary()
        time.sleep(1)
        pg.promote()
        t_promoted = time.time()
        a.wait_ready(60)
        b.wait_ready(60)
        time.sleep(0.5)
    publisher.join(120)
    check(not publisher.is_alive() and len(published) == N, f"all {N} events published")

    for name, t, samples in (("url", a, ready_a.samples), ("conninfo", b, ready_b.samples)):
        after = ready_after(t_kill, samples)
        check(after is not None, f"{name}: /ready went 503 after the kill and came back to 200")
        log(f"FIGURE database failover ({name}): primary killed after {delivered_before} events, standby "
            f"promoted {t_promoted - t_kill:.1f} s later, /ready 200 again {after:.1f} s after the kill "
            f"({after - (t_promoted - t_kill):.1f} s after the promotion)")
        check(after < (t_promoted - t_kill) + 10, f"{name}: ready within 10 s of the promotion")
        check("connect timed out" not in t.log_text(), f"{name}: no 'connect timed out'")

    case.wait_delivered(published, timeout=180)
    case.wait_settled(60)
    case.account(published)

    # The ledger on the new primary: a 'sent' row for every batch the receiver took (its events
    # were acked only after that row's commit, wherever it was committed).
    check(pg.psql_admin("SELECT pg_is_in_recovery()").strip() == "f", "the rows are read from the new primary")
    rows = {r["id"]: r for r in case.rows("id, status, instance")}
    taken = {b["batch_id"] for b in case.receiver.batches()}
    missing = [i for i in taken if i not in rows or rows[i]["status"] != "sent"]
    check(not missing, f"a 'sent' row for each of the {len(taken)} batches the receiver took"
          + (f" (not for {len(missing)}, e.g. {missing[:3]})" if missing else ""))
    instances = {r["instance"] for r in rows.values()}
    check(len(instances) == 2, f"both daemons wrote rows: {sorted(instances)}")

    # --migrate through both hosts finds the new primary.
    env = a.environment()
    r = subprocess.run([TRANSMITTER_BIN, "--config", "/dev/null", "--migrate"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    check(r.returncode == 0 and "up to date" in r.stdout, f"--migrate after the failover: {r.stdout.strip()}")

    for t in (a, b):
        check(t.stop() == 0, "stops cleanly")

    # A first host that is gone (drops SYNs) or frozen (takes the connection, never answers): one
    # CONNECT_TIMEOUT_S on it, then the new primary.
    for name in ("gone", "frozen"):
        hole = DeadHost(name)
        try:
            c = case.another_transmitter(
                name, CONNECT_TIMEOUT_S=2,
                DATABASE_URL=f"postgresql://discovery:discovery@127.0.0.1:{hole.port},127.0.0.1:{p2}/"
                             f"{case.database}?target_session_attrs=read-write")
            more = case.publish(200, prefix=name)
            t0 = time.monotonic()
            c.start()
            c.wait_ready(20)
            took = time.monotonic() - t0
            log(f"FIGURE database failover: a first host that is {name} cost {took:.1f} s (CONNECT_TIMEOUT_S=2; "
                f"--migrate at start and the ledger each spend it once)")
            check(took < 10, f"ready past a first host that is {name}")
            check("after giving up on 1 address(es)" in c.log_text(), "the log says it gave up on that host")
            case.wait_delivered(more, timeout=60)
            case.wait_settled(30)
            rows = {r["id"]: r["status"] for r in case.rows("id, status")}
            check(all(rows.get(b["batch_id"]) == "sent" for b in case.receiver.batches()),
                  "its 200 events delivered, acked, and a 'sent' row for each of its batches")
            check(c.stop() == 0, "stops cleanly")
        finally:
            hole.close()


if __name__ == "__main__":
    raise SystemExit(harness.run_own("fault_database_failover", PostgresHA, body, role="database"))

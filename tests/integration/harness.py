"""Integration test harness: a real RabbitMQ, PostgreSQL and HTTPS receiver (tests/env), and the
transmitter binary under test, started as a plain process.

Every test gets its own exchange, queues, database and receiver, so tests never see each
other's events; the broker and the database server are shared (started once by devenv.sh,
which is idempotent) because starting RabbitMQ costs ~10 s.

A test may run its case on a production topology of its own instead: a three-node RabbitMQ cluster
(RabbitCluster) or a PostgreSQL primary with a synchronous standby (PostgresHA), see
Case(broker=..., database=...) and tests/env/README.md.

Environment: TRANSMITTER_BIN (the binary), SOURCE_ROOT, TRANSMITTER_TEST_DEVENV (the shared
environment's directory; default BUILD_ROOT/devenv), TRANSMITTER_TEST_WRAPPER (e.g. "valgrind
--error-exitcode=99 ..." to run the daemon under a tool).
"""

import gzip
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

SOURCE_ROOT = os.environ.get("SOURCE_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_ROOT = os.environ.get("BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
TRANSMITTER_BIN = os.environ.get("TRANSMITTER_BIN") or os.path.join(BUILD_ROOT, "src", "transmitter")
ENV_SCRIPTS = os.path.join(SOURCE_ROOT, "tests", "env")
PYTHON = "/usr/bin/python3"


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)
    log(f"ok: {msg}")


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    """(status, body bytes, headers) of a GET; status 0 when no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, OSError, ConnectionError):
        return 0, b"", {}


def http_json(url, data=None, timeout=5):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


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


def tool_output(argv, what):
    """stdout of a command-line tool; TestFailure naming what failed, with its stderr."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        raise TestFailure(f"{what} failed: {r.stderr.strip()}")
    return r.stdout


class BrokerTools:
    """What a broker (the shared one, or a cluster) offers a test through its rabbitmqctl."""

    def queue_counts(self, queue):
        """(ready, unacked) of a queue, or None when it does not exist."""
        out = self.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                               "messages_unacknowledged")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        return None


class Devenv(BrokerTools):
    """The shared broker, database and CA."""

    def __init__(self):
        self.dir = os.environ.get("TRANSMITTER_TEST_DEVENV") or os.path.join(BUILD_ROOT, "devenv")
        # Tests start side by side: one of them brings the environment up, the others wait.
        import fcntl
        os.makedirs(os.path.dirname(os.path.abspath(self.dir)), exist_ok=True)
        with open(os.path.abspath(self.dir) + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "devenv.sh"), "up", self.dir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure("devenv.sh up failed")
        self.env = read_env_file(os.path.join(self.dir, "env"))

    def __getitem__(self, k):
        return self.env[k]

    def rabbitmqctl(self, *args):
        return tool_output([self.env["RABBITMQCTL"], *args], f"rabbitmqctl {' '.join(args)}")

    def psql_admin(self, sql):
        return tool_output([self.env["PSQL_ADMIN"], "-Atqc", sql], "psql")

    def broker(self, action):
        """restart, stop, start, pause (SIGSTOP), resume (SIGCONT) the shared broker."""
        r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "rabbitmq.sh"), action, self.env["RABBITMQ_DIR"]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure(f"rabbitmq.sh {action} failed")

    def database(self, action):
        r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "postgres.sh"), action, self.env["POSTGRES_DIR"]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure(f"postgres.sh {action} failed")

    def heal(self):
        """Leaves the shared broker and database running and unfrozen, whatever a test did to them
        (for finally blocks of tests that stop, pause or restart them: the next test needs them)."""
        for script, d in (("rabbitmq.sh", "RABBITMQ_DIR"), ("postgres.sh", "POSTGRES_DIR")):
            subprocess.run(["bash", os.path.join(ENV_SCRIPTS, script), "resume", self.env[d]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "devenv.sh"), "up", self.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure("devenv.sh up (healing the shared environment) failed")
        wait_for(lambda: self.broker_answers(), 120, "the shared broker to answer", interval=1)

    def broker_answers(self):
        r = subprocess.run([self.env["RABBITMQCTL"], "-q", "list_queues", "name"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        return r.returncode == 0


def run_env_script(script, *args, timeout=300):
    """Runs a tests/env script; its output is printed only when it fails."""
    r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, script), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if r.returncode != 0:
        print(r.stdout)
        raise TestFailure(f"{script} {' '.join(args)} failed")
    return r.stdout


def replace_dbname(url, dbname):
    """A postgresql:// URL (one host or several) with another database name, the query kept."""
    base, q, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + dbname + q + query


class RabbitCluster(BrokerTools):
    """A three-node RabbitMQ cluster of a test's own (tests/env/rabbitmq-cluster.sh), next to the
    shared single-node broker. Pass it to Case(broker=...) to run a case on it; the daemon then
    gets the comma-separated list of the three nodes' URLs. Costs ~150 MB and a boot of 15-40 s;
    stop() it in a finally."""

    def __init__(self, directory):
        self.dir = directory
        self.paused = set()
        run_env_script("rabbitmq-cluster.sh", "up", self.dir)
        self.env = read_env_file(os.path.join(self.dir, "env"))

    def __getitem__(self, k):
        if k == "RABBITMQ_URL":
            return self.url(self.running_node())
        return self.env[k]

    @property
    def urls(self):
        """The RABBITMQ_URL list for the daemon."""
        return self.env["RABBITMQ_URLS"]

    def url(self, n):
        return self.env[f"RABBITMQ_NODE{n}_URL"]

    def node_pid(self, n):
        try:
            with open(self.env[f"RABBITMQ_NODE{n}_PID_FILE"]) as f:
                pid = int(f.read().split()[0])
            with open(f"/proc/{pid}/status") as f:
                return None if re.search(r"^State:\s*Z", f.read(), re.M) else pid
        except (OSError, ValueError, IndexError):
            return None

    def running_node(self):
        """The first node that runs and is not paused (tools talk to it)."""
        for n in (1, 2, 3):
            if self.node_pid(n) and n not in self.paused:
                return n
        raise TestFailure("no node of the cluster runs")

    def kill(self, n):
        """kill -9 of node n's beam.smp."""
        run_env_script("rabbitmq-cluster.sh", "kill", self.dir, str(n), timeout=60)

    def start(self, n):
        """Brings node n back (same name, ports and data); it rejoins the cluster."""
        run_env_script("rabbitmq-cluster.sh", "start", self.dir, str(n), timeout=180)

    def pause(self, n):
        """SIGSTOP of node n's beam.smp: its sockets stay open, nothing answers. resume() it within a
        few tens of seconds, before the other nodes' net_ticktime (60 s) takes it for gone."""
        os.kill(self.node_pid(n), signal.SIGSTOP)
        self.paused.add(n)

    def resume(self, n):
        os.kill(self.node_pid(n), signal.SIGCONT)
        self.paused.discard(n)

    def node_of_url(self, url):
        """The node (1-3) whose AMQP port a URL (a shown one, password hidden, will do) names, or None."""
        for n in (1, 2, 3):
            if url and f":{self.env[f'RABBITMQ_NODE{n}_PORT']}/" in url:
                return n
        return None

    def rabbitmqctl(self, *args, node=None):
        return tool_output([self.env[f"RABBITMQ_NODE{node or self.running_node()}_CTL"], *args],
                           f"rabbitmqctl {' '.join(args)}")

    def stop(self):
        for n in list(self.paused):
            self.resume(n)
        run_env_script("rabbitmq-cluster.sh", "down", self.dir, timeout=300)


class RabbitBroker(BrokerTools):
    """A single RabbitMQ node of a test's own (tests/env/rabbitmq.sh), for a test that changes the
    broker's settings (rabbitmqctl eval, extra rabbitmq.conf lines) and so must not share it. Pass
    it to Case(broker=...); stop() it in a finally. Costs a boot of 10-20 s."""

    def __init__(self, directory, extra_conf=""):
        self.dir = directory
        env = dict(os.environ, RABBITMQ_EXTRA_CONF=extra_conf)
        r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "rabbitmq.sh"), "start", self.dir], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure(f"rabbitmq.sh start {self.dir} failed")
        self.env = read_env_file(os.path.join(self.dir, "env"))

    def __getitem__(self, k):
        return self.env[k]

    @property
    def urls(self):
        return self.env["RABBITMQ_URL"]

    def rabbitmqctl(self, *args):
        return tool_output([self.env["RABBITMQCTL"], *args], f"rabbitmqctl {' '.join(args)}")

    def log_text(self):
        """The broker's own log (rabbit.log)."""
        with open(self.env["RABBITMQ_LOG"], errors="replace") as f:
            return f.read()

    def stop(self):
        run_env_script("rabbitmq.sh", "stop", self.dir, timeout=120)


class PostgresHA:
    """A PostgreSQL primary with a synchronous streaming standby of a test's own
    (tests/env/postgres-ha.sh). Pass it to Case(database=...): the case's database is created on
    the primary and the daemon gets both hosts with target_session_attrs=read-write. stop() it in a
    finally."""

    def __init__(self, directory):
        self.dir = directory
        run_env_script("postgres-ha.sh", "up", self.dir, timeout=120)
        self.env = read_env_file(os.path.join(self.dir, "env"))

    def __getitem__(self, k):
        return self.env[k]

    def kill_primary(self):
        """kill -9 of the primary's postmaster and every backend of it."""
        run_env_script("postgres-ha.sh", "kill", self.dir, timeout=60)

    def promote(self):
        """pg_ctl promote of the standby; returns once it takes writes."""
        run_env_script("postgres-ha.sh", "promote", self.dir, timeout=120)

    def psql_admin(self, sql, server=None):
        """As superuser on the server that takes writes, or on "primary" or "standby"."""
        tool = {None: "PSQL_ADMIN", "primary": "PSQL_PRIMARY", "standby": "PSQL_STANDBY"}[server]
        return tool_output([self.env[tool], "-Atqc", sql], "psql")

    def stop(self):
        run_env_script("postgres-ha.sh", "down", self.dir, timeout=120)


class Receiver:
    """A test HTTPS destination of our own (tests/env/receiver.py)."""

    def __init__(self, devenv, workdir, token="test-token", extra=(), cert=None, key=None):
        self.dir = os.path.join(workdir, "receiver")
        os.makedirs(self.dir, exist_ok=True)
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        self.port = free_port()
        self.admin_port = free_port()
        self.tls_dir = devenv["TLS_DIR"]
        self.extra = tuple(extra)
        self.log_path = os.path.join(self.dir, "receiver.log")
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.url = f"https://127.0.0.1:{self.port}/v1/discovery"
        self.proc = None
        self.start(cert=cert, key=key)

    def start(self, cert=None, key=None, extra=None):
        """(Re)starts it on the same ports, e.g. with another certificate. Its records start empty."""
        tls = self.tls_dir
        if extra is not None:
            self.extra = tuple(extra)
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(ENV_SCRIPTS, "receiver.py"), "--host", "127.0.0.1", "--port", str(self.port),
             "--admin-port", str(self.admin_port), "--cert", cert or os.path.join(tls, "server.pem"),
             "--key", key or os.path.join(tls, "server.key"), "--token-file", self.token_file, "--quiet",
             *self.extra],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or http_get(self.admin + "/health")[0] == 200, 15,
                 "the receiver")
        if self.proc.poll() is not None:
            raise TestFailure(f"the receiver exited at start (log: {self.log_path})")

    def counts(self):
        return http_json(self.admin + "/counts")

    def events(self):
        return http_json(self.admin + "/events")

    def batches(self, since=0):
        return http_json(self.admin + f"/batches?since={since}")["batches"]

    def requests(self, since=0):
        return http_json(self.admin + f"/requests?since={since}")["requests"]

    def fault(self, **spec):
        return http_json(self.admin + "/faults", spec)

    def event_counts(self):
        """{event id: times received} of every event the receiver accepted."""
        return {e["id"]: e["count"] for e in http_json(self.admin + "/events?detail=1", timeout=30)["events"]}

    def clear_faults(self):
        return http_json(self.admin + "/faults", {"clear": True})

    def set_token(self, token):
        with open(self.token_file, "w") as f:
            f.write(token + "\n")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Transmitter:
    """The daemon under test, run from the build tree like an operator would run it by hand."""

    def __init__(self, case, settings=None):
        self.case = case
        self.settings = dict(case.base_settings)
        self.settings.update(settings or {})
        self.port = int(self.settings["TRANSMITTER_SERVER_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = os.path.join(case.workdir, "transmitter.log")
        self.config_path = "/dev/null"  # write_config() gives it a file that SIGHUP re-reads
        self.wrapper = []  # argv prefix the daemon runs under (e.g. a mount namespace)
        self.starts = 0

    def write_config(self, **settings):
        """Writes the configuration file (KEY=VALUE lines, TRANSMITTER_ prefixed) the next start or
        SIGHUP reads; the environment still wins over it, so these keys must not be in settings."""
        self.config_path = os.path.join(self.case.workdir, "transmitter.conf")
        with open(self.config_path + ".tmp", "w") as f:
            for k, v in settings.items():
                f.write(f"TRANSMITTER_{k}={v}\n")
        os.replace(self.config_path + ".tmp", self.config_path)

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM",
                  "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
            env.pop(k, None)
        env.update(self.settings)
        return env

    def start(self, wait=True):
        wrapper = shlex.split(os.environ.get("TRANSMITTER_TEST_WRAPPER", ""))
        self.starts += 1
        out = open(self.log_path, "ab")
        out.write(f"---- start {self.starts} ----\n".encode())
        out.flush()
        self.proc = subprocess.Popen([*self.wrapper, *wrapper, TRANSMITTER_BIN, "--config", self.config_path],
                                     env=self.environment(),
                                     stdout=out, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: self.proc.poll() is not None or http_get(self.base + "/health", 1)[0] == 200,
                     60 if wrapper else 15, "the transmitter's /health")
            if self.proc.poll() is not None:
                raise TestFailure(f"transmitter exited with {self.proc.returncode} at start:\n{self.tail()}")
        return self

    def wait_ready(self, timeout=30):
        wait_for(lambda: http_get(self.base + "/ready", 1)[0] == 200, timeout, "the transmitter's /ready")

    def stats(self):
        status, body, _ = http_get(self.base + "/api/v1/stats")
        if status != 200:
            raise TestFailure(f"/api/v1/stats answered {status}")
        return json.loads(body)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=40):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout):
        """Waits for the process to exit by itself (a SIGTERM sent before); returns the exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure(f"transmitter did not stop within {timeout}s after SIGTERM")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_offset(self):
        """A mark in the log: log_since() and wait_log() look only at what came after it."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout, since=0):
        """Waits for a log line (stderr "<N>message" lines) matching the regular expression; returns the match."""
        rx = re.compile(pattern, re.M)
        return wait_for(lambda: rx.search(self.log_since(since)), timeout, f"a log line matching {pattern!r}",
                        interval=0.2)

    def get(self, path, timeout=5):
        """(status, body bytes) of a GET on the daemon's API; status 0 when no answer."""
        status, body, _ = http_get(self.base + path, timeout)
        return status, body

    def ready(self):
        """(HTTP status, parsed body) of /ready."""
        status, body = self.get("/ready", 2)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    def metrics(self):
        """{(name, frozenset of label items): value} from /metrics."""
        status, body = self.get("/metrics")
        if status != 200:
            raise TestFailure(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    def metric(self, name, **labels):
        return self.metrics().get((name, frozenset(labels.items())))


class Case:
    """One test's world: its own exchange, queue, dead-letter exchange, database and receiver."""

    def __init__(self, name, receiver_args=(), broker=None, database=None, **receiver_kw):
        """broker: a RabbitCluster instead of the shared broker; database: a PostgresHA instead of
        the shared database server. The receiver and the CA are always the shared environment's."""
        self.name = name
        self.devenv = Devenv()
        self.broker = broker or self.devenv
        self.pg = database or self.devenv
        self.workdir = tempfile.mkdtemp(prefix=f"transmitter-{name}-")
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.exchange = f"t.{tag}.events"
        self.queue = f"t.{tag}.approved"
        self.dlx = f"t.{tag}.dlx"
        self.database = "t_" + tag.replace("-", "_")
        self.pg.psql_admin(f"CREATE DATABASE {self.database} OWNER discovery")
        self.receiver = Receiver(self.devenv, self.workdir, extra=receiver_args, **receiver_kw)
        db_url = replace_dbname(self.pg["DATABASE_URL"], self.database)
        self.db_url = db_url
        self.base_settings = {
            "TRANSMITTER_SERVER_HOST": "127.0.0.1",
            "TRANSMITTER_SERVER_PORT": str(free_port()),
            "TRANSMITTER_RABBITMQ_URL": broker.urls if broker else self.devenv["RABBITMQ_URL"],
            "TRANSMITTER_RABBITMQ_EXCHANGE": self.exchange,
            "TRANSMITTER_RABBITMQ_QUEUE": self.queue,
            "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": self.dlx,
            "TRANSMITTER_DATABASE_URL": db_url,
            "TRANSMITTER_DATABASE_MIGRATE": "true",
            "TRANSMITTER_DESTINATION_URL": self.receiver.url,
            "TRANSMITTER_TLS_CA_FILE": os.path.join(self.devenv["TLS_DIR"], "ca.pem"),
            "TRANSMITTER_AUTH_TOKEN_FILE": self.receiver.token_file,
            "TRANSMITTER_INSTANCE_ID": f"test-{tag}",
            "TRANSMITTER_LOG_LEVEL": "INFO",
        }
        self.transmitters = []
        log(f"case {name}: queue {self.queue}, database {self.database}, work dir {self.workdir}")

    def transmitter(self, **settings):
        t = Transmitter(self, {f"TRANSMITTER_{k}": str(v) for k, v in settings.items()})
        self.transmitters.append(t)
        return t

    def another_transmitter(self, name, **settings):
        """One more transmitter on the same queue, database and receiver (competing consumers,
        architecture §10): its own API port, INSTANCE_ID and log file (transmitter-NAME.log)."""
        settings.setdefault("SERVER_PORT", free_port())
        settings.setdefault("INSTANCE_ID", f"{self.base_settings['TRANSMITTER_INSTANCE_ID']}-{name}")
        t = self.transmitter(**settings)
        t.log_path = os.path.join(self.workdir, f"transmitter-{name}.log")
        return t

    def declare(self):
        """Creates the queue as the daemon would, so that events published before it starts are kept."""
        self.publish(0, declare=True)

    def publish(self, count, prefix="evt", declare=False, rate=0, start=1, extra=(), url=None):
        """Publishes count events under publisher confirms, through url (default: the broker's, on a
        cluster the first node that runs); returns their ids."""
        args = [self.devenv["PUBLISH"], "--url", url or self.broker["RABBITMQ_URL"], "--exchange", self.exchange,
                "--count", str(count), "--id-prefix", prefix, "--start", str(start), "--dlx", self.dlx, "--quiet"]
        if declare:
            args += ["--declare-queue", self.queue]
        if rate:
            args += ["--rate", str(rate)]
        args += list(extra)
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        if r.returncode != 0:
            raise TestFailure(f"publisher failed: {r.stderr.strip()[-2000:]}")
        return [f"{prefix}-{i:06d}" for i in range(start, start + count)]

    def publish_raw(self, body, routing_key="approved.server", content_type="application/json", extra=()):
        path = os.path.join(self.workdir, f"raw-{uuid.uuid4().hex}")
        with open(path, "wb") as f:
            f.write(body)
        args = [self.devenv["PUBLISH"], "--url", self.broker["RABBITMQ_URL"], "--exchange", self.exchange,
                "--raw", path, "--routing-key", routing_key, "--content-type", content_type, "--quiet", *extra]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        os.unlink(path)
        if r.returncode != 0:
            raise TestFailure(f"publisher failed: {r.stderr.strip()}")

    def sql(self, query):
        r = subprocess.run(["psql", self.db_url, "-Atqc", query], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise TestFailure(f"psql failed: {r.stderr.strip()}")
        return [line.split("|") for line in r.stdout.splitlines()]

    def queue_counts(self, queue=None):
        return self.broker.queue_counts(queue or self.queue)

    @property
    def dead_queue(self):
        return self.queue + ".dead"

    def queue_messages(self, queue=None, ack=False, body_max=65536):
        """Every message of a queue (default: this test's dead-letter queue) with its headers, in
        order, left in the queue unless ack; see amqp-get.c. Each a dict with exchange,
        routing_key, redelivered, content_type, headers, body_len, body (bytes, at most body_max)."""
        args = [amqp_get_bin(), "--url", self.broker["RABBITMQ_URL"], "--queue", queue or self.dead_queue,
                "--body-max", str(body_max)]
        if ack:
            args.append("--ack")
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if r.returncode != 0:
            raise TestFailure(f"amqp-get failed: {r.stderr.strip()}")
        out = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        if not out or "count" not in out[-1]:
            raise TestFailure(f"amqp-get gave no final count line: {r.stdout[-500:]}")
        msgs = out[:-1]
        for m in msgs:
            m["body"] = m["body"].encode("latin-1")
            try:
                doc = json.loads(m["body"]) if m["body_len"] <= body_max else None
                m["event_id"] = doc.get("id") if isinstance(doc, dict) else None
            except ValueError:
                m["event_id"] = None
        return msgs

    def dead_letters(self):
        return self.queue_messages(self.dead_queue)

    def account(self, published, expect_dead=(), name=None):
        """The nothing-lost check: every published event id reached the receiver at least once or
        lies in the dead-letter queue with an x-transmitter-reason. expect_dead: the ids that must
        be dead-lettered (and not delivered). Prints and returns the figures (published,
        delivered, dead-lettered, duplicated)."""
        published = list(published)
        counts = self.receiver.event_counts()
        dead = self.dead_letters()
        dead_ids = {}
        for m in dead:
            if m["event_id"] is not None:
                dead_ids.setdefault(m["event_id"], []).append(m)
        lost = [i for i in published if i not in counts and i not in dead_ids]
        delivered = sum(1 for i in published if i in counts)
        duplicated = sum(1 for i in published if counts.get(i, 0) > 1)
        extra_copies = sum(counts.get(i, 0) - 1 for i in published if counts.get(i, 0) > 1)
        dead_published = sum(1 for i in published if i in dead_ids)
        figures = {"published": len(published), "delivered": delivered, "dead_lettered": dead_published,
                   "dead_letter_queue": len(dead), "duplicated": duplicated, "extra_copies": extra_copies}
        log(f"FIGURE {name or self.name}: published {len(published)}, delivered {delivered}, dead-lettered "
            f"{dead_published} ({len(dead)} messages in {self.dead_queue}), duplicated {duplicated} "
            f"({extra_copies} extra copies)")
        if duplicated:
            sample = sorted(i for i in published if counts.get(i, 0) > 1)[:10]
            log(f"duplicates (first {len(sample)}): " + ", ".join(f"{i}x{counts[i]}" for i in sample))
        check(not lost, f"nothing lost: every one of {len(published)} events is at the receiver or dead-lettered"
              + (f" (lost {len(lost)}, e.g. {lost[:5]})" if lost else ""))
        reasons = {}
        for m in dead:
            why = m["headers"].get("x-transmitter-reason") or ("x-death" if "x-death" in m["headers"] else None)
            reasons[why] = reasons.get(why, 0) + 1
        check(None not in reasons, f"every dead letter says why (x-transmitter-reason or x-death): {reasons}")
        expect_dead = set(expect_dead)
        if expect_dead:
            check(expect_dead <= set(dead_ids), f"the {len(expect_dead)} expected events are dead-lettered")
            check(not (expect_dead & set(counts)), "no dead-lettered event reached the receiver")
        return figures

    def rows(self, columns="id, status, item_count, http_status, retry_count, error_message"):
        """Every row of transmitter.batches as a dict."""
        names = [c.strip() for c in columns.split(",")]
        r = subprocess.run(["psql", self.db_url, "-AtqX", "-F", "\x1f", "-R", "\x1e", "-c",
                            f"SELECT {columns} FROM transmitter.batches ORDER BY created_at"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise TestFailure(f"psql failed: {r.stderr.strip()}")
        out = []
        for rec in r.stdout.split("\x1e"):
            if rec.strip("\n") == "":
                continue
            out.append(dict(zip(names, rec.strip("\n").split("\x1f"))))
        return out

    def wait_delivered(self, ids, timeout=120):
        """Waits until the receiver has every id at least once; returns the receiver's events()."""
        want = set(ids)

        def done():
            got = set(self.receiver.events()["ids"])
            return want <= got

        wait_for(done, timeout, f"{len(want)} events at the receiver", interval=0.5)
        return self.receiver.events()

    def wait_for_count(self, n, timeout):
        """Waits until the receiver has at least n distinct events."""
        wait_for(lambda: self.receiver.counts()["unique_events"] >= n, timeout, f"{n} events at the receiver",
                 interval=0.2)

    def wait_settled(self, timeout=60):
        """Waits until the queue has nothing ready and nothing unacked."""
        wait_for(lambda: self.queue_counts() == (0, 0), timeout, f"queue {self.queue} empty and fully acked",
                 interval=1)

    def cli_environment(self, **settings):
        """The environment `transmitter` gets as a command: this case's settings, as the daemon's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
        env.update(self.base_settings)
        env.update({f"TRANSMITTER_{k}": str(v) for k, v in settings.items()})
        return env

    def cli(self, *args, timeout=600, settings=None):
        """Runs `transmitter ARGS` (e.g. "dead-letters", "list") with this case's settings; returns
        (exit status, stdout, stderr) and logs the command and what it printed."""
        r = subprocess.run([TRANSMITTER_BIN, *args], env=self.cli_environment(**(settings or {})),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
        log(f"$ transmitter {' '.join(shlex.quote(a) for a in args)}  -> exit {r.returncode}")
        for line in (r.stdout + r.stderr).splitlines()[:60]:
            print(f"    {line}", flush=True)
        return r.returncode, r.stdout, r.stderr

    def cleanup(self):
        for t in self.transmitters:
            if t.running():
                t.kill9()
        self.receiver.stop()
        try:
            self.broker.rabbitmqctl("delete_queue", self.queue)
            self.broker.rabbitmqctl("delete_queue", self.queue + ".dead")
        except TestFailure:
            pass


def run(name, body, **case_kw):
    """Runs one test body(case); prints the daemon's log on failure; exit status for meson."""
    case = None
    try:
        case = Case(name, **case_kw)
        body(case)
        log(f"PASS {name}")
        return 0
    except Exception as e:  # noqa: BLE001 - a test reports every failure the same way
        log(f"FAIL {name}: {e}")
        if case:
            for t in case.transmitters:
                print(f"---- transmitter log ({t.log_path}) ----\n{t.tail(80)}")
        import traceback
        traceback.print_exc()
        return 1
    finally:
        if case:
            case.cleanup()


def run_own(name, make, body, role="broker"):
    """Runs body(case, env) on an environment of the test's own: env = make(directory), a
    RabbitCluster or a RabbitBroker (role "broker") or a PostgresHA (role "database"), stopped in a
    finally. Its directory (the servers' data and logs) is removed on success and kept for a look
    on failure. Returns the exit status for meson."""
    workdir = tempfile.mkdtemp(prefix=f"transmitter-{name}-env-")
    os.chmod(workdir, 0o755)  # PostgreSQL's servers run as another user
    env = None
    status = 1
    try:
        env = make(os.path.join(workdir, "env"))
        status = run(name, lambda case: body(case, env), **{role: env})
    except TestFailure as e:
        log(f"FAIL {name}: {e}")
    finally:
        if env:
            env.stop()
    if status == 0:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def parse_metrics(text):
    """Prometheus text format to {(name, frozenset of label items): float}."""
    out = {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    lrx = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = rx.match(line)
        if not m:
            continue
        labels = frozenset(lrx.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


AMQP_GET_SRC = os.path.join(SOURCE_ROOT, "tests", "integration", "amqp-get.c")
AMQP_TOOL_DIR = os.path.join(SOURCE_ROOT, "tests", "env")  # amqp-tool.h


def amqp_get_bin():
    """The amqp-get helper: AMQP_GET_BIN, else BUILD_ROOT/tests/amqp-get (built by meson), else built
    here into BUILD_ROOT/amqp-get with gcc (rabbitmq-c from pkg-config)."""
    explicit = os.environ.get("AMQP_GET_BIN")
    if explicit:
        return explicit
    src_mtime = max(os.path.getmtime(AMQP_GET_SRC), os.path.getmtime(os.path.join(AMQP_TOOL_DIR, "amqp-tool.h")))
    for path in (os.path.join(BUILD_ROOT, "tests", "amqp-get"), os.path.join(BUILD_ROOT, "amqp-get")):
        if os.access(path, os.X_OK) and os.path.getmtime(path) >= src_mtime:
            return path
    out = os.path.join(BUILD_ROOT, "amqp-get")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "librabbitmq"], stdout=subprocess.PIPE,
                           text=True, check=True).stdout.split()
    tmp = f"{out}.{os.getpid()}.tmp"
    r = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", AMQP_TOOL_DIR,
                        "-o", tmp, AMQP_GET_SRC, *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"building amqp-get failed:\n{r.stdout}")
    os.replace(tmp, out)
    return out


class HealthProbe:
    """Polls a URL (the daemon's /health) in a thread and records how long each answer took, to prove
    the event loop never stalls while a peer is frozen or gone."""

    def __init__(self, url, interval=0.2, timeout=5):
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.samples = []  # (time, seconds, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            status = http_get(self.url, self.timeout)[0]
            self.samples.append((time.time(), time.monotonic() - t0, status))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.timeout + 1)

    def worst(self):
        return max((s[1] for s in self.samples), default=0.0)

    def failures(self, limit=1.0):
        return [s for s in self.samples if s[2] != 200 or s[1] > limit]


class Sampler:
    """Calls fn() every interval seconds in a thread, keeping (time.time(), value) of each call; an
    exception is kept as the value. with Sampler(fn) as s: ...; s.samples."""

    def __init__(self, fn, interval=0.2):
        self.fn = fn
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                v = self.fn()
            except Exception as e:  # noqa: BLE001 - kept for the test to look at
                v = e
            self.samples.append((time.time(), v))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def gunzip_json(data):
    return json.loads(gzip.decompress(data))


def main(name, body, **case_kw):
    sys.exit(run(name, body, **case_kw))


# ---- For the HTTP API tests (test_api*.py): raw HTTP, the Prometheus text format, promtool, descriptors.

def api_connect(port, host="127.0.0.1", source=None, timeout=5):
    """A TCP connection to the daemon's API, from the loopback address source (e.g. "127.0.0.7": the
    whole of 127/8 is local, which lets a test be many clients for the per-IP limit)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def api_read_all(s, timeout=5):
    """Reads until the peer closes; returns (bytes, how): how is "closed", "reset" or "timeout"."""
    s.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        if not chunk:
            return data, "closed"
        data += chunk
        if time.monotonic() > deadline:
            return data, "timeout"


def api_raw(port, data, host="127.0.0.1", source=None, timeout=5):
    """Sends raw bytes on a fresh connection and reads until the server closes it; (bytes, how)."""
    with api_connect(port, host, source, timeout) as s:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return b"", "reset"
        return api_read_all(s, timeout)


def api_request(port, method="GET", path="/", headers=None, body=None, host="127.0.0.1", timeout=5, conn=None):
    """One request with http.client: (status, {lower-case header: value}, body bytes, connection). Pass
    the connection back in to send the next request on it (keep-alive)."""
    import http.client
    c = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data, c


def api_parse_metrics(text):
    """The Prometheus text format 0.0.4, strictly enough for the tests: (samples, families) with samples
    {(name, frozenset of (label, value))}: float (label values unescaped) and families {name: (type,
    help)}. Raises TestFailure on a line it cannot read."""
    samples, families, helps = {}, {}, {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    lrx = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
    unescape = {"\\\\": "\\", "\\\"": "\"", "\\n": "\n"}
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            helps[name] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE "):].partition(" ")
            families[name] = (kind, helps.get(name))
            continue
        m = rx.match(line)
        if not m:
            raise TestFailure(f"not a sample line: {line!r}")
        labels = []
        rest = m.group(2) or ""
        for lm in lrx.finditer(rest):
            labels.append((lm.group(1), re.sub(r'\\[\\"n]', lambda e: unescape[e.group(0)], lm.group(2))))
        if m.group(2) and "".join(lm.group(0) for lm in lrx.finditer(rest)) != rest:
            raise TestFailure(f"bad labels: {line!r}")
        samples[(m.group(1), frozenset(labels))] = float(m.group(3))
    return samples, families


def api_promtool(text):
    """(exit status, output) of promtool check metrics on text, or None without promtool."""
    import shutil
    promtool = shutil.which("promtool")
    if not promtool:
        return None
    r = subprocess.run([promtool, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.returncode, r.stdout


def api_open_fds(pid):
    """The process's open descriptors, counted as process_open_fds counts them."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def api_fd_targets(pid):
    """{fd: what it points to} of a process, for a message when counts differ."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out

"""Integration test harness: a real RabbitMQ, PostgreSQL and HTTPS receiver (tests/env), and the
transmitter binary under test, started as a plain process.

Every test gets its own exchange, queues, database and receiver, so tests never see each
other's events; the broker and the database server are shared (started once by devenv.sh,
which is idempotent) because starting RabbitMQ costs ~10 s.

Environment: TRANSMITTER_BIN (the binary), SOURCE_ROOT, TRANSMITTER_TEST_DEVENV (the shared
environment's directory; default BUILD_ROOT/devenv), TRANSMITTER_TEST_WRAPPER (e.g. "valgrind
--error-exitcode=99 ..." to run the daemon under a tool).
"""

import gzip
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
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


class Devenv:
    """The shared broker, database and CA."""

    def __init__(self):
        self.dir = os.environ.get("TRANSMITTER_TEST_DEVENV") or os.path.join(BUILD_ROOT, "devenv")
        r = subprocess.run(["bash", os.path.join(ENV_SCRIPTS, "devenv.sh"), "up", self.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            print(r.stdout)
            raise TestFailure("devenv.sh up failed")
        self.env = read_env_file(os.path.join(self.dir, "env"))

    def __getitem__(self, k):
        return self.env[k]

    def rabbitmqctl(self, *args):
        r = subprocess.run([self.env["RABBITMQCTL"], *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise TestFailure(f"rabbitmqctl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def queue_counts(self, queue):
        """(ready, unacked) of a queue, or None when it does not exist."""
        out = self.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                               "messages_unacknowledged")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        return None

    def psql_admin(self, sql):
        r = subprocess.run([self.env["PSQL_ADMIN"], "-Atqc", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise TestFailure(f"psql failed: {r.stderr.strip()}")
        return r.stdout

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
        tls = devenv["TLS_DIR"]
        self.log_path = os.path.join(self.dir, "receiver.log")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(ENV_SCRIPTS, "receiver.py"), "--host", "127.0.0.1", "--port", str(self.port),
             "--admin-port", str(self.admin_port), "--cert", cert or os.path.join(tls, "server.pem"),
             "--key", key or os.path.join(tls, "server.key"), "--token-file", self.token_file, "--quiet",
             *extra],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.url = f"https://127.0.0.1:{self.port}/v1/discovery"
        wait_for(lambda: http_get(self.admin + "/health")[0] == 200, 15, "the receiver")

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
        self.starts = 0

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
        self.proc = subprocess.Popen([*wrapper, TRANSMITTER_BIN, "--config", "/dev/null"], env=self.environment(),
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


class Case:
    """One test's world: its own exchange, queue, dead-letter exchange, database and receiver."""

    def __init__(self, name, receiver_args=(), **receiver_kw):
        self.name = name
        self.devenv = Devenv()
        self.workdir = tempfile.mkdtemp(prefix=f"transmitter-{name}-")
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.exchange = f"t.{tag}.events"
        self.queue = f"t.{tag}.approved"
        self.dlx = f"t.{tag}.dlx"
        self.database = "t_" + tag.replace("-", "_")
        self.devenv.psql_admin(f"CREATE DATABASE {self.database} OWNER discovery")
        self.receiver = Receiver(self.devenv, self.workdir, extra=receiver_args, **receiver_kw)
        db_url = self.devenv["DATABASE_URL"].rsplit("/", 1)[0] + "/" + self.database
        self.db_url = db_url
        self.base_settings = {
            "TRANSMITTER_SERVER_HOST": "127.0.0.1",
            "TRANSMITTER_SERVER_PORT": str(free_port()),
            "TRANSMITTER_RABBITMQ_URL": self.devenv["RABBITMQ_URL"],
            "TRANSMITTER_RABBITMQ_EXCHANGE": self.exchange,
            "TRANSMITTER_RABBITMQ_QUEUE": self.queue,
            "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": self.dlx,
            "TRANSMITTER_DATABASE_URL": db_url,
            "TRANSMITTER_DATABASE_MIGRATE": "true",
            "TRANSMITTER_MIGRATIONS_DIR": os.path.join(SOURCE_ROOT, "db"),
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

    def declare(self):
        """Creates the queue as the daemon would, so that events published before it starts are kept."""
        self.publish(0, declare=True)

    def publish(self, count, prefix="evt", declare=False, rate=0, start=1, extra=()):
        args = [self.devenv["PUBLISH"], "--url", self.devenv["RABBITMQ_URL"], "--exchange", self.exchange,
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

    def publish_raw(self, body, routing_key="approved.server", content_type="application/json"):
        path = os.path.join(self.workdir, f"raw-{uuid.uuid4().hex}")
        with open(path, "wb") as f:
            f.write(body)
        args = [self.devenv["PUBLISH"], "--url", self.devenv["RABBITMQ_URL"], "--exchange", self.exchange,
                "--raw", path, "--routing-key", routing_key, "--content-type", content_type, "--quiet"]
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
        return self.devenv.queue_counts(queue or self.queue)

    def wait_delivered(self, ids, timeout=120):
        """Waits until the receiver has every id at least once; returns the receiver's events()."""
        want = set(ids)

        def done():
            got = set(self.receiver.events()["ids"])
            return want <= got

        wait_for(done, timeout, f"{len(want)} events at the receiver", interval=0.5)
        return self.receiver.events()

    def wait_settled(self, timeout=60):
        """Waits until the queue has nothing ready and nothing unacked."""
        wait_for(lambda: self.queue_counts() == (0, 0), timeout, f"queue {self.queue} empty and fully acked",
                 interval=1)

    def cleanup(self):
        for t in self.transmitters:
            if t.running():
                t.kill9()
        self.receiver.stop()
        try:
            self.devenv.rabbitmqctl("delete_queue", self.queue)
            self.devenv.rabbitmqctl("delete_queue", self.queue + ".dead")
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


def gunzip_json(data):
    return json.loads(gzip.decompress(data))


def main(name, body, **case_kw):
    sys.exit(run(name, body, **case_kw))

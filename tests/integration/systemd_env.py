"""A real systemd user manager and journald for tests, on a machine where systemd is not PID 1.

    with UserManager(workdir) as m:                 # journald (shared) + `systemd --user` (private)
        svc = TransmitterService(m, settings, port=8123, token_file=path)
        svc.install()                               # links the product's units, writes the drop-ins
        m.systemctl("start", "transmitter.socket")
        ...
        m.journal(BATCH_ID="...")                   # this manager's entries only

What a user manager needs and how it gets it here:
- journald: /run/systemd/journal/ is a fixed path, so there is one journald per machine. It is
  reused when one runs, else started; the last user of those that started it stops it, by PID
  (Journald below keeps the count under a lock in /run/transmitter-tests/).
- What PID 1 leaves in /run at boot, made once and left as a boot would leave it:
  /run/systemd/system (sd_booted(), systemctl); /run/systemd/inaccessible/* (what ProtectHome=
  and friends mount over hidden paths: a manager running as root uses those of /run); and /run
  as a mount point (here it is a plain directory, so it is bound onto itself: otherwise a
  sandboxed service gets an empty tmpfs on /run, without the journal's and the manager's sockets).
- Its own cgroup. A manager whose cgroup is the root moves *every process of the machine* into
  /init.scope, so it is always started inside /user.slice/user-0.slice/user@0.service/<name>.slice
  (made here, in the unified and, on a hybrid layout, the name=systemd hierarchy, and removed at
  stop). journald then files the units' entries as _SYSTEMD_USER_UNIT=, as on a real machine, and
  the path tells apart the entries of managers running at the same time.
- A private XDG_RUNTIME_DIR, /run/transmitter-tests/managers/<name>: a tmpfs (systemd refuses to
  remove credentials from a disk file system), shared (credentials are moved in from a mount
  namespace of their own), 0711 (the services run as other users), outside /tmp (PrivateTmp=
  would hide it; the notify socket is in there, chmod 0777 as PID 1's is). A private
  XDG_CONFIG_HOME below workdir, where `systemctl --user link` and the drop-ins go. The manager
  gets a login's environment, not the test's: it hands it to every unit.

Because the manager runs as root, it applies the sandboxing of a system service for real:
DynamicUser=, mount namespaces, PrivateUsers=, seccomp, capabilities. TransmitterService says in
its drop-in what it changes for the test and why (paths under /tmp hidden by PrivateTmp=, a
static group of this machine for Group=, ...).

Everything is stopped by PID (or through the manager); nothing is looked up by name.
"""

import fcntl
import grp
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid

SYSTEMD = "/lib/systemd/systemd"
JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_STDOUT = "/run/systemd/journal/stdout"
STATE_DIR = "/run/transmitter-tests"
SOURCE_ROOT = os.environ.get("SOURCE_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_ROOT = os.environ.get("BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")


class SystemdEnvError(Exception):
    pass


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] systemd_env: {msg}", flush=True)


def _wait(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemdEnvError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid):
    """False for a PID that is gone or a zombie (PID 1 here does not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pid_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _terminate(pid, timeout, proc=None):
    """SIGTERM, then SIGKILL after timeout; reaps it when it is our child."""
    if not pid_alive(pid):
        if proc:
            proc.poll()
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        if proc and proc.poll() is not None:
            return
        time.sleep(0.05)
    if pid_alive(pid):
        _log(f"PID {pid} did not stop within {timeout}s after SIGTERM: SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def is_mount_point(path):
    """From the mount table: os.path.ismount() says no for a bind mount within one file system."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def prepare_run_systemd():
    """What PID 1 leaves in /run at boot and a manager running as root relies on."""
    # A service with a private /dev or /proc (MountAPIVFS=) gets an empty tmpfs on /run unless
    # /run is a mount point, as it always is where systemd booted: no journal socket, no notify
    # socket. Binding /run onto itself (with what is mounted below it) changes no content.
    if not is_mount_point("/run"):
        subprocess.run(["mount", "--rbind", "/run", "/run"], check=True)
        _log("/run was not a mount point: bound it onto itself")
    os.makedirs("/run/systemd/system", exist_ok=True)
    d = "/run/systemd/inaccessible"
    os.makedirs(d, exist_ok=True)
    nodes = {
        "dir": lambda p: os.mkdir(p, 0),
        "reg": lambda p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0)),
        "fifo": lambda p: os.mkfifo(p, 0),
        "chr": lambda p: os.mknod(p, 0o000 | 0o020000, os.makedev(0, 0)),
        "blk": lambda p: os.mknod(p, 0o000 | 0o060000, os.makedev(0, 0)),
    }
    for name, make in nodes.items():
        p = os.path.join(d, name)
        if not os.path.lexists(p):
            make(p)
            os.chmod(p, 0)
    p = os.path.join(d, "sock")
    if not os.path.lexists(p):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(p)
        os.chmod(p, 0)


def _journald_answers():
    if not os.path.exists(JOURNAL_STDOUT):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(JOURNAL_STDOUT)
            return True
        except OSError:
            return False


def _state_lock():
    """Serialises what users of this module share on the machine (journald, /run)."""
    os.makedirs(STATE_DIR, exist_ok=True)
    f = open(os.path.join(STATE_DIR, "lock"), "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


class Journald:
    """The machine's journald, shared by every user of this module; counted under a lock."""

    def __init__(self):
        self.token = None
        self.proc = None

    def _locked(self):
        os.makedirs(os.path.join(STATE_DIR, "journald.users"), exist_ok=True)
        return _state_lock()

    @staticmethod
    def _users():
        d = os.path.join(STATE_DIR, "journald.users")
        live = []
        for name in os.listdir(d):
            pid, _, start = name.partition("-")
            if pid.isdigit() and pid_alive(int(pid)) and _pid_start_time(int(pid)) == start.split("-")[0]:
                live.append(name)
            else:
                os.unlink(os.path.join(d, name))
        return live

    def acquire(self):
        with self._locked():
            self._users()
            self.token = f"{os.getpid()}-{_pid_start_time(os.getpid())}-{uuid.uuid4().hex[:8]}"
            open(os.path.join(STATE_DIR, "journald.users", self.token), "w").close()
            if _journald_answers():
                return
            log = open(os.path.join(STATE_DIR, "journald.log"), "ab")
            self.proc = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
            with open(os.path.join(STATE_DIR, "journald.pid"), "w") as f:
                f.write(f"{self.proc.pid}\n")
            _wait(_journald_answers, 15, "journald's stdout socket")
            _log(f"started journald (PID {self.proc.pid})")

    def release(self):
        if not self.token:
            return
        with self._locked():
            try:
                os.unlink(os.path.join(STATE_DIR, "journald.users", self.token))
            except FileNotFoundError:
                pass
            self.token = None
            pid_file = os.path.join(STATE_DIR, "journald.pid")
            if self._users() or not os.path.exists(pid_file):
                return
            with open(pid_file) as f:
                pid = int(f.read().strip() or 0)
            os.unlink(pid_file)
            if pid > 0:
                _terminate(pid, 10, self.proc if self.proc and self.proc.pid == pid else None)
                _log(f"stopped journald (PID {pid})")


def _cgroup_roots():
    """The hierarchies a manager tracks its units in: the unified one, and name=systemd on a
    hybrid layout."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return ["/sys/fs/cgroup"]
    roots = []
    if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
        roots.append("/sys/fs/cgroup/unified")
    if os.path.exists("/sys/fs/cgroup/systemd/cgroup.procs"):
        roots.append("/sys/fs/cgroup/systemd")
    if not roots:
        raise SystemdEnvError("no cgroup hierarchy a systemd manager can use under /sys/fs/cgroup")
    return roots


def _rmdir_tree(path):
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _rmdir_tree(entry.path)
    try:
        os.rmdir(path)
    except OSError as e:
        _log(f"cannot remove cgroup {path}: {e}")


class UserManager:
    """`systemd --user` with a private runtime and configuration directory, in its own cgroup."""

    def __init__(self, workdir, name=None):
        if _read("/proc/1/comm").strip() == "systemd":
            raise SystemdEnvError("systemd is PID 1 here: use the real (user) manager instead of this helper")
        if os.geteuid() != 0:
            raise SystemdEnvError("needs root: it mounts a tmpfs and makes cgroups for the manager")
        self.dir = os.path.join(workdir, "systemd")
        self.name = name or f"ttest-{uuid.uuid4().hex[:10]}"
        # Not below workdir: PrivateTmp= would hide a /tmp path (the notify socket is in here).
        self.runtime_dir = os.path.join(STATE_DIR, "managers", self.name)
        self.config_home = os.path.join(self.dir, "config")
        self.unit_dir = os.path.join(self.config_home, "systemd", "user")
        self.home = os.path.join(self.dir, "home")
        self.cgroup = f"/user.slice/user-0.slice/user@0.service/{self.name}.slice"
        self.cgroup_roots = _cgroup_roots()
        self.journald = Journald()
        self.proc = None
        self.mounted = False
        self.started_at = None
        self.pid = None

    # -- lifecycle --

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def env(self):
        """For the manager and its clients. The manager hands its environment to every unit, so
        it is a login's, not the test's (no TRANSMITTER_*, no sanitizer options)."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "HOME": self.home, "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh",
                "XDG_RUNTIME_DIR": self.runtime_dir, "XDG_CONFIG_HOME": self.config_home,
                "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}

    def start(self, timeout=30):
        with _state_lock():
            prepare_run_systemd()
        self.journald.acquire()
        for d in (self.dir, self.unit_dir, self.home):
            os.makedirs(d, exist_ok=True)
        # A DynamicUser= service must reach the files it is given below here.
        _make_traversable(self.dir)
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        _make_traversable(os.path.dirname(self.runtime_dir))
        # 0711, not a user manager's usual 0700: the services run as other (dynamic) users and
        # reach their credentials below it ($XDG_RUNTIME_DIR/credentials/<unit>/).
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711,size=64m", "tmpfs", self.runtime_dir], check=True)
        self.mounted = True
        # Shared, as PID 1 makes every mount: systemd builds a credential store in a mount
        # namespace of its own and moves it into place here, which only propagates back out of a
        # shared mount (on a private one the service finds an empty directory).
        subprocess.run(["mount", "--make-shared", self.runtime_dir], check=True)
        for root in self.cgroup_roots:
            os.makedirs(root + self.cgroup, exist_ok=True)
        self.started_at = time.time_ns() // 1000

        procs = [root + self.cgroup + "/cgroup.procs" for root in self.cgroup_roots]

        def enter_cgroup():
            for p in procs:
                with open(p, "w") as f:
                    f.write(str(os.getpid()))

        log = open(os.path.join(self.dir, "manager.log"), "ab")
        env = self.env()
        env["SYSTEMD_LOG_TARGET"] = "journal"  # its own messages (e.g. "Watchdog timeout") in the journal
        self.proc = subprocess.Popen([SYSTEMD, "--user"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True, preexec_fn=enter_cgroup)

        def up():
            if self.proc.poll() is not None:
                raise SystemdEnvError(f"systemd --user exited with {self.proc.returncode}; see "
                                      f"{self.dir}/manager.log")
            r = self.systemctl("is-system-running", check=False)
            return r.stdout.strip() in ("running", "degraded")

        _wait(up, timeout, "systemd --user to be running", interval=0.1)
        # Made under the manager's umask (0755 here, 0777 under PID 1, whose umask is 0): its
        # services run as other (dynamic) users, who must be able to send READY=1 to it.
        os.chmod(os.path.join(self.runtime_dir, "systemd", "notify"), 0o777)
        self.pid = str(self.proc.pid)
        _log(f"systemd --user running (PID {self.proc.pid}, cgroup {self.cgroup}, XDG_RUNTIME_DIR "
             f"{self.runtime_dir})")
        return self

    def stop(self, timeout=120):
        """SIGTERM to the manager (it stops every unit, each within its TimeoutStopSec=), then
        whatever is left of its cgroup is killed, the tmpfs unmounted, the cgroups removed."""
        if self.proc:
            _terminate(self.proc.pid, timeout, self.proc)
            self.proc = None
        for root in self.cgroup_roots:
            kill = root + self.cgroup + "/cgroup.kill"
            if os.path.exists(kill) and _read(root + self.cgroup + "/cgroup.procs", recursive=True):
                with open(kill, "w") as f:
                    f.write("1")
                time.sleep(0.2)
            _rmdir_tree(root + self.cgroup)
            # The parents too, unless another manager is in them.
            parent = os.path.dirname(self.cgroup)
            while parent != "/":
                try:
                    os.rmdir(root + parent)
                except OSError:
                    break
                parent = os.path.dirname(parent)
        if self.mounted:
            r = subprocess.run(["umount", self.runtime_dir], stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                _log(f"umount {self.runtime_dir}: {r.stderr.strip()}; detaching it")
                subprocess.run(["umount", "-l", self.runtime_dir])
            self.mounted = False
            try:
                os.rmdir(self.runtime_dir)
            except OSError:
                pass
        self.journald.release()

    # -- control --

    def systemctl(self, *args, check=True, timeout=120):
        r = subprocess.run(["systemctl", "--user", "--no-pager", *args], env=self.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise SystemdEnvError(f"systemctl --user {' '.join(args)}: exit {r.returncode}: "
                                  f"{(r.stderr or r.stdout).strip()}")
        return r

    def show(self, unit, *props):
        r = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def prop(self, unit, name):
        return self.show(unit, name).get(name, "")

    def main_pid(self, unit):
        return int(self.prop(unit, "MainPID") or 0)

    def wait_prop(self, unit, name, pred, timeout, what=None):
        """Waits until pred(value of the property) holds; returns the value."""
        last = [None]

        def ok():
            last[0] = self.prop(unit, name)
            return pred(last[0])

        try:
            _wait(ok, timeout, what or f"{unit} {name}", interval=0.1)
        except SystemdEnvError as e:
            raise SystemdEnvError(f"{e} (last {name}={last[0]!r})") from None
        return last[0]

    def link(self, *paths):
        self.systemctl("link", *paths)

    def dropin(self, unit, name, text):
        d = os.path.join(self.unit_dir, unit + ".d")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def daemon_reload(self):
        self.systemctl("daemon-reload")

    # -- journal --
    # (Not journalctl --after-cursor: combined with a match it finds nothing in 252. Entries are
    # told apart by the manager's cgroup, and "after" is a CLOCK_REALTIME time in µs.)

    @staticmethod
    def journal_mark():
        """A point in time to pass as after= to see only what comes later."""
        subprocess.run(["journalctl", "--sync"], stderr=subprocess.DEVNULL)
        return time.time_ns() // 1000

    def journal(self, *args, after=None, **fields):
        """Entries (dicts of `journalctl -o json`) of this manager and its units since it started
        (or since the journal_mark() after=), matching fields, e.g. journal(BATCH_ID=x)."""
        subprocess.run(["journalctl", "--sync"], stderr=subprocess.DEVNULL)
        since = after or self.started_at
        cmd = ["journalctl", "-q", "-o", "json", "--no-pager", f"--since=@{since // 1000000 - 1}"]
        cmd += list(args) + [f"{k}={v}" for k, v in fields.items()]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        entries = []
        pid = str(self.proc.pid) if self.proc else self.pid
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(e.get("__REALTIME_TIMESTAMP", 0)) < since:
                continue
            if e.get("_SYSTEMD_CGROUP", "").startswith(self.cgroup + "/") or (pid and e.get("_PID") == pid):
                entries.append(e)
        return entries

    def unit_journal(self, unit, after=None):
        """The unit's own entries and the manager's entries about it."""
        return [e for e in self.journal(after=after)
                if e.get("_SYSTEMD_USER_UNIT") == unit or e.get("USER_UNIT") == unit or e.get("UNIT") == unit]

    def unit_log_text(self, unit, n=80):
        lines = []
        for e in self.unit_journal(unit)[-n:]:
            msg = e.get("MESSAGE")
            if isinstance(msg, list):  # not UTF-8: journalctl gives bytes
                msg = bytes(msg).decode(errors="replace")
            lines.append(f"{e.get('SYSLOG_IDENTIFIER', '?')}[{e.get('_PID', '?')}] <{e.get('PRIORITY', '?')}> {msg}")
        return "\n".join(lines)


def _read(path, recursive=False):
    if recursive:
        out = ""
        for dirpath, _, files in os.walk(os.path.dirname(path)):
            if "cgroup.procs" in files:
                out += _read(os.path.join(dirpath, "cgroup.procs"))
        return out
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _make_traversable(path):
    """o+x on path and each parent, so that a service's DynamicUser= reaches what is below
    (e.g. a mkdtemp() directory, 0700)."""
    p = os.path.abspath(path)
    while True:
        st = os.stat(p)
        if not st.st_mode & 0o001:
            os.chmod(p, st.st_mode | 0o001)
            _log(f"{p}: added o+x for the service's dynamic user")
        if p == "/":
            return
        p = os.path.dirname(p)


def _is_sanitized(binary):
    with open(binary, "rb") as f:
        data = f.read()
    return b"libasan.so" in data or b"libubsan.so" in data


# Where a path is hidden from a service by its sandbox, and what the test drop-in does about it.
_PRIVATE_TMP = ("/tmp/", "/var/tmp/")
_HOMES = ("/home/", "/root/", "/run/user/")


class TransmitterService:
    """The product's units, linked into a UserManager as they are built, with drop-ins (named
    50-test.conf) that point them at a binary, a configuration file and a port of the test.

    settings: TRANSMITTER_* values, written to a configuration file (root:<group>, 0640) that the
    service reads with --config, the way it reads /etc/transmitter/transmitter.conf.
    token_file: the source of LoadCredential=auth-token: (None keeps the unit's own line).
    """

    SERVICE = "transmitter.service"
    SOCKET = "transmitter.socket"

    def __init__(self, manager, settings, port, token_file=None, service_extra="", socket_extra="",
                 binary=None, service_unit=None, socket_unit=None, host="127.0.0.1"):
        self.m = manager
        self.settings = dict(settings)
        self.port = port
        self.host = host
        self.token_file = token_file
        self.service_extra = service_extra
        self.socket_extra = socket_extra
        self.binary = os.path.abspath(binary or os.environ.get("TRANSMITTER_BIN")
                                      or os.path.join(BUILD_ROOT, "src", "transmitter"))
        build_root = os.path.dirname(os.path.dirname(self.binary))
        self.service_unit = service_unit or os.path.join(build_root, "transmitter.service")
        self.socket_unit = socket_unit or os.path.join(SOURCE_ROOT, "units", "transmitter.socket")
        self.etc = os.path.join(manager.dir, "etc")
        self.conf = os.path.join(self.etc, "transmitter.conf")
        self.group = self._group()
        self.url = f"http://{host}:{port}"
        self.notes = []

    @staticmethod
    def _unit_group(path):
        group = None
        with open(path) as f:
            for line in f:
                if line.startswith("Group="):
                    group = line.strip().partition("=")[2]
        return group

    def _group(self):
        """The unit's static Group= when this machine has it, else a static group that exists
        everywhere and owns nothing of interest."""
        wanted = self._unit_group(self.service_unit)
        for g in (wanted, "nogroup"):
            if g:
                try:
                    grp.getgrnam(g)
                    return g
                except KeyError:
                    pass
        raise SystemdEnvError("no static group for the configuration file")

    def write_config(self, settings=None):
        """(Re)writes the configuration file, as an operator edits /etc/transmitter/transmitter.conf."""
        if settings is not None:
            self.settings = dict(settings)
        os.makedirs(self.etc, exist_ok=True)
        os.chmod(self.etc, 0o755)
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write("# written by tests/integration/systemd_env.py\n")
            for k, v in self.settings.items():
                f.write(f"{k}={v}\n")
        os.chown(tmp, 0, grp.getgrnam(self.group).gr_gid)
        os.chmod(tmp, 0o640)
        os.rename(tmp, self.conf)

    def _visibility(self):
        """BindReadOnlyPaths= (and ProtectHome=tmpfs) for what the sandbox would hide."""
        # Directories, not files: a bind mount of a file keeps showing the old inode once the file
        # is replaced (as write_config() and editors do).
        paths = {os.path.dirname(self.binary), self.etc}
        for k, v in self.settings.items():
            if k.endswith("_FILE") and v.startswith("/"):
                paths.add(os.path.dirname(v))
            elif k.endswith("_DIR") and v.startswith("/"):
                paths.add(v)
        binds, protect_home = set(), False
        for p in sorted(paths):
            if p.startswith(_PRIVATE_TMP) or p.startswith(_HOMES):
                binds.add(p)
                protect_home |= p.startswith(_HOMES)
                _make_traversable(os.path.dirname(p))
        # Nested paths: the outermost bind carries the rest.
        binds = sorted(b for b in binds if not any(b != o and b.startswith(o.rstrip("/") + "/") for o in binds))
        lines = []
        if binds:
            lines.append("# PrivateTmp=/ProtectHome= hide these test paths; bind them in, read-only.")
            lines.append("BindReadOnlyPaths=" + " ".join(shlex.quote(b) for b in binds))
            self.notes.append(f"BindReadOnlyPaths={' '.join(binds)}")
        if protect_home:
            lines.append("# ProtectHome=yes would hide the binds below a home directory too.")
            lines.append("ProtectHome=tmpfs")
            self.notes.append("ProtectHome=tmpfs instead of yes")
        return lines

    def service_dropin(self):
        lines = ["[Service]", "ExecStart=",
                 f"ExecStart={shlex.quote(self.binary)} --config {shlex.quote(self.conf)}"]
        if self.token_file:
            lines += ["LoadCredential=", f"LoadCredential=auth-token:{self.token_file}"]
        wanted = self._unit_group(self.service_unit)
        if wanted != self.group:
            lines += [f"# This machine has no static group {wanted!r}: another static group owns the test's "
                      "configuration file.", f"Group={self.group}"]
            self.notes.append(f"Group={self.group} (the unit's {wanted} does not exist here)")
        lines += self._visibility()
        if _is_sanitized(self.binary):
            # LeakSanitizer stops the process with ptrace at exit, which SystemCallFilter= refuses;
            # leaks are checked by the tests that run the daemon as a plain process.
            lines.append("Environment=ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 "
                         "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
            self.notes.append("ASAN_OPTIONS=detect_leaks=0 (sanitized build)")
        if self.service_extra:
            lines.append(self.service_extra)
        return "\n".join(lines) + "\n"

    def socket_dropin(self):
        text = f"[Socket]\nListenStream=\nListenStream={self.host}:{self.port}\n"
        if self.socket_extra:
            text += self.socket_extra + "\n"
        return text

    def install(self):
        self.write_config()
        self.m.link(self.service_unit, self.socket_unit)
        self.m.dropin(self.SERVICE, "50-test", self.service_dropin())
        self.m.dropin(self.SOCKET, "50-test", self.socket_dropin())
        self.m.daemon_reload()
        if self.notes:
            _log("test drop-in changes to the unit: " + "; ".join(self.notes))
        return self

    # -- shortcuts --

    def systemctl(self, verb, unit=None, **kw):
        return self.m.systemctl(verb, unit or self.SERVICE, **kw)

    def active_state(self, unit=None):
        return self.m.prop(unit or self.SERVICE, "ActiveState")

    def main_pid(self):
        return self.m.main_pid(self.SERVICE)

    def status_text(self):
        return self.m.prop(self.SERVICE, "StatusText")

    def journal(self, after=None, **fields):
        return [e for e in self.m.journal(after=after, **fields) if e.get("_SYSTEMD_USER_UNIT") == self.SERVICE]

    def log_text(self, n=80):
        return self.m.unit_log_text(self.SERVICE, n)


def timespan_s(value):
    """Seconds in a time span as `systemctl show` prints it: "45s", "1min 30s", "500ms"."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    total = 0.0
    for part in value.split():
        num = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(num) * units[part[len(num):] or "s"]
    return total


def case_settings(case, **overrides):
    """The TRANSMITTER_* settings of a tests/integration harness Case for the service: the token
    comes from LoadCredential=, not from a file named in the settings."""
    s = {k: v for k, v in case.base_settings.items() if k != "TRANSMITTER_AUTH_TOKEN_FILE"}
    s.update({f"TRANSMITTER_{k}": str(v) for k, v in overrides.items()})
    return s


def run_case(name, body, **case_kw):
    """harness.run() with a user manager: body(case, manager); prints the units' journal on failure."""
    import harness

    state = {}

    def wrapped(case):
        m = UserManager(case.workdir)
        state["m"] = m
        try:
            m.start()
            body(case, m)
        except Exception:
            try:
                for unit in (TransmitterService.SERVICE, TransmitterService.SOCKET):
                    print(f"---- journal of {unit} ----\n{m.unit_log_text(unit, 120)}")
            except Exception as e:  # noqa: BLE001 - the failure being reported matters more
                print(f"(no journal: {e})")
            raise
        finally:
            m.stop()

    return harness.run(name, wrapped, **case_kw)

#!/usr/bin/python3
"""Keeps the man pages in step with the code.

transmitter.conf(5) must list every setting of the CONFIG_SETTINGS table in src/core/config.c, in
the table's order, each with the table's default, its accepted range and whether a reload
applies it; and the daemon built from that code must know exactly those settings
(`transmitter --check-config` prints them all). Its OBSOLETE SETTINGS section must list the
CONFIG_OBSOLETE_SETTINGS table, whose settings the daemon accepts, ignores and warns about. transmitter(8) must describe every option of
`transmitter --help`, and no other; transmitter-dead-letters(8) every option and command of
`transmitter dead-letters --help`, and no other.

    check-man.py --config-c src/core/config.c --conf-man BUILD/transmitter.conf.5.scd \\
                 --daemon-man BUILD/transmitter.8.scd --binary BUILD/src/transmitter \\
                 [--dead-letters-man BUILD/transmitter-dead-letters.8.scd]

The man sources are the configured .scd files (meson substitutes @datadir@ and friends), so
the defaults they show are the ones the build uses. Ends with "N passed, N failed".
"""

import argparse
import os
import re
import subprocess
import sys

PREFIX = "TRANSMITTER_"


def macro_rows(text, macro, n_fields, path):
    """The argument lists of the X(...) rows of "#define MACRO(X)", each split into n_fields; None when
    the macro is not there."""
    start = text.find(f"#define {macro}(X)")
    if start < 0:
        return None
    # The macro runs for as long as lines end in a backslash.
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.rstrip())
        if not line.rstrip().endswith("\\"):
            break
    body = " ".join(l.rstrip("\\") for l in lines[1:])
    rows = []
    for m in re.finditer(r"\bX\(\s*(.*?)\)\s*(?=X\(|$)", body):
        fields = split_args(m.group(1))
        if len(fields) != n_fields:
            raise SystemExit(f"{path}: a {macro} row without {n_fields} fields: X({m.group(1)})")
        rows.append(fields)
    return rows


def parse_settings_table(path):
    """The X(...) rows of CONFIG_SETTINGS: name, kind, default (None for NULL), lo, hi, reload."""
    text = open(path, encoding="utf-8").read()
    table = macro_rows(text, "CONFIG_SETTINGS", 7, path)
    if table is None:
        raise SystemExit(f"{path}: no '#define CONFIG_SETTINGS(X)' (has the table moved?)")
    rows = []
    for name, kind, _field, default, lo, hi, reload in table:
        rows.append({
            "name": name,
            "kind": kind,
            "default": None if default == "NULL" else c_string(default),
            "lo": lo,
            "hi": hi,
            "reload": reload == "true",
        })
    if not rows:
        raise SystemExit(f"{path}: CONFIG_SETTINGS has no rows")
    return rows, text


def parse_obsolete_table(text, path):
    """The names of the X(NAME, "why") rows of CONFIG_OBSOLETE_SETTINGS ([] when there is none)."""
    return [name for name, _why in macro_rows(text, "CONFIG_OBSOLETE_SETTINGS", 2, path) or []]


def split_args(s):
    """Splits a macro argument list on the commas outside strings and parentheses."""
    out, depth, cur, in_str = [], 0, "", False
    i = 0
    while i < len(s):
        ch = s[i]
        if in_str:
            cur += ch
            if ch == "\\":
                cur += s[i + 1]
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            cur += ch
        elif ch == "(":
            depth += 1
            cur += ch
        elif ch == ")":
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur.strip())
    return out


def c_string(s):
    """'"a" "b"' (adjacent literals) -> 'ab'."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', s)
    if not parts:
        raise SystemExit(f"not a C string literal: {s}")
    return "".join(p.encode().decode("unicode_escape") for p in parts)


def resolve_number(token, sources):
    """A table bound: a number, or a macro #defined in the sources; None when it is neither."""
    if re.fullmatch(r"\d+", token):
        return int(token)
    for text in sources:
        m = re.search(r"#define\s+" + re.escape(token) + r"\s+(\d+)\b", text)
        if m:
            return int(m.group(1))
    return None


def accepted_from_code(code, what):
    """The list in a message such as 'unknown log level (accepted: DEBUG, INFO, ...)'."""
    m = re.search(re.escape(what) + r" \(accepted: ([^)]*)\)", code)
    return [w.strip() for w in m.group(1).split(",")] if m else None


def unscd(s):
    """Drops scdoc markup from a line: \\x escapes, *bold*, _underline_, the ++ line break."""
    s = re.sub(r"\s*\+\+$", "", s.strip())
    s = re.sub(r"\\(.)", "\x00\\1", s)  # protect escaped characters
    s = re.sub(r"(?<![\w\x00])[*_]|[*_](?![\w])", "", s)
    return s.replace("\x00", "")


def parse_conf_man(path):
    """[(name, {'Default': ..., 'Accepted': ..., 'Changed by': ...})] in the page's order, and the names
    of the OBSOLETE SETTINGS section."""
    entries, obsolete = [], []
    current = None
    section = None
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        m = re.fullmatch(r"\*" + PREFIX + r"([A-Z0-9_]+)\*", line)
        if m and section == "OBSOLETE SETTINGS":
            obsolete.append(m.group(1))
            current = None
            continue
        if m:
            current = (m.group(1), {})
            entries.append(current)
            continue
        if line.startswith("#"):  # a section header ends the entry
            section = line.lstrip("#").strip()
            current = None
            continue
        if current is None:
            continue
        m = re.fullmatch(r"\t*(Default|Accepted|Changed by): (.*)", line)
        if m:
            current[1][m.group(1)] = unscd(m.group(2))
    return entries, obsolete


def run_binary(binary, *args, extra_env=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(PREFIX) and k != "CREDENTIALS_DIRECTORY"}
    env.update(extra_env or {})
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=30)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return ok


def check_range(c, row, accepted, sources, code):
    name, kind = row["name"], row["kind"]
    lo, hi = resolve_number(row["lo"], sources), resolve_number(row["hi"], sources)
    where = f"transmitter.conf(5) {PREFIX}{name} Accepted: {accepted!r}"
    if kind in ("U16", "UNSIGNED", "SIZE", "INT"):
        c.check(re.search(rf"(?<![\d.]){lo}-{hi}(?![\d.])", accepted) is not None,
                f"{where}: expected the range {lo}-{hi} of src/core/config.c")
    elif kind == "DECIMAL":
        c.check(re.search(rf"(?<![\d.]){lo}(\.0)?-{hi}(\.0)?(?![\d.])", accepted) is not None,
                f"{where}: expected the range {lo}.0-{hi} of src/core/config.c")
    elif kind == "NAME":
        c.check(f"{lo}-{hi} bytes" in accepted, f"{where}: expected '{lo}-{hi} bytes' (src/core/config.c)")
    elif kind == "SECRET":
        c.check(f"up to {hi} bytes" in accepted, f"{where}: expected 'up to {hi} bytes' (src/core/config.c)")
    elif kind == "PATH":
        c.check("path" in accepted, f"{where}: expected 'a path'")
    elif kind == "BOOL":
        c.check("boolean" in accepted, f"{where}: expected 'a boolean'")
    elif kind in ("LOG_LEVEL", "QUEUE_TYPE"):
        what = "unknown log level" if kind == "LOG_LEVEL" else "unknown queue type"
        words = accepted_from_code(code, what)
        if c.check(words is not None, f"src/core/config.c: no '{what} (accepted: ...)' message to compare with"):
            c.check(all(re.search(rf"\b{re.escape(w)}\b", accepted) for w in words),
                    f"{where}: expected every one of {', '.join(words)} (src/core/config.c)")
    elif kind == "URL_AMQP":
        c.check("amqp://" in accepted and "amqps://" in accepted, f"{where}: expected amqp:// and amqps://")
    elif kind == "URL_POSTGRES":
        c.check("postgresql://" in accepted and "conninfo" in accepted,
                f"{where}: expected postgresql:// and conninfo")
    elif kind == "URL_HTTP":
        c.check("https://" in accepted, f"{where}: expected https://")
    else:
        c.check(False, f"{PREFIX}{name}: kind {kind} of src/core/config.c is unknown to check-man.py: teach it")


def check_options(c, binary, args, man, name):
    """The options `binary args` (a --help) lists are the ones the OPTIONS section of man describes."""
    r = run_binary(binary, *args)
    what = "transmitter " + " ".join(args)
    c.check(r.returncode == 0, f"{what} exited {r.returncode}")
    help_opts = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", r.stdout, re.M))
    page = open(man, encoding="utf-8").read()
    options = page.split("# OPTIONS", 1)[1].split("\n# ", 1)[0] if "# OPTIONS" in page else ""
    man_opts = set(re.findall(r"^\*(?:-\w\*, \*)?(--[a-z][a-z-]*)\*", options, re.M))
    c.check(bool(help_opts), f"{what} lists no option")
    c.check(help_opts <= man_opts, f"{name} OPTIONS lacks {sorted(help_opts - man_opts)}")
    c.check(man_opts <= help_opts, f"{name} OPTIONS describes unknown {sorted(man_opts - help_opts)}")
    return help_opts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-c", required=True)
    ap.add_argument("--conf-man", required=True)
    ap.add_argument("--daemon-man", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--dead-letters-man")
    a = ap.parse_args()

    c = Checks()
    rows, code = parse_settings_table(a.config_c)
    obsolete_names = parse_obsolete_table(code, a.config_c)
    header = os.path.join(os.path.dirname(a.config_c), "config.h")
    sources = [code] + ([open(header, encoding="utf-8").read()] if os.path.exists(header) else [])

    # The daemon built from this code knows the same settings, in the same order.
    r = run_binary(a.binary, "--check-config", "--config", os.devnull)
    effective = {}
    if c.check(r.returncode == 0, f"transmitter --check-config --config /dev/null exited {r.returncode}: {r.stderr}"):
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            effective[k.removeprefix(PREFIX)] = v
    c.check(list(effective) == [row["name"] for row in rows],
            "transmitter --check-config prints other settings than src/core/config.c's table: "
            f"{sorted(set(effective) ^ {row['name'] for row in rows})}")

    # transmitter.conf(5): every setting, in order, with its default, range and reload class.
    entries, man_obsolete = parse_conf_man(a.conf_man)
    names = [n for n, _ in entries]
    table_names = [row["name"] for row in rows]
    missing = [n for n in table_names if n not in names]
    extra = [n for n in names if n not in table_names]
    c.check(not missing, f"transmitter.conf(5) lacks settings of src/core/config.c: {missing}")
    c.check(not extra, f"transmitter.conf(5) lists settings src/core/config.c does not know: {extra}")
    c.check(len(names) == len(set(names)), "transmitter.conf(5) lists a setting twice")
    if not missing and not extra:
        c.check(names == table_names, "transmitter.conf(5) lists the settings in another order than src/core/config.c")

    fields = dict(entries)
    for row in rows:
        name = row["name"]
        f = fields.get(name)
        if f is None:
            continue
        where = f"transmitter.conf(5) {PREFIX}{name}"
        for key in ("Default", "Accepted", "Changed by"):
            c.check(key in f, f"{where}: no '{key}:' line")
        if "Default" in f:
            shown = f["Default"]
            if row["default"] is not None:
                c.check(shown == row["default"],
                        f"{where} Default: {shown!r}, src/core/config.c says {row['default']!r}")
            else:
                value = effective.get(name)
                if value == "":
                    c.check(shown == "empty", f"{where} Default: {shown!r}, the daemon's default is empty")
                elif shown.startswith("/"):
                    c.check(shown == value, f"{where} Default: {shown!r}, the daemon's default is {value!r}")
                else:
                    c.check(shown not in ("", "empty"), f"{where} Default: {shown!r}, the daemon's is {value!r}")
        if "Accepted" in f:
            check_range(c, row, f["Accepted"], sources, code)
        if "Changed by" in f:
            expect = "systemctl reload" if row["reload"] else "systemctl restart"
            c.check(f["Changed by"] == expect,
                    f"{where} Changed by: {f['Changed by']!r}, src/core/config.c says {expect!r}")

    # OBSOLETE SETTINGS: the table's, each accepted by the daemon with any value and named in a warning.
    c.check(man_obsolete == obsolete_names,
            f"transmitter.conf(5) OBSOLETE SETTINGS lists {man_obsolete}, src/core/config.c's "
            f"CONFIG_OBSOLETE_SETTINGS {obsolete_names}")
    for name in obsolete_names:
        r = run_binary(a.binary, "--check-config", "--config", os.devnull, extra_env={PREFIX + name: "?obsolete"})
        c.check(r.returncode == 0 and PREFIX + name in r.stderr and "obsolete" in r.stderr
                and PREFIX + name not in r.stdout,
                f"transmitter --check-config with the obsolete {PREFIX}{name} set: exit {r.returncode}, "
                f"stderr {r.stderr.strip()!r}: expected exit 0 and a warning naming it obsolete")

    # transmitter(8): the options of --help, and no other.
    help_opts = check_options(c, a.binary, ["--help"], a.daemon_man, "transmitter(8)")
    n_options = len(help_opts)

    # transmitter-dead-letters(8): the options and the commands of its --help, and no other.
    if a.dead_letters_man:
        n_options += len(check_options(c, a.binary, ["dead-letters", "--help"], a.dead_letters_man,
                                       "transmitter-dead-letters(8)"))
        r = run_binary(a.binary, "dead-letters", "--help")
        block = r.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0] if "Commands:\n" in r.stdout else ""
        help_cmds = set(re.findall(r"^  ([a-z]+)\b", block, re.M))
        page = open(a.dead_letters_man, encoding="utf-8").read()
        section = page.split("# COMMANDS", 1)[1].split("\n# ", 1)[0] if "# COMMANDS" in page else ""
        man_cmds = set(re.findall(r"^\*([a-z]+)\*", section, re.M))
        c.check(bool(help_cmds), "transmitter dead-letters --help lists no command")
        c.check(help_cmds == man_cmds, f"transmitter-dead-letters(8) COMMANDS {sorted(man_cmds)}, "
                f"--help {sorted(help_cmds)}")

    print(f"check-man: {len(rows)} settings, {len(obsolete_names)} obsolete, {n_options} options")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())

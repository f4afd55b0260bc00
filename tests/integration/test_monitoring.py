#!/usr/bin/env python3
"""The shipped alerting rules (conf/prometheus/transmitter.rules.yml) and Grafana dashboard
(conf/grafana/transmitter-dashboard.json) name only metrics, and labels, that a live daemon exports.

Debian has no Grafana and this test runs no Prometheus server: it starts the daemon, makes it
deliver, refuse and dead-letter a little (so that the lazily created series exist), scrapes
/metrics, and reads every rule expression, annotation template, panel query, legend and template
variable with a small PromQL reader. It fails on a metric name that is not exported, a label that
metric does not have, a label value that never occurs (peer="kafka"), or a grouping, legend or
annotation label no metric of the expression carries. The reader is first shown to catch exactly
such mistakes, so that it cannot pass by reading nothing."""

import json
import os
import re

import yaml

from harness import SOURCE_ROOT, TestFailure, check, log, main

RULES = os.path.join(SOURCE_ROOT, "conf", "prometheus", "transmitter.rules.yml")
DASHBOARD = os.path.join(SOURCE_ROOT, "conf", "grafana", "transmitter-dashboard.json")

# Labels Prometheus adds to every series of a scrape target, and its own per-target metric.
TARGET_LABELS = {"job", "instance"}
SCRAPE_METRICS = {"up": set()}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
            "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<range>\[[^\]]*\])'
                   r'|(?P<dur>(?:\d+(?:ms|[smhdwy]))+\b)|(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?\b)|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                   r'|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},]))')


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if not m:
            raise TestFailure(f"cannot read {expr[pos:pos + 30]!r} in {expr!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def read_promql(expr):
    """([(metric, [(label, op, value)])], {grouping labels}) of a PromQL expression."""
    toks = tokens(expr)
    selectors, grouping = [], set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "id" and text in LABEL_LIST_KEYWORDS and nxt == ("op", "("):
            j = i + 2
            while toks[j] != ("op", ")"):
                if toks[j][0] == "id":
                    grouping.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "id" and (text in KEYWORDS or text in AGGREGATIONS or nxt == ("op", "(")):
            i += 1
            continue
        if kind == "id":
            matchers = []
            if nxt == ("op", "{"):
                j = i + 2
                while toks[j] != ("op", "}"):
                    if toks[j][0] == "id":
                        label, op, value = toks[j][1], toks[j + 1][1], json.loads('"' + toks[j + 2][1][1:-1] + '"')
                        matchers.append((label, op, value))
                        j += 3
                    else:
                        j += 1
                i = j
            selectors.append((text, matchers))
        i += 1
    return selectors, grouping


class Exported:
    """What /metrics says: families with their type, the labels of each, the values of each label."""

    def __init__(self, text):
        self.types, self.labels, self.values = {}, {}, {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                self.labels.setdefault(name, set())
            elif line and not line.startswith("#"):
                m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ', line)
                family = self.family(m.group(1))
                for label, value in re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""):
                    self.labels.setdefault(family, set()).add(label)
                    self.values.setdefault((family, label), set()).add(value)

    def family(self, name):
        if name in self.types:
            return name
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base in self.types and self.types[base] == "histogram":
            return base
        return None

    def check_expr(self, expr, where, out_labels=()):
        """The problems of one expression; out_labels: labels a legend or template reads from its result."""
        problems = []
        selectors, grouping = read_promql(expr)
        if not selectors:
            problems.append(f"{where}: no metric in {expr!r}")
        available = set(TARGET_LABELS)
        for name, matchers in selectors:
            if name in SCRAPE_METRICS:
                labels = set(TARGET_LABELS)
            else:
                family = self.family(name)
                if family is None:
                    problems.append(f"{where}: metric {name} is not exported")
                    continue
                labels = self.labels[family] | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
            available |= labels
            for label, op, value in matchers:
                if label not in labels:
                    problems.append(f"{where}: {name} has no label {label}")
                elif op == "=" and label not in TARGET_LABELS and value not in self.values.get((self.family(name), label), set()):
                    problems.append(f"{where}: {name}{{{label}=\"{value}\"}} never occurs (values: "
                                    f"{sorted(self.values.get((self.family(name), label), set()))})")
        for label in sorted(grouping | set(out_labels)):
            if label not in available:
                problems.append(f"{where}: label {label} is on no metric of {expr!r}")
        return problems


def grafana_expr(expr):
    """A panel query as Prometheus would get it."""
    for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"), ("${job}", ".*"),
                       ("$job", ".*"), ("${instance}", ".*"), ("$instance", ".*")):
        expr = expr.replace(var, value)
    return expr


def template_labels(text, pattern):
    return set(re.findall(pattern, text or ""))


def check_rules(exported):
    problems, n = [], 0
    doc = yaml.safe_load(open(RULES))
    for group in doc["groups"]:
        for rule in group["rules"]:
            n += 1
            name = rule.get("alert") or rule.get("record")
            used = set()
            for text in (rule.get("annotations") or {}).values():
                used |= template_labels(text, r"\$labels\.(\w+)")
            problems += exported.check_expr(rule["expr"], f"rule {name}", used)
    return n, problems


def check_dashboard(exported):
    problems, n = [], 0
    doc = json.load(open(DASHBOARD))
    ids = [p["id"] for p in doc["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"dashboard: panel ids repeat: {ids}")
    cells = {}
    for p in doc["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problems.append(f"panel {p['title']!r} is wider than the dashboard's 24 columns")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panels {cells[(x, y)]!r} and {p['title']!r} overlap")
                cells[(x, y)] = p["title"]
    for p in doc["panels"]:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p['title']!r}: datasource is not the $datasource variable")
        if not p.get("targets"):
            problems.append(f"panel {p['title']!r}: no query")
        for t in p.get("targets", []):
            n += 1
            legend = template_labels(t.get("legendFormat"), r"\{\{\s*(\w+)\s*\}\}")
            problems += exported.check_expr(grafana_expr(t["expr"]), f"panel {p['title']!r}", legend)
    for var in doc["templating"]["list"]:
        if var["type"] != "query":
            continue
        n += 1
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["definition"])
        if not m:
            problems.append(f"variable {var['name']}: cannot read {var['definition']!r}")
            continue
        problems += exported.check_expr(grafana_expr(m.group(1)), f"variable {var['name']}", {m.group(2)})
    return n, problems


def self_test(exported):
    """The reader catches each kind of mistake, and reads a correct expression as correct."""
    bad = {
        'rate(transmitter_events_recieved_total[5m])': "is not exported",
        'transmitter_up{peer="kafka"} == 0': "never occurs",
        'sum by (reason) (transmitter_events_sent_total)': "label reason is on no metric",
        'transmitter_circuit_state{reason="http_400"}': "has no label reason",
        'histogram_quantile(0.9, sum by (le) (rate(transmitter_batch_event_bucket[5m])))': "is not exported",
    }
    for expr, what in bad.items():
        found = exported.check_expr(expr, "self-test")
        check(any(what in p for p in found), f"the reader catches {expr!r} ({what})")
    good = ('sum by (job, instance) (increase(transmitter_events_dead_lettered_total{reason=~"http_.*"}[10m])) > 0 '
            'unless on (job, instance) transmitter_circuit_state > 0 or histogram_quantile(0.99, sum by (le) '
            '(rate(transmitter_http_request_duration_seconds_bucket{job="x"}[5m])))')
    found = exported.check_expr(good, "self-test", {"instance"})
    check(not found, f"and reads a correct expression as correct ({found})")
    selectors, grouping = read_promql(good)
    check([s[0] for s in selectors] == ["transmitter_events_dead_lettered_total", "transmitter_circuit_state",
                                        "transmitter_http_request_duration_seconds_bucket"]
          and grouping == {"job", "instance", "le"}, "it finds every metric and grouping label of it")


def body(case):
    case.declare()
    t = case.transmitter(BATCH_SIZE=10, BATCH_INTERVAL_S=1)
    t.start()
    t.wait_ready()
    case.receiver.fault(reject_marker="REFUSE")
    ids = case.publish(40, prefix="mon", extra=["--marker", "REFUSE", "--marker-every", "20"])
    case.publish_raw(b"not json")
    case.wait_delivered([i for n, i in enumerate(ids, 1) if n % 20], timeout=60)
    case.wait_settled(timeout=60)
    status, text = t.get("/metrics")
    check(status == 200, "/metrics scraped")
    exported = Exported(text.decode())
    check({"http_400", "not_json"} <= exported.values[("transmitter_events_dead_lettered_total", "reason")],
          "the scrape has the lazily created series too (reason http_400, not_json)")

    self_test(exported)
    n, problems = check_rules(exported)
    for p in problems:
        log(p)
    check(n >= 8 and not problems, f"all {n} alerting rules name exported metrics and labels")
    n, problems = check_dashboard(exported)
    for p in problems:
        log(p)
    check(n >= 25 and not problems, f"all {n} dashboard queries and variables name exported metrics and labels")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("monitoring", body)

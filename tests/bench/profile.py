#!/usr/bin/env python3
"""Profiles the transmitter under load (issue 7: "measure before you change anything"). Driven by
tests/bench/run.sh --profile TOOL[,TOOL...] (same environment as the benchmark). Standard library only.

  profile.py --devenv DIR --transmitter BIN --tools callgrind,dhat,massif,perf [--n N] [--batch B]

For each tool the transmitter starts on an empty queue, connects, and then N events are published at
full speed (publish.c) and delivered to the receiver; the run ends once every event is acked.
  callgrind  valgrind --tool=callgrind; counters are zeroed once the daemon is connected
             (callgrind_control -z) and dumped when the N events are settled (callgrind_control -d):
             the profile holds the steady state only. Printed: the top functions by inclusive and by
             self cost, in instructions (Ir) per event.
  dhat       valgrind --tool=dhat for the whole run: the top allocation sites by number of blocks,
             with blocks and bytes per event.
  massif     valgrind --tool=massif: the heap at its peak (ms_print).
  perf       perf record -e cpu-clock (software clock: this VM has no hardware counters) on the
             plain daemon: the top symbols by self and children time.
Files go to DIR/profile/.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

log = bench.log


def run_profiled(env, args, tool, outdir):
    tag = f"prof-{tool}"
    exchange, dlx, queue = f"bench.{tag}.events", f"bench.{tag}.dlx", f"bench.{tag}.tx"
    n = args.n - args.n % args.batch
    env.declare(exchange, dlx, queue)
    env.receiver_reset()
    valgrind = {
        "callgrind": ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outdir}/callgrind.out.%p",
                      "--dump-instr=no", "--separate-threads=no"],
        "dhat": ["valgrind", "--tool=dhat", f"--dhat-out-file={outdir}/dhat.out.%p"],
        "massif": ["valgrind", "--tool=massif", "--depth=40", f"--massif-out-file={outdir}/massif.out.%p"],
        "perf": [],
    }[tool]
    env.args.wrapper = " ".join(valgrind)
    tx = bench.Transmitter(env, tag, {
        "TRANSMITTER_RABBITMQ_EXCHANGE": exchange, "TRANSMITTER_RABBITMQ_QUEUE": queue,
        "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE": dlx, "TRANSMITTER_BATCH_SIZE": str(args.batch),
        "TRANSMITTER_COMPRESSION_LEVEL": str(args.level),
        # valgrind makes everything 20-50x slower: generous timeouts, same behaviour otherwise
        "TRANSMITTER_REQUEST_TIMEOUT_S": "120",
        **args.settings,
    })
    perf = None
    info = {"tool": tool, "events": n, "batch_size": args.batch, "compression_level": args.level,
            "settings": {k[len("TRANSMITTER_"):]: v for k, v in args.settings.items()}}
    try:
        tx.start()
        tx.wait_ready(timeout=120)
        tx.wait_connected(timeout=120)
        pid = tx.proc.pid
        if tool == "callgrind":
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, stdout=subprocess.DEVNULL)
        elif tool == "perf":
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "--call-graph", "dwarf,16384",
                                     "-p", str(pid), "-o", f"{outdir}/perf.data"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
        cpu0 = tx.cpu_s()
        t0 = time.monotonic()
        log(f"{tool}: publishing {n} events")
        env.publish("--exchange", exchange, "--count", str(n), "--id-prefix", tag, "--quiet")
        t_done, stats = bench.wait_delivered(env, tx, n, timeout=args.timeout, poll=0.2)
        info["seconds"] = round(t_done - t0, 2)
        info["cpu_s"] = round(tx.cpu_s() - cpu0, 3)
        info["batches"] = stats["batches"]["sent"]
        if tool == "callgrind":
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, stdout=subprocess.DEVNULL)
            time.sleep(1)
        elif perf:
            perf.send_signal(2)
            perf.wait(60)
    finally:
        if perf and perf.poll() is None:
            perf.kill()
        tx.stop(timeout=120)
        env.args.wrapper = None
    env.delete_queue(queue)
    info["pid"] = pid
    return info


# Frames that were on the stack when the counters were zeroed: callgrind books what ran under them after the
# zero as their own cost, so they head the self list with ~100 % and are left out of it.
STACK_BOTTOM = ("daemon_run", ":main ", "__libc_start", "(below main)", "ld-linux", "clone.S", "start_thread",
                "consumer_thread", "session_thread", "session_run", "sd_event_loop", "sd_event_run")

# Where an event's instructions go, by the inclusive cost of one function each (they do not overlap, except
# that the AMQP thread's total contains read_frames).
COMPONENTS = (
    ("gzip: zlib deflate() (incl. crc32) or libdeflate", "???:deflate ", "???:libdeflate_gzip_compress "),
    ("JSON check: json_check_event", ":json_check_event "),
    ("batch id: batch_id_add/end (SHA-1)", ":batch_id_add ", ":batch_id_end "),
    ("AMQP thread, total (session_thread)", ":consumer_thread ", ":session_thread "),
    ("  of which read_frames (frames into deliveries)", ":read_frames "),
    ("HTTPS: curl_multi_socket_action (sender)", "???:curl_multi_socket_action "),
    ("PostgreSQL: ledger on_io + on_flush", "ledger.c:on_io ", "ledger.c:on_flush "),
    ("settling: on_final_committed (acks, frees)", ":on_final_committed "),
    ("logging: log_struct_internal", ":log_struct_internal "),
    ("HTTP API: MHD_run", "???:MHD_run "),
)
MALLOC = ("malloc.c:_int_malloc ", "malloc.c:_int_free ", "malloc.c:malloc ", "malloc.c:free ", "malloc.c:calloc ",
          "malloc.c:realloc ", "malloc.c:unlink_chunk", "malloc.c:malloc_consolidate ", "arena.c:free ",
          "arena.c:malloc ", "malloc.c:_int_realloc ", "malloc.c:tcache")


ROW = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def callgrind_rows(dump, inclusive):
    r = subprocess.run(["callgrind_annotate", "--auto=no", f"--inclusive={'yes' if inclusive else 'no'}",
                        "--threshold=100", dump], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    total, rows = None, []
    for line in r.stdout.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        ir, name = int(m.group(1).replace(",", "")), m.group(2).strip()
        if name == "PROGRAM TOTALS":
            total = ir
        elif total is not None:
            rows.append((ir, name))
    return total, rows


def callgrind_report(info, outdir, top):
    pid = info["pid"]
    dumps = sorted(glob.glob(f"{outdir}/callgrind.out.{pid}.*"))
    if not dumps:
        return "no callgrind dump found"
    dump = dumps[0]  # the one taken by callgrind_control -d: the steady state only
    n = info["events"]
    out = [f"callgrind: {dump} -- {n} events, {info['batches']} batches of {info['batch_size']}, gzip level "
           f"{info['compression_level']} (counters zeroed once connected, dumped after the last ack)"]
    total, inc = callgrind_rows(dump, True)
    _, self_rows = callgrind_rows(dump, False)
    if total is None:
        return "callgrind_annotate printed no totals"
    out.append(f"  total {total:,} Ir = {total / n:,.0f} Ir/event")
    names = [(ir, name + " ") for ir, name in inc]
    out.append("  by component (inclusive Ir/event, % of total):")
    for label, *keys in COMPONENTS:
        ir = sum(max((x for x, nm in names if k in nm), default=0) for k in keys)
        out.append(f"    {ir / n:>10,.0f}  {100 * ir / total:5.1f}%  {label}")
    m = sum(x for x, nm in self_rows if any(k in nm + " " for k in MALLOC))
    out.append(f"    {m / n:>10,.0f}  {100 * m / total:5.1f}%  malloc/free/calloc, self (memset of calloc not included)")
    out.append(f"  top {top} by inclusive cost (Ir/event, % of total), below the event loop:")
    k = 0
    for ir, name in inc:
        if any(b in name + " " for b in STACK_BOTTOM) or ir > 0.95 * total:
            continue
        out.append(f"    {ir / n:>10,.0f}  {100 * ir / total:5.1f}%  {name}")
        k += 1
        if k >= top:
            break
    out.append(f"  top {top} by self cost (Ir/event, % of total):")
    k = 0
    for ir, name in self_rows:
        if any(b in name + " " for b in STACK_BOTTOM):
            continue
        out.append(f"    {ir / n:>10,.0f}  {100 * ir / total:5.1f}%  {name}")
        k += 1
        if k >= top:
            break
    return "\n".join(out)


def dhat_report(info, outdir, top):
    pid = info["pid"]
    path = f"{outdir}/dhat.out.{pid}"
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        return f"dhat: {e}"
    n = info["events"]
    ftbl = d["ftbl"]
    pps = d["pps"]
    tot_blocks = sum(p["tbk"] for p in pps)
    tot_bytes = sum(p["tb"] for p in pps)
    out = [f"dhat: {path} -- whole run (start included), {n} events: {tot_blocks:,} blocks "
           f"({tot_blocks / n:.1f}/event), {tot_bytes:,} bytes ({tot_bytes / n:,.0f}/event); peak live "
           f"{d.get('tgmax', 0) if 'tgmax' in d else '?'}"]

    def site(p):
        frames = [ftbl[i] for i in p["fs"]]
        # skip the allocator itself and libc wrappers: the first frame that is not malloc & co
        keep = []
        for fr in frames:
            fn = fr.split(": ", 1)[-1]
            if any(fn.startswith(x) for x in ("malloc", "calloc", "realloc", "free", "0x", "strdup", "strndup",
                                              "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc", "amqp_bytes_malloc")):
                keep.append(fn.split(" (")[0])
                continue
            keep.append(fn)
            if len(keep) >= 5:
                break
        return " <- ".join(keep[:5])

    out.append(f"  top {top} allocation sites by blocks (blocks/event, bytes/event, max live bytes):")
    for p in sorted(pps, key=lambda p: -p["tbk"])[:top]:
        out.append(f"    {p['tbk'] / n:8.2f}  {p['tb'] / n:9.0f} B  {p.get('mb', 0):>9,}  {site(p)}")
    out.append(f"  top {top // 2} by bytes:")
    for p in sorted(pps, key=lambda p: -p["tb"])[:top // 2]:
        out.append(f"    {p['tbk'] / n:8.2f}  {p['tb'] / n:9.0f} B  {p.get('mb', 0):>9,}  {site(p)}")
    return "\n".join(out)


def massif_report(info, outdir, top):
    path = f"{outdir}/massif.out.{info['pid']}"
    r = subprocess.run(["ms_print", "--threshold=2", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    lines = r.stdout.splitlines()
    out = [f"massif: {path}"]
    out.extend(lines[:32])  # the graph
    peak = None
    for line in lines:
        if line.strip().startswith("Detailed snapshots:") and "(peak)" in line:
            peak = line.split("(peak)")[0].replace(",", " ").split()[-1]
    if peak is not None:
        for i, line in enumerate(lines):
            parts = line.split()
            if parts and parts[0] == peak and len(parts) >= 5:
                out.extend(lines[i - 2:i + 1])
                # the tree below that row, up to the next table
                for tree in lines[i + 1:i + 80]:
                    if tree.startswith("---") and len(out) > 40:
                        break
                    out.append(tree)
                break
    return "\n".join(out)


def perf_report(info, outdir, top):
    data = f"{outdir}/perf.data"
    out = [f"perf: {data} -- {info['events']} events, {info['seconds']} s, transmitter {info['cpu_s']} CPU s "
           f"({info['cpu_s'] * 1e6 / info['events']:.1f} µs/event under perf)"]
    for mode in (["--no-children", "--sort", "dso,symbol"], ["--children", "--sort", "symbol"]):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.7", *mode],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        rows = [line for line in r.stdout.splitlines() if line.strip() and not line.startswith("#")]
        out.append(f"  {'self' if mode[0] == '--no-children' else 'children (inclusive)'}:")
        out.extend("    " + line.strip() for line in rows[:top])
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devenv", required=True)
    ap.add_argument("--transmitter", required=True)
    ap.add_argument("--ceiling")  # accepted for symmetry with bench.py
    ap.add_argument("--cpubench")  # likewise
    ap.add_argument("--tools", default="callgrind,dhat,perf")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another daemon setting (without the TRANSMITTER_ prefix), e.g. RABBITMQ_PREFETCH=1000")
    ap.add_argument("--report", metavar="PROFILE_JSON",
                    help="only print the report again for a PROFILE {...} line of an earlier run")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    args.wrapper = None
    args.settings = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        args.settings["TRANSMITTER_" + k.strip().upper()] = v.strip()

    outdir = os.path.join(args.devenv, "profile")
    reports = {"callgrind": callgrind_report, "dhat": dhat_report, "massif": massif_report, "perf": perf_report}
    if args.report:
        info = json.loads(args.report)
        print(reports[info["tool"]](info, outdir, args.top))
        return 0
    env = bench.Env(args)
    os.makedirs(outdir, exist_ok=True)
    r = subprocess.run([args.transmitter, "--config", "/dev/null", "--migrate"],
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}, **env.tx_env},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise bench.BenchError(f"--migrate failed: {r.stdout}")
    for tool in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if tool not in reports:
            raise bench.BenchError(f"unknown tool {tool}")
        info = run_profiled(env, args, tool, outdir)
        print("PROFILE " + json.dumps(info), flush=True)
        print(reports[tool](info, outdir, args.top), flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)

#!/usr/bin/env python3
"""Client-side DNS watcher of the failover benchmark (Python stdlib only).

It polls the A record of one name on several authoritative servers at once, every
--interval seconds (all servers in the same tick, queries sent together, answers collected
for at most --query-timeout), and times events against T0, the instant the orchestrator
injected a fault. Each server is one "system" (--server LABEL=IP[:PORT]).

Sub-commands:
  watch   poll until every server has answered --expect for --stable consecutive samples
          after T0. T0 comes from --t0-file: the watcher starts polling, writes F.ready
          after its first tick, and reads T0 (epoch seconds) from F once the orchestrator
          has written it right before the fault. Prints one JSON line per server:
          stable_s (first sample of the final stable run, minus T0), first_s (first
          expected sample), prev_sample_s (the last other sample before the stable run),
          transitions (answer changes after T0).
  steady  poll until every server answers --expect --stable times in a row; exit 0, or 3
          on timeout (prints what each server answered last).
  count   poll for --seconds after T0 and count, per server, samples that were not
          --expect and answer changes (the false-failover test).

Every loop is bounded by --max-seconds. Timestamps are time.time(), the clock of
`date +%s.%N` in the orchestrating shell.
"""
import argparse
import json
import random
import select
import socket
import struct
import sys
import time


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def skip_name(buf, off):
    for _ in range(128):
        ln = buf[off]
        if ln == 0:
            return off + 1
        if ln & 0xC0 == 0xC0:
            return off + 2
        off += 1 + ln
    raise ValueError("name too long")


def parse_answer(buf, qid):
    """Returns the answer string, or None if the datagram is not the reply to qid."""
    if len(buf) < 12:
        return None
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", buf[:12])
    if rid != qid:
        return None
    if flags & 0x0200:
        return "TRUNCATED"
    if flags & 0xF:
        return "RCODE:%d" % (flags & 0xF)
    try:
        off = 12
        for _ in range(qd):
            off = skip_name(buf, off) + 4
        addrs = []
        for _ in range(an):
            off = skip_name(buf, off)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", buf[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                addrs.append(socket.inet_ntoa(buf[off:off + 4]))
            off += rdlen
    except (IndexError, struct.error, ValueError):
        return "MALFORMED"
    return ",".join(sorted(addrs, key=socket.inet_aton)) if addrs else "NODATA"


class Server:
    def __init__(self, spec, qname):
        label, _, hostport = spec.partition("=")
        host, _, port = hostport.partition(":")
        if not label or not host:
            raise SystemExit("--server: expected LABEL=IP[:PORT], got %r" % spec)
        self.label = label
        self.addr = (host, int(port or 53))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.qname = encode_name(qname)
        self.qid = None
        self.samples = []  # (t, answer)

    def send(self):
        self.qid = random.randint(0, 0xFFFF)
        pkt = struct.pack(">HHHHHH", self.qid, 0, 1, 0, 0, 0) + self.qname + struct.pack(">HH", 1, 1)
        try:
            self.sock.sendto(pkt, self.addr)
        except OSError:
            self.qid = None


def tick(servers, timeout):
    """Queries every server once; returns {label: answer}."""
    t = time.time()
    for s in servers:
        s.send()
    answers = {s.label: ("UNREACHABLE" if s.qid is None else None) for s in servers}
    deadline = t + timeout
    by_sock = {s.sock: s for s in servers if s.qid is not None}
    while any(v is None for v in answers.values()):
        left = deadline - time.time()
        if left <= 0:
            break
        ready, _, _ = select.select(list(by_sock), [], [], left)
        for sock in ready:
            s = by_sock[sock]
            try:
                buf, _ = sock.recvfrom(4096)
            except OSError:
                continue
            a = parse_answer(buf, s.qid)
            if a is not None and answers[s.label] is None:
                answers[s.label] = a
    for s in servers:
        a = answers[s.label] or "TIMEOUT"
        s.samples.append((t, a))
        answers[s.label] = a
    return t, answers


def poll(servers, a, until):
    """Calls until(t) after every tick; stops when it returns True or the time is up."""
    start = time.time()
    nxt = start
    while time.time() - start < a.max_seconds:
        now = time.time()
        if now < nxt:
            time.sleep(nxt - now)
        else:
            nxt = now
        nxt += a.interval
        t, answers = tick(servers, a.query_timeout)
        if until(t, answers):
            return True
    return False


def read_t0(path):
    try:
        with open(path) as f:
            txt = f.read().strip()
        return float(txt) if txt else None
    except (OSError, ValueError):
        return None


def stable_run(samples, t0, expect, need):
    """(first_idx, run_start_idx) over samples at or after t0, or None values."""
    first = run = None
    for i, (t, ans) in enumerate(samples):
        if t < t0:
            continue
        if ans == expect:
            first = i if first is None else first
            run = i if run is None else run
        else:
            run = None
    if run is not None and len(samples) - run >= need:
        return first, run
    return first, None


def cmd_watch(a, servers):
    state = {"t0": None, "ready": False}

    def until(_t, _answers):
        if not state["ready"]:
            with open(a.t0_file + ".ready", "w") as f:
                f.write("%.6f\n" % time.time())
            state["ready"] = True
        if state["t0"] is None:
            state["t0"] = read_t0(a.t0_file)
            if state["t0"] is None:
                return False
        return all(stable_run(s.samples, state["t0"], a.expect, a.stable)[1] is not None for s in servers)

    poll(servers, a, until)
    t0 = state["t0"]
    ok = True
    for s in servers:
        r = {"system": s.label, "expect": a.expect, "t0": t0, "reached": False,
             "stable_s": None, "first_s": None}
        if t0 is not None:
            first, run = stable_run(s.samples, t0, a.expect, a.stable)
            r["first_s"] = round(s.samples[first][0] - t0, 3) if first is not None else None
            if run is not None:
                r["reached"] = True
                r["stable_s"] = round(s.samples[run][0] - t0, 3)
                if run > 0:
                    r["prev_sample_s"] = round(s.samples[run - 1][0] - t0, 3)
            trans, last = [], None
            for t, ans in s.samples:
                if t >= t0 and ans != last:
                    trans.append([round(t - t0, 3), ans])
                    last = ans
            r["transitions"] = trans[:20]
        ok &= r["reached"]
        print(json.dumps(r))
    return 0 if ok else 3


def cmd_steady(a, servers):
    def until(_t, _answers):
        return all(stable_run(s.samples, 0, a.expect, a.stable)[1] is not None for s in servers)

    if poll(servers, a, until):
        return 0
    print(json.dumps({s.label: s.samples[-1][1] if s.samples else None for s in servers}))
    return 3


def cmd_count(a, servers):
    state = {"t0": None, "ready": False}

    def until(t, _answers):
        if not state["ready"]:
            with open(a.t0_file + ".ready", "w") as f:
                f.write("%.6f\n" % time.time())
            state["ready"] = True
        if state["t0"] is None:
            state["t0"] = read_t0(a.t0_file)
            return False
        return t - state["t0"] >= a.seconds

    poll(servers, a, until)
    t0 = state["t0"]
    for s in servers:
        post = [(t, ans) for t, ans in s.samples if t0 is not None and t >= t0]
        wrong = [(t, ans) for t, ans in post if ans != a.expect]
        changes = sum(1 for i in range(1, len(post)) if post[i][1] != post[i - 1][1])
        answers = {}
        for _t, ans in post:
            answers[ans] = answers.get(ans, 0) + 1
        print(json.dumps({
            "system": s.label, "t0": t0, "samples": len(post), "not_expected": len(wrong),
            "changes": changes, "changed": bool(wrong),
            "first_wrong_s": round(wrong[0][0] - t0, 3) if wrong else None,
            "answers": answers,
        }))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["watch", "steady", "count"])
    p.add_argument("--server", action="append", required=True, help="LABEL=IP[:PORT] (repeatable)")
    p.add_argument("--qname", default="www.bench.test")
    p.add_argument("--expect", required=True)
    p.add_argument("--t0-file")
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--query-timeout", type=float, default=0.08)
    p.add_argument("--stable", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30.0, help="count: window after T0")
    p.add_argument("--max-seconds", type=float, default=120.0)
    a = p.parse_args()
    if a.interval < 0.02 or a.max_seconds > 3600 or a.query_timeout >= a.interval:
        p.error("need interval >= 0.02, query-timeout < interval, max-seconds <= 3600")
    if a.command in ("watch", "count") and not a.t0_file:
        p.error("%s needs --t0-file" % a.command)
    servers = [Server(s, a.qname) for s in a.server]
    sys.exit({"watch": cmd_watch, "steady": cmd_steady, "count": cmd_count}[a.command](a, servers))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks one chaos run of tests/chaos/run.sh, or prints the summary of all.

--work DIR: the run's fleet directory (provider logs, state dirs, the
driver's started.txt, seen.txt, faults.txt, history-*.json,
final-plan.json). Prints the run's figures, appends them as one JSON line
to --summary, exits 1 on an overlap, a lost plan, an open journal or a
plan with no end.
--report FILE: the summary over every run in FILE.
"""
import argparse
import collections
import datetime
import glob
import json
import os
import sys

ENDS = {"COMPLETED", "ROLLED_BACK", "ABORTED", "HALTED", "BREAK_GLASS"}


def ts_ms(text):
    text = text.replace("Z", "+00:00")
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1000)


def run_end_ms(work):
    """When the driver checked the run: later lines are the teardown's."""
    try:
        with open(os.path.join(work, "run-end-ms")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return float("inf")


def down_intervals(work, nodes):
    """(node, from_ms, to_ms, cause) for every time a provider was not up.

    Down from serve.stopping (cause "stop": kmsfleet stopped the unit) or
    fake.crash (cause "crash": injected) to the next serve.ready; one still
    open at the end of the log lasts to infinity."""
    out, end = [], run_end_ms(work)
    for node in nodes:
        served, since, cause = False, None, None
        with open(os.path.join(work, node, "provider.log"), errors="replace") as log:
            for line in log:
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                message, at = event.get("message"), ts_ms(event["ts"])
                if at > end:
                    break
                if message == "serve.ready":
                    if since is not None:
                        out.append((node, since, at, cause))
                    served, since = True, None
                elif served and since is None and message in ("serve.stopping", "fake.crash"):
                    since, cause = at, ("stop" if message == "serve.stopping" else "crash")
        if since is not None:
            out.append((node, since, float("inf"), cause))
    return out


# How old the coordinator's view of a node may be when it authorises a
# swap: a few plan ticks (100 ms) and executor polls. A crash younger than
# this at the authorisation could not be seen.
OBSERVATION_MS = 1000


def admissions(work, nodes):
    """node -> times its agent admitted a fenced swap or rollback."""
    out = {}
    for node in nodes:
        times = []
        with open(os.path.join(work, node, "agent.log"), errors="replace") as log:
            for line in log:
                if 'msg="swap command admitted"' in line and line.startswith("ts="):
                    times.append(ts_ms(line[3:line.index(" ")]))
        out[node] = times
    return out


def overlaps(intervals, admitted):
    """Overlapping down intervals of two nodes, sorted into three kinds:
    bad: the later one began with a stop while the other node was down
      from a stop, or from a crash that was already visible when the swap
      was admitted (older than OBSERVATION_MS then): kmsfleet took a
      provider down while another was known down;
    races: a stop after a crash that began after (or just before) the
      swap was authorised: no observation could have held it back;
    excused: a crash that began during another node's window (the
      injected fault itself)."""
    bad, races, excused = [], [], []
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a[0] == b[0] or not (a[1] < b[2] and b[1] < a[2]):
                continue
            later, earlier = (a, b) if a[1] >= b[1] else (b, a)
            text = "%s down [%d,%s) %s / %s down [%d,%s) %s" % (
                a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3])
            if later[3] == "crash":
                excused.append(text)
                continue
            admitted_at = max([t for t in admitted.get(later[0], []) if t <= later[1]],
                              default=None)
            if earlier[3] == "crash" and admitted_at is not None and \
                    earlier[1] > admitted_at - OBSERVATION_MS:
                races.append(text + " (swap admitted at %d)" % admitted_at)
            else:
                bad.append(text)
    return bad, races, excused


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def check_run(args):
    work, nodes = args.work, args.nodes.split()
    bad, races, excused = overlaps(down_intervals(work, nodes), admissions(work, nodes))
    history = {}
    for node in nodes:
        for plan in load_json(os.path.join(work, "history-%s.json" % node)).get("plans", []):
            old = history.get(plan["plan_id"])
            if old is None or int(old.get("revision", 0)) < int(plan.get("revision", 0)):
                history[plan["plan_id"]] = plan
    final = load_json(os.path.join(work, "final-plan.json")).get("plan", {})
    started = read_lines(os.path.join(work, "started.txt"))  # "PLAN_ID upgrade|rollback"
    seen = [line[0] for line in read_lines(os.path.join(work, "seen.txt"))]
    # What the fleet recorded: the history, and the current plan where it
    # is newer (a plan still running, Halted or in BreakGlass is in no
    # history). A finished current plan must be in the history as it is.
    plans = dict(history)
    lost = []
    final_id = final.get("plan_id")
    if final_id and int(final.get("revision", 0)) > int(history.get(final_id, {}).get("revision", 0)):
        if final.get("phase", "").replace("PLAN_PHASE_", "") in ("COMPLETED", "ROLLED_BACK", "ABORTED"):
            lost.append("%s: ended %s at revision %s, but no history has that end" % (
                final_id, final["phase"], final.get("revision")))
        plans[final_id] = final
    lost += sorted({p for p in [s[0] for s in started] + seen if p not in plans})
    # A rollback continues its plan under the same id, so its end must
    # replace the upgrade's Completed in the history; if the history still
    # says Completed, the rollback's end was lost.
    for plan_id, command in started:
        phase = plans.get(plan_id, {}).get("phase", "")
        if command == "rollback" and phase == "PLAN_PHASE_COMPLETED":
            lost.append("%s: the rollback's end (history still says Completed)" % plan_id)
    ends, no_end = {}, []
    for plan_id, plan in plans.items():
        phase = plan.get("phase", "").replace("PLAN_PHASE_", "")
        reason = (plan.get("halt") or {}).get("reason") or \
            (plan.get("break_glass") or {}).get("reason") or ""
        ends[plan_id] = phase + (" [%s]" % reason if reason else "")
        if phase not in ENDS or (phase in ("HALTED", "BREAK_GLASS") and not reason):
            no_end.append("%s %s" % (plan_id, ends[plan_id]))
    open_journals = []
    for path in glob.glob(os.path.join(work, "cp-*", "state", "journal", "*.json")):
        journal = load_json(path)
        if journal.get("open", True):
            open_journals.append("%s (%s)" % (os.path.relpath(path, work), journal.get("phase")))
    faults = [" ".join(line) for line in read_lines(os.path.join(work, "faults.txt"))]
    crashes = 0
    for node in nodes:
        with open(os.path.join(work, node, "provider.log"), errors="replace") as log:
            crashes += sum('"fake.crash"' in line for line in log)

    print("result seed %s: %d faults injected: %s" % (args.seed, len(faults), "; ".join(faults) or "-"))
    print("  provider crashes seen in the logs: %d" % crashes)
    for plan_id in sorted(plans, key=lambda p: plans[p].get("created_unix_ms", "0")):
        print("  plan %s %s: %s" % (plan_id, plans[plan_id].get("kind", "").replace("PLAN_KIND_", ""),
                                    ends[plan_id]))
    print("  overlaps: %d%s" % (len(bad), "".join("\n    " + t for t in bad)))
    print("  races (a crash after the swap was authorised, then its stop): %d%s" % (
        len(races), "".join("\n    " + t for t in races)))
    print("  excused (an injected crash during another node's window): %d" % len(excused))
    print("  plans lost: %d%s" % (len(lost), "".join("\n    " + p for p in lost)))
    print("  plans without an end: %d%s" % (len(no_end), "".join("\n    " + p for p in no_end)))
    print("  open journals: %d%s" % (len(open_journals), "".join("\n    " + j for j in open_journals)))
    record = {"seed": args.seed, "faults": [f.split()[0] for f in faults], "crashes": crashes,
              "ends": [e.split()[0] for e in ends.values()], "overlaps": len(bad),
              "excused": len(excused), "races": len(races), "lost": len(lost), "no_end": len(no_end),
              "open_journals": len(open_journals), "started": len(started),
              "rollbacks": sum(c == "rollback" for _, c in started)}
    with open(args.summary, "a") as f:
        f.write(json.dumps(record) + "\n")
    return 1 if bad or lost or no_end or open_journals else 0


def report(args):
    runs = [json.loads(line) for line in open(args.report) if line.strip()]
    faults = collections.Counter(f for r in runs for f in r["faults"])
    ends = collections.Counter(e for r in runs for e in r["ends"])
    failing = [r["seed"] for r in runs if r["overlaps"] or r["lost"] or r["no_end"] or r["open_journals"]]
    print("\nsummary: %d runs in %.0f s" % (len(runs), args.wall_ms / 1000))
    print("  faults injected: %d (%s)" % (sum(faults.values()),
          ", ".join("%s %d" % kv for kv in sorted(faults.items()))))
    print("  provider crashes seen: %d" % sum(r["crashes"] for r in runs))
    print("  plans: %d (%s); started by the driver: %d" % (
        sum(ends.values()), ", ".join("%s %d" % kv for kv in sorted(ends.items())),
        sum(r["started"] for r in runs)))
    print("  overlaps: %d (and a crash after authorisation, then the stop: %d;"
          " a crash in another node's window: %d)" % (
              sum(r["overlaps"] for r in runs), sum(r.get("races", 0) for r in runs),
              sum(r["excused"] for r in runs)))
    print("  plans lost: %d" % sum(r["lost"] for r in runs))
    print("  rollbacks started: %d" % sum(r.get("rollbacks", 0) for r in runs))
    print("  plans without an end: %d" % sum(r["no_end"] for r in runs))
    print("  open journals: %d" % sum(r["open_journals"] for r in runs))
    print("  failing seeds: %s" % (" ".join(map(str, failing)) or "none"))
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work")
    parser.add_argument("--seed")
    parser.add_argument("--nodes")
    parser.add_argument("--summary")
    parser.add_argument("--report")
    parser.add_argument("--wall-ms", type=int, default=0)
    args = parser.parse_args()
    sys.exit(report(args) if args.report else check_run(args))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Evaluate jobs in real OPA for the differential test (tests/tests/opa_differential.rs).

Usage: differential.py --bundle DIR [--bundle DIR ...] --jobs FILE

Every DIR is loaded as `opa eval -d DIR` would load a `policyctl compile`
output: each `.rego` file (recursively, module name = path relative to DIR)
and each `data.json`, merged into `data` at its directory's path relative to
DIR (DIR/data.json at the root). Other files (index.json) are not data.

FILE holds one JSON object per line:

    {"id": "...", "query": "data.routes.x.request.decision",
     "input": {...} | absent, "replays": [[{"name", "args", "result"}, ...], ...]}

For each replay (the non-deterministic builtin calls our engine recorded for
that evaluation) the query is evaluated once, with `rate_limit.take`
answered from the replay: a call returns the recorded result of the next
recorded call with the same arguments. A call with arguments that were never
recorded fails (OPA then treats the expression as undefined, as for any
builtin error); a call beyond the recorded ones repeats the last result.
Both are reported in `unmatched` so the test can flag them.

Prints one JSON object per job, in order:

    {"id": "...", "outcomes": [{"kind": "decision"|"undefined"|"error",
      "value": ..., "error": "...", "calls": [[args]], "unmatched": [[args]]}]}

Exit status: 0 on success, 2 on load/compile errors, 3 when the
`opa_bindings` module is missing.
"""

import argparse
import json
import os
import sys

INSTALL_HINT = "pip install --ignore-requires-python opa-golib-python-bindings"

try:
    import opa_bindings
except ImportError as e:  # pragma: no cover - exercised by the Rust test
    print(f"error: the Python module opa_bindings (real OPA) is missing ({e}); install it with: {INSTALL_HINT}",
          file=sys.stderr)
    sys.exit(3)


def canonical(v):
    """JSON value with integral floats as ints (2.0 and 2 are one number in Rego)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        return {k: canonical(x) for k, x in v.items()}
    return v


def args_key(args):
    return json.dumps(canonical(list(args)), sort_keys=True, ensure_ascii=False)


class Replay:
    """Answers non-deterministic builtin calls with recorded results."""

    def __init__(self, calls):
        self.queues = {}
        for c in calls:
            self.queues.setdefault((c["name"], args_key(c["args"])), []).append(c["result"])
        self.last = {}
        self.made = []
        self.unmatched = []

    def call(self, name, args):
        k = (name, args_key(args))
        self.made.append(list(args))
        queue = self.queues.get(k)
        if queue:
            result = queue.pop(0)
            self.last[k] = result
            return result
        self.unmatched.append(list(args))
        if k in self.last:
            return self.last[k]
        raise LookupError(f"{name}{tuple(args)} was not called by our engine in this evaluation")


CURRENT = Replay([])


def rate_limit_take(key, rate, burst):
    return CURRENT.call("rate_limit.take", [key, rate, burst])


def load_bundle(engine, root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if name.endswith(".rego"):
                with open(path, encoding="utf-8") as fh:
                    engine.add_policy(rel, fh.read())
            elif name == "data.json":
                where = os.path.relpath(dirpath, root)
                with open(path, encoding="utf-8") as fh:
                    value = json.load(fh)
                engine.add_data(value, "" if where == "." else where.replace(os.sep, "."))


def evaluate(engine, job, calls):
    global CURRENT
    CURRENT = Replay(calls)
    out = {"kind": "undefined", "value": None, "error": None}
    try:
        rs = engine.eval_query(f"__decision__ = {job['query']}", input=job.get("input"))
        if rs:
            if len(rs) > 1:
                out = {"kind": "error", "value": None, "error": f"{len(rs)} results"}
            else:
                out = {"kind": "decision", "value": rs[0].get("__decision__"), "error": None}
    except opa_bindings.OpaError as e:
        out = {"kind": "error", "value": None, "error": str(e)}
    out["calls"] = CURRENT.made
    out["unmatched"] = CURRENT.unmatched
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", required=True, help="directory to load (repeatable)")
    ap.add_argument("--jobs", required=True, help="JSON-lines file of jobs")
    args = ap.parse_args(argv)

    engine = opa_bindings.OpaEngine()
    engine.print_handler = lambda msg, loc: print(f"{loc}: {msg}", file=sys.stderr)
    engine.register_function("rate_limit.take", rate_limit_take, arity=3)
    try:
        for root in args.bundle:
            load_bundle(engine, root)
        engine.eval_query("true")  # forces compilation: surfaces parse/type errors
    except opa_bindings.OpaError as e:
        print(f"error: loading {args.bundle}: {e}", file=sys.stderr)
        return 2

    with open(args.jobs, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            job = json.loads(line)
            outcomes = [evaluate(engine, job, calls) for calls in job.get("replays") or [[]]]
            sys.stdout.write(json.dumps({"id": job["id"], "outcomes": outcomes}, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

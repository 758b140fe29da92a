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

Replays. For each replay (the non-deterministic builtin calls our engine
recorded for that evaluation) the query is evaluated once, with
`rate_limit.take` answered from the replay: a call gets the recorded result
of the next recorded call with the same arguments. A call our engine did not
make (or made fewer times) gets the result a fresh bucket would give
(allowed, remaining = burst - 1) and is reported in `unmatched`, so that the
decision OPA reaches is still printed and the test flags the call.

Builtin errors. The embedded OPA of `opa_bindings` always evaluates with
strict builtin errors (a builtin error aborts the query), while OPA's default
(`opa eval`, `opa run`) and our engine make the failing call undefined. When
a query fails with `eval_builtin_error: NAME`, it is evaluated again with
NAME replaced (`with NAME as ...`) by a Rego function that calls the real
builtin and is undefined exactly where the builtin errs: OPA's non-strict
semantics. The outcome lists such builtins in `nonstrict`.

Decisions are printed with numbers beyond float64 and values nested deeper
than MAX_DEPTH replaced by markers (see `portable`; the test applies the same
depth rule to our decisions). Prints one JSON object per job, in order:

    {"id": "...", "outcomes": [{"kind": "decision"|"undefined"|"error",
      "value": ..., "error": "...", "calls": [[args]], "unmatched": [[args]],
      "nonstrict": [builtin names]}]}

Exit status: 0 on success, 2 on load/compile errors, 3 when the
`opa_bindings` module is missing.
"""

import argparse
import json
import math
import os
import re
import sys

INSTALL_HINT = "pip install --ignore-requires-python opa-golib-python-bindings"

try:
    import opa_bindings
except ImportError as e:  # pragma: no cover - exercised by the Rust test
    print(f"error: the Python module opa_bindings (real OPA) is missing ({e}); install it with: {INSTALL_HINT}",
          file=sys.stderr)
    sys.exit(3)


# Values nested deeper than this are replaced by a marker (the Rust side does
# the same), so that serde_json's recursion limit cannot reject the output.
MAX_DEPTH = 100

# Arity of the builtins the non-strict emulation may have to replace.
ARITY = {
    "base64.decode": 1, "base64url.decode": 1, "crypto.sha256": 1, "format_int": 2,
    "io.jwt.decode": 1, "io.jwt.decode_verify": 2, "json.marshal": 1, "json.remove": 2,
    "json.unmarshal": 1, "object.get": 3, "regex.match": 2, "sprintf": 2, "substring": 3,
    "to_number": 1, "rate_limit.take": 3,
}
ARITY.update({f"io.jwt.verify_{a}{n}": 2 for a in ("rs", "ps", "es", "hs") for n in (256, 384, 512)})

BUILTIN_ERROR = re.compile(r"eval_builtin_error: ([A-Za-z_][A-Za-z0-9_.]*):")
SHIM_PACKAGE = "differential_nonstrict"
ORACLE = "differential.call_builtin"


def portable(v, depth=0):
    """v as JSON the Rust side can read: no NaN/Infinity (a number beyond
    float64, e.g. 1e400, arrives here as inf), nothing deeper than MAX_DEPTH."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"<non-finite number {v}>"
    if isinstance(v, (list, dict)) and depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(v, list):
        return [portable(x, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: portable(x, depth + 1) for k, x in v.items()}
    return v


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
        self.made = []
        self.unmatched = []

    def rate_limit_take(self, key, rate, burst):
        args = [key, rate, burst]
        self.made.append(args)
        queue = self.queues.get(("rate_limit.take", args_key(args)))
        if queue:
            return queue.pop(0)
        self.unmatched.append(args)
        limit = int(burst) if isinstance(burst, (int, float)) and burst >= 1 else 1
        return {"allowed": True, "remaining": limit - 1, "retry_after_seconds": 0, "limit": limit}


class Driver:
    def __init__(self, bundles):
        self.engine = opa_bindings.OpaEngine()
        self.engine.print_handler = lambda msg, loc: print(f"{loc}: {msg}", file=sys.stderr)
        self.replay = Replay([])
        self.engine.register_function("rate_limit.take", lambda *a: self.replay.rate_limit_take(*a), arity=3)
        self.engine.register_function(ORACLE, self.call_builtin, arity=2)
        self.shims = {}  # builtin name -> shim function name
        for root in bundles:
            load_bundle(self.engine, root)
        self.engine.eval_query("true")  # forces compilation: surfaces parse/type errors

    def call_builtin(self, name, args):
        """The real builtin `name` on `args`: {"ok": value}, {"error": message} or {}."""
        params = ", ".join(f"input.args[{i}]" for i in range(len(args)))
        try:
            rs = self.engine.eval_query(f"__r = {name}({params})", input={"args": args})
        except opa_bindings.OpaError as e:
            return {"error": str(e)}
        return {"ok": rs[0]["__r"]} if rs else {}

    def shim(self, name):
        """The Rego function replacing builtin `name` with its non-strict form."""
        if name not in self.shims:
            arity = ARITY.get(name)
            if arity is None:
                return None
            fn = "f_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
            params = ", ".join(f"a{i}" for i in range(arity))
            src = (f"package {SHIM_PACKAGE}\n\n"
                   f"{fn}({params}) := v if {{\n"
                   f"\tr := {ORACLE}({json.dumps(name)}, [{params}])\n"
                   f"\tv := r.ok\n}}\n")
            self.engine.add_policy(f"__{SHIM_PACKAGE}/{fn}.rego", src)
            self.shims[name] = fn
        return self.shims[name]

    def evaluate(self, job, calls):
        nonstrict = []
        while True:
            self.replay = Replay(calls)
            withs = "".join(f" with {n} as data.{SHIM_PACKAGE}.{self.shim(n)}" for n in nonstrict)
            out = {"kind": "undefined", "value": None, "error": None}
            try:
                rs = self.engine.eval_query(f"__decision__ = {job['query']}{withs}", input=job.get("input"))
                if len(rs) > 1:
                    out = {"kind": "error", "value": None, "error": f"{len(rs)} results"}
                elif rs:
                    out = {"kind": "decision", "value": portable(rs[0].get("__decision__")), "error": None}
            except opa_bindings.OpaError as e:
                m = BUILTIN_ERROR.search(str(e))
                if m and m.group(1) not in nonstrict and len(nonstrict) < 5 and self.shim(m.group(1)):
                    nonstrict.append(m.group(1))
                    continue
                out = {"kind": "error", "value": None, "error": str(e)}
            out["calls"] = portable(self.replay.made)
            out["unmatched"] = portable(self.replay.unmatched)
            out["nonstrict"] = nonstrict
            return out


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", required=True, help="directory to load (repeatable)")
    ap.add_argument("--jobs", required=True, help="JSON-lines file of jobs")
    args = ap.parse_args(argv)

    try:
        driver = Driver(args.bundle)
    except opa_bindings.OpaError as e:
        print(f"error: loading {args.bundle}: {e}", file=sys.stderr)
        return 2

    with open(args.jobs, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            job = json.loads(line)
            outcomes = [driver.evaluate(job, calls) for calls in job.get("replays") or [[]]]
            out = json.dumps({"id": job["id"], "outcomes": outcomes}, ensure_ascii=False, allow_nan=False)
            sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

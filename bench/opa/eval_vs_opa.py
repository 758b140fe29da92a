#!/usr/bin/env python3
"""Evaluation-only benchmark: our bytecode VM against OPA v1.20's Go engine.

Usage: eval_vs_opa.py [-n N] [--ours-n N] [--rounds R] [--no-build]
                      [--policyctl BIN] [--compiled-eval BIN]

Both engines evaluate the same compiled modules, data and inputs, one
decision after another on one thread:

1. `compiled_eval fixture` writes the benchmark's data (1,000 API keys as
   SHA-256, an RSA public key), one input per spec route (what the agent's
   `build_input` makes of the benchmark's request) and
   `deploy/kernel-config.yaml` with `rateLimit` raised to 1e9/s, burst 1e9.
2. `policyctl compile` turns that configuration and data into modules.
3. OPA (the `opa_bindings` module: OPA's Go engine as a C shared library)
   loads the modules, twice: with data.json in its in-memory store (as
   `opa run` loads a bundle's data by default), and with the same data as a
   Rego module of constants instead (data as AST values, as `opa run
   --optimize-store-for-read-speed` keeps it; the bindings do not expose that
   option). In the default store, data read by a policy is converted to AST
   values on every evaluation: `apiKeyAuth` hands the 1,000-key object to a
   function, so each decision converts it. Per route, the query
   `data.routes.<route>.request.decision` is prepared once (the bridge keeps
   a prepared query per query text) and evaluated N times with the input as
   JSON text, through the library's C entry point from a ctypes loop.
4. `compiled_eval time` loads the same directory into our engine, compiles
   the rule for the VM and evaluates it N times: input parsed from JSON and
   the decision written as JSON each time (as the bridge does), and, apart,
   evaluation alone on a parsed input.
5. The first decision of each engine (both OPA setups and ours) must be the
   same document, else the script stops before printing any figure.

`rate_limit.take` is the agent's native builtin; OPA has no such builtin. OPA
evaluates with a deterministic stand-in (`with rate_limit.take as
data.bench_standin.take`): a Rego function answering what the agent's
limiter answers for a 1e9 bucket (allowed, remaining = burst - 1, limit =
burst). It keeps no state, so OPA does less work there than our limiter does.

Rates are decisions per CPU-second of the evaluating process (OPA: every
thread of the Python process, Go's garbage collector included; ours: the
evaluating thread), i.e. per core, so a busy machine slows the wall clock
but not the figures; wall-clock rates are printed too. The OPA figures
include the cost of the ctypes/cgo call, measured apart and printed (a loop
of empty calls through the same library).

Exit status: 0 on success (whether or not the target is met), 1 on a failed
step or differing decisions, 3 when `opa_bindings` is missing.
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "pip install --ignore-requires-python opa-golib-python-bindings"

try:
    import opa_bindings
except ImportError as e:
    print(f"error: the Python module opa_bindings (real OPA) is missing ({e}); install it with: {INSTALL_HINT}",
          file=sys.stderr)
    sys.exit(3)

REPO = Path(__file__).resolve().parents[2]
TARGET = 8.0  # ours/OPA, decisions per CPU-second, against the faster OPA setup

STANDIN_PATH = "bench_standin.rego"
STANDIN = """package bench_standin

# Stand-in for the agent's native rate_limit.take(key, rate, burst), which OPA
# lacks: the answer of a bucket of `burst` tokens after one take. With the
# benchmark's 1e9/s rate and 1e9 burst the agent's limiter answers exactly
# this on every call.
take(_, _, burst) := {
	"allowed": true,
	"limit": floor(burst),
	"remaining": floor(burst) - 1,
	"retry_after_seconds": 0,
}
"""
STANDIN_WITH = " with rate_limit.take as data.bench_standin.take"


class Failure(Exception):
    pass


def run(cmd, **kw):
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    except OSError as e:
        raise Failure(f"running `{cmd[0]}`: {e}") from None
    if done.returncode != 0:
        raise Failure(f"`{' '.join(map(str, cmd))}` failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


def target_dir():
    d = os.environ.get("CARGO_TARGET_DIR")
    if not d:
        return REPO / "target"
    return Path(d) if os.path.isabs(d) else REPO / d


def build():
    print("building policyctl and compiled_eval (release)...", file=sys.stderr)
    run(["cargo", "build", "--release", "--quiet", "-p", "policyctl", "-p", "policy-bench",
         "--bin", "policyctl", "--bin", "compiled_eval"], cwd=REPO)
    release = target_dir() / "release"
    return release / "policyctl", release / "compiled_eval"


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def data_modules(data):
    """`data` as Rego modules of constants: `package <top key>` with one
    `<key> := <JSON>` rule per second-level key (JSON is Rego term syntax)."""
    modules = []
    for package, doc in sorted(data.items()):
        if not IDENTIFIER.fullmatch(package) or not isinstance(doc, dict) or not all(
                IDENTIFIER.fullmatch(k) for k in doc):
            raise Failure(f"data.{package} cannot be written as a Rego module of constants "
                          "(keys must be identifiers, two levels of objects)")
        rules = "".join(f"{k} := {json.dumps(v, ensure_ascii=False)}\n\n" for k, v in sorted(doc.items()))
        modules.append((f"bench_data/{package}.rego", f"package {package}\n\n{rules}"))
    return modules


class Opa:
    """OPA's engine with the compiled modules, the data and the stand-in."""

    def __init__(self, compiled, data_as_module):
        self.engine = opa_bindings.OpaEngine()
        for path in sorted(compiled.rglob("*.rego")):
            self.engine.add_policy(str(path.relative_to(compiled)), path.read_text(encoding="utf-8"))
        self.engine.add_policy(STANDIN_PATH, STANDIN)
        data = json.loads((compiled / "data.json").read_text(encoding="utf-8"))
        if data_as_module:
            for path, source in data_modules(data):
                self.engine.add_policy(path, source)
        else:
            self.engine.add_data(data)
        # Declares the builtin so that the modules compile; every evaluation
        # replaces it with the stand-in, so this is never called.
        self.engine.register_function("rate_limit.take", self._not_replaced, arity=3)
        # The engine's own C entry points, to time without the wrapper's
        # Python work (envelope parsing, locks) around each call.
        lib, handle = getattr(self.engine, "_lib", None), getattr(self.engine, "_handle", None)
        if lib is None or not handle:
            raise Failure("opa_bindings.OpaEngine has no `_lib`/`_handle`: this opa_bindings version is not supported")
        self.lib, self.handle = lib, handle

    @staticmethod
    def _not_replaced(*_):
        raise RuntimeError("rate_limit.take reached OPA without its stand-in")

    def decision(self, query, input_json):
        ptr = self.lib.OpaEvalQuery(self.handle, query, input_json, 0, 0)
        if not ptr:
            raise Failure("OpaEvalQuery returned NULL")
        try:
            envelope = json.loads(ctypes.string_at(ptr))
        finally:
            self.lib.OpaFreeString(ptr)
        if envelope.get("error"):
            raise Failure(f"OPA: {envelope['error']}")
        results = envelope.get("result") or []
        if len(results) != 1 or len(results[0].get("expressions") or []) != 1:
            raise Failure(f"OPA: expected one result with one expression, got {results}")
        return results[0]["expressions"][0]["value"]

    def time(self, query, input_json, n):
        """CPU and wall seconds for n evaluations (after n/10 untimed)."""
        evaluate, free, h = self.lib.OpaEvalQuery, self.lib.OpaFreeString, self.handle
        for _ in range((n + 9) // 10):
            free(evaluate(h, query, input_json, 0, 0))
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            free(evaluate(h, query, input_json, 0, 0))
        return time.process_time() - cpu, time.perf_counter() - wall

    def call_overhead(self, n):
        """CPU seconds per iteration of the same loop with two empty calls
        into the library (ctypes + cgo, nothing evaluated)."""
        free = self.lib.OpaFreeString
        cpu = time.process_time()
        for _ in range(n):
            free(None)
            free(None)
        return (time.process_time() - cpu) / n


def canonical(v):
    """Integral floats as ints: 2.0 and 2 are one number in Rego."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        return {k: canonical(x) for k, x in v.items()}
    return v


def rate(n, seconds):
    return n / seconds if seconds else float("nan")


SETUPS = (("opa", "OPA, data in store", False), ("opa_ast", "OPA, data as AST", True))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3_000,
                    help="timed OPA decisions per route, setup and round (default 3000)")
    ap.add_argument("--ours-n", type=int, default=20_000,
                    help="timed decisions of ours per route, mode and round (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating OPA/ours rounds; medians are shown (default 3)")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    ap.add_argument("--policyctl", type=Path, help="policyctl binary (implies no build of it)")
    ap.add_argument("--compiled-eval", type=Path, help="compiled_eval binary (implies no build of it)")
    args = ap.parse_args(argv)
    if min(args.n, args.ours_n, args.rounds) < 1:
        ap.error("-n, --ours-n and --rounds must be at least 1")

    release = target_dir() / "release"
    policyctl, compiled_eval = release / "policyctl", release / "compiled_eval"
    if not (args.no_build or (args.policyctl and args.compiled_eval)):
        policyctl, compiled_eval = build()
    policyctl = args.policyctl or policyctl
    compiled_eval = args.compiled_eval or compiled_eval
    for b in (policyctl, compiled_eval):
        if not b.is_file():
            raise Failure(f"no {b}: build it with `cargo build --release -p policyctl -p policy-bench`")

    with tempfile.TemporaryDirectory(prefix="eval-vs-opa-") as tmp:
        work = Path(tmp)
        cases = json.loads(run([compiled_eval, "fixture", work]))
        compiled = work / "compiled"
        run([policyctl, "compile", "--config", work / "kernel-config.yaml", "-d", work / "data.json",
             "-o", compiled])
        index = json.loads((compiled / "index.json").read_text(encoding="utf-8"))
        engines = {key: Opa(compiled, as_module) for key, _, as_module in SETUPS}

        rows = []
        for case in cases:
            route, rule = case["route"], index[case["route"]]["request"]
            input_json = Path(case["input"]).read_bytes()
            query = (rule + STANDIN_WITH).encode()
            decisions = {key: canonical(opa.decision(query, input_json)) for key, opa in engines.items()}
            samples = {}

            def add(key, n, cpu_s, wall_s):
                samples.setdefault(key, []).append(rate(n, cpu_s if cpu_s is not None else wall_s))
                samples.setdefault(key + "_wall", []).append(rate(n, wall_s))

            for r in range(args.rounds):
                for key, opa in engines.items():
                    add(key, args.n, *opa.time(query, input_json, args.n))
                ours = json.loads(run([compiled_eval, "time", compiled, case["input"], rule, str(args.ours_n)]))
                if r == 0:
                    decisions["ours"] = canonical(ours["decision"])
                    if any(d != decisions["ours"] for d in decisions.values()):
                        shown = "\n".join(f"{k}: {json.dumps(d, sort_keys=True)}" for k, d in decisions.items())
                        raise Failure(f"{route}: the decisions differ\n{shown}")
                    print(f"{route}: same decision from both engines ({rule}): "
                          f"{json.dumps(decisions['ours'], sort_keys=True)}", file=sys.stderr)
                for mode in ("json", "value"):
                    add(mode, args.ours_n, ours[mode]["cpu_s"], ours[mode]["wall_s"])
            rows.append((route, {k: statistics.median(v) for k, v in samples.items()}))
        overhead = engines["opa"].call_overhead(10_000)

    print(f"N = {args.n} OPA decisions per route and setup, {args.ours_n} of ours per route and mode; "
          f"median of {args.rounds} round(s); one thread")
    print("decisions per CPU-second (per core); OPA = v1.20 Go engine (opa_bindings), "
          "rate_limit.take replaced by a stand-in\n")
    header = ("route", "OPA store dec/s", "OPA AST dec/s", "ours dec/s", "ours/OPA store", "ours/OPA AST",
              "ours eval-only dec/s", f"target ≥ {TARGET:g}×")
    table = [header]
    for route, m in rows:
        worst = min(m["json"] / m["opa"], m["json"] / m["opa_ast"])
        table.append((route, f"{m['opa']:,.0f}", f"{m['opa_ast']:,.0f}", f"{m['json']:,.0f}",
                      f"{m['json'] / m['opa']:.1f}×", f"{m['json'] / m['opa_ast']:.1f}×", f"{m['value']:,.0f}",
                      "met" if worst >= TARGET else "NOT met"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print("\nwall clock, decisions/s (OPA store / OPA AST / ours): " + "; ".join(
        f"{route} {m['opa_wall']:,.0f} / {m['opa_ast_wall']:,.0f} / {m['json_wall']:,.0f}" for route, m in rows))
    shares = ", ".join(f"{route} {overhead * m['opa_ast'] * 100:.2f}%" for route, m in rows)
    print(f"OPA columns include the ctypes/cgo call: {overhead * 1e6:.2f} µs CPU per decision "
          f"({shares} of OPA AST's time)")
    print("OPA store: data.json in OPA's in-memory store (converted to AST values when read, on every evaluation); "
          "OPA AST: the same data as a Rego module of constants (what --optimize-store-for-read-speed gives opa run)")
    print("ours: input parsed from JSON, evaluated on the VM, decision written as JSON (as the OPA bridge does per "
          "call); eval-only: evaluation of an already parsed input")
    print("stand-in: OPA evaluates rate_limit.take (not an OPA builtin) as a stateless Rego function giving the "
          "agent limiter's answer for a 1e9 bucket; ours runs the real token-bucket limiter")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, opa_bindings.OpaError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)

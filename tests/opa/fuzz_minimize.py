#!/usr/bin/env python3
"""Shrink a generated conformance case on which our engine and OPA differ.

Usage: fuzz_minimize.py --policyctl BIN CASES_FILE NOTE [--out FILE]

Takes the case NOTE from CASES_FILE (as written by fuzz_conformance.py) and
repeatedly drops module lines and rule blocks, input and data members, and
replaces the query's target, keeping each step whose case OPA still
evaluates and on which `policyctl conformance` still fails the same way
(the first line of its reason, with literals blanked). Prints the smallest
case found (OPA's answer as its expectation) as a case file.
"""

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_conformance as fc  # noqa: E402


def kind(reason):
    first = reason.splitlines()[0] if reason else ""
    first = re.sub(r"^error: ", "", first)
    first = re.sub(r"^[^:]*\.rego:\d+:\d+: ", "", first)
    first = re.sub(r'"[^"]*"|`[^`]*`', "<s>", first)
    first = re.sub(r"\[.*|\{.*", "<v>", first)
    return re.sub(r"\d+", "N", first)


class Checker:
    def __init__(self, policyctl):
        self.policyctl = policyctl
        self.worker = fc.WorkerProcess(10)
        self.dir = tempfile.mkdtemp(prefix="fuzz-minimize-")
        self.runs = 0

    def outcome(self, case):
        """(case with OPA's expectation, our failure reason or None) or None."""
        job = {"id": "m", "query": case["query"], "modules": case["modules"], "data": case.get("data"),
               "input": case.get("input")}
        opa = self.worker.evaluate(job)
        if opa["kind"] not in ("result", "error"):
            return None
        entries = fc.finish(case, opa, case["note"].removesuffix("/strict"))
        strict = case.get("strict_error", False)
        entry = entries[-1] if strict and len(entries) > 1 else entries[0]
        if strict and not entry.get("strict_error"):
            return None
        path = os.path.join(self.dir, "case.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"cases": [entry]}, fh, ensure_ascii=False)
        self.runs += 1
        try:
            p = subprocess.run([self.policyctl, "conformance", path, "-f", "json"], capture_output=True,
                               timeout=20, env={**os.environ, "RUST_BACKTRACE": "0"})
        except subprocess.TimeoutExpired:
            return entry, "our engine did not finish"
        if p.returncode not in (0, 2):
            return entry, f"our engine crashed ({p.returncode})"
        report = json.loads(p.stdout)
        c = report["cases"][0]
        return entry, None if c["passed"] else c.get("reason", "")


def candidates(case):
    """Smaller variants of case, biggest cuts first."""
    mods = case["modules"]
    for mi, src in enumerate(mods):
        blocks = re.split(r"\n\n+", src)
        for bi in range(1, len(blocks)):
            yield with_module(case, mi, "\n\n".join(blocks[:bi] + blocks[bi + 1:]))
        lines = src.split("\n")
        for li in range(1, len(lines)):
            if lines[li].strip() in ("", "}") or lines[li].startswith("package"):
                continue
            yield with_module(case, mi, "\n".join(lines[:li] + lines[li + 1:]))
        # `name := value if {` without its body's braces: a body-less rule.
        for li, line in enumerate(lines):
            m = re.match(r"^(.*) if \{$", line)
            if m:
                end = next((j for j in range(li + 1, len(lines)) if lines[j] == "}"), None)
                if end is not None:
                    yield with_module(case, mi, "\n".join(lines[:li] + [m.group(1)] + lines[end + 1:]))
    for key in ("input", "data"):
        v = case.get(key)
        if isinstance(v, dict):
            for k in list(v):
                c = copy.deepcopy(case)
                del c[key][k]
                yield c
        for path, x in fc.nodes(v, []):
            if path and isinstance(x, (list, dict)) and x:
                for i in (list(x) if isinstance(x, dict) else range(len(x))):
                    c = copy.deepcopy(case)
                    target = c[key]
                    for p in path:
                        target = target[p]
                    del target[i]
                    yield c
        if v is not None and key == "input":
            c = copy.deepcopy(case)
            del c[key]
            yield c


def with_module(case, mi, src):
    c = copy.deepcopy(case)
    c["modules"][mi] = src
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policyctl", required=True)
    ap.add_argument("cases")
    ap.add_argument("note")
    args = ap.parse_args(argv)
    with open(args.cases, encoding="utf-8") as fh:
        cases = json.load(fh)["cases"]
    case = next((c for c in cases if c["note"] == args.note), None)
    if case is None:
        print(f"no case {args.note!r}", file=sys.stderr)
        return 2
    case = {k: v for k, v in case.items() if k not in ("want_result", "want_error_code", "want_error",
                                                       "opa_nonstrict_builtins")}
    checker = Checker(args.policyctl)
    first = checker.outcome(case)
    if first is None or first[1] is None:
        print("the case does not diverge", file=sys.stderr)
        return 1
    best, want = first[0], kind(first[1])
    print(f"diverges: {want}", file=sys.stderr)
    improved = True
    while improved:
        improved = False
        for cand in candidates(case):
            out = checker.outcome(cand)
            if out and out[1] is not None and kind(out[1]) == want:
                case, best, improved = cand, out[0], True
                break
    best["ours"] = out_reason(checker, case)
    checker.worker.stop()
    print(json.dumps({"cases": [best]}, ensure_ascii=False, indent=1))
    print(f"{checker.runs} runs", file=sys.stderr)
    return 0


def out_reason(checker, case):
    out = checker.outcome(case)
    return out[1] if out else None


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run Rego unit tests (test_*/todo_* rules) in real OPA, like `opa test`.

Usage: run_rego_tests.py [-v] [--run REGEX] [PATH ...]

PATH is a .rego file, a data.json file or a directory (searched recursively);
the default is rego/policies of this repository. Every .rego file is loaded as
a module; every data.json is loaded into `data` at the location given by its
directory relative to the PATH it was found under (as `opa test` does:
PATH/a/b/data.json -> data.a.b). The agent-specific builtin
`rate_limit.take(key, rate, burst)` is registered with a deterministic
stand-in (always allowed, remaining = burst - 1, retry_after_seconds 0,
limit = burst).

A test passes when its rule is defined and its value is `true`; `todo_` rules
are reported as skipped. One line is printed per failure (with any print()
output of that test), and the last line is `N passed, N failed`. Exit status:
0 when everything passed, 1 on test failures, 2 on load/compile errors.

Requires only the `opa_bindings` module (embedded OPA).
"""

import argparse
import json
import os
import re
import sys

import opa_bindings

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_PATHS = [os.path.join(REPO_ROOT, "rego", "policies")]

PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)", re.M)
# A rule head at the start of a line: name followed by a rule-head token.
TEST_RULE_RE = re.compile(r"^((?:test|todo)_[A-Za-z0-9_]*)\s*(?=if\b|:=|=|\{|contains\b|\[|$)", re.M)


def rate_limit_take(key, rate, burst):
    """Deterministic stand-in for the agent's token bucket builtin."""
    return {"allowed": True, "remaining": burst - 1, "retry_after_seconds": 0, "limit": burst}


def collect(paths):
    """Return ([(module_name, source)], [(data_path, value)]) for the given paths."""
    modules, data = [], []
    for root in paths:
        if os.path.isfile(root):
            entries = [(os.path.dirname(root), root)]
        elif os.path.isdir(root):
            entries = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for f in sorted(filenames):
                    entries.append((root, os.path.join(dirpath, f)))
        else:
            raise SystemExit(f"error: no such file or directory: {root}")
        for base, f in entries:
            name = os.path.basename(f)
            if name.endswith(".rego"):
                with open(f, encoding="utf-8") as fh:
                    modules.append((f, fh.read()))
            elif name == "data.json":
                rel = os.path.relpath(os.path.dirname(f), base)
                segs = [] if rel == "." else rel.split(os.sep)
                with open(f, encoding="utf-8") as fh:
                    data.append((f, ".".join(segs), json.load(fh)))
    return modules, data


def discover(modules):
    """Return the ordered, de-duplicated list of (package, rule) tests."""
    tests, seen = [], set()
    for _, src in modules:
        m = PACKAGE_RE.search(src)
        if not m:
            continue
        pkg = m.group(1)
        for rule in TEST_RULE_RE.findall(src):
            if (pkg, rule) not in seen:
                seen.add((pkg, rule))
                tests.append((pkg, rule))
    return tests


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="files or directories (default: rego/policies)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print a line for every test")
    ap.add_argument("--run", metavar="REGEX", help="only run tests whose data path matches REGEX")
    args = ap.parse_args(argv)

    modules, data = collect(args.paths or DEFAULT_PATHS)
    engine = opa_bindings.OpaEngine()
    prints = []
    engine.print_handler = lambda msg, loc: prints.append(f"{loc}: {msg}")
    engine.register_function("rate_limit.take", rate_limit_take, arity=3)
    try:
        for path, src in modules:
            engine.add_policy(path, src)
        for path, where, value in data:
            engine.add_data(value, where)
        engine.eval_query("true")  # forces compilation: surfaces parse/type errors
    except opa_bindings.OpaError as e:
        print(f"error: {e}")
        return 2

    tests = discover(modules)
    if args.run:
        rx = re.compile(args.run)
        tests = [t for t in tests if rx.search(f"data.{t[0]}.{t[1]}")]

    # Preparing a query costs a compilation, so the tests of a package are
    # first evaluated together; any test that does not come out `true` there
    # is evaluated on its own to report why (with its print() output).
    batch = {}
    for pkg in dict.fromkeys(p for p, r in tests if r.startswith("test_")):
        names = [r for p, r in tests if p == pkg and r.startswith("test_")]
        try:
            rs = engine.eval_query(
                f"__results__ = {{k: v | some k in {json.dumps(names)}; v := data.{pkg}[k]}}"
            )
            batch[pkg] = rs[0]["__results__"] if rs else {}
        except opa_bindings.OpaError:
            batch[pkg] = {}

    passed = failed = skipped = 0
    for pkg, rule in tests:
        ref = f"data.{pkg}.{rule}"
        if rule.startswith("todo_"):
            skipped += 1
            if args.verbose:
                print(f"SKIPPED {ref}")
            continue
        if batch.get(pkg, {}).get(rule) is True:
            ok = True
        else:
            prints.clear()
            try:
                rs = engine.eval_query(f"__test_value__ = {ref}")
                value = rs[0].get("__test_value__") if rs else None
                ok = bool(rs) and value is True
                why = "undefined" if not rs else f"value {json.dumps(value)}"
            except opa_bindings.OpaError as e:
                ok, why = False, f"error: {e}"
        if ok:
            passed += 1
            if args.verbose:
                print(f"PASS {ref}")
        else:
            failed += 1
            print(f"FAIL {ref}: {why}")
            for p in prints:
                print(f"    {p}")
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Evaluate every test rule in real OPA and print each outcome as JSON.

Usage: test_outcomes.py PATH...

PATH is a .rego file or a directory (searched recursively). Modules and
data.json/data.yaml files are loaded as `opa test` loads them (data at the
directory's path relative to the PATH it was found under). Each rule whose
name starts with `test_` is evaluated as `data.<package>.<rule>`; `todo_test_`
rules are skipped. Prints one JSON object: {"data.pkg.test_x": outcome},
where outcome is "pass" (the value is true, or an object of cases whose
leaves are all true), "fail" (false, any other value, or undefined),
"error" (evaluation failed) or "skip".

The agent builtin `rate_limit.take` gets the deterministic stand-in of
run_rego_tests.py. Exit status 2 when the modules do not load.
"""

import json
import os
import sys

import opa_bindings

sys.path.insert(0, os.path.dirname(__file__))
from run_rego_tests import PACKAGE_RE, TEST_RULE_RE, rate_limit_take  # noqa: E402


def collect(paths):
    modules, data = [], []
    for root in paths:
        if os.path.isfile(root):
            entries = [(os.path.dirname(root), root)]
        else:
            entries = []
            for dirpath, dirnames, filenames in os.walk(root):
                # Hidden files and directories are not loaded (as policyctl).
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(f for f in filenames if not f.startswith(".")):
                    entries.append((root, os.path.join(dirpath, f)))
        for base, f in entries:
            name = os.path.basename(f)
            if name.endswith(".rego"):
                with open(f, encoding="utf-8") as fh:
                    modules.append((f, fh.read()))
            elif name in ("data.json", "data.yaml", "data.yml"):
                rel = os.path.relpath(os.path.dirname(f), base)
                where = "" if rel == "." else ".".join(rel.split(os.sep))
                with open(f, encoding="utf-8") as fh:
                    if name == "data.json":
                        value = json.load(fh)
                    else:
                        import yaml

                        value = yaml.safe_load(fh)
                data.append((where, value))
    return modules, data


def all_true(value):
    if isinstance(value, dict):
        return all(all_true(v) for v in value.values())
    return value is True


def main(argv):
    modules, data = collect(argv)
    engine = opa_bindings.OpaEngine()
    engine.register_function("rate_limit.take", rate_limit_take, arity=3)
    try:
        for path, src in modules:
            engine.add_policy(path, src)
        for where, value in data:
            engine.add_data(value, where)
        engine.eval_query("true")
    except opa_bindings.OpaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tests = []
    for _, src in modules:
        m = PACKAGE_RE.search(src)
        if not m:
            continue
        for rule in TEST_RULE_RE.findall(src):
            if (m.group(1), rule) not in tests:
                tests.append((m.group(1), rule))
    # A query costs a compilation: the tests of a package are evaluated in
    # one query; those not passing there are evaluated alone to tell a
    # failure from an error.
    batch = {}
    for pkg in dict.fromkeys(p for p, _ in tests):
        names = [r for p, r in tests if p == pkg and r.startswith("test_")]
        try:
            rs = engine.eval_query(
                f"__results__ = {{k: v | some k in {json.dumps(names)}; v := data.{pkg}[k]}}"
            )
            batch[pkg] = rs[0]["__results__"] if rs else {}
        except opa_bindings.OpaError:
            batch[pkg] = {}
    outcomes = {}
    for pkg, rule in tests:
        ref = f"data.{pkg}.{rule}"
        if rule.startswith("todo_"):
            outcomes[ref] = "skip"
            continue
        if rule in batch.get(pkg, {}) and all_true(batch[pkg][rule]):
            outcomes[ref] = "pass"
            continue
        try:
            rs = engine.eval_query(f"__v__ = {ref}")
        except opa_bindings.OpaError:
            outcomes[ref] = "error"
            continue
        value = rs[0].get("__v__") if rs else None
        ok = bool(rs) and (value is True or (isinstance(value, dict) and all_true(value)))
        outcomes[ref] = "pass" if ok else "fail"
    print(json.dumps(outcomes, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

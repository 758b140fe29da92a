#!/usr/bin/env python3
"""Generate conformance cases whose expectations are real OPA's answers.

Usage: fuzz_conformance.py [--cases DIR] [--seed N] [--count N] [--random N]
                           [--skip-report FILE] [--timeout S] --out FILE

Two kinds of cases, each a function of (seed, kind, index) only:

* mutated (--count): a compliance case from DIR (default
  <repo>/../shared/conformance/opa-v1) that expects a result, with its
  `input` and `data` mutated (numbers shifted, scaled, turned int<->float;
  strings edited, emptied or given non-ASCII text; booleans flipped; values
  nulled or swapped for another type; array items dropped, duplicated or
  reordered; object keys dropped, added or renamed) and, when the case has
  no input or data or by chance, one number or string literal of its
  modules changed. Cases failing in --skip-report (the `policyctl
  conformance -f json` report of DIR) are not used: their failures are
  tracked by the conformance suite itself. A case's content depends only
  on the seed and its index, not on which compliance cases fail.
* random (--random): a small random policy from fuzz_rego_grammar.py with
  a random input and data document.

Every case is evaluated in real OPA (the `opa_bindings` module) with the
case's query, modules, data and input, and written to FILE in OPA's case
format with OPA's outcome as the expectation: `want_result` (the bindings,
sets as the sorted arrays OPA returns) or `want_error_code`. OPA's default
non-strict builtin errors are emulated (the embedded OPA always runs with
strict builtin errors): a builtin that errs is replaced, `with NAME as ...`,
by a function that calls the real builtin only where it does not err. When
that was needed and the case has a result, a second case `.../strict` with
`strict_error: true` expects the builtin's error code. Cases whose answer
OPA cannot give deterministically (time, randomness, network), that OPA
rejects at compile time, or that take OPA longer than --timeout are
skipped. A summary goes to stderr.

OPA runs in a worker process (this script with --worker) that is restarted
when an evaluation exceeds the time limit or exhausts its memory.

Exit status: 0 on success, 2 on bad arguments or unreadable cases, 3 when
the `opa_bindings` module is missing.
"""

import argparse
import copy
import json
import os
import random
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_rego_grammar  # noqa: E402

INSTALL_HINT = "pip install --ignore-requires-python opa-golib-python-bindings"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_CASES = os.path.join(REPO_ROOT, "..", "shared", "conformance", "opa-v1")

# Builtins whose result depends on the clock, randomness or the network.
NONDETERMINISTIC = ["time.now_ns", "rand.intn", "uuid.rfc4122", "http.send", "net.lookup_ip_addr",
                    "opa.runtime", "io.jwt.decode_verify", "crypto.x509.parse_and_verify_certificates"]
# Builtins whose cost grows with a number argument: such cases keep small numbers.
SIZE_ARGUMENTS = ["numbers.range", "strings.repeat", "array.slice", "bits.lsh", "format_int",
                  "net.cidr_expand", "substring", "sprintf"]

SHIM_PACKAGE = "fuzz_nonstrict"
ERROR_CODE = re.compile(r"\b((?:eval|rego)_[a-z_]+_error)\b")
BUILTIN_ERROR = re.compile(r"(eval_type_error|eval_builtin_error): ([A-Za-z_][A-Za-z0-9_.]*):")
READS_ALL_DATA = re.compile(r"\bdata\b(?!\.)")
MAX_SHIMS = 6
MAX_ARITY = 6


# -- OPA, in the worker process ----------------------------------------------

class Oracle:
    """Real OPA with its default (non-strict) builtin error semantics."""

    def __init__(self, opa):
        self.opa = opa
        self.helper = None
        self.helper_uses = 0
        self.arity = {}
        self.unsupported = None

    def fresh_helper(self):
        # Each distinct query is cached by an engine: renew it now and then.
        if self.helper is None or self.helper_uses > 500:
            if self.helper is not None:
                self.helper.close()
            self.helper = self.opa.OpaEngine()
            self.helper.print_handler = lambda msg, loc: None
            self.helper_uses = 0
        self.helper_uses += 1
        return self.helper

    def arity_of(self, name):
        """The number of arguments of builtin `name`, None if it is none."""
        if name not in self.arity:
            self.arity[name] = None
            for n in range(MAX_ARITY + 1):
                args = ", ".join(["input.v"] * n)
                try:
                    self.fresh_helper().eval_query(f"r := {name}({args})", input={"v": None})
                except self.opa.OpaError as e:
                    m = e.message
                    if "undefined function" in m:
                        break
                    if "arity" in m or "too many arguments" in m or "too few arguments" in m:
                        continue
                self.arity[name] = n
                break
        return self.arity[name]

    def builtin_ok(self, name, args_text):
        """Whether builtin `name` succeeds on the arguments printed (`%v`)
        in args_text, an array. Called from the shims during evaluation."""
        n = self.arity.get(name) or 0
        literal = rego_literal(args_text)
        if literal is None:
            self.unsupported = f"arguments of {name} not printable as Rego: {args_text[:80]}"
            return False
        call = ", ".join(f"a[{i}]" for i in range(n))
        # Indexing with input.i hides the arguments' types from the type
        # checker, so that a type error is an evaluation error.
        query = f"a := [{literal}, input.x][input.i]; r := {name}({call})"
        try:
            self.fresh_helper().eval_query(query, input={"i": 0, "x": None})
            return True
        except self.opa.OpaError as e:
            code = first_code(e.message)
            if code in ("eval_type_error", "eval_builtin_error"):
                return False
            self.unsupported = f"checking {name}: {e.code}: {e.message[:200]}"
            return False

    def shim_module(self, name):
        n = self.arity[name]
        params = ", ".join(f"a{i}" for i in range(n))
        return (f"package {SHIM_PACKAGE}\n\n"
                f"{shim_function(name)}({params}) := {name}({params}) if {{\n"
                f"\tfuzz.builtin_ok({json.dumps(name)}, sprintf(\"%v\", [[{params}]]))\n}}\n")

    def evaluate(self, job):
        """OPA's outcome for one case (see Worker.handle)."""
        engine = self.opa.OpaEngine()
        engine.print_handler = lambda msg, loc: None
        try:
            return self.evaluate_on(engine, job)
        finally:
            engine.close()

    def evaluate_on(self, engine, job):
        opa = self.opa
        engine.register_function("fuzz.builtin_ok", self.builtin_ok, arity=2)
        try:
            for i, module in enumerate(job["modules"]):
                engine.add_policy(f"test-{i}.rego", module)
            if job.get("data") is not None:
                engine.add_data(job["data"])
            engine.eval_query("true")
        except opa.OpaError as e:
            return {"kind": "invalid", "reason": f"{e.code}: {e.message}"}
        input_doc = job.get("input")
        if job.get("input_term"):
            try:
                rs = engine.eval_query(f"x := {job['input_term']}; "
                                       f"count([1 | walk(x, [_, v]); is_set(v)]) == 0")
            except opa.OpaError as e:
                return {"kind": "invalid", "reason": f"input_term: {e.code}: {e.message}"}
            if not rs:
                return {"kind": "skip", "reason": "input_term holds a set or is undefined"}
            input_doc = rs[0]["x"]
        shims = []
        first_error = None
        self.unsupported = None
        while True:
            query = with_shims(job["query"], shims)
            try:
                rs = engine.eval_query(query, input=input_doc)
            except opa.OpaError as e:
                message = e.message
                code = first_code(message)
                if code is None:
                    return {"kind": "invalid" if e.code == "prepare_error" else "skip",
                            "reason": f"{e.code}: {message}"}
                if code.startswith("rego_"):
                    return {"kind": "invalid", "reason": message}
                m = BUILTIN_ERROR.search(message)
                if m and self.unsupported is None:
                    name = m.group(2)
                    if READS_ALL_DATA.search(job["query"] + "\n".join(job["modules"])):
                        # The shim package would show in `data`.
                        return {"kind": "skip", "reason": f"non-strict {name} with a query over all of data"}
                    if name in shims or len(shims) >= MAX_SHIMS:
                        return {"kind": "skip", "reason": f"cannot make {name} non-strict: {message}"}
                    if self.arity_of(name) is not None:
                        if first_error is None:
                            first_error = m.group(1)
                        engine.add_policy(f"__{SHIM_PACKAGE}/{shim_function(name)}.rego", self.shim_module(name))
                        shims.append(name)
                        continue
                if self.unsupported:
                    return {"kind": "skip", "reason": self.unsupported}
                return {"kind": "error", "code": code, "message": message, "nonstrict": shims,
                        "input": input_doc}
            if self.unsupported:
                return {"kind": "skip", "reason": self.unsupported}
            return {"kind": "result", "result": rs, "nonstrict": shims, "input": input_doc,
                    "strict_code": first_error}


def shim_function(name):
    return "f_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def first_code(message):
    m = ERROR_CODE.search(message)
    return m.group(1) if m else None


def split_query(query):
    """The top-level expressions of a query (separated by `;` or newlines)."""
    parts, depth, current, quote, i = [], 0, [], None, 0
    while i < len(query):
        c = query[i]
        if quote:
            current.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(query):
                current.append(query[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"`":
            quote = c
            current.append(c)
        elif c in "([{":
            depth += 1
            current.append(c)
        elif c in ")]}":
            depth -= 1
            current.append(c)
        elif c in ";\n" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def with_shims(query, shims):
    if not shims:
        return query
    withs = "".join(f" with {n} as data.{SHIM_PACKAGE}.{shim_function(n)}" for n in shims)
    return "; ".join(e + withs for e in split_query(query))


GO_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|U[0-9a-fA-F]{8}|a|v|.)")


def rego_literal(text):
    """A value printed by OPA's sprintf("%v") as a Rego literal: Go string
    escapes JSON lacks rewritten; None when that is not possible."""
    def fix(m):
        s = m.group(1)
        if s[0] == "x":
            return "\\u00" + s[1:]
        if s[0] == "U":
            cp = int(s[1:], 16)
            if cp > 0x10FFFF:
                raise ValueError(s)
            cp -= 0x10000
            return "\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF))
        if s == "a":
            return "\\u0007"
        if s == "v":
            return "\\u000b"
        return m.group(0)
    try:
        return GO_ESCAPE.sub(fix, text)
    except ValueError:
        return None


class Worker:
    """Serves evaluation jobs, one JSON object per line on stdin/stdout."""

    def __init__(self, opa):
        self.oracle = Oracle(opa)

    def handle(self, job):
        try:
            out = self.oracle.evaluate(job)
        except Exception as e:  # a bug here must not stop the campaign
            out = {"kind": "skip", "reason": f"driver exception: {e!r}"}
        out["id"] = job["id"]
        return out


def worker_main():
    try:
        import resource
        limit = 6 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    import opa_bindings
    worker = Worker(opa_bindings)
    for line in sys.stdin:
        if line.strip():
            out = worker.handle(json.loads(line))
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    return 0


class WorkerProcess:
    """The parent's handle on a worker, restarted after a timeout or crash."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.proc = None
        self.buffer = b""
        self.restarts = 0

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def evaluate(self, job):
        if self.proc is None:
            self.start()
        try:
            self.proc.stdin.write((json.dumps(job, ensure_ascii=False) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self.fail(f"worker exited ({self.proc.poll()})")
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.fail(f"OPA took longer than {self.timeout}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return self.fail(f"worker exited ({self.proc.wait()})")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def fail(self, reason):
        self.stop()
        self.restarts += 1
        return {"kind": "skip", "reason": reason}


# -- cases -------------------------------------------------------------------

def load_compliance_cases(root):
    """(id, case) of every case under root that expects a result."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            for index, case in enumerate(doc.get("cases", [])):
                cid = f"{rel}#{index}"
                if "want_result" not in case:
                    continue
                if case.get("want_error") or case.get("want_error_code"):
                    continue
                text = case.get("query", "") + "\n".join(case.get("modules", []))
                if any(b in text for b in NONDETERMINISTIC):
                    continue
                out.append((cid, case))
    return out


def failing_ids(report_path):
    """Ids of the failing cases in a `policyctl conformance -f json` report."""
    if not report_path:
        return set()
    with open(report_path, encoding="utf-8") as fh:
        report = json.load(fh)
    return {c["id"] for c in report.get("cases", []) if not c.get("passed")}


def mutate_case(rng, cid, case):
    """A mutated copy of a compliance case and the list of mutations made."""
    modules = list(case.get("modules", []))
    data = copy.deepcopy(case.get("data"))
    inp = copy.deepcopy(case.get("input"))
    text = "\n".join(modules)
    small = any(b in text for b in SIZE_ARGUMENTS)
    mutations = []
    targets = []
    if isinstance(data, dict) and data:
        targets.append("data")
    if inp is not None:
        targets.append("input")
    n = rng.randint(1, 3)
    for _ in range(n):
        where = rng.choice(targets + ["modules"] * (3 if not targets else 1))
        if where == "data":
            data, m = mutate_value(rng, data, "data", small, keep_object=True)
        elif where == "input":
            inp, m = mutate_value(rng, inp, "input", small)
        else:
            modules, m = mutate_literal(rng, modules, small)
        if m:
            mutations.append(m)
    if not mutations:
        return None
    out = {"note": None, "query": case["query"], "modules": modules}
    if data is not None:
        out["data"] = data
    if inp is not None:
        out["input"] = inp
    elif case.get("input_term"):
        out["input_term"] = case["input_term"]
    if case.get("sort_bindings"):
        out["sort_bindings"] = True
    out["origin"] = cid
    out["mutations"] = mutations
    return out


def nodes(value, path):
    """(path, value) of value and everything inside it."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, path + [k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, path + [i])


def replace_at(root, path, new):
    if not path:
        return new
    parent = root
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = new
    return root


UNICODE = ["é", "日本", "🙂", "\u0301", "ß", "İ", "\u200b", "Ω", "\t", "\\", "\""]


def mutate_number(rng, v, small):
    options = [v + 1, v - 1, -v, 0, v * 2, v * 10, v / 2, float(v) if isinstance(v, int) else int(v),
               v + 0.5, 1e-9]
    if not small:
        options += [2 ** 53 + 1, 10 ** 20, 1.5e300, -(2 ** 63), 0.1]
    new = rng.choice(options)
    if small and isinstance(new, (int, float)) and abs(new) > 10000:
        new = rng.choice([10000, -10000])
    return new


def mutate_string(rng, s):
    k = rng.randrange(9)
    if k == 0:
        return ""
    if k == 1 and s:
        i = rng.randrange(len(s))
        return s[:i] + s[i + 1:]
    if k == 2:
        i = rng.randint(0, len(s))
        return s[:i] + rng.choice(UNICODE) + s[i:]
    if k == 3:
        return s.upper() if s != s.upper() else s.lower()
    if k == 4:
        return s + s
    if k == 5:
        return " " + s + " "
    if k == 6:
        return rng.choice(["0", "1.5", "-3", "true", "null", "a,b", "*"])
    if k == 7 and s:
        return s[::-1]
    return s + rng.choice(UNICODE + ["x", "."])


def mutate_scalar(rng, v, small):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return mutate_number(rng, v, small)
    if isinstance(v, str):
        return mutate_string(rng, v)
    return rng.choice([0, "", False, []])


def swap_type(rng, v):
    if isinstance(v, bool):
        return rng.choice([1 if v else 0, str(v).lower()])
    if isinstance(v, (int, float)):
        return rng.choice([str(v), [v], v != 0])
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return rng.choice([[v], {v: v}, len(v)])
    if isinstance(v, list):
        return {str(i): x for i, x in enumerate(v)}
    if isinstance(v, dict):
        return list(v.values())
    return rng.choice([0, "null", {}])


def mutate_value(rng, root, label, small, keep_object=False):
    """root with one node changed; (new root, description)."""
    all_nodes = list(nodes(root, []))
    if keep_object:
        all_nodes = [(p, v) for p, v in all_nodes if p]
    if not all_nodes:
        return root, None
    path, v = rng.choice(all_nodes)
    where = label + "".join(f"[{json.dumps(p, ensure_ascii=False)}]" for p in path)
    k = rng.random()
    if isinstance(v, list) and v and k < 0.7:
        v = list(v)
        op = rng.choice(["drop", "duplicate", "reverse", "shuffle", "empty"])
        i = rng.randrange(len(v))
        if op == "drop":
            del v[i]
        elif op == "duplicate":
            v.insert(i, copy.deepcopy(v[i]))
        elif op == "reverse":
            v.reverse()
        elif op == "shuffle":
            rng.shuffle(v)
        else:
            v = []
        return replace_at(root, path, v), f"{where}: {op} item"
    if isinstance(v, dict) and v and k < 0.7:
        v = dict(v)
        op = rng.choice(["drop", "add", "rename"])
        key = rng.choice(sorted(v))
        if op == "drop":
            del v[key]
        elif op == "add":
            v[key + rng.choice(["_", "2", "é"])] = copy.deepcopy(v[key])
        else:
            v[mutate_string(rng, key)] = v.pop(key)
        return replace_at(root, path, v), f"{where}: {op} key {json.dumps(key, ensure_ascii=False)}"
    if k < 0.85 or not path:
        new = mutate_scalar(rng, v, small) if not isinstance(v, (list, dict)) else swap_type(rng, v)
    elif k < 0.93:
        new = swap_type(rng, v)
    else:
        new = None
    if keep_object and not path and not isinstance(new, dict):
        return root, None
    desc = f"{where}: {short(v)} -> {short(new)}"
    return replace_at(root, path, new), desc


def short(v):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


LITERAL = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|`[^`]*`|(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])')


def mutate_literal(rng, modules, small):
    """One number or string literal of the modules changed."""
    spots = []
    for mi, src in enumerate(modules):
        for m in LITERAL.finditer(src):
            tok = m.group(0)
            if tok.startswith("#"):
                continue
            line_start = src.rfind("\n", 0, m.start()) + 1
            line = src[line_start:src.find("\n", m.start()) if "\n" in src[m.start():] else len(src)]
            if line.lstrip().startswith(("package", "import")):
                continue
            spots.append((mi, m.start(), m.end(), tok))
    if not spots:
        return modules, None
    mi, start, end, tok = rng.choice(spots)
    if tok.startswith('"'):
        try:
            old = json.loads(tok)
        except ValueError:
            return modules, None
        new = json.dumps(mutate_string(rng, old), ensure_ascii=False)
    elif tok.startswith("`"):
        new = "`" + mutate_string(rng, tok[1:-1]).replace("`", "") + "`"
    else:
        old = json.loads(tok)
        val = mutate_number(rng, old, small)
        new = fuzz_rego_grammar.lit(val)
    src = modules[mi]
    modules = list(modules)
    modules[mi] = src[:start] + new + src[end:]
    line = src.count("\n", 0, start) + 1
    return modules, f"module {mi} line {line}: {tok} -> {new}"


def random_case(rng):
    module, query, inp, data = fuzz_rego_grammar.generate(rng)
    return {"note": None, "query": query, "modules": [module], "data": data, "input": inp}


def finish(case, outcome, note):
    """The case file entries for one OPA outcome."""
    out = {"note": note, "query": case["query"], "modules": case["modules"]}
    if case.get("data") is not None:
        out["data"] = case["data"]
    if outcome.get("input") is not None:
        out["input"] = outcome["input"]
    for k in ("sort_bindings", "origin", "mutations"):
        if case.get(k):
            out[k] = case[k]
    if outcome["nonstrict"]:
        out["opa_nonstrict_builtins"] = outcome["nonstrict"]
    if outcome["kind"] == "error":
        out["want_error_code"] = outcome["code"]
        out["want_error"] = outcome["message"]
        return [out]
    out["want_result"] = outcome["result"]
    entries = [out]
    code = outcome.get("strict_code")
    if code and len(outcome["nonstrict"]) == 1:
        strict = {k: v for k, v in out.items() if k != "want_result"}
        strict["note"] = note + "/strict"
        strict["strict_error"] = True
        strict["want_error_code"] = code
        entries.append(strict)
    return entries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=DEFAULT_CASES, help="compliance cases to mutate (directory)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300, help="mutated cases to generate")
    ap.add_argument("--random", type=int, default=150, help="random-policy cases to generate")
    ap.add_argument("--skip-report", help="`policyctl conformance -f json` report of --cases: failing cases are not mutated")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds OPA may take on one case")
    ap.add_argument("--out", help="case file to write (required)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's outcome")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main()
    if not args.out:
        ap.error("--out is required")
    try:
        import opa_bindings  # noqa: F401
    except ImportError as e:
        print(f"error: the Python module opa_bindings (real OPA) is missing ({e}); install it with: {INSTALL_HINT}",
              file=sys.stderr)
        return 3

    try:
        pool = load_compliance_cases(args.cases) if args.count else []
        skip_ids = failing_ids(args.skip_report)
    except (OSError, ValueError) as e:
        print(f"error: reading cases: {e}", file=sys.stderr)
        return 2
    if args.count and not pool:
        print(f"error: no compliance case expecting a result under {args.cases}", file=sys.stderr)
        return 2

    started = time.monotonic()
    worker = WorkerProcess(args.timeout)
    out, skipped = [], {}
    counts = {"mutated": 0, "random": 0, "strict": 0, "errors": 0, "nonstrict": 0}

    def run(kind, wanted, make):
        made, index = 0, 0
        limit = wanted * 20 + 100
        while made < wanted and index < limit:
            rng = random.Random(f"{args.seed}:{kind}:{index}")
            note = f"fuzz/{kind}/{args.seed}/{index}"
            index += 1
            case = make(rng)
            if not isinstance(case, dict):
                skipped[case] = skipped.get(case, 0) + 1
                continue
            job = {"id": note, "query": case["query"], "modules": case["modules"],
                   "data": case.get("data"), "input": case.get("input"), "input_term": case.get("input_term")}
            t0 = time.monotonic()
            outcome = worker.evaluate(job)
            if worker.restarts > 50 and worker.restarts * 2 > index:
                raise SystemExit(f"error: the OPA worker keeps failing (last: {outcome.get('reason')})")
            if args.verbose:
                print(f"{note}: {outcome['kind']} {time.monotonic() - t0:.3f}s {outcome.get('reason', '')[:150]}",
                      file=sys.stderr)
            if outcome["kind"] not in ("result", "error"):
                reason = outcome["kind"] + ": " + re.sub(r"\d+", "N", outcome.get("reason", ""))[:70]
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            if case.get("origin"):
                note += f" [{case['origin']}]"
            entries = finish(case, outcome, note)
            out.extend(entries)
            made += 1
            counts[kind] += 1
            counts["strict"] += len(entries) - 1
            counts["errors"] += outcome["kind"] == "error"
            counts["nonstrict"] += bool(outcome["nonstrict"])

    def mutated(rng):
        # The origin is drawn from every case, so that a case's content does
        # not depend on which compliance cases fail today.
        cid, case = rng.choice(pool)
        if cid in skip_ids:
            return "origin fails in the conformance report"
        return mutate_case(rng, cid, case) or "no mutation possible"

    run("mutated", args.count, mutated)
    run("random", args.random, random_case)
    worker.stop()

    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump({"cases": out}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"fuzz_conformance: seed {args.seed}: {len(out)} cases ({counts['mutated']} mutated, "
          f"{counts['random']} random, {counts['strict']} strict variants; {counts['errors']} expect an error, "
          f"{counts['nonstrict']} needed non-strict builtin emulation) in {time.monotonic() - started:.1f}s; "
          f"{worker.restarts} worker restarts", file=sys.stderr)
    for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
        print(f"  skipped {n}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

import opa_bindings, json, os, atexit
E = opa_bindings.OpaEngine()
REC = []
def opa(fn, *args):
    q = "x := %s(%s)" % (fn, ", ".join("input.a%d" % i for i in range(len(args))))
    inp = {"a%d" % i: a for i, a in enumerate(args)}
    try:
        r = E.eval_query(q, input=inp)
    except Exception as ex:
        r = ("ERR", str(ex))
    if not isinstance(r, tuple):
        r = "undefined" if not r else r[0]["x"]
    REC.append({"note": "probe", "call": fn, "args": list(args), "expected": "undefined" if (r == "undefined" or isinstance(r, tuple)) else r})
    return r
def _dump():
    f = os.environ.get("RECORD")
    if f:
        old = json.load(open(f)) if os.path.exists(f) else []
        json.dump(old + REC, open(f, "w"))
atexit.register(_dump)

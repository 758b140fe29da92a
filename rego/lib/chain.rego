# METADATA
# title: chain
# description: |
#   Execution semantics of a policy chain (engine specification §4.1.3-4.1.4),
#   called by the generated per-route modules. A chain threads an accumulator
#   {"ctx", "instructions", "outcomes", "metadata"} through its steps: each
#   step runs one policy's result(ctx, md) exactly once, then either proceeds
#   (applying the policy's instructions to the context the next policy sees)
#   or stops (deny, immediate response, or an error handled per on_failure).
package policy_engine.chain

# The accumulator a chain starts from.
start(ctx) := {"ctx": ctx, "instructions": [], "outcomes": [], "metadata": {}}

# Result used when a policy's result function is undefined for the context.
undefined_result(name) := {
	"status": "POLICY_ERROR",
	"message": sprintf("policy `%s` returned no result", [name]),
	"instructions": [],
	"metadata": {},
}

# Whether the chain goes on after a policy returned r. (One else-chain rather
# than three definitions: the first match ends the evaluation; an OK result
# without instructions needs no search for an immediate response.)
proceeds(r, on_failure) := true if {
	r.status == "OK"
	r.instructions == []
} else := true if {
	r.status == "OK"
	not has_immediate(r)
} else := true if {
	r.status == "POLICY_ERROR"
	on_failure == "continue"
} else := true if {
	r.status == "SKIPPED"
}

has_immediate(r) if {
	some x in r.instructions
	x.type == "IMMEDIATE_RESPONSE"
}

# The state in the decision when the chain's last policy returned r to a
# context ctx, for the usual results: those of fast_ctx, and OK results whose
# instructions only change headers or the body (these leave the state as it
# is, so the context is not rebuilt). Undefined otherwise. When defined,
# checked(r, _) == r, proceeds(r, _) is true and the value equals
# finish(next(acc, r, _)).state for any acc with acc.ctx == ctx.
fast_state(ctx, r) := object.get(ctx, "state", {}) if {
	# No instruction: the context is left as it is.
	r.status == "OK"
	r.instructions == []
	is_object(r.metadata)
	is_object(ctx)
} else := s if {
	r.status == "OK"
	instrs := r.instructions
	is_array(instrs)
	is_object(r.metadata)
	is_object(ctx)
	msg := ctx[{true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]]
	is_object(msg)
	is_object(object.get(msg, "headers", {}))
	s := object.get(ctx, "state", {})
	is_object(s)
	every x in instrs {
		x.type in {"SET_HEADER", "REMOVE_HEADER", "SET_BODY"}
	}
} else := object.get(c, "state", {}) if {
	c = fast_ctx(ctx, r)
	is_object(c)
}

# The context the next policy sees after a policy returned r to a context
# ctx, for the usual results only: OK with an object metadata and no
# instruction, or one or two SET_HEADER / SET_STATE instructions with
# distinct keys. Undefined otherwise. When defined, checked(r, _) == r,
# proceeds(r, _) is true and the value equals next(acc, r, _).ctx for any acc
# with acc.ctx == ctx: the generated steps pass such results on directly and
# leave every other result to checked, proceeds and next. (No comprehension:
# on the bytecode VM each costs more than the whole usual case.)
fast_ctx(ctx, r) := ctx if {
	r.status == "OK"
	r.instructions == []
	is_object(r.metadata)
} else := out if {
	# A validated token: two SET_STATE (its claims, then the user). Values
	# may be objects here, so each key must hold no object yet: union and
	# replacement then agree. (Each pair's branch tests its types first:
	# that is what tells the pairs apart, and a branch that fails costs
	# little.)
	instrs := r.instructions
	x := instrs[0]
	x.type == "SET_STATE"
	y := instrs[1]
	y.type == "SET_STATE"
	r.status == "OK"
	is_array(instrs)
	count(instrs) == 2
	xk := x.key
	is_string(xk)
	yk := y.key
	is_string(yk)
	xk != yk
	is_object(r.metadata)
	is_object(ctx)
	state := object.get(ctx, "state", {})
	is_object(state)
	not is_object(object.get(state, xk, null))
	not is_object(object.get(state, yk, null))
	# _apply_changes(ctx, {}, changes) as one object.union: the same context
	# when the message has a body and headers (else _apply_changes would add
	# them) and no changed key held an object (checked above).
	msg := ctx[{true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]]
	is_object(msg)
	_ = msg.body
	is_object(msg.headers)
	out = object.union(ctx, {"state": {xk: x.value, yk: y.value}})
} else := out if {
	# An authenticated user: one SET_HEADER, then one SET_STATE, so the keys
	# cannot collide.
	instrs := r.instructions
	h := instrs[0]
	h.type == "SET_HEADER"
	st := instrs[1]
	st.type == "SET_STATE"
	r.status == "OK"
	is_array(instrs)
	count(instrs) == 2
	hk := h.key
	is_string(hk)
	sk := st.key
	is_string(sk)
	hv := h.value
	sv := st.value
	not is_object(hv)
	not is_object(sv)
	is_object(r.metadata)
	# _apply_changes(ctx, {lower(hk): hv}, {sk: sv}) as one object.union,
	# written out to save a call: the same context when the message (of the
	# phase) has a body and headers and the values are not objects.
	is_object(ctx)
	t := {true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]
	msg := ctx[t]
	is_object(msg)
	_ = msg.body
	is_object(msg.headers)
	is_object(object.get(ctx, "state", {}))
	out = object.union(ctx, {t: {"headers": {lower(hk): hv}}, "state": {sk: sv}})
} else := out if {
	instrs := r.instructions
	x := instrs[0]
	x.type == "SET_HEADER"
	y := instrs[1]
	y.type == "SET_HEADER"
	r.status == "OK"
	is_array(instrs)
	count(instrs) == 2
	xk := x.key
	is_string(xk)
	yk := y.key
	is_string(yk)
	lx := lower(xk)
	ly := lower(yk)
	lx != ly
	xv := x.value
	yv := y.value
	not is_object(xv)
	not is_object(yv)
	is_object(r.metadata)
	# _apply_changes(ctx, {lx: xv, ly: yv}, {}), written out as above.
	is_object(ctx)
	t := {true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]
	msg := ctx[t]
	is_object(msg)
	_ = msg.body
	is_object(msg.headers)
	is_object(object.get(ctx, "state", {}))
	out = object.union(ctx, {t: {"headers": {lx: xv, ly: yv}}, "state": {}})
} else := out if {
	r.status == "OK"
	instrs := r.instructions
	is_array(instrs)
	count(instrs) == 2
	is_object(r.metadata)
	hx = _header_change(instrs[0])
	hy = _header_change(instrs[1])
	hs := object.union(hx, hy)
	count(hs) == count(hx) + count(hy)
	sx = _state_change(instrs[0])
	sy = _state_change(instrs[1])
	ss := object.union(sx, sy)
	count(ss) == count(sx) + count(sy)
	out = _apply_changes(ctx, hs, ss)
} else := out if {
	r.status == "OK"
	instrs := r.instructions
	is_array(instrs)
	count(instrs) == 1
	is_object(r.metadata)
	out = _apply_changes(ctx, _header_change(instrs[0]), _state_change(instrs[0]))
}

# The context after header changes hs and state changes ss (objects), as
# apply's first branch computes it for SET_HEADER / SET_STATE instructions
# with distinct keys.
_apply_changes(ctx, hs, ss) := out if {
	is_object(ctx)
	t := {true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]
	msg := object.get(ctx, t, {})
	is_object(msg)
	headers := object.get(msg, "headers", {})
	is_object(headers)
	state := object.get(ctx, "state", {})
	is_object(state)
	out := object.union(object.remove(ctx, {t, "state"}), {
		t: object.union(object.remove(msg, {"headers", "body"}), {
			"headers": object.union(object.remove(headers, hs), hs),
			"body": object.get(msg, "body", ""),
		}),
		"state": object.union(object.remove(state, ss), ss),
	})
}

# One instruction's header change ({} for SET_STATE); undefined for any
# other instruction.
_header_change(x) := {lower(x.key): v} if {
	x.type == "SET_HEADER"
	is_string(x.key)
	v := x.value
} else := {} if {
	x.type == "SET_STATE"
	is_string(x.key)
}

# One instruction's state change ({} for SET_HEADER); undefined for any
# other instruction.
_state_change(x) := {x.key: v} if {
	x.type == "SET_STATE"
	is_string(x.key)
	v := x.value
} else := {} if {
	x.type == "SET_HEADER"
	is_string(x.key)
}

# The accumulator after policy `name` returned r and the chain proceeds.
# The first two branches are the usual OK results (without, then with
# instructions) with an object metadata; outcome and metadata_of are inlined
# (status_of(r) is "OK" there). Anything else goes through _next_general,
# the reference definition.
next(acc, r, name) := out if {
	r.instructions == []
	r.status == "OK"
	m := r.metadata
	is_object(m)
	out := {
		"ctx": acc.ctx,
		"instructions": acc.instructions,
		"outcomes": array.concat(acc.outcomes, [{"policy": name, "status": "OK", "message": object.get(r, "message", "")}]),
		"metadata": object.union(acc.metadata, m),
	}
} else := out if {
	r.status == "OK"
	m := r.metadata
	is_object(m)
	instrs := r.instructions
	count(instrs) > 0
	out := {
		"ctx": apply(acc.ctx, instrs),
		"instructions": array.concat(acc.instructions, instrs),
		"outcomes": array.concat(acc.outcomes, [{"policy": name, "status": "OK", "message": object.get(r, "message", "")}]),
		"metadata": object.union(acc.metadata, m),
	}
} else := _next_general(acc, r, name)

_next_general(acc, r, name) := out if {
	r.status == "OK"
	count(r.instructions) > 0
	out := {
		"ctx": apply(acc.ctx, r.instructions),
		"instructions": array.concat(acc.instructions, r.instructions),
		"outcomes": array.concat(acc.outcomes, [outcome(r, name)]),
		"metadata": object.union(acc.metadata, metadata_of(r)),
	}
} else := out if {
	r.status == "OK"
	out := {
		"ctx": acc.ctx,
		"instructions": acc.instructions,
		"outcomes": array.concat(acc.outcomes, [outcome(r, name)]),
		"metadata": object.union(acc.metadata, metadata_of(r)),
	}
} else := object.union(acc, {"outcomes": array.concat(acc.outcomes, [outcome(r, name)])})

# The decision when the chain ran to its end.
finish(acc) := {
	"status": "OK",
	"policy_name": "",
	"message": "",
	"instructions": acc.instructions,
	"metadata": acc.metadata,
	"state": object.get(acc.ctx, "state", {}),
	"outcomes": acc.outcomes,
}

# The decision when policy `name` stopped the chain with r.
stop(acc, r, name, on_failure) := decision(acc, r, name, "POLICY_DENIED", array.concat(acc.instructions, r.instructions)) if {
	r.status == "POLICY_DENIED"
} else := decision(acc, r, name, "OK", array.concat(acc.instructions, r.instructions)) if {
	r.status == "OK"
} else := decision(acc, r, name, "OK", acc.instructions) if {
	r.status == "POLICY_ERROR"
	on_failure == "skip_remaining"
} else := decision(acc, r, name, "POLICY_ERROR", array.concat(acc.instructions, error_instructions(r, name)))

decision(acc, r, name, status, instructions) := {
	"status": status,
	"policy_name": name,
	"message": object.get(r, "message", ""),
	"instructions": instructions,
	"metadata": object.union(acc.metadata, metadata_of(r)),
	"state": object.get(acc.ctx, "state", {}),
	"outcomes": array.concat(acc.outcomes, [outcome(r, name)]),
}

# A failing policy's own immediate response, else a 500.
error_instructions(r, name) := r.instructions if {
	has_immediate(r)
} else := [{
	"type": "IMMEDIATE_RESPONSE",
	"status_code": 500,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"error": "policy error", "policy": name}),
}]

outcome(r, name) := {"policy": name, "status": status_of(r), "message": object.get(r, "message", "")}

status_of(r) := r.status if r.status in {"OK", "POLICY_DENIED", "POLICY_ERROR", "SKIPPED"}

else := "POLICY_ERROR"

metadata_of(r) := m if {
	m := r.metadata
	is_object(m)
} else := {}

# Checks a policy result's shape; a malformed result becomes POLICY_ERROR.
checked(r, name) := r if {
	r.status in {"OK", "POLICY_DENIED", "POLICY_ERROR", "SKIPPED"}
	is_array(r.instructions)
	every x in r.instructions {
		is_object(x)
		is_string(x.type)
	}
} else := {
	"status": "POLICY_ERROR",
	"message": sprintf("policy `%s` returned a malformed result", [name]),
	"instructions": [],
	"metadata": {},
}

# --- applying instructions to the context --------------------------------

# apply(ctx, instrs): the context after the instructions. The usual case is
# computed in one body: ctx, its message, headers and state are objects and
# no two header (or state) instructions name the same key, so every change
# is a plain replacement. Anything else goes through _apply_general, the
# reference definition, which gives the same result in the usual case.
apply(ctx, instrs) := out if {
	is_object(ctx)
	t := {true: "response", false: "request"}[object.get(ctx, "phase", null) == "response"]
	msg := object.get(ctx, t, {})
	is_object(msg)
	headers := object.get(msg, "headers", {})
	is_object(headers)
	state := object.get(ctx, "state", {})
	is_object(state)
	hx := [x | some x in instrs; x.type in {"SET_HEADER", "REMOVE_HEADER"}; is_string(x.key)]
	hkeys := {lower(x.key) | some x in hx}
	count(hkeys) == count(hx)
	sx := [x | some x in instrs; x.type == "SET_STATE"; is_string(x.key)]
	count({x.key | some x in sx}) == count(sx)
	changes := {x.key: v | some x in sx; v := x.value}
	bodies := array.concat([object.get(msg, "body", "")], [x.body | some x in instrs; x.type == "SET_BODY"])
	out := object.union(object.remove(ctx, {t, "state"}), {
		t: object.union(object.remove(msg, {"headers", "body"}), {
			"headers": object.union(
				object.remove(headers, hkeys),
				{lower(x.key): object.get(x, "value", "") | some x in hx; x.type == "SET_HEADER"},
			),
			"body": bodies[count(bodies) - 1],
		}),
		"state": object.union(object.remove(state, changes), changes),
	})
} else := _apply_general(ctx, instrs)

_apply_general(ctx, instrs) := replace(ctx, {
	target(ctx): apply_message(object.get(ctx, target(ctx), {}), instrs),
	"state": apply_state(object.get(ctx, "state", {}), instrs),
})

# obj with the top-level keys of changes replaced (object.union would merge
# nested objects, bringing back removed headers and body fields).
replace(obj, changes) := object.union(object.remove(obj, {k | some k, _ in changes}), changes)

target(ctx) := "response" if ctx.phase == "response"

else := "request"

apply_message(msg, instrs) := replace(msg, {
	"headers": apply_headers(object.get(msg, "headers", {}), instrs),
	"body": apply_body(object.get(msg, "body", ""), instrs),
})

header_ops(instrs) := [{"key": lower(x.key), "type": x.type, "value": object.get(x, "value", "")} |
	some x in instrs
	x.type in {"SET_HEADER", "REMOVE_HEADER"}
	is_string(x.key)
]

apply_headers(headers, instrs) := headers if {
	count(header_ops(instrs)) == 0
} else := object.union(kept, set) if {
	ops := header_ops(instrs)
	touched := {o.key | some o in ops}
	kept := {k: v | some k, v in headers; not k in touched}
	set := {k: ops[i].value |
		some k in touched
		i := max({j | some j, o in ops; o.key == k})
		ops[i].type == "SET_HEADER"
	}
}

apply_body(body, instrs) := bodies[count(bodies) - 1] if {
	bodies := [x.body | some x in instrs; x.type == "SET_BODY"]
	count(bodies) > 0
} else := body

apply_state(state, instrs) := state if {
	not has_state(instrs)
} else := replace(state, {k: v |
	ops := [x | some x in instrs; x.type == "SET_STATE"; is_string(x.key)]
	some k in {x.key | some x in ops}
	i := max({j | some j, o in ops; o.key == k})
	v := ops[i].value
})

has_state(instrs) if {
	some x in instrs
	x.type == "SET_STATE"
}

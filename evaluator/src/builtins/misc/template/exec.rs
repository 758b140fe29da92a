//! Execution of a parsed template with Go `text/template`'s rules (default
//! `missingkey` option: a missing key is "no value").

use super::funcs::call_function;
use super::parse::{Arg, Branch, Node, Pipe};
use super::value::GoVal;

/// Output above this size stops the execution (a template cannot loop,
/// but nested ranges over large data can still multiply).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct State {
    out: String,
    vars: Vec<(String, GoVal)>,
}

/// Runs `nodes` on `data`.
pub(super) fn execute(nodes: &[Node], data: GoVal) -> Result<String, String> {
    let mut state = State {
        out: String::new(),
        vars: vec![("$".to_string(), data.clone())],
    };
    state.walk(&data, nodes)?;
    Ok(state.out)
}

impl State {
    fn walk(&mut self, dot: &GoVal, nodes: &[Node]) -> Result<Flow, String> {
        for node in nodes {
            if self.out.len() > MAX_OUTPUT {
                return Err("template output too large".to_string());
            }
            let flow = match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let v = self.pipe(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.out.push_str(&v.print());
                    }
                    Flow::Normal
                }
                Node::If(b) => self.if_or_with(dot, b, false)?,
                Node::With(b) => self.if_or_with(dot, b, true)?,
                Node::Range(b) => self.range(dot, b)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn if_or_with(&mut self, dot: &GoVal, b: &Branch, with: bool) -> Result<Flow, String> {
        let mark = self.vars.len();
        let v = self.pipe(dot, &b.pipe)?;
        let flow = if v.is_true() {
            let dot = if with { &v } else { dot };
            self.walk(dot, &b.list)?
        } else if let Some(list) = &b.else_list {
            self.walk(dot, list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, dot: &GoVal, b: &Branch) -> Result<Flow, String> {
        let outer = self.vars.len();
        let v = self.pipe(dot, &b.pipe)?;
        let items: Vec<(GoVal, GoVal)> = match &v {
            GoVal::Slice(items) => items
                .iter()
                .enumerate()
                .map(|(i, e)| (GoVal::Int(i64::try_from(i).unwrap_or(i64::MAX)), e.clone()))
                .collect(),
            GoVal::Map(m) => m
                .iter()
                .map(|(k, e)| (GoVal::Str(k.clone()), e.clone()))
                .collect(),
            GoVal::Int(n) => {
                if b.pipe.decl.len() > 1 {
                    return Err(format!(
                        "can't use {n} to iterate over more than one variable"
                    ));
                }
                (0..*n).map(|i| (GoVal::Invalid, GoVal::Int(i))).collect()
            }
            GoVal::Invalid | GoVal::Nil => Vec::new(),
            other => return Err(format!("range can't iterate over {}", other.fmt_v())),
        };
        let mark = self.vars.len();
        let mut flow = Flow::Normal;
        for (index, elem) in &items {
            self.set_range_vars(&b.pipe, mark, index, elem)?;
            let f = self.walk(elem, &b.list)?;
            self.vars.truncate(mark);
            if f == Flow::Break {
                break;
            }
        }
        if items.is_empty()
            && let Some(list) = &b.else_list
        {
            flow = self.walk(dot, list)?;
        }
        self.vars.truncate(outer);
        Ok(flow)
    }

    fn set_range_vars(
        &mut self,
        pipe: &Pipe,
        mark: usize,
        index: &GoVal,
        elem: &GoVal,
    ) -> Result<(), String> {
        match (pipe.decl.as_slice(), pipe.is_assign) {
            ([], _) => {}
            ([one], true) => self.assign(one, elem.clone())?,
            ([idx, el, ..], true) => {
                self.assign(idx, index.clone())?;
                self.assign(el, elem.clone())?;
            }
            (decl, false) => {
                // The declared variables sit just below `mark`.
                let n = decl.len();
                if let Some(slot) = self.vars.get_mut(mark - 1) {
                    slot.1 = elem.clone();
                }
                if n == 2
                    && let Some(slot) = self.vars.get_mut(mark - 2)
                {
                    slot.1 = index.clone();
                }
            }
        }
        Ok(())
    }

    fn assign(&mut self, name: &str, v: GoVal) -> Result<(), String> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(format!("undefined variable: {name}")),
        }
    }

    fn var(&self, name: &str) -> Result<GoVal, String> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn pipe(&mut self, dot: &GoVal, pipe: &Pipe) -> Result<GoVal, String> {
        let mut value: Option<GoVal> = None;
        for cmd in &pipe.cmds {
            let v = self.command(dot, cmd, value.take())?;
            // A nil `any` is dug out to "no value", as Go does.
            value = Some(if v == GoVal::Nil { GoVal::Invalid } else { v });
        }
        let value = value.unwrap_or(GoVal::Invalid);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.assign(name, value.clone())?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(&mut self, dot: &GoVal, args: &[Arg], fin: Option<GoVal>) -> Result<GoVal, String> {
        let Some(first) = args.first() else {
            return Err("empty command".to_string());
        };
        if let Arg::Func(name) = first {
            return self.call(dot, name, &args[1..], fin);
        }
        if args.len() > 1 || fin.is_some() {
            return Err(match first {
                Arg::Field(chain) => format!(
                    "{} is not a method but has arguments",
                    chain.last().map_or("", String::as_str)
                ),
                _ => "can't give argument to non-function".to_string(),
            });
        }
        if matches!(first, Arg::Nil) {
            return Err("nil is not a command".to_string());
        }
        self.operand(dot, first)
    }

    fn operand(&mut self, dot: &GoVal, arg: &Arg) -> Result<GoVal, String> {
        Ok(match arg {
            Arg::Dot => dot.clone(),
            Arg::Field(chain) => fields(dot.clone(), chain)?,
            Arg::Var(name, chain) => fields(self.var(name)?, chain)?,
            Arg::Pipe(p, chain) => {
                let v = self.pipe(dot, p)?;
                fields(v, chain)?
            }
            Arg::Str(s) => GoVal::Str(s.clone()),
            Arg::Int(i) => GoVal::Int(*i),
            Arg::Float(f) => GoVal::Float(*f),
            Arg::Bool(b) => GoVal::Bool(*b),
            Arg::Nil => GoVal::Nil,
            Arg::Func(name) => self.call(dot, name, &[], None)?,
        })
    }

    /// A function argument; "no value" is refused as Go's `validateType` does.
    fn arg(&mut self, dot: &GoVal, name: &str, arg: &Arg) -> Result<GoVal, String> {
        match self.operand(dot, arg)? {
            GoVal::Invalid => Err(format!("error calling {name}: invalid value")),
            v => Ok(v),
        }
    }

    fn call(
        &mut self,
        dot: &GoVal,
        name: &str,
        args: &[Arg],
        fin: Option<GoVal>,
    ) -> Result<GoVal, String> {
        let printing = matches!(name, "print" | "printf" | "println");
        let fin = match fin {
            Some(GoVal::Invalid) if printing => Some(GoVal::Nil),
            Some(GoVal::Invalid) => return Err(format!("error calling {name}: invalid value")),
            other => other,
        };
        if name == "and" || name == "or" {
            let want = name == "or";
            let mut last = GoVal::Invalid;
            let total = args.len() + usize::from(fin.is_some());
            if total == 0 {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            for a in args {
                last = self.arg(dot, name, a)?;
                if last.is_true() == want {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, name, a)?);
        }
        vals.extend(fin);
        call_function(name, &vals).map_err(|e| format!("error calling {name}: {e}"))
    }
}

fn fields(mut v: GoVal, chain: &[String]) -> Result<GoVal, String> {
    for name in chain {
        v = field(&v, name)?;
    }
    Ok(v)
}

/// `evalField` on a map-shaped receiver.
fn field(receiver: &GoVal, name: &str) -> Result<GoVal, String> {
    match receiver {
        GoVal::Invalid => Ok(GoVal::Invalid),
        GoVal::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        GoVal::Map(m) => Ok(m.get(name).cloned().unwrap_or(GoVal::Invalid)),
        other => Err(format!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        )),
    }
}

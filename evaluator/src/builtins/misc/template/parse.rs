//! Parsing of Go `text/template` source (tokens from `lex`) into a tree.
//!
//! Supported: text, `{{pipeline}}` actions with `{{-`/`-}}` trimming,
//! comments, `if`/`else if`/`else`, `with`/`else with`, `range` (with
//! `else`, `break`, `continue` and `$i, $e :=`), variables (`$x := …`,
//! `$x = …`), field chains (`.a.b`, `$x.a`, `(pipe).a`), literals and the
//! predefined functions (see `funcs`). `define`, `template` and `block` are
//! rejected.

use super::lex::{Item, Tok, lex};

/// A template element.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    /// An action whose value is printed unless it declares variables.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// `if`, `with` and `range`: a pipeline, a body and an optional `else`.
#[derive(Debug, Clone)]
pub(super) struct Branch {
    pub(super) pipe: Pipe,
    pub(super) list: Vec<Node>,
    pub(super) else_list: Option<Vec<Node>>,
}

/// A pipeline: optional variable declarations and `|`-separated commands.
#[derive(Debug, Clone)]
pub(super) struct Pipe {
    pub(super) decl: Vec<String>,
    /// `=` (assign existing variables) rather than `:=`.
    pub(super) is_assign: bool,
    pub(super) cmds: Vec<Vec<Arg>>,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    /// `.`
    Dot,
    /// `.a.b`
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the data root).
    Var(String, Vec<String>),
    /// `(pipeline).a.b`
    Pipe(Box<Pipe>, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// A function name.
    Func(String),
}

const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge",
];

/// Parses `src` into a list of nodes.
pub(super) fn parse(src: &str) -> Result<Vec<Node>, String> {
    let items = lex(src)?;
    let mut parser = Parser {
        items: items.into_iter(),
        range_depth: 0,
    };
    let (list, end) = parser.list()?;
    match end {
        None => Ok(list),
        Some(word) => Err(format!("unexpected {{{{{word}}}}}")),
    }
}

/// The `{{end}}` or `{{else …}}` that closed a list, with the tokens after
/// its keyword.
type Terminator = (String, Vec<Tok>);

struct Parser {
    items: std::vec::IntoIter<Item>,
    range_depth: usize,
}

impl Parser {
    /// Nodes up to an `{{end}}` or `{{else …}}` (returned with its tokens)
    /// or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, Option<String>), String> {
        let (list, end) = self.list_until()?;
        Ok((list, end.map(|(w, _)| w)))
    }

    fn list_until(&mut self) -> Result<(Vec<Node>, Option<Terminator>), String> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let toks = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(toks) => toks,
            };
            let mut toks = strip_space(toks);
            let keyword = match toks.first() {
                Some(Tok::Ident(w)) => w.clone(),
                _ => String::new(),
            };
            match keyword.as_str() {
                "end" | "else" => {
                    toks.remove(0);
                    return Ok((nodes, Some((keyword, strip_space(toks)))));
                }
                "if" | "with" | "range" => {
                    toks.remove(0);
                    nodes.push(self.branch(&keyword, toks)?);
                }
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(format!("{{{{{keyword}}}}} outside {{{{range}}}}"));
                    }
                    if toks.len() > 1 {
                        return Err(format!("unexpected operand after {keyword}"));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return Err(format!("{{{{{keyword}}}}} is not supported"));
                }
                _ => {
                    if toks.is_empty() {
                        return Err("missing value for command".to_string());
                    }
                    nodes.push(Node::Action(pipeline(&toks, false)?));
                }
            }
        }
        Ok((nodes, None))
    }

    fn branch(&mut self, keyword: &str, toks: Vec<Tok>) -> Result<Node, String> {
        let pipe = pipeline(&toks, keyword == "range")?;
        if keyword == "range" {
            self.range_depth += 1;
        }
        let body = self.list_until();
        if keyword == "range" {
            self.range_depth -= 1;
        }
        let (list, end) = body?;
        let else_list = match end {
            None => return Err(format!("unexpected EOF in {{{{{keyword}}}}}")),
            Some((w, _)) if w == "end" => None,
            Some((_, rest)) if rest.is_empty() => {
                let (list, end) = self.list_until()?;
                match end {
                    Some((w, _)) if w == "end" => Some(list),
                    _ => {
                        return Err(format!(
                            "expected end; found {{{{else}}}} or EOF in {{{{{keyword}}}}}"
                        ));
                    }
                }
            }
            Some((_, mut rest)) => {
                // `{{else if …}}` / `{{else with …}}`: a nested branch that
                // shares this branch's `{{end}}`.
                let nested = match rest.first() {
                    Some(Tok::Ident(w)) if (w == "if" || w == "with") && keyword != "range" => {
                        w.clone()
                    }
                    _ => return Err("unexpected operand after else".to_string()),
                };
                rest.remove(0);
                Some(vec![self.branch(&nested, rest)?])
            }
        };
        let branch = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match keyword {
            "if" => Node::If(branch),
            "with" => Node::With(branch),
            _ => Node::Range(branch),
        })
    }
}

fn strip_space(toks: Vec<Tok>) -> Vec<Tok> {
    let mut toks = toks;
    while toks.first() == Some(&Tok::Space) {
        toks.remove(0);
    }
    while toks.last() == Some(&Tok::Space) {
        toks.pop();
    }
    toks
}

/// Parses a pipeline (with declarations when `range` allows two).
fn pipeline(toks: &[Tok], range: bool) -> Result<Pipe, String> {
    let toks: Vec<&Tok> = toks.iter().filter(|t| **t != Tok::Space).collect();
    let mut decl = Vec::new();
    let mut is_assign = false;
    let mut rest: &[&Tok] = &toks;
    match toks.as_slice() {
        [Tok::Var(v, c), op @ (Tok::Declare | Tok::Assign), tail @ ..] if c.is_empty() => {
            decl.push(v.clone());
            is_assign = **op == Tok::Assign;
            rest = tail;
        }
        [
            Tok::Var(a, c1),
            Tok::Comma,
            Tok::Var(b, c2),
            op @ (Tok::Declare | Tok::Assign),
            tail @ ..,
        ] if range && c1.is_empty() && c2.is_empty() => {
            decl.push(a.clone());
            decl.push(b.clone());
            is_assign = **op == Tok::Assign;
            rest = tail;
        }
        _ => {}
    }
    let mut cmds = Vec::new();
    let mut pos = 0;
    loop {
        let mut cmd = Vec::new();
        while let Some(t) = rest.get(pos) {
            if **t == Tok::Bar {
                break;
            }
            let (arg, next) = operand(rest, pos)?;
            cmd.push(arg);
            pos = next;
        }
        if cmd.is_empty() {
            return Err("missing command in pipeline".to_string());
        }
        cmds.push(cmd);
        if rest.get(pos).is_none() {
            break;
        }
        pos += 1;
    }
    Ok(Pipe {
        decl,
        is_assign,
        cmds,
    })
}

fn operand(toks: &[&Tok], pos: usize) -> Result<(Arg, usize), String> {
    let Some(t) = toks.get(pos) else {
        return Err("missing operand".to_string());
    };
    let arg = match t {
        Tok::Dot => Arg::Dot,
        Tok::Field(c) => Arg::Field(c.clone()),
        Tok::Var(v, c) => Arg::Var(v.clone(), c.clone()),
        Tok::Str(s) => Arg::Str(s.clone()),
        Tok::Int(i) => Arg::Int(*i),
        Tok::Float(f) => Arg::Float(*f),
        Tok::Ident(w) => match w.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            w if FUNCS.contains(&w) => Arg::Func(w.to_string()),
            w => return Err(format!("function {w:?} not defined")),
        },
        Tok::LParen => {
            let mut depth = 0usize;
            let mut end = None;
            for (i, t) in toks.iter().enumerate().skip(pos) {
                match t {
                    Tok::LParen => depth += 1,
                    Tok::RParen(_) => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unclosed left paren")?;
            let inner: Vec<Tok> = toks[pos + 1..end].iter().map(|t| (*t).clone()).collect();
            let chain = match toks[end] {
                Tok::RParen(c) => c.clone(),
                _ => Vec::new(),
            };
            return Ok((
                Arg::Pipe(Box::new(pipeline(&inner, false)?), chain),
                end + 1,
            ));
        }
        other => return Err(format!("unexpected {other:?} in operand")),
    };
    Ok((arg, pos + 1))
}

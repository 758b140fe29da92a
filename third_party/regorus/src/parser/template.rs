// policy-engine patch: template strings (`$"…{expr}…"`, `` $`…{expr}…` ``).
//
// A template string is desugared at parse time, as OPA's compiler rewrites it,
// into a call of the builtin `internal.template_string` with one array
// argument. Each text part is a string; each `{expr}` part is the set
// comprehension `{t | t := expr}` (keeping the expression's `with`
// modifiers), so an undefined expression gives the empty set, which the
// builtin renders as `<undefined>`. A constant scalar expression (`{42}`) is
// kept as its source text, as OPA keeps the term. No new AST node is needed, so
// the scheduler, interpreter and bytecode compiler handle template strings as
// ordinary calls and comprehensions.

use super::Parser;
use crate::ast::*;
use crate::lexer::*;
use crate::value::*;
use crate::*;

use anyhow::{anyhow, bail, Result};

/// Name of the builtin that renders a template string.
const TEMPLATE_BUILTIN: &str = "internal.template_string";

/// A span over `text` in a source of its own, for names the parser generates
/// (spans give vars and refs their names).
fn generated_span(text: &str) -> Result<Span> {
    let source = Source::from_contents("<template-string>".to_string(), text.to_string())?;
    Ok(Span {
        source,
        line: 1,
        col: 1,
        start: 0,
        end: u32::try_from(text.len()).map_err(|_| anyhow!("generated name too long"))?,
    })
}

/// The text of template part `tok` without its delimiters and escapes.
fn part_text(tok: &Token, first: bool, raw: bool) -> Result<String> {
    let text = tok.1.text();
    let prefix = if first { 2 } else { 1 };
    let inner = text
        .get(prefix..text.len().saturating_sub(1))
        .ok_or_else(|| tok.1.error("invalid template string part"))?;

    let mut unescaped = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'{') => {
                chars.next();
                unescaped.push('{');
            }
            // Other escapes of a `$"…"` template are those of a string; keep
            // the pair so that `\\{` stays an escaped backslash.
            '\\' if !raw => {
                unescaped.push('\\');
                if let Some(next) = chars.next() {
                    unescaped.push(next);
                }
            }
            _ => unescaped.push(c),
        }
    }
    if raw {
        return Ok(unescaped);
    }
    serde_json::from_str::<String>(&format!("\"{unescaped}\""))
        .map_err(|e| tok.1.error(&format!("invalid template string part: {e}")))
}

impl<'source> Parser<'source> {
    /// Parses a template string starting at the current `TemplatePart` or
    /// `TemplateEnd` token into a call of `internal.template_string`.
    pub(super) fn parse_template_string(&mut self) -> Result<Expr> {
        let mut span = self.tok.1.clone();
        let raw = span.text().starts_with("$`");
        let mut items: Vec<Ref<Expr>> = vec![];
        let mut first = true;
        loop {
            let tok = self.tok.clone();
            let text = part_text(&tok, first, raw)?;
            first = false;
            if !text.is_empty() {
                items.push(Ref::new(Expr::String {
                    span: tok.1.clone(),
                    value: Value::from(text),
                    eidx: self.next_eidx(),
                }));
            }
            if tok.0 == TokenKind::TemplateEnd {
                self.next_token()?;
                break;
            }

            self.next_token()?;
            let part = self.parse_template_expr()?;
            items.push(Ref::new(part));
            check_memory_limit()?;

            if self.tok.0 != TokenKind::Symbol || self.token_text() != "}" {
                bail!(self
                    .tok
                    .1
                    .error("expected `}` to end template string expression"));
            }
            let brace = self.tok.1.clone();
            self.line = brace.line;
            self.end = brace.end;
            self.tok = self.lexer.read_template_continuation(&brace, raw)?;
        }
        span.end = self.end;

        // Only text: the template is a constant string.
        if items
            .iter()
            .all(|i| matches!(i.as_ref(), Expr::String { .. }))
        {
            let mut text = String::new();
            for item in &items {
                if let Expr::String { value, .. } = item.as_ref() {
                    text.push_str(value.as_string()?.as_ref());
                }
            }
            return Ok(Expr::String {
                span,
                value: Value::from(text),
                eidx: self.next_eidx(),
            });
        }

        let parts = Ref::new(Expr::Array {
            span: span.clone(),
            items,
            eidx: self.next_eidx(),
        });
        let fcn = self.template_builtin_ref()?;
        Ok(Expr::Call {
            span,
            fcn: Ref::new(fcn),
            params: vec![parts],
            eidx: self.next_eidx(),
        })
    }

    /// The ref `internal.template_string`.
    fn template_builtin_ref(&mut self) -> Result<Expr> {
        let full = generated_span(TEMPLATE_BUILTIN)?;
        let dot = TEMPLATE_BUILTIN
            .find('.')
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| anyhow!("internal error: builtin name without `.`"))?;
        let mut head = full.clone();
        head.end = dot;
        let mut field = full.clone();
        field.start = dot.saturating_add(1);
        let refr = Expr::Var {
            value: Value::from(head.text()),
            span: head,
            eidx: self.next_eidx(),
        };
        Ok(Expr::RefDot {
            span: full,
            refr: Ref::new(refr),
            field: (field.clone(), Value::from(field.text())),
            eidx: self.next_eidx(),
        })
    }

    /// Parses the expression of a `{…}` part (with any `with` modifiers) and
    /// returns the array item for it.
    fn parse_template_expr(&mut self) -> Result<Expr> {
        let stmt = self.parse_literal_stmt()?;
        let expr = match &stmt.literal {
            Literal::Expr { expr, .. } => expr.clone(),
            Literal::NotExpr { span, .. } => {
                bail!(span.error("unexpected negation (`not`) in template-string expression"))
            }
            Literal::SomeVars { span, .. } | Literal::SomeIn { span, .. } => {
                bail!(span.error("unexpected `some` in template-string expression"))
            }
            Literal::Every { span, .. } => {
                bail!(span.error("unexpected `every` in template-string expression"))
            }
        };
        match expr.as_ref() {
            Expr::AssignExpr {
                op: AssignOp::Eq,
                span,
                ..
            } => bail!(span.error("unexpected unification (`=`) in template-string expression")),
            Expr::AssignExpr { span, .. } => {
                bail!(span.error("unexpected assignment (`:=`) in template-string expression"))
            }
            _ => (),
        }

        // A constant scalar is kept as its text; its statement is dropped.
        if stmt.with_mods.is_empty() {
            let text = match expr.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    Some(value.as_string()?.as_ref().to_string())
                }
                Expr::Number { span, .. } | Expr::Bool { span, .. } | Expr::Null { span, .. } => {
                    Some(span.text().to_string())
                }
                _ => None,
            };
            if let Some(text) = text {
                if stmt.sidx.saturating_add(1) == self.sidx {
                    self.sidx = stmt.sidx;
                }
                return Ok(Expr::String {
                    span: expr.span().clone(),
                    value: Value::from(text),
                    eidx: expr.eidx(),
                });
            }
        }

        let name = format!("$t{}", self.template_vars);
        self.template_vars = self.template_vars.saturating_add(1);
        let var_span = generated_span(&name)?;
        let var = |eidx| Expr::Var {
            span: var_span.clone(),
            value: Value::from(name.as_str()),
            eidx,
        };

        let span = expr.span().clone();
        let LiteralStmt {
            span: stmt_span,
            literal,
            with_mods,
            sidx,
        } = stmt;
        let literal_span = match &literal {
            Literal::Expr { span, .. } => span.clone(),
            _ => stmt_span.clone(),
        };
        let lhs = Ref::new(var(self.next_eidx()));
        let capture = Expr::AssignExpr {
            span: span.clone(),
            op: AssignOp::ColEq,
            lhs,
            rhs: expr,
            eidx: self.next_eidx(),
        };
        let query = Query {
            span: stmt_span.clone(),
            stmts: vec![LiteralStmt {
                span: stmt_span,
                literal: Literal::Expr {
                    span: literal_span,
                    expr: Ref::new(capture),
                },
                with_mods,
                sidx,
            }],
            qidx: self.next_qidx(),
        };
        Ok(Expr::SetCompr {
            span,
            term: Ref::new(var(self.next_eidx())),
            query: Ref::new(query),
            eidx: self.next_eidx(),
        })
    }
}

/// A template string in a rule head, replaced by the var `name`; `state` is
/// the parser at its start, to parse it anew for each body of the rule.
#[derive(Clone)]
pub(super) struct HeadTemplate<'source> {
    name: String,
    state: Parser<'source>,
    // Bind the var (`name := template`, a ref component) rather than compare
    // it (`name == template`, a function argument).
    assign: bool,
}

impl<'source> Parser<'source> {
    /// Parses a function argument (`assign` false) or a component of a rule
    /// head's ref (`assign` true) with `parse`. One written as a template
    /// string (`f($"{x} {y}") := …`, `p[$"k{x}"] := …`) is read as OPA's
    /// compiler rewrites it: it becomes a generated var, and every body of the
    /// rule compares the var with the template's value or binds it to it (see
    /// `bind_template_args`), so that the template may use the body's vars.
    pub(super) fn parse_head_template(
        &mut self,
        assign: bool,
        parse: impl Fn(&mut Self) -> Result<Expr>,
    ) -> Result<Expr> {
        if !matches!(self.tok.0, TokenKind::TemplatePart | TokenKind::TemplateEnd) {
            return parse(self);
        }
        let mut state = self.clone();
        state.template_args.clear();
        let template = self.parse_term()?;
        let alone = matches!(self.token_text(), "]" | "," | ")");
        if !alone || !matches!(template, Expr::Call { .. }) {
            // A constant template, or one inside a larger expression: parse
            // the component as written.
            let args = core::mem::take(&mut self.template_args);
            *self = state;
            self.template_args = args;
            return parse(self);
        }
        // The parsed template is dropped: give its indexes back.
        self.eidx = state.eidx;
        self.sidx = state.sidx;
        self.qidx = state.qidx;
        let name = format!("$t{}", self.template_vars);
        self.template_vars = self.template_vars.saturating_add(1);
        let span = generated_span(&name)?;
        self.template_args.push(HeadTemplate {
            name: name.clone(),
            state,
            assign,
        });
        Ok(Expr::Var {
            span,
            value: Value::from(name),
            eidx: self.next_eidx(),
        })
    }

    /// Appends `var == <template>` (or `var := <template>`) to every body of
    /// the rule for each head template, parsing the template anew for each
    /// body (expressions are not shared between queries). A rule without
    /// bodies gets one.
    pub(super) fn bind_template_args(
        &mut self,
        args: &[HeadTemplate<'source>],
        bodies: &mut Vec<RuleBody>,
        rule_span: &Span,
    ) -> Result<()> {
        if bodies.is_empty() {
            let mut span = rule_span.clone();
            span.end = span.start;
            bodies.push(RuleBody {
                span: span.clone(),
                assign: None,
                is_else: false,
                query: Ref::new(Query {
                    span,
                    stmts: vec![],
                    qidx: self.next_qidx(),
                }),
            });
        }
        for body in bodies.iter_mut() {
            let placeholder = Ref::new(Query {
                span: body.span.clone(),
                stmts: vec![],
                qidx: 0,
            });
            let query = core::mem::replace(&mut body.query, placeholder)
                .into_inner()
                .ok_or_else(|| anyhow!("internal error: rule body query is shared"))?;
            let mut stmts = query.stmts;
            for arg in args {
                let mut parser = arg.state.clone();
                parser.eidx = self.eidx;
                parser.sidx = self.sidx;
                parser.qidx = self.qidx;
                parser.template_vars = self.template_vars;
                let value = parser.parse_term()?;
                self.eidx = parser.eidx;
                self.sidx = parser.sidx;
                self.qidx = parser.qidx;
                self.template_vars = parser.template_vars;

                let span = value.span().clone();
                let var = Ref::new(Expr::Var {
                    span: generated_span(&arg.name)?,
                    value: Value::from(arg.name.as_str()),
                    eidx: self.next_eidx(),
                });
                let bind = if arg.assign {
                    Expr::AssignExpr {
                        span: span.clone(),
                        op: AssignOp::ColEq,
                        lhs: var,
                        rhs: Ref::new(value),
                        eidx: self.next_eidx(),
                    }
                } else {
                    Expr::BoolExpr {
                        span: span.clone(),
                        op: BoolOp::Eq,
                        lhs: var,
                        rhs: Ref::new(value),
                        eidx: self.next_eidx(),
                    }
                };
                stmts.push(LiteralStmt {
                    span: span.clone(),
                    literal: Literal::Expr {
                        span,
                        expr: Ref::new(bind),
                    },
                    with_mods: vec![],
                    sidx: self.next_sidx(),
                });
                check_memory_limit()?;
            }
            body.query = Ref::new(Query {
                span: query.span.clone(),
                stmts,
                qidx: query.qidx,
            });
        }
        Ok(())
    }
}

fn check_memory_limit() -> Result<()> {
    crate::utils::limits::check_memory_limit_if_needed().map_err(|err| anyhow!(err))
}

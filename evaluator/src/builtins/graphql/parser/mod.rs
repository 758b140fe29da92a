//! Recursive-descent GraphQL parser following gqlparser's grammar, error
//! messages and error positions (the first error wins).

mod query;
mod sdl;

use super::SyntaxError;
use super::ast::*;
use super::lexer::{Kind, Lexer, Pos, Token};

/// How deeply lists, objects, selection sets and type references may nest
/// (recursion stays well within a thread's stack).
const MAX_DEPTH: usize = 256;

struct Parser<'a> {
    lexer: Lexer<'a>,
    depth: usize,
    err: Option<SyntaxError>,
    peeked: Option<(Token, Option<SyntaxError>)>,
    prev: Token,
}

/// Parses an executable document (operations and fragments).
pub(crate) fn parse_query(input: &str) -> Result<QueryDocument, SyntaxError> {
    let mut p = Parser::new(input);
    let doc = p.query_document();
    match p.err {
        Some(e) => Err(e),
        None => Ok(doc),
    }
}

/// Parses a type-system document; `built_in` marks every definition.
pub(crate) fn parse_schema(input: &str, built_in: bool) -> Result<SchemaDocument, SyntaxError> {
    let mut p = Parser::new(input);
    let doc = p.schema_document();
    if let Some(e) = p.err {
        return Err(e);
    }
    let mut doc = doc.unwrap_or_default();
    for def in doc.definitions.iter_mut().chain(doc.extensions.iter_mut()) {
        def.built_in = built_in;
    }
    Ok(doc)
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            lexer: Lexer::new(input),
            depth: 0,
            err: None,
            peeked: None,
            prev: Token {
                kind: Kind::Invalid,
                value: String::new(),
                pos: Pos::default(),
            },
        }
    }

    fn peek(&mut self) -> Token {
        if self.err.is_some() {
            return self.prev.clone();
        }
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.read_token());
        }
        self.peeked
            .as_ref()
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| self.prev.clone())
    }

    fn peek_kind(&mut self) -> Kind {
        self.peek().kind
    }

    fn peek_pos(&mut self) -> Pos {
        self.peek().pos
    }

    fn error(&mut self, tok: &Token, message: String) {
        if self.err.is_none() {
            self.err = Some(SyntaxError {
                message,
                pos: tok.pos,
            });
        }
    }

    fn next(&mut self) -> Token {
        if self.err.is_some() {
            return self.prev.clone();
        }
        let (tok, err) = match self.peeked.take() {
            Some(p) => p,
            None => self.lexer.read_token(),
        };
        self.prev = tok;
        self.err = err;
        self.prev.clone()
    }

    fn expect_keyword(&mut self, value: &str) -> Token {
        let tok = self.peek();
        if tok.kind == Kind::Name && tok.value == value {
            return self.next();
        }
        let msg = format!(
            "Expected {}, found {}",
            super::lexer::go_quote(value),
            tok.describe()
        );
        self.error(&tok, msg);
        tok
    }

    fn expect(&mut self, kind: Kind) -> Token {
        let tok = self.peek();
        if tok.kind == kind {
            return self.next();
        }
        let msg = format!("Expected {}, found {}", kind.as_str(), tok.kind.as_str());
        self.error(&tok, msg);
        tok
    }

    fn skip(&mut self, kind: Kind) -> bool {
        if self.err.is_some() {
            return false;
        }
        if self.peek_kind() != kind {
            return false;
        }
        self.next();
        true
    }

    fn unexpected(&mut self) {
        let tok = self.peek();
        self.unexpected_token(&tok);
    }

    fn unexpected_token(&mut self, tok: &Token) {
        let msg = format!("Unexpected {}", tok.describe());
        self.error(tok, msg);
    }

    /// Enters one level of nesting, or records an error when too deep.
    fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            let tok = self.peek();
            let msg = format!("document nesting exceeds {MAX_DEPTH} levels");
            self.error(&tok, msg);
            return false;
        }
        self.depth += 1;
        true
    }

    fn many(&mut self, start: Kind, end: Kind, mut cb: impl FnMut(&mut Self)) {
        if !self.skip(start) || !self.enter() {
            return;
        }
        while self.peek_kind() != end && self.err.is_none() {
            cb(self);
        }
        self.next();
        self.depth -= 1;
    }

    fn some(&mut self, start: Kind, end: Kind, mut cb: impl FnMut(&mut Self)) {
        if !self.skip(start) || !self.enter() {
            return;
        }
        let mut called = false;
        while self.peek_kind() != end && self.err.is_none() {
            called = true;
            cb(self);
        }
        self.depth -= 1;
        if !called {
            let tok = self.peek();
            let msg = format!(
                "expected at least one definition, found {}",
                tok.kind.as_str()
            );
            self.error(&tok, msg);
            return;
        }
        self.next();
    }

    fn name(&mut self) -> String {
        self.expect(Kind::Name).value
    }
}

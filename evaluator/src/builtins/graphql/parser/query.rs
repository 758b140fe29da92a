//! Executable documents: operations, fragments, selections, values.

use super::Parser;
use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::lexer::Kind;

impl Parser<'_> {
    pub(super) fn query_document(&mut self) -> QueryDocument {
        let mut doc = QueryDocument::default();
        while self.peek_kind() != Kind::Eof {
            if self.err.is_some() {
                return doc;
            }
            let tok = self.peek();
            match tok.kind {
                Kind::Name => match tok.value.as_str() {
                    "query" | "mutation" | "subscription" => {
                        let op = self.operation_definition();
                        doc.operations.push(op);
                    }
                    "fragment" => {
                        let frag = self.fragment_definition();
                        doc.fragments.push(frag);
                    }
                    _ => self.unexpected(),
                },
                Kind::BraceL => {
                    let op = self.operation_definition();
                    doc.operations.push(op);
                }
                _ => self.unexpected(),
            }
        }
        doc
    }

    pub(super) fn operation_definition(&mut self) -> OperationDefinition {
        let pos = self.peek_pos();
        if self.peek_kind() == Kind::BraceL {
            return OperationDefinition {
                operation: "query".to_string(),
                selection_set: self.required_selection_set(),
                pos,
                ..Default::default()
            };
        }
        let mut od = OperationDefinition {
            pos,
            ..Default::default()
        };
        od.operation = self.operation_type();
        if self.peek_kind() == Kind::Name {
            od.name = self.next().value;
        }
        od.variable_definitions = self.variable_definitions();
        od.directives = self.directives(false);
        od.selection_set = self.required_selection_set();
        od
    }

    pub(super) fn operation_type(&mut self) -> String {
        let tok = self.next();
        match tok.value.as_str() {
            "query" | "mutation" | "subscription" => tok.value,
            _ => {
                self.unexpected_token(&tok);
                String::new()
            }
        }
    }

    pub(super) fn variable_definitions(&mut self) -> Vec<VariableDefinition> {
        let mut defs = Vec::new();
        self.many(Kind::ParenL, Kind::ParenR, |p| {
            let d = p.variable_definition();
            defs.push(d);
        });
        defs
    }

    pub(super) fn variable_definition(&mut self) -> VariableDefinition {
        let mut def = VariableDefinition {
            pos: self.peek_pos(),
            ..Default::default()
        };
        def.variable = self.variable();
        self.expect(Kind::Colon);
        def.ty = Some(self.type_reference());
        if self.skip(Kind::Equals) {
            def.default_value = self.value_literal(true);
        }
        def.directives = self.directives(false);
        def
    }

    pub(super) fn variable(&mut self) -> String {
        self.expect(Kind::Dollar);
        self.name()
    }

    pub(super) fn selections(&mut self) -> Vec<Selection> {
        let mut selections = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let s = p.selection();
            selections.push(s);
        });
        selections
    }

    pub(super) fn required_selection_set(&mut self) -> Vec<Selection> {
        let tok = self.peek();
        if tok.kind != Kind::BraceL {
            let msg = format!(
                "Expected {}, found {}",
                Kind::BraceL.as_str(),
                tok.kind.as_str()
            );
            self.error(&tok, msg);
            return Vec::new();
        }
        self.selections()
    }

    pub(super) fn selection(&mut self) -> Selection {
        if self.peek_kind() == Kind::Spread {
            return self.fragment();
        }
        Selection::Field(self.field())
    }

    pub(super) fn field(&mut self) -> Field {
        let mut field = Field {
            pos: self.peek_pos(),
            ..Default::default()
        };
        field.alias = self.name();
        field.name = if self.skip(Kind::Colon) {
            self.name()
        } else {
            field.alias.clone()
        };
        field.arguments = self.arguments(false);
        field.directives = self.directives(false);
        if self.peek_kind() == Kind::BraceL {
            field.selection_set = self.selections();
        }
        field
    }

    pub(super) fn arguments(&mut self, is_const: bool) -> Vec<Argument> {
        let mut args = Vec::new();
        self.many(Kind::ParenL, Kind::ParenR, |p| {
            let pos = p.peek_pos();
            let name = p.name();
            p.expect(Kind::Colon);
            let value = p.value_literal(is_const);
            args.push(Argument { name, value, pos });
        });
        args
    }

    pub(super) fn fragment(&mut self) -> Selection {
        self.expect(Kind::Spread);
        let peek = self.peek();
        if peek.kind == Kind::Name && peek.value != "on" {
            let pos = self.peek_pos();
            let name = self.fragment_name();
            let directives = self.directives(false);
            return Selection::FragmentSpread(FragmentSpread {
                name,
                directives,
                pos,
            });
        }
        let mut def = InlineFragment {
            pos: self.peek_pos(),
            ..Default::default()
        };
        if self.peek().value == "on" {
            self.next();
            def.type_condition = self.name();
        }
        def.directives = self.directives(false);
        def.selection_set = self.required_selection_set();
        Selection::InlineFragment(def)
    }

    pub(super) fn fragment_definition(&mut self) -> FragmentDefinition {
        let mut def = FragmentDefinition {
            pos: self.peek_pos(),
            ..Default::default()
        };
        self.expect_keyword("fragment");
        def.name = self.fragment_name();
        def.variable_definition = self.variable_definitions();
        self.expect_keyword("on");
        def.type_condition = self.name();
        def.directives = self.directives(false);
        def.selection_set = self.required_selection_set();
        def
    }

    pub(super) fn fragment_name(&mut self) -> String {
        if self.peek().value == "on" {
            self.unexpected();
            return String::new();
        }
        self.name()
    }

    pub(super) fn value_literal(&mut self, is_const: bool) -> Option<Value> {
        use value_kind::*;
        let tok = self.peek();
        let kind = match tok.kind {
            Kind::BracketL => return Some(self.list(is_const)),
            Kind::BraceL => return Some(self.object(is_const)),
            Kind::Dollar => {
                if is_const {
                    self.unexpected();
                    return None;
                }
                let raw = self.variable();
                return Some(Value {
                    raw,
                    kind: VARIABLE,
                    pos: tok.pos,
                    ..Default::default()
                });
            }
            Kind::Int => INT,
            Kind::Float => FLOAT,
            Kind::String => STRING,
            Kind::BlockString => BLOCK,
            Kind::Name => match tok.value.as_str() {
                "true" | "false" => BOOLEAN,
                "null" => NULL,
                _ => ENUM,
            },
            _ => {
                self.unexpected();
                return None;
            }
        };
        self.next();
        Some(Value {
            raw: tok.value,
            kind,
            pos: tok.pos,
            ..Default::default()
        })
    }

    pub(super) fn list(&mut self, is_const: bool) -> Value {
        let pos = self.peek_pos();
        let mut children = Vec::new();
        self.many(Kind::BracketL, Kind::BracketR, |p| {
            let value = p.value_literal(is_const);
            children.push(ChildValue {
                value,
                ..Default::default()
            });
        });
        Value {
            children,
            kind: value_kind::LIST,
            pos,
            ..Default::default()
        }
    }

    pub(super) fn object(&mut self, is_const: bool) -> Value {
        let pos = self.peek_pos();
        let mut children = Vec::new();
        self.many(Kind::BraceL, Kind::BraceR, |p| {
            let pos = p.peek_pos();
            let name = p.name();
            p.expect(Kind::Colon);
            let value = p.value_literal(is_const);
            children.push(ChildValue { name, value, pos });
        });
        Value {
            children,
            kind: value_kind::OBJECT,
            pos,
            ..Default::default()
        }
    }

    pub(super) fn directives(&mut self, is_const: bool) -> Vec<Directive> {
        let mut dirs = Vec::new();
        while self.peek_kind() == Kind::At {
            if self.err.is_some() {
                break;
            }
            self.expect(Kind::At);
            let pos = self.peek_pos();
            let name = self.name();
            let arguments = self.arguments(is_const);
            dirs.push(Directive {
                name,
                arguments,
                location: String::new(),
                pos,
            });
        }
        dirs
    }

    pub(super) fn type_reference(&mut self) -> Type {
        let mut ty = Type::default();
        if self.skip(Kind::BracketL) {
            ty.pos = self.peek_pos();
            if !self.enter() {
                return ty;
            }
            ty.elem = Some(Box::new(self.type_reference()));
            self.depth -= 1;
            self.expect(Kind::BracketR);
        } else {
            ty.pos = self.peek_pos();
            ty.named_type = self.name();
        }
        if self.skip(Kind::Bang) {
            ty.non_null = true;
        }
        ty
    }
}

//! Type-system documents: type, schema and directive definitions and
//! their extensions.

use super::Parser;
use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::lexer::Kind;

impl Parser<'_> {
    pub(super) fn schema_document(&mut self) -> Option<SchemaDocument> {
        let mut doc = SchemaDocument::default();
        while self.peek_kind() != Kind::Eof {
            if self.err.is_some() {
                return None;
            }
            let mut description = String::new();
            if matches!(self.peek_kind(), Kind::BlockString | Kind::String) {
                description = self.description();
            }
            if self.peek_kind() != Kind::Name {
                self.unexpected();
                break;
            }
            match self.peek().value.as_str() {
                "scalar" | "type" | "interface" | "union" | "enum" | "input" => {
                    let def = self.type_system_definition(description);
                    doc.definitions.push(def);
                }
                "schema" => {
                    let def = self.schema_definition(description);
                    doc.schema.push(def);
                }
                "directive" => {
                    let def = self.directive_definition(description);
                    doc.directives.push(def);
                }
                "extend" => {
                    if !description.is_empty() {
                        let prev = self.prev.clone();
                        self.unexpected_token(&prev);
                    }
                    self.type_system_extension(&mut doc);
                }
                _ => {
                    self.unexpected();
                    return None;
                }
            }
        }
        Some(doc)
    }

    pub(super) fn description(&mut self) -> String {
        if matches!(self.peek_kind(), Kind::BlockString | Kind::String) {
            return self.next().value;
        }
        String::new()
    }

    pub(super) fn type_system_definition(&mut self, description: String) -> Definition {
        let keyword = self.peek().value;
        let kind = match keyword.as_str() {
            "scalar" => def_kind::SCALAR,
            "type" => def_kind::OBJECT,
            "interface" => def_kind::INTERFACE,
            "union" => def_kind::UNION,
            "enum" => def_kind::ENUM,
            _ => def_kind::INPUT_OBJECT,
        };
        self.expect_keyword(&keyword);
        let mut def = Definition {
            pos: self.peek_pos(),
            kind: kind.to_string(),
            description,
            ..Default::default()
        };
        def.name = self.name();
        match kind {
            def_kind::SCALAR => def.directives = self.directives(true),
            def_kind::OBJECT | def_kind::INTERFACE => {
                def.interfaces = self.implements_interfaces();
                def.directives = self.directives(true);
                def.fields = self.fields_definition();
            }
            def_kind::UNION => {
                def.directives = self.directives(true);
                def.types = self.union_member_types();
            }
            def_kind::ENUM => {
                def.directives = self.directives(true);
                def.enum_values = self.enum_values_definition();
            }
            _ => {
                def.directives = self.directives(true);
                def.fields = self.input_fields_definition();
            }
        }
        def
    }

    pub(super) fn schema_definition(&mut self, description: String) -> SchemaDefinition {
        self.expect_keyword("schema");
        let mut def = SchemaDefinition {
            description,
            pos: self.peek_pos(),
            ..Default::default()
        };
        def.directives = self.directives(true);
        let mut ops = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let op = p.operation_type_definition();
            ops.push(op);
        });
        def.operation_types = ops;
        def
    }

    pub(super) fn operation_type_definition(&mut self) -> OperationTypeDefinition {
        let pos = self.peek_pos();
        let operation = self.operation_type();
        self.expect(Kind::Colon);
        let ty = self.name();
        OperationTypeDefinition { operation, ty, pos }
    }

    pub(super) fn implements_interfaces(&mut self) -> Vec<String> {
        let mut types = Vec::new();
        if self.peek().value == "implements" {
            self.next();
            self.skip(Kind::Amp);
            types.push(self.name());
            while self.skip(Kind::Amp) && self.err.is_none() {
                types.push(self.name());
            }
        }
        types
    }

    pub(super) fn fields_definition(&mut self) -> Vec<FieldDefinition> {
        let mut defs = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let mut def = FieldDefinition {
                pos: p.peek_pos(),
                ..Default::default()
            };
            def.description = p.description();
            def.name = p.name();
            def.arguments = p.argument_defs();
            p.expect(Kind::Colon);
            def.ty = Some(p.type_reference());
            def.directives = p.directives(true);
            defs.push(def);
        });
        defs
    }

    pub(super) fn argument_defs(&mut self) -> Vec<ArgumentDefinition> {
        let mut args = Vec::new();
        self.some(Kind::ParenL, Kind::ParenR, |p| {
            let mut def = ArgumentDefinition {
                pos: p.peek_pos(),
                ..Default::default()
            };
            def.description = p.description();
            def.name = p.name();
            p.expect(Kind::Colon);
            def.ty = Some(p.type_reference());
            if p.skip(Kind::Equals) {
                def.default_value = p.value_literal(true);
            }
            def.directives = p.directives(true);
            args.push(def);
        });
        args
    }

    pub(super) fn input_fields_definition(&mut self) -> Vec<FieldDefinition> {
        let mut defs = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let mut def = FieldDefinition {
                pos: p.peek_pos(),
                ..Default::default()
            };
            def.description = p.description();
            def.name = p.name();
            p.expect(Kind::Colon);
            def.ty = Some(p.type_reference());
            if p.skip(Kind::Equals) {
                def.default_value = p.value_literal(true);
            }
            def.directives = p.directives(true);
            defs.push(def);
        });
        defs
    }

    pub(super) fn union_member_types(&mut self) -> Vec<String> {
        let mut types = Vec::new();
        if self.skip(Kind::Equals) {
            self.skip(Kind::Pipe);
            types.push(self.name());
            while self.skip(Kind::Pipe) && self.err.is_none() {
                types.push(self.name());
            }
        }
        types
    }

    pub(super) fn enum_values_definition(&mut self) -> Vec<EnumValueDefinition> {
        let mut values = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let description = p.description();
            let name = p.name();
            let directives = p.directives(true);
            values.push(EnumValueDefinition {
                description,
                name,
                directives,
            });
        });
        values
    }

    pub(super) fn type_system_extension(&mut self, doc: &mut SchemaDocument) {
        self.expect_keyword("extend");
        let keyword = self.peek().value;
        if keyword == "schema" {
            let def = self.schema_extension();
            doc.schema_extension.push(def);
            return;
        }
        let kind = match keyword.as_str() {
            "scalar" => def_kind::SCALAR,
            "type" => def_kind::OBJECT,
            "interface" => def_kind::INTERFACE,
            "union" => def_kind::UNION,
            "enum" => def_kind::ENUM,
            "input" => def_kind::INPUT_OBJECT,
            _ => {
                self.unexpected();
                return;
            }
        };
        self.expect_keyword(&keyword);
        let mut def = Definition {
            pos: self.peek_pos(),
            kind: kind.to_string(),
            ..Default::default()
        };
        def.name = self.name();
        let empty = match kind {
            def_kind::SCALAR => {
                def.directives = self.directives(true);
                def.directives.is_empty()
            }
            def_kind::OBJECT => {
                def.interfaces = self.implements_interfaces();
                def.directives = self.directives(true);
                def.fields = self.fields_definition();
                def.interfaces.is_empty() && def.directives.is_empty() && def.fields.is_empty()
            }
            def_kind::INTERFACE => {
                def.directives = self.directives(true);
                def.fields = self.fields_definition();
                def.directives.is_empty() && def.fields.is_empty()
            }
            def_kind::UNION => {
                def.directives = self.directives(true);
                def.types = self.union_member_types();
                def.directives.is_empty() && def.types.is_empty()
            }
            def_kind::ENUM => {
                def.directives = self.directives(true);
                def.enum_values = self.enum_values_definition();
                def.directives.is_empty() && def.enum_values.is_empty()
            }
            _ => {
                def.directives = self.directives(false);
                def.fields = self.input_fields_definition();
                def.directives.is_empty() && def.fields.is_empty()
            }
        };
        if empty {
            self.unexpected();
        }
        doc.extensions.push(def);
    }

    pub(super) fn schema_extension(&mut self) -> SchemaDefinition {
        self.expect_keyword("schema");
        let mut def = SchemaDefinition {
            pos: self.peek_pos(),
            ..Default::default()
        };
        def.directives = self.directives(true);
        let mut ops = Vec::new();
        self.some(Kind::BraceL, Kind::BraceR, |p| {
            let op = p.operation_type_definition();
            ops.push(op);
        });
        def.operation_types = ops;
        if def.directives.is_empty() && def.operation_types.is_empty() {
            self.unexpected();
        }
        def
    }

    pub(super) fn directive_definition(&mut self, description: String) -> DirectiveDefinition {
        self.expect_keyword("directive");
        self.expect(Kind::At);
        let mut def = DirectiveDefinition {
            pos: self.peek_pos(),
            description,
            ..Default::default()
        };
        def.name = self.name();
        def.arguments = self.argument_defs();
        let peek = self.peek();
        if peek.kind == Kind::Name && peek.value == "repeatable" {
            def.is_repeatable = true;
            self.skip(Kind::Name);
        }
        self.expect_keyword("on");
        self.skip(Kind::Pipe);
        def.locations.push(self.directive_location());
        while self.skip(Kind::Pipe) && self.err.is_none() {
            def.locations.push(self.directive_location());
        }
        def
    }

    pub(super) fn directive_location(&mut self) -> String {
        const LOCATIONS: &[&str] = &[
            "QUERY",
            "MUTATION",
            "SUBSCRIPTION",
            "FIELD",
            "FRAGMENT_DEFINITION",
            "FRAGMENT_SPREAD",
            "INLINE_FRAGMENT",
            "VARIABLE_DEFINITION",
            "SCHEMA",
            "SCALAR",
            "OBJECT",
            "FIELD_DEFINITION",
            "ARGUMENT_DEFINITION",
            "INTERFACE",
            "UNION",
            "ENUM",
            "ENUM_VALUE",
            "INPUT_OBJECT",
            "INPUT_FIELD_DEFINITION",
        ];
        let tok = self.expect(Kind::Name);
        if LOCATIONS.contains(&tok.value.as_str()) {
            return tok.value;
        }
        self.unexpected_token(&tok);
        String::new()
    }
}

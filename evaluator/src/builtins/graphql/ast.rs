//! The GraphQL syntax tree, shaped like gqlparser's `ast` package so that
//! it marshals to the same JSON field names.

use super::lexer::Pos;

/// gqlparser's `ValueKind` numbering.
pub(crate) mod value_kind {
    pub(crate) const VARIABLE: i64 = 0;
    pub(crate) const INT: i64 = 1;
    pub(crate) const FLOAT: i64 = 2;
    pub(crate) const STRING: i64 = 3;
    pub(crate) const BLOCK: i64 = 4;
    pub(crate) const BOOLEAN: i64 = 5;
    pub(crate) const NULL: i64 = 6;
    pub(crate) const ENUM: i64 = 7;
    pub(crate) const LIST: i64 = 8;
    pub(crate) const OBJECT: i64 = 9;
}

#[derive(Debug, Clone, Default)]
pub(crate) struct QueryDocument {
    pub(crate) operations: Vec<OperationDefinition>,
    pub(crate) fragments: Vec<FragmentDefinition>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct OperationDefinition {
    pub(crate) operation: String,
    pub(crate) name: String,
    pub(crate) variable_definitions: Vec<VariableDefinition>,
    pub(crate) directives: Vec<Directive>,
    pub(crate) selection_set: Vec<Selection>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct VariableDefinition {
    pub(crate) variable: String,
    pub(crate) ty: Option<Type>,
    pub(crate) default_value: Option<Value>,
    pub(crate) directives: Vec<Directive>,
    pub(crate) used: bool,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) enum Selection {
    Field(Field),
    FragmentSpread(FragmentSpread),
    InlineFragment(InlineFragment),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Field {
    pub(crate) alias: String,
    pub(crate) name: String,
    pub(crate) arguments: Vec<Argument>,
    pub(crate) directives: Vec<Directive>,
    pub(crate) selection_set: Vec<Selection>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Argument {
    pub(crate) name: String,
    pub(crate) value: Option<Value>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FragmentSpread {
    pub(crate) name: String,
    pub(crate) directives: Vec<Directive>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct InlineFragment {
    pub(crate) type_condition: String,
    pub(crate) directives: Vec<Directive>,
    pub(crate) selection_set: Vec<Selection>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FragmentDefinition {
    pub(crate) name: String,
    pub(crate) variable_definition: Vec<VariableDefinition>,
    pub(crate) type_condition: String,
    pub(crate) directives: Vec<Directive>,
    pub(crate) selection_set: Vec<Selection>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) arguments: Vec<Argument>,
    pub(crate) location: String,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Value {
    pub(crate) raw: String,
    pub(crate) children: Vec<ChildValue>,
    pub(crate) kind: i64,
    pub(crate) expected_type_has_default: bool,
    pub(crate) pos: Pos,
}

impl Value {
    /// The value as gqlparser's `Value.String()` prints it.
    pub(crate) fn describe(&self) -> String {
        use value_kind::*;
        match self.kind {
            STRING | BLOCK => super::lexer::go_quote(&self.raw),
            LIST => "list".to_string(),
            OBJECT => "object".to_string(),
            VARIABLE => format!("${}", self.raw),
            _ => self.raw.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ChildValue {
    pub(crate) name: String,
    pub(crate) value: Option<Value>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Type {
    pub(crate) named_type: String,
    pub(crate) elem: Option<Box<Type>>,
    pub(crate) non_null: bool,
    pub(crate) pos: Pos,
}

impl Type {
    pub(crate) fn named(name: &str, non_null: bool) -> Self {
        Self {
            named_type: name.to_string(),
            elem: None,
            non_null,
            pos: Pos::default(),
        }
    }

    /// The innermost named type.
    pub(crate) fn name(&self) -> &str {
        match &self.elem {
            Some(elem) => elem.name(),
            None => &self.named_type,
        }
    }

    /// The type in SDL notation (`[String!]!`).
    pub(crate) fn render(&self) -> String {
        let bang = if self.non_null { "!" } else { "" };
        match &self.elem {
            Some(elem) => format!("[{}]{bang}", elem.render()),
            None => format!("{}{bang}", self.named_type),
        }
    }

    /// gqlparser's `Type.IsCompatible`: whether a variable of type `self`
    /// may be used where `other` is expected.
    pub(crate) fn is_compatible(&self, other: &Type) -> bool {
        if self.named_type != other.named_type {
            return false;
        }
        match (&self.elem, &other.elem) {
            (Some(_), None) => return false,
            (Some(a), Some(b)) if !a.is_compatible(b) => return false,
            _ => {}
        }
        if other.non_null {
            return self.non_null;
        }
        true
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaDocument {
    pub(crate) schema: Vec<SchemaDefinition>,
    pub(crate) schema_extension: Vec<SchemaDefinition>,
    pub(crate) directives: Vec<DirectiveDefinition>,
    pub(crate) definitions: Vec<Definition>,
    pub(crate) extensions: Vec<Definition>,
}

impl SchemaDocument {
    /// Appends every part of `other` (gqlparser's `SchemaDocument.Merge`).
    pub(crate) fn merge(&mut self, other: SchemaDocument) {
        self.schema.extend(other.schema);
        self.schema_extension.extend(other.schema_extension);
        self.directives.extend(other.directives);
        self.definitions.extend(other.definitions);
        self.extensions.extend(other.extensions);
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaDefinition {
    pub(crate) description: String,
    pub(crate) directives: Vec<Directive>,
    pub(crate) operation_types: Vec<OperationTypeDefinition>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct OperationTypeDefinition {
    pub(crate) operation: String,
    pub(crate) ty: String,
    pub(crate) pos: Pos,
}

/// Definition kinds, as gqlparser spells them.
pub(crate) mod def_kind {
    pub(crate) const SCALAR: &str = "SCALAR";
    pub(crate) const OBJECT: &str = "OBJECT";
    pub(crate) const INTERFACE: &str = "INTERFACE";
    pub(crate) const UNION: &str = "UNION";
    pub(crate) const ENUM: &str = "ENUM";
    pub(crate) const INPUT_OBJECT: &str = "INPUT_OBJECT";
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Definition {
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) name: String,
    pub(crate) directives: Vec<Directive>,
    pub(crate) interfaces: Vec<String>,
    pub(crate) fields: Vec<FieldDefinition>,
    pub(crate) types: Vec<String>,
    pub(crate) enum_values: Vec<EnumValueDefinition>,
    pub(crate) built_in: bool,
    pub(crate) pos: Pos,
}

impl Definition {
    pub(crate) fn is_leaf(&self) -> bool {
        self.kind == def_kind::ENUM || self.kind == def_kind::SCALAR
    }

    pub(crate) fn is_composite(&self) -> bool {
        matches!(
            self.kind.as_str(),
            def_kind::OBJECT | def_kind::INTERFACE | def_kind::UNION
        )
    }

    pub(crate) fn is_input(&self) -> bool {
        matches!(
            self.kind.as_str(),
            def_kind::SCALAR | def_kind::ENUM | def_kind::INPUT_OBJECT
        )
    }

    pub(crate) fn field(&self, name: &str) -> Option<&FieldDefinition> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FieldDefinition {
    pub(crate) description: String,
    pub(crate) name: String,
    pub(crate) arguments: Vec<ArgumentDefinition>,
    pub(crate) default_value: Option<Value>,
    pub(crate) ty: Option<Type>,
    pub(crate) directives: Vec<Directive>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ArgumentDefinition {
    pub(crate) description: String,
    pub(crate) name: String,
    pub(crate) default_value: Option<Value>,
    pub(crate) ty: Option<Type>,
    pub(crate) directives: Vec<Directive>,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct EnumValueDefinition {
    pub(crate) description: String,
    pub(crate) name: String,
    pub(crate) directives: Vec<Directive>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DirectiveDefinition {
    pub(crate) description: String,
    pub(crate) name: String,
    pub(crate) arguments: Vec<ArgumentDefinition>,
    pub(crate) locations: Vec<String>,
    pub(crate) is_repeatable: bool,
    pub(crate) pos: Pos,
}

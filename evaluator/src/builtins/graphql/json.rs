//! The syntax tree to and from Rego values, with gqlparser's JSON field
//! names. Output is already pruned as OPA prunes it: no positions, no null
//! or empty lists/objects. Input follows Go's `encoding/json` rules as
//! gqlparser applies them (unknown keys ignored, null leaves a field unset,
//! a wrongly typed field fails the whole document).

use std::collections::BTreeMap;

use regorus::Value;
use regorus::value::Object;

use super::ast::*;

// ---- AST to Value ----

#[derive(Default)]
struct Obj(BTreeMap<Value, Value>);

impl Obj {
    fn str(mut self, key: &str, s: &str) -> Self {
        self.0.insert(Value::from(key), Value::from(s));
        self
    }
    fn bool(mut self, key: &str, b: bool) -> Self {
        self.0.insert(Value::from(key), Value::from(b));
        self
    }
    fn int(mut self, key: &str, n: i64) -> Self {
        self.0.insert(Value::from(key), Value::from(n));
        self
    }
    fn list(mut self, key: &str, items: Vec<Value>) -> Self {
        if !items.is_empty() {
            self.0.insert(Value::from(key), Value::from(items));
        }
        self
    }
    fn strs(self, key: &str, items: &[String]) -> Self {
        let items = items.iter().map(|s| Value::from(s.as_str())).collect();
        self.list(key, items)
    }
    fn opt(mut self, key: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(Value::from(key), v);
        }
        self
    }
    fn done(self) -> Value {
        Value::from(self.0)
    }
}

fn many<T>(items: &[T], f: fn(&T) -> Value) -> Vec<Value> {
    items.iter().map(f).collect()
}

pub(crate) fn query_to_value(doc: &QueryDocument) -> Value {
    Obj::default()
        .list("Operations", many(&doc.operations, operation))
        .list("Fragments", many(&doc.fragments, fragment_definition))
        .done()
}

fn operation(op: &OperationDefinition) -> Value {
    Obj::default()
        .str("Operation", &op.operation)
        .str("Name", &op.name)
        .list(
            "VariableDefinitions",
            many(&op.variable_definitions, variable_definition),
        )
        .list("Directives", many(&op.directives, directive))
        .list("SelectionSet", many(&op.selection_set, selection))
        .done()
}

fn variable_definition(v: &VariableDefinition) -> Value {
    Obj::default()
        .str("Variable", &v.variable)
        .opt("Type", v.ty.as_ref().map(ty))
        .opt("DefaultValue", v.default_value.as_ref().map(value))
        .list("Directives", many(&v.directives, directive))
        .bool("Used", v.used)
        .done()
}

fn selection(s: &Selection) -> Value {
    match s {
        Selection::Field(f) => Obj::default()
            .str("Alias", &f.alias)
            .str("Name", &f.name)
            .list("Arguments", many(&f.arguments, argument))
            .list("Directives", many(&f.directives, directive))
            .list("SelectionSet", many(&f.selection_set, selection))
            .done(),
        Selection::FragmentSpread(f) => Obj::default()
            .str("Name", &f.name)
            .list("Directives", many(&f.directives, directive))
            .done(),
        Selection::InlineFragment(f) => Obj::default()
            .str("TypeCondition", &f.type_condition)
            .list("Directives", many(&f.directives, directive))
            .list("SelectionSet", many(&f.selection_set, selection))
            .done(),
    }
}

fn fragment_definition(f: &FragmentDefinition) -> Value {
    Obj::default()
        .str("Name", &f.name)
        .list(
            "VariableDefinition",
            many(&f.variable_definition, variable_definition),
        )
        .str("TypeCondition", &f.type_condition)
        .list("Directives", many(&f.directives, directive))
        .list("SelectionSet", many(&f.selection_set, selection))
        .done()
}

fn argument(a: &Argument) -> Value {
    Obj::default()
        .str("Name", &a.name)
        .opt("Value", a.value.as_ref().map(value))
        .done()
}

fn directive(d: &Directive) -> Value {
    Obj::default()
        .str("Name", &d.name)
        .list("Arguments", many(&d.arguments, argument))
        .str("Location", &d.location)
        .done()
}

fn value(v: &Value2) -> Value {
    Obj::default()
        .str("Raw", &v.raw)
        .list("Children", many(&v.children, child_value))
        .int("Kind", v.kind)
        .bool("ExpectedTypeHasDefault", v.expected_type_has_default)
        .done()
}

type Value2 = super::ast::Value;

fn child_value(c: &ChildValue) -> Value {
    Obj::default()
        .str("Name", &c.name)
        .opt("Value", c.value.as_ref().map(value))
        .done()
}

fn ty(t: &Type) -> Value {
    Obj::default()
        .str("NamedType", &t.named_type)
        .opt("Elem", t.elem.as_deref().map(ty))
        .bool("NonNull", t.non_null)
        .done()
}

pub(crate) fn schema_to_value(doc: &SchemaDocument) -> Value {
    Obj::default()
        .list("Schema", many(&doc.schema, schema_definition))
        .list(
            "SchemaExtension",
            many(&doc.schema_extension, schema_definition),
        )
        .list("Directives", many(&doc.directives, directive_definition))
        .list("Definitions", many(&doc.definitions, definition))
        .list("Extensions", many(&doc.extensions, definition))
        .done()
}

fn schema_definition(s: &SchemaDefinition) -> Value {
    Obj::default()
        .str("Description", &s.description)
        .list("Directives", many(&s.directives, directive))
        .list(
            "OperationTypes",
            many(&s.operation_types, |o| {
                Obj::default()
                    .str("Operation", &o.operation)
                    .str("Type", &o.ty)
                    .done()
            }),
        )
        .done()
}

fn definition(d: &Definition) -> Value {
    Obj::default()
        .str("Kind", &d.kind)
        .str("Description", &d.description)
        .str("Name", &d.name)
        .list("Directives", many(&d.directives, directive))
        .strs("Interfaces", &d.interfaces)
        .list("Fields", many(&d.fields, field_definition))
        .strs("Types", &d.types)
        .list(
            "EnumValues",
            many(&d.enum_values, |e| {
                Obj::default()
                    .str("Description", &e.description)
                    .str("Name", &e.name)
                    .list("Directives", many(&e.directives, directive))
                    .done()
            }),
        )
        .bool("BuiltIn", d.built_in)
        .done()
}

fn field_definition(f: &FieldDefinition) -> Value {
    Obj::default()
        .str("Description", &f.description)
        .str("Name", &f.name)
        .list("Arguments", many(&f.arguments, argument_definition))
        .opt("DefaultValue", f.default_value.as_ref().map(value))
        .opt("Type", f.ty.as_ref().map(ty))
        .list("Directives", many(&f.directives, directive))
        .done()
}

fn argument_definition(a: &ArgumentDefinition) -> Value {
    Obj::default()
        .str("Description", &a.description)
        .str("Name", &a.name)
        .opt("DefaultValue", a.default_value.as_ref().map(value))
        .opt("Type", a.ty.as_ref().map(ty))
        .list("Directives", many(&a.directives, directive))
        .done()
}

fn directive_definition(d: &DirectiveDefinition) -> Value {
    Obj::default()
        .str("Description", &d.description)
        .str("Name", &d.name)
        .list("Arguments", many(&d.arguments, argument_definition))
        .strs("Locations", &d.locations)
        .bool("IsRepeatable", d.is_repeatable)
        .done()
}

// ---- Value to AST ----

type Decoded<T> = Result<T, String>;

/// An object being decoded; `exact` keys for gqlparser's hand-written
/// decoders, Go's case-insensitive fallback otherwise.
struct Fields<'a> {
    map: Option<&'a Object>,
    exact: bool,
}

impl<'a> Fields<'a> {
    fn of(v: &'a Value, exact: bool, what: &str) -> Decoded<Self> {
        match v {
            Value::Null => Ok(Self { map: None, exact }),
            Value::Object(m) => Ok(Self {
                map: Some(m.as_ref()),
                exact,
            }),
            _ => Err(format!("cannot unmarshal into {what}")),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        let map = self.map?;
        let found = map.get(&Value::from(key)).or_else(|| {
            if self.exact {
                return None;
            }
            map.iter_sorted()
                .filter(|(k, _)| matches!(k, Value::String(s) if s.eq_ignore_ascii_case(key)))
                .map(|(_, v)| v)
                .next_back()
        });
        found.filter(|v| !matches!(v, Value::Null))
    }

    fn str(&self, key: &str) -> Decoded<String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.to_string()),
            Some(_) => Err(format!("field `{key}` must be a string")),
        }
    }

    fn bool(&self, key: &str) -> Decoded<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("field `{key}` must be a boolean")),
        }
    }

    fn int(&self, key: &str) -> Decoded<i64> {
        match self.get(key) {
            None => Ok(0),
            Some(v @ Value::Number(_)) => v
                .as_i64()
                .map_err(|_| format!("field `{key}` must be an integer")),
            Some(_) => Err(format!("field `{key}` must be an integer")),
        }
    }

    fn opt<T>(&self, key: &str, f: fn(&Value) -> Decoded<T>) -> Decoded<Option<T>> {
        self.get(key).map(f).transpose()
    }

    fn list<T>(&self, key: &str, f: fn(&Value) -> Decoded<T>) -> Decoded<Vec<T>> {
        let items: Vec<&Value> = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(Value::Set(s)) => s.iter().collect(),
            Some(_) => return Err(format!("field `{key}` must be an array")),
        };
        items
            .into_iter()
            .filter(|v| !matches!(v, Value::Null))
            .map(f)
            .collect()
    }

    fn strs(&self, key: &str) -> Decoded<Vec<String>> {
        self.list(key, |v| match v {
            Value::String(s) => Ok(s.to_string()),
            _ => Err("expected a string".to_string()),
        })
    }

    fn selections(&self, key: &str) -> Decoded<Vec<Selection>> {
        let items: Vec<&Value> = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(Value::Set(s)) => s.iter().collect(),
            Some(_) => return Err(format!("field `{key}` must be an array")),
        };
        // gqlparser tries each shape in turn and keeps the first that decodes.
        Ok(items
            .into_iter()
            .filter_map(|item| {
                field_from(item)
                    .map(Selection::Field)
                    .or_else(|_| fragment_spread_from(item).map(Selection::FragmentSpread))
                    .or_else(|_| inline_fragment_from(item).map(Selection::InlineFragment))
                    .ok()
            })
            .collect())
    }
}

/// Rego values that have no JSON form (objects with non-string keys)
/// cannot be documents.
fn check_json(v: &Value) -> Decoded<()> {
    match v {
        Value::Object(m) => m.iter().try_for_each(|(k, v)| match k {
            Value::String(_) => check_json(v),
            _ => Err("object keys must be strings".to_string()),
        }),
        Value::Array(a) => a.iter().try_for_each(check_json),
        Value::Set(s) => s.iter().try_for_each(check_json),
        _ => Ok(()),
    }
}

pub(crate) fn query_from_value(v: &Value) -> Decoded<QueryDocument> {
    check_json(v)?;
    let o = Fields::of(v, false, "QueryDocument")?;
    Ok(QueryDocument {
        operations: o.list("Operations", operation_from)?,
        fragments: o.list("Fragments", fragment_definition_from)?,
    })
}

fn operation_from(v: &Value) -> Decoded<OperationDefinition> {
    let o = Fields::of(v, true, "OperationDefinition")?;
    Ok(OperationDefinition {
        operation: o.str("Operation")?,
        name: o.str("Name")?,
        variable_definitions: o.list("VariableDefinitions", variable_definition_from)?,
        directives: o.list("Directives", directive_from)?,
        selection_set: o.selections("SelectionSet")?,
        ..Default::default()
    })
}

fn variable_definition_from(v: &Value) -> Decoded<VariableDefinition> {
    let o = Fields::of(v, false, "VariableDefinition")?;
    Ok(VariableDefinition {
        variable: o.str("Variable")?,
        ty: o.opt("Type", type_from)?,
        default_value: o.opt("DefaultValue", value_from)?,
        directives: o.list("Directives", directive_from)?,
        used: o.bool("Used")?,
        ..Default::default()
    })
}

fn field_from(v: &Value) -> Decoded<Field> {
    let o = Fields::of(v, true, "Field")?;
    Ok(Field {
        alias: o.str("Alias")?,
        name: o.str("Name")?,
        arguments: o.list("Arguments", argument_from)?,
        directives: o.list("Directives", directive_from)?,
        selection_set: o.selections("SelectionSet")?,
        ..Default::default()
    })
}

fn fragment_spread_from(v: &Value) -> Decoded<FragmentSpread> {
    let o = Fields::of(v, false, "FragmentSpread")?;
    Ok(FragmentSpread {
        name: o.str("Name")?,
        directives: o.list("Directives", directive_from)?,
        ..Default::default()
    })
}

fn inline_fragment_from(v: &Value) -> Decoded<InlineFragment> {
    let o = Fields::of(v, true, "InlineFragment")?;
    Ok(InlineFragment {
        type_condition: o.str("TypeCondition")?,
        directives: o.list("Directives", directive_from)?,
        selection_set: o.selections("SelectionSet")?,
        ..Default::default()
    })
}

fn fragment_definition_from(v: &Value) -> Decoded<FragmentDefinition> {
    let o = Fields::of(v, true, "FragmentDefinition")?;
    Ok(FragmentDefinition {
        name: o.str("Name")?,
        variable_definition: o.list("VariableDefinition", variable_definition_from)?,
        type_condition: o.str("TypeCondition")?,
        directives: o.list("Directives", directive_from)?,
        selection_set: o.selections("SelectionSet")?,
        ..Default::default()
    })
}

fn argument_from(v: &Value) -> Decoded<Argument> {
    let o = Fields::of(v, false, "Argument")?;
    Ok(Argument {
        name: o.str("Name")?,
        value: o.opt("Value", value_from)?,
        ..Default::default()
    })
}

fn directive_from(v: &Value) -> Decoded<Directive> {
    let o = Fields::of(v, false, "Directive")?;
    Ok(Directive {
        name: o.str("Name")?,
        arguments: o.list("Arguments", argument_from)?,
        location: o.str("Location")?,
        ..Default::default()
    })
}

fn value_from(v: &Value) -> Decoded<Value2> {
    let o = Fields::of(v, false, "Value")?;
    Ok(Value2 {
        raw: o.str("Raw")?,
        children: o.list("Children", |c| {
            let o = Fields::of(c, false, "ChildValue")?;
            Ok(ChildValue {
                name: o.str("Name")?,
                value: o.opt("Value", value_from)?,
                ..Default::default()
            })
        })?,
        kind: o.int("Kind")?,
        expected_type_has_default: o.bool("ExpectedTypeHasDefault")?,
        ..Default::default()
    })
}

fn type_from(v: &Value) -> Decoded<Type> {
    let o = Fields::of(v, false, "Type")?;
    Ok(Type {
        named_type: o.str("NamedType")?,
        elem: o.opt("Elem", type_from)?.map(Box::new),
        non_null: o.bool("NonNull")?,
        ..Default::default()
    })
}

pub(crate) fn schema_from_value(v: &Value) -> Decoded<SchemaDocument> {
    check_json(v)?;
    let o = Fields::of(v, false, "SchemaDocument")?;
    Ok(SchemaDocument {
        schema: o.list("Schema", schema_definition_from)?,
        schema_extension: o.list("SchemaExtension", schema_definition_from)?,
        directives: o.list("Directives", directive_definition_from)?,
        definitions: o.list("Definitions", definition_from)?,
        extensions: o.list("Extensions", definition_from)?,
    })
}

fn schema_definition_from(v: &Value) -> Decoded<SchemaDefinition> {
    let o = Fields::of(v, false, "SchemaDefinition")?;
    Ok(SchemaDefinition {
        description: o.str("Description")?,
        directives: o.list("Directives", directive_from)?,
        operation_types: o.list("OperationTypes", |t| {
            let o = Fields::of(t, false, "OperationTypeDefinition")?;
            Ok(OperationTypeDefinition {
                operation: o.str("Operation")?,
                ty: o.str("Type")?,
                ..Default::default()
            })
        })?,
        ..Default::default()
    })
}

fn definition_from(v: &Value) -> Decoded<Definition> {
    let o = Fields::of(v, false, "Definition")?;
    Ok(Definition {
        kind: o.str("Kind")?,
        description: o.str("Description")?,
        name: o.str("Name")?,
        directives: o.list("Directives", directive_from)?,
        interfaces: o.strs("Interfaces")?,
        fields: o.list("Fields", field_definition_from)?,
        types: o.strs("Types")?,
        enum_values: o.list("EnumValues", |e| {
            let o = Fields::of(e, false, "EnumValueDefinition")?;
            Ok(EnumValueDefinition {
                description: o.str("Description")?,
                name: o.str("Name")?,
                directives: o.list("Directives", directive_from)?,
            })
        })?,
        built_in: o.bool("BuiltIn")?,
        ..Default::default()
    })
}

fn field_definition_from(v: &Value) -> Decoded<FieldDefinition> {
    let o = Fields::of(v, false, "FieldDefinition")?;
    Ok(FieldDefinition {
        description: o.str("Description")?,
        name: o.str("Name")?,
        arguments: o.list("Arguments", argument_definition_from)?,
        default_value: o.opt("DefaultValue", value_from)?,
        ty: o.opt("Type", type_from)?,
        directives: o.list("Directives", directive_from)?,
        ..Default::default()
    })
}

fn argument_definition_from(v: &Value) -> Decoded<ArgumentDefinition> {
    let o = Fields::of(v, false, "ArgumentDefinition")?;
    Ok(ArgumentDefinition {
        description: o.str("Description")?,
        name: o.str("Name")?,
        default_value: o.opt("DefaultValue", value_from)?,
        ty: o.opt("Type", type_from)?,
        directives: o.list("Directives", directive_from)?,
        ..Default::default()
    })
}

fn directive_definition_from(v: &Value) -> Decoded<DirectiveDefinition> {
    let o = Fields::of(v, false, "DirectiveDefinition")?;
    Ok(DirectiveDefinition {
        description: o.str("Description")?,
        name: o.str("Name")?,
        arguments: o.list("Arguments", argument_definition_from)?,
        locations: o.strs("Locations")?,
        is_repeatable: o.bool("IsRepeatable")?,
        ..Default::default()
    })
}

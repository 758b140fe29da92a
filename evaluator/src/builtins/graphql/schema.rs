//! Schema building and validation, as gqlparser's `ValidateSchemaDocument`
//! does it: extensions merged into their base types (or creating them),
//! root operation types resolved, every type and directive definition
//! checked (kinds, references, interface implementation, reserved names).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use super::ast::*;
use super::lexer::{Pos, go_quote};
use super::{GqlError, parser};

/// The type system gqlparser defines implicitly (scalars, introspection).
pub(crate) const PRELUDE: &str = include_str!("prelude.graphql");

/// The prelude, parsed once.
static PRELUDE_DOC: LazyLock<Result<SchemaDocument, GqlError>> =
    LazyLock::new(|| parser::parse_schema(PRELUDE, true));

/// A validated schema.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    pub(crate) types: HashMap<String, Definition>,
    pub(crate) directives: HashMap<String, DirectiveDefinition>,
    pub(crate) query: Option<String>,
    pub(crate) mutation: Option<String>,
    pub(crate) subscription: Option<String>,
    /// Object types that may stand for a union, interface or object name.
    pub(crate) possible_types: HashMap<String, Vec<String>>,
}

impl Schema {
    pub(crate) fn ty(&self, name: &str) -> Option<&Definition> {
        self.types.get(name)
    }

    /// The root type of an operation (`query`, `mutation`, `subscription`).
    pub(crate) fn root(&self, operation: &str) -> Option<&Definition> {
        let name = match operation {
            "query" | "" => self.query.as_ref(),
            "mutation" => self.mutation.as_ref(),
            "subscription" => self.subscription.as_ref(),
            _ => None,
        }?;
        self.types.get(name)
    }

    pub(crate) fn possible_types(&self, name: &str) -> &[String] {
        self.possible_types.get(name).map_or(&[], Vec::as_slice)
    }
}

fn err(pos: Pos, message: String) -> GqlError {
    GqlError { message, pos }
}

/// Builds a schema from `doc` with the prelude merged in first.
pub(crate) fn build(doc: &SchemaDocument) -> Result<Schema, GqlError> {
    let mut merged = PRELUDE_DOC.clone()?;
    merged.merge(doc.clone());
    validate_schema_document(merged)
}

fn validate_schema_document(doc: SchemaDocument) -> Result<Schema, GqlError> {
    let mut schema = Schema::default();
    let mut order: Vec<String> = Vec::new();
    for def in doc.definitions {
        if schema.types.contains_key(&def.name) {
            return Err(err(def.pos, format!("Cannot redeclare type {}.", def.name)));
        }
        order.push(def.name.clone());
        schema.types.insert(def.name.clone(), def);
    }
    for ext in doc.extensions {
        let def = schema.types.entry(ext.name.clone()).or_insert_with(|| {
            order.push(ext.name.clone());
            Definition {
                kind: ext.kind.clone(),
                name: ext.name.clone(),
                pos: ext.pos,
                ..Default::default()
            }
        });
        if def.kind != ext.kind {
            return Err(err(
                ext.pos,
                format!(
                    "Cannot extend type {} because the base type is a {}, not {}.",
                    ext.name, def.kind, ext.kind
                ),
            ));
        }
        def.directives.extend(ext.directives);
        def.interfaces.extend(ext.interfaces);
        def.fields.extend(ext.fields);
        def.types.extend(ext.types);
        def.enum_values.extend(ext.enum_values);
    }
    for name in &order {
        let Some(def) = schema.types.get(name) else {
            continue;
        };
        let mut add = |of: &str, ty: &str| {
            schema
                .possible_types
                .entry(of.to_string())
                .or_default()
                .push(ty.to_string());
        };
        match def.kind.as_str() {
            def_kind::UNION => {
                for t in &def.types {
                    if schema.types.contains_key(t) {
                        add(&def.name, t);
                    }
                }
            }
            def_kind::INPUT_OBJECT | def_kind::OBJECT => {
                for intf in &def.interfaces {
                    add(intf, &def.name);
                }
                add(&def.name, &def.name);
            }
            def_kind::INTERFACE => {
                for intf in &def.interfaces {
                    add(intf, &def.name);
                }
            }
            _ => {}
        }
    }
    for dir in doc.directives {
        if schema.directives.contains_key(&dir.name) {
            if matches!(
                dir.name.as_str(),
                "include" | "skip" | "deprecated" | "specifiedBy"
            ) {
                continue;
            }
            return Err(err(
                dir.pos,
                format!("Cannot redeclare directive {}.", dir.name),
            ));
        }
        schema.directives.insert(dir.name.clone(), dir);
    }
    if let Some(second) = doc.schema.get(1) {
        return Err(err(
            second.pos,
            "Cannot have multiple schema entry points, consider schema extensions instead."
                .to_string(),
        ));
    }
    for def in doc.schema.iter().chain(&doc.schema_extension) {
        for entry in &def.operation_types {
            if !schema.types.contains_key(&entry.ty) {
                return Err(err(
                    entry.pos,
                    format!(
                        "Schema root {} refers to a type {} that does not exist.",
                        entry.operation, entry.ty
                    ),
                ));
            }
            let slot = match entry.operation.as_str() {
                "query" => &mut schema.query,
                "mutation" => &mut schema.mutation,
                "subscription" => &mut schema.subscription,
                _ => continue,
            };
            *slot = Some(entry.ty.clone());
        }
    }

    let sorted: BTreeMap<&String, &Definition> = schema.types.iter().collect();
    for def in sorted.values() {
        validate_definition(&schema, def)?;
    }
    let sorted: BTreeMap<&String, &DirectiveDefinition> = schema.directives.iter().collect();
    for dir in sorted.values() {
        validate_name(dir.pos, &dir.name)?;
        validate_args(&schema, &dir.arguments, Some(dir))?;
    }

    if doc.schema.is_empty() {
        for (slot, name) in [
            (&mut schema.query, "Query"),
            (&mut schema.mutation, "Mutation"),
            (&mut schema.subscription, "Subscription"),
        ] {
            if slot.is_none() && schema.types.contains_key(name) {
                *slot = Some(name.to_string());
            }
        }
    }
    if let Some(query) = schema.query.clone()
        && let Some(def) = schema.types.get_mut(&query)
    {
        def.fields.push(FieldDefinition {
            name: "__schema".to_string(),
            ty: Some(Type::named("__Schema", true)),
            ..Default::default()
        });
        def.fields.push(FieldDefinition {
            name: "__type".to_string(),
            ty: Some(Type::named("__Type", false)),
            arguments: vec![ArgumentDefinition {
                name: "name".to_string(),
                ty: Some(Type::named("String", true)),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Ok(schema)
}

fn kinds(kinds: &[&str]) -> String {
    kinds.join(", ")
}

fn type_of(ty: &Option<Type>, pos: Pos) -> Result<&Type, GqlError> {
    ty.as_ref()
        .ok_or_else(|| err(pos, "Undefined type .".to_string()))
}

fn validate_definition(schema: &Schema, def: &Definition) -> Result<(), GqlError> {
    for field in &def.fields {
        validate_name(field.pos, &field.name)?;
        validate_type_ref(schema, type_of(&field.ty, field.pos)?)?;
        validate_args(schema, &field.arguments, None)?;
        let location = if def.kind == def_kind::INPUT_OBJECT {
            "INPUT_FIELD_DEFINITION"
        } else {
            "FIELD_DEFINITION"
        };
        validate_directives(schema, &field.directives, location, None)?;
    }
    for typ in &def.types {
        let Some(member) = schema.ty(typ) else {
            return Err(err(def.pos, format!("Undefined type {}.", go_quote(typ))));
        };
        if member.kind != def_kind::OBJECT {
            return Err(err(
                def.pos,
                format!(
                    "{} type {} must be {}.",
                    def.kind,
                    go_quote(typ),
                    def_kind::OBJECT
                ),
            ));
        }
    }
    for intf in &def.interfaces {
        validate_implements(schema, def, intf)?;
    }
    match def.kind.as_str() {
        def_kind::OBJECT | def_kind::INTERFACE => {
            if def.fields.is_empty() {
                return Err(err(
                    def.pos,
                    format!("{} {}: must define one or more fields.", def.kind, def.name),
                ));
            }
            let allowed = [
                def_kind::SCALAR,
                def_kind::OBJECT,
                def_kind::INTERFACE,
                def_kind::UNION,
                def_kind::ENUM,
            ];
            for field in &def.fields {
                let ty = type_of(&field.ty, field.pos)?;
                if let Some(t) = schema.ty(ty.name())
                    && !allowed.contains(&t.kind.as_str())
                {
                    return Err(err(
                        field.pos,
                        format!(
                            "{} {}: field must be one of {}.",
                            def.kind,
                            def.name,
                            kinds(&allowed)
                        ),
                    ));
                }
            }
        }
        def_kind::ENUM => {
            if def.enum_values.is_empty() {
                return Err(err(
                    def.pos,
                    format!(
                        "{} {}: must define one or more unique enum values.",
                        def.kind, def.name
                    ),
                ));
            }
            for value in &def.enum_values {
                if matches!(value.name.as_str(), "true" | "false" | "null") {
                    return Err(err(
                        def.pos,
                        format!("{} {}: non-enum value {}.", def.kind, def.name, value.name),
                    ));
                }
            }
        }
        def_kind::INPUT_OBJECT => {
            if def.fields.is_empty() {
                return Err(err(
                    def.pos,
                    format!(
                        "{} {}: must define one or more input fields.",
                        def.kind, def.name
                    ),
                ));
            }
            let allowed = [def_kind::SCALAR, def_kind::ENUM, def_kind::INPUT_OBJECT];
            for field in &def.fields {
                let ty = type_of(&field.ty, field.pos)?;
                if let Some(t) = schema.ty(ty.name())
                    && !allowed.contains(&t.kind.as_str())
                {
                    return Err(err(
                        field.pos,
                        format!(
                            "{} {}: field must be one of {}.",
                            t.kind,
                            field.name,
                            kinds(&allowed)
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, f1) in def.fields.iter().enumerate() {
        if let Some(f2) = def.fields[i + 1..].iter().find(|f2| f2.name == f1.name) {
            return Err(err(
                f2.pos,
                format!("Field {}.{} can only be defined once.", def.name, f2.name),
            ));
        }
    }
    if !def.built_in {
        validate_name(def.pos, &def.name)?;
    }
    validate_directives(schema, &def.directives, &def.kind, None)
}

fn validate_type_ref(schema: &Schema, ty: &Type) -> Result<(), GqlError> {
    if schema.ty(ty.name()).is_none() {
        return Err(err(ty.pos, format!("Undefined type {}.", ty.name())));
    }
    Ok(())
}

fn validate_args(
    schema: &Schema,
    args: &[ArgumentDefinition],
    current: Option<&DirectiveDefinition>,
) -> Result<(), GqlError> {
    for arg in args {
        validate_name(arg.pos, &arg.name)?;
        let ty = type_of(&arg.ty, arg.pos)?;
        validate_type_ref(schema, ty)?;
        if let Some(def) = schema.ty(ty.name())
            && !def.is_input()
        {
            return Err(err(
                arg.pos,
                format!(
                    "cannot use {} as argument {} because {} is not a valid input type",
                    ty.render(),
                    arg.name,
                    def.kind
                ),
            ));
        }
        validate_directives(schema, &arg.directives, "ARGUMENT_DEFINITION", current)?;
    }
    Ok(())
}

fn validate_directives(
    schema: &Schema,
    dirs: &[Directive],
    location: &str,
    current: Option<&DirectiveDefinition>,
) -> Result<(), GqlError> {
    for dir in dirs {
        validate_name(dir.pos, &dir.name)?;
        if let Some(current) = current
            && dir.name == current.name
        {
            return Err(err(
                dir.pos,
                format!("Directive {} cannot refer to itself.", current.name),
            ));
        }
        let Some(def) = schema.directives.get(&dir.name) else {
            return Err(err(dir.pos, format!("Undefined directive {}.", dir.name)));
        };
        if !def.locations.iter().any(|l| l == location) {
            return Err(err(
                dir.pos,
                format!("Directive {} is not applicable on {}.", dir.name, location),
            ));
        }
    }
    Ok(())
}

fn validate_implements(schema: &Schema, def: &Definition, intf_name: &str) -> Result<(), GqlError> {
    let Some(intf) = schema.ty(intf_name) else {
        return Err(err(
            def.pos,
            format!("Undefined type {}.", go_quote(intf_name)),
        ));
    };
    if intf.kind != def_kind::INTERFACE {
        return Err(err(
            def.pos,
            format!(
                "{} is a non interface type {}.",
                go_quote(intf_name),
                intf.kind
            ),
        ));
    }
    for required in &intf.fields {
        let Some(found) = def.field(&required.name) else {
            return Err(err(
                def.pos,
                format!(
                    "For {} to implement {} it must have a field called {}.",
                    def.name, intf.name, required.name
                ),
            ));
        };
        let (Some(req_ty), Some(found_ty)) = (&required.ty, &found.ty) else {
            return Err(err(found.pos, "Undefined type .".to_string()));
        };
        if !is_covariant(schema, req_ty, found_ty) {
            return Err(err(
                found.pos,
                format!(
                    "For {} to implement {} the field {} must have type {}.",
                    def.name,
                    intf.name,
                    required.name,
                    req_ty.render()
                ),
            ));
        }
        for req_arg in &required.arguments {
            let Some(found_arg) = found.arguments.iter().find(|a| a.name == req_arg.name) else {
                return Err(err(
                    found.pos,
                    format!(
                        "For {} to implement {} the field {} must have the same arguments but it is missing {}.",
                        def.name, intf.name, required.name, req_arg.name
                    ),
                ));
            };
            let compatible = match (&req_arg.ty, &found_arg.ty) {
                (Some(a), Some(b)) => a.is_compatible(b),
                _ => false,
            };
            if !compatible {
                return Err(err(
                    found_arg.pos,
                    format!(
                        "For {} to implement {} the field {} must have the same arguments but {} has the wrong type.",
                        def.name, intf.name, required.name, req_arg.name
                    ),
                ));
            }
        }
        for extra in &found.arguments {
            let required_here = required.arguments.iter().any(|a| a.name == extra.name);
            let non_null = extra.ty.as_ref().is_some_and(|t| t.non_null);
            if !required_here && non_null && extra.default_value.is_none() {
                return Err(err(
                    extra.pos,
                    format!(
                        "For {} to implement {} any additional arguments on {} must be optional or have a default value but {} is required.",
                        def.name, intf.name, found.name, extra.name
                    ),
                ));
            }
        }
    }
    for transitive in &intf.interfaces {
        if !def.interfaces.contains(transitive) {
            if *transitive == def.name {
                return Err(err(
                    def.pos,
                    format!(
                        "Type {} cannot implement {} because it would create a circular reference.",
                        def.name, intf_name
                    ),
                ));
            }
            return Err(err(
                def.pos,
                format!(
                    "Type {} must implement {} because it is implemented by {}.",
                    def.name, transitive, intf_name
                ),
            ));
        }
    }
    Ok(())
}

fn is_covariant(schema: &Schema, required: &Type, actual: &Type) -> bool {
    if required.non_null && !actual.non_null {
        return false;
    }
    if !required.named_type.is_empty() {
        if required.named_type == actual.named_type {
            return true;
        }
        return schema
            .possible_types(&required.named_type)
            .contains(&actual.named_type);
    }
    match (&required.elem, &actual.elem) {
        (Some(_), None) | (None, _) => false,
        (Some(r), Some(a)) => is_covariant(schema, r, a),
    }
}

fn validate_name(pos: Pos, name: &str) -> Result<(), GqlError> {
    if name.starts_with("__") {
        return Err(err(
            pos,
            format!(
                "Name \"{name}\" must not begin with \"__\", which is reserved by GraphQL introspection."
            ),
        ));
    }
    Ok(())
}

//! The validation rules, grouped by the walker event they observe (each
//! check is labelled with its name in the GraphQL specification).

use std::collections::{HashMap, HashSet};

use super::{Expect, Walker, values};
use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::suggest::with_suggestions;

impl<'a> Walker<'a> {
    pub(super) fn on_operation(
        &mut self,
        op: &'a OperationDefinition,
        root: Option<&'a Definition>,
    ) {
        // KnownRootType
        if root.is_none() {
            self.error(
                op.pos,
                format!(
                    "Schema does not support operation type \"{}\"",
                    op.operation
                ),
            );
        }
        for var in &op.variable_definitions {
            // KnownTypeNames
            let name = var.ty.as_ref().map_or("", |t| t.name());
            if self.schema.ty(name).is_none() {
                self.error(var.pos, format!("Unknown type \"{name}\"."));
            }
        }
        // LoneAnonymousOperation
        if op.name.is_empty() && self.doc.operations.len() > 1 {
            self.error(
                op.pos,
                "This anonymous operation must be the only defined operation.".to_string(),
            );
        }
        // NoUnusedVariables
        for var in &op.variable_definitions {
            if !self.used_vars.contains(&var.variable) {
                let message = if op.name.is_empty() {
                    format!("Variable \"${}\" is never used.", var.variable)
                } else {
                    format!(
                        "Variable \"${}\" is never used in operation \"{}\".",
                        var.variable, op.name
                    )
                };
                self.error(var.pos, message);
            }
        }
        // OverlappingFieldsCanBeMerged
        self.check_overlap(&op.selection_set);
        // SingleFieldSubscriptions
        if op.operation == "subscription" && self.schema.subscription.is_some() {
            self.single_field_subscription(op);
        }
        // UniqueOperationNames
        if !self.seen_operations.insert(op.name.clone()) {
            self.error(
                op.pos,
                format!("There can be only one operation named \"{}\".", op.name),
            );
        }
        // UniqueVariableNames
        let mut seen = HashSet::new();
        for var in &op.variable_definitions {
            if !seen.insert(var.variable.as_str()) {
                self.error(
                    var.pos,
                    format!(
                        "There can be only one variable named \"${}\".",
                        var.variable
                    ),
                );
            }
        }
        // VariablesAreInputTypes
        for var in &op.variable_definitions {
            if let Some(def) = self.type_of(var.ty.as_ref())
                && !def.is_input()
            {
                let rendered = var.ty.as_ref().map(Type::render).unwrap_or_default();
                self.error(
                    var.pos,
                    format!(
                        "Variable \"${}\" cannot be non-input type \"{}\".",
                        var.variable, rendered
                    ),
                );
            }
        }
    }

    pub(super) fn on_fragment(
        &mut self,
        frag: &'a FragmentDefinition,
        def: Option<&'a Definition>,
    ) {
        // FragmentsOnCompositeTypes
        if let Some(def) = def
            && !frag.type_condition.is_empty()
            && !def.is_composite()
        {
            self.error(
                frag.pos,
                format!(
                    "Fragment \"{}\" cannot condition on non composite type \"{}\".",
                    frag.name, frag.type_condition
                ),
            );
        }
        // KnownTypeNames
        if def.is_none() {
            self.error(
                frag.pos,
                format!("Unknown type \"{}\".", frag.type_condition),
            );
        }
        // NoFragmentCycles
        let mut path: Vec<&'a FragmentSpread> = Vec::new();
        let mut index: HashMap<&'a str, usize> = HashMap::new();
        self.fragment_cycles(frag, &mut path, &mut index);
        // NoUnusedFragments
        self.in_fragment_definition = true;
        if !self.fragments_used.contains(&frag.name) {
            self.error(
                frag.pos,
                format!("Fragment \"{}\" is never used.", frag.name),
            );
        }
        // UniqueFragmentNames
        if !self.seen_fragments.insert(frag.name.clone()) {
            self.error(
                frag.pos,
                format!("There can be only one fragment named \"{}\".", frag.name),
            );
        }
    }

    pub(super) fn on_directive(
        &mut self,
        dir: &'a Directive,
        def: Option<&'a DirectiveDefinition>,
        location: &str,
    ) {
        // KnownArgumentNames
        if let Some(def) = def {
            for arg in &dir.arguments {
                if !def.arguments.iter().any(|a| a.name == arg.name) {
                    let known: Vec<String> = def.arguments.iter().map(|a| a.name.clone()).collect();
                    let message = format!(
                        "Unknown argument \"{}\" on directive \"@{}\".",
                        arg.name, dir.name
                    );
                    let message = with_suggestions(message, "Did you mean", &arg.name, &known);
                    self.error(arg.pos, message);
                }
            }
        }
        // KnownDirectives
        match def {
            None => self.error(dir.pos, format!("Unknown directive \"@{}\".", dir.name)),
            Some(def) if !def.locations.iter().any(|l| l == location) => self.error(
                dir.pos,
                format!(
                    "Directive \"@{}\" may not be used on {}.",
                    dir.name, location
                ),
            ),
            Some(_) => {}
        }
        // ProvidedRequiredArguments
        if let Some(def) = def {
            for arg_def in &def.arguments {
                if is_required(arg_def) && !dir.arguments.iter().any(|a| a.name == arg_def.name) {
                    let ty = arg_def.ty.as_ref().map(Type::render).unwrap_or_default();
                    self.error(
                        dir.pos,
                        format!(
                            "Directive \"@{}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                            dir.name, arg_def.name, ty
                        ),
                    );
                }
            }
        }
        // UniqueArgumentNames
        self.unique_arguments(&dir.arguments);
    }

    fn unique_arguments(&mut self, args: &'a [Argument]) {
        let mut seen = HashSet::new();
        for arg in args {
            if !seen.insert(arg.name.as_str()) {
                self.error(
                    arg.pos,
                    format!("There can be only one argument named \"{}\".", arg.name),
                );
            }
        }
    }

    pub(super) fn on_field(
        &mut self,
        field: &'a Field,
        def: Option<&'a FieldDefinition>,
        parent: Option<&'a Definition>,
        next: Option<&'a Definition>,
    ) {
        // FieldsOnCorrectType
        if let Some(parent) = parent
            && def.is_none()
        {
            let message = self.unknown_field_message(parent, &field.name);
            self.error(field.pos, message);
        }
        let Some(def) = def else {
            self.unique_arguments(&field.arguments);
            return;
        };
        // KnownArgumentNames
        if let Some(parent) = parent {
            for arg in &field.arguments {
                if !def.arguments.iter().any(|a| a.name == arg.name) {
                    let known: Vec<String> = def.arguments.iter().map(|a| a.name.clone()).collect();
                    let message = format!(
                        "Unknown argument \"{}\" on field \"{}.{}\".",
                        arg.name, parent.name, field.name
                    );
                    let message = with_suggestions(message, "Did you mean", &arg.name, &known);
                    self.error(arg.pos, message);
                }
            }
        }
        // ProvidedRequiredArguments
        for arg_def in &def.arguments {
            if is_required(arg_def) && !field.arguments.iter().any(|a| a.name == arg_def.name) {
                let ty = arg_def.ty.as_ref().map(Type::render).unwrap_or_default();
                self.error(
                    field.pos,
                    format!(
                        "Field \"{}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                        field.name, arg_def.name, ty
                    ),
                );
            }
        }
        // ScalarLeafs
        if let Some(field_type) = next {
            if field_type.is_leaf() && !field.selection_set.is_empty() {
                self.error(
                    field.pos,
                    format!(
                        "Field \"{}\" must not have a selection since type \"{}\" has no subfields.",
                        field.name, field_type.name
                    ),
                );
            }
            if !field_type.is_leaf() && field.selection_set.is_empty() {
                let ty = def.ty.as_ref().map(Type::render).unwrap_or_default();
                self.error(
                    field.pos,
                    format!(
                        "Field \"{}\" of type \"{}\" must have a selection of subfields.",
                        field.name, ty
                    ),
                );
            }
        }
        // UniqueArgumentNames
        self.unique_arguments(&field.arguments);
    }

    pub(super) fn on_inline_fragment(
        &mut self,
        frag: &'a InlineFragment,
        parent: Option<&'a Definition>,
    ) {
        if frag.type_condition.is_empty() {
            return;
        }
        let frag_type = self.schema.ty(&frag.type_condition);
        // FragmentsOnCompositeTypes
        if let Some(t) = frag_type
            && !t.is_composite()
        {
            self.error(
                frag.pos,
                format!(
                    "Fragment cannot condition on non composite type \"{}\".",
                    frag.type_condition
                ),
            );
        }
        // KnownTypeNames
        if frag_type.is_none() {
            self.error(
                frag.pos,
                format!("Unknown type \"{}\".", frag.type_condition),
            );
        }
        // PossibleFragmentSpreads
        if !self.spread_possible(parent, &frag.type_condition) {
            let parent_name = parent.map_or("", |p| p.name.as_str());
            self.error(
                frag.pos,
                format!(
                    "Fragment cannot be spread here as objects of type \"{}\" can never be of type \"{}\".",
                    parent_name, frag.type_condition
                ),
            );
        }
    }

    pub(super) fn on_fragment_spread(
        &mut self,
        spread: &'a FragmentSpread,
        def: Option<&'a FragmentDefinition>,
        parent: Option<&'a Definition>,
    ) {
        // KnownFragmentNames
        let Some(def) = def else {
            self.error(spread.pos, format!("Unknown fragment \"{}\".", spread.name));
            if !self.in_fragment_definition {
                self.fragments_used.insert(spread.name.clone());
            }
            return;
        };
        // NoUnusedFragments
        if !self.in_fragment_definition {
            self.fragments_used.insert(spread.name.clone());
        }
        // PossibleFragmentSpreads
        if !self.spread_possible(parent, &def.type_condition) {
            let parent_name = parent.map_or("", |p| p.name.as_str());
            self.error(
                spread.pos,
                format!(
                    "Fragment \"{}\" cannot be spread here as objects of type \"{}\" can never be of type \"{}\".",
                    spread.name, parent_name, def.type_condition
                ),
            );
        }
    }

    pub(super) fn on_value(
        &mut self,
        value: &'a Value,
        expect: Expect<'a>,
        var_def: Option<&'a VariableDefinition>,
    ) {
        // NoUndefinedVariables
        if value.kind == value_kind::VARIABLE
            && var_def.is_none()
            && let Some(op) = self.current_op
        {
            let message = if op.name.is_empty() {
                format!("Variable \"{}\" is not defined.", value.describe())
            } else {
                format!(
                    "Variable \"{}\" is not defined by operation \"{}\".",
                    value.describe(),
                    op.name
                )
            };
            self.error(value.pos, message);
        }
        // UniqueInputFieldNames
        if value.kind == value_kind::OBJECT {
            let mut seen = HashSet::new();
            for child in &value.children {
                if !seen.insert(child.name.as_str()) {
                    self.error(
                        child.pos,
                        format!(
                            "There can be only one input field named \"{}\".",
                            child.name
                        ),
                    );
                }
            }
        }
        // ValuesOfCorrectType
        if let Some(messages) = values::check(value, expect.ty, expect.def) {
            for (pos, message) in messages {
                self.error(pos, message);
            }
        }
        // VariablesInAllowedPosition
        if value.kind == value_kind::VARIABLE
            && self.current_op.is_some()
            && let (Some(expected), Some(var_def)) = (expect.ty, var_def)
        {
            let mut wanted = expected.clone();
            let var_has_default = var_def
                .default_value
                .as_ref()
                .is_some_and(|v| v.kind != value_kind::NULL);
            if (var_has_default || expect.has_default) && wanted.non_null {
                wanted.non_null = false;
            }
            let compatible = var_def
                .ty
                .as_ref()
                .is_some_and(|t| t.is_compatible(&wanted));
            if !compatible {
                let var_ty = var_def.ty.as_ref().map(Type::render).unwrap_or_default();
                self.error(
                    value.pos,
                    format!(
                        "Variable \"{}\" of type \"{}\" used in position expecting type \"{}\".",
                        value.describe(),
                        var_ty,
                        expected.render()
                    ),
                );
            }
        }
    }
}

fn is_required(arg: &ArgumentDefinition) -> bool {
    arg.ty.as_ref().is_some_and(|t| t.non_null) && arg.default_value.is_none()
}

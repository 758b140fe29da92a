//! Query validation against a schema: gqlparser's walker and its standard
//! rule set (the GraphQL specification's validation section).

use std::collections::HashSet;

mod lookups;
mod overlap;
mod rules;
mod values;

use self::overlap::{ComparedPairs, FieldInfo, FieldInfos, Overlap};
use super::GqlError;
use super::ast::*;
use super::lexer::Pos;
use super::schema::Schema;

/// Validates `doc` against `schema`, returning every error in walk order.
pub(crate) fn validate(schema: &Schema, doc: &QueryDocument) -> Vec<GqlError> {
    let typename = FieldDefinition {
        name: "__typename".to_string(),
        ty: Some(Type::named("String", false)),
        ..Default::default()
    };
    let mut w = Walker {
        schema,
        doc,
        typename: &typename,
        errors: Vec::new(),
        current_op: None,
        used_vars: HashSet::new(),
        visited_spreads: HashSet::new(),
        fragments_used: HashSet::new(),
        in_fragment_definition: false,
        seen_fragments: HashSet::new(),
        seen_operations: HashSet::new(),
        cycle_checked: HashSet::new(),
        field_infos: FieldInfos::new(),
        compared_pairs: ComparedPairs::new(),
    };
    for op in &doc.operations {
        w.visited_spreads.clear();
        w.walk_operation(op);
    }
    for frag in &doc.fragments {
        w.visited_spreads.clear();
        w.walk_fragment(frag);
    }
    w.errors
}

struct Walker<'a> {
    schema: &'a Schema,
    doc: &'a QueryDocument,
    typename: &'a FieldDefinition,
    errors: Vec<GqlError>,
    current_op: Option<&'a OperationDefinition>,
    used_vars: HashSet<String>,
    visited_spreads: HashSet<String>,
    fragments_used: HashSet<String>,
    in_fragment_definition: bool,
    seen_fragments: HashSet<String>,
    seen_operations: HashSet<String>,
    cycle_checked: HashSet<String>,
    /// What each field node was last resolved to (read by the overlap rule).
    field_infos: FieldInfos<'a>,
    compared_pairs: ComparedPairs,
}

/// What a value is expected to be where it appears.
#[derive(Clone, Copy, Default)]
struct Expect<'a> {
    ty: Option<&'a Type>,
    has_default: bool,
    def: Option<&'a Definition>,
}

impl<'a> Walker<'a> {
    fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(GqlError { message, pos });
    }

    fn fragment(&self, name: &str) -> Option<&'a FragmentDefinition> {
        self.doc.fragments.iter().find(|f| f.name == name)
    }

    /// OverlappingFieldsCanBeMerged for one selection set, once the fields
    /// below it are resolved.
    fn check_overlap(&mut self, set: &'a [Selection]) {
        let mut overlap = Overlap::new(
            self.schema,
            self.doc,
            &self.field_infos,
            &mut self.compared_pairs,
        );
        let errors = overlap.within(set);
        self.errors.extend(errors);
    }

    fn type_of(&self, ty: Option<&Type>) -> Option<&'a Definition> {
        ty.and_then(|t| self.schema.ty(t.name()))
    }

    fn walk_operation(&mut self, op: &'a OperationDefinition) {
        self.current_op = Some(op);
        self.used_vars = op
            .variable_definitions
            .iter()
            .filter(|v| v.used)
            .map(|v| v.variable.clone())
            .collect();
        let root = self.schema.root(&op.operation);
        let location = match op.operation.as_str() {
            "mutation" => "MUTATION",
            "subscription" => "SUBSCRIPTION",
            _ => "QUERY",
        };
        self.walk_directives(root, &op.directives, location);
        for var in &op.variable_definitions {
            let def = self.type_of(var.ty.as_ref());
            if let Some(default) = &var.default_value {
                let expect = Expect {
                    ty: var.ty.as_ref(),
                    has_default: false,
                    def,
                };
                self.walk_value(default, expect);
            }
            self.walk_directives(def, &var.directives, "VARIABLE_DEFINITION");
        }
        self.walk_selection_set(root, &op.selection_set);
        self.on_operation(op, root);
        self.current_op = None;
    }

    fn walk_fragment(&mut self, frag: &'a FragmentDefinition) {
        let def = self.schema.ty(&frag.type_condition);
        self.on_fragment(frag, def);
        self.walk_directives(def, &frag.directives, "FRAGMENT_DEFINITION");
        self.walk_selection_set(def, &frag.selection_set);
        self.check_overlap(&frag.selection_set);
    }

    fn walk_directives(
        &mut self,
        parent: Option<&'a Definition>,
        dirs: &'a [Directive],
        location: &str,
    ) {
        let _ = parent;
        for dir in dirs {
            let def = self.schema.directives.get(&dir.name);
            self.on_directive(dir, def, location);
            for arg in &dir.arguments {
                let arg_def = def.and_then(|d| d.arguments.iter().find(|a| a.name == arg.name));
                self.walk_argument(arg_def, arg);
            }
        }
        // UniqueDirectivesPerLocation
        let mut seen = HashSet::new();
        for dir in dirs {
            let repeatable = self
                .schema
                .directives
                .get(&dir.name)
                .is_some_and(|d| d.is_repeatable);
            if !seen.insert(dir.name.as_str()) && !repeatable {
                self.error(
                    dir.pos,
                    format!(
                        "The directive \"@{}\" can only be used once at this location.",
                        dir.name
                    ),
                );
            }
        }
    }

    fn walk_argument(&mut self, arg_def: Option<&'a ArgumentDefinition>, arg: &'a Argument) {
        let Some(value) = &arg.value else {
            return;
        };
        let expect = match arg_def {
            Some(d) => Expect {
                ty: d.ty.as_ref(),
                has_default: d
                    .default_value
                    .as_ref()
                    .is_some_and(|v| v.kind != value_kind::NULL),
                def: self.type_of(d.ty.as_ref()),
            },
            None => Expect::default(),
        };
        self.walk_value(value, expect);
    }

    fn walk_value(&mut self, value: &'a Value, expect: Expect<'a>) {
        let mut var_def = None;
        if value.kind == value_kind::VARIABLE
            && let Some(op) = self.current_op
        {
            var_def = op
                .variable_definitions
                .iter()
                .find(|v| v.variable == value.raw);
            if var_def.is_some() {
                self.used_vars.insert(value.raw.clone());
            }
        }
        self.on_value(value, expect, var_def);
        if value.kind == value_kind::OBJECT {
            for child in &value.children {
                let Some(child_value) = &child.value else {
                    continue;
                };
                let field = expect.def.and_then(|d| d.field(&child.name));
                let child_expect = match field {
                    Some(f) => Expect {
                        ty: f.ty.as_ref(),
                        has_default: f
                            .default_value
                            .as_ref()
                            .is_some_and(|v| v.kind != value_kind::NULL),
                        def: self.type_of(f.ty.as_ref()),
                    },
                    None => Expect::default(),
                };
                self.walk_value(child_value, child_expect);
            }
        }
        if value.kind == value_kind::LIST {
            for child in &value.children {
                let Some(child_value) = &child.value else {
                    continue;
                };
                let child_expect = match expect.ty.and_then(|t| t.elem.as_deref()) {
                    Some(elem) => Expect {
                        ty: Some(elem),
                        has_default: false,
                        def: expect.def,
                    },
                    None => Expect::default(),
                };
                self.walk_value(child_value, child_expect);
            }
        }
    }

    fn walk_selection_set(&mut self, parent: Option<&'a Definition>, set: &'a [Selection]) {
        for sel in set {
            self.walk_selection(parent, sel);
        }
    }

    fn walk_selection(&mut self, parent: Option<&'a Definition>, sel: &'a Selection) {
        match sel {
            Selection::Field(field) => {
                let def = if field.name == "__typename" {
                    Some(self.typename)
                } else {
                    parent.and_then(|p| p.field(&field.name))
                };
                let next = def.and_then(|d| self.type_of(d.ty.as_ref()));
                self.field_infos
                    .insert(std::ptr::from_ref(field), FieldInfo { def, parent });
                self.on_field(field, def, parent, next);
                for arg in &field.arguments {
                    let arg_def = def.and_then(|d| d.arguments.iter().find(|a| a.name == arg.name));
                    self.walk_argument(arg_def, arg);
                }
                self.walk_directives(next, &field.directives, "FIELD");
                self.walk_selection_set(next, &field.selection_set);
                if self.current_op.is_some() {
                    self.check_overlap(&field.selection_set);
                }
            }
            Selection::InlineFragment(frag) => {
                let next = if frag.type_condition.is_empty() {
                    parent
                } else {
                    self.schema.ty(&frag.type_condition)
                };
                self.on_inline_fragment(frag, parent);
                self.walk_directives(next, &frag.directives, "INLINE_FRAGMENT");
                self.walk_selection_set(next, &frag.selection_set);
                self.check_overlap(&frag.selection_set);
            }
            Selection::FragmentSpread(spread) => {
                let def = self.fragment(&spread.name);
                let next = def.and_then(|d| self.schema.ty(&d.type_condition));
                self.on_fragment_spread(spread, def, parent);
                self.walk_directives(next, &spread.directives, "FRAGMENT_SPREAD");
                if let Some(def) = def
                    && self.visited_spreads.insert(def.name.clone())
                {
                    self.walk_selection_set(next, &def.selection_set);
                }
            }
        }
    }
}

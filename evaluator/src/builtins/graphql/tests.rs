use regorus::Value;

use super::call;
use crate::builtins::BuiltinError;

fn s(v: &str) -> Value {
    Value::from(v)
}

fn json(text: &str) -> Value {
    Value::from_json_str(text).expect("test JSON is valid")
}

fn error_reason(name: &str, args: &[Value]) -> String {
    match call(name, args) {
        Err(BuiltinError::Invalid { reason, .. }) => reason,
        other => panic!("expected a builtin error from {name}, got {other:?}"),
    }
}

fn is_valid(query: &str, schema: &str) -> bool {
    call("graphql.is_valid", &[s(query), s(schema)]) == Ok(Value::from(true))
}

fn schema_is_valid(schema: &str) -> bool {
    call("graphql.schema_is_valid", &[s(schema)]) == Ok(Value::from(true))
}

/// The reason `query` fails validation against `schema`.
fn validation_error(query: &str, schema: &str) -> String {
    error_reason("graphql.parse", &[s(query), s(schema)])
}

const SCHEMA: &str = r#"
  type Query {
    hero(episode: Episode): Character
    search(text: String!): [SearchResult]
    count(limit: Int = 10): Int
  }
  enum Episode { NEWHOPE EMPIRE JEDI }
  interface Character { id: ID! name: String friends: [Character] }
  type Human implements Character { id: ID! name: String friends: [Character] height: Float }
  type Droid implements Character { id: ID! name: String friends: [Character] primaryFunction: String }
  type Starship { id: ID! name: String }
  union SearchResult = Human | Droid | Starship
  input Filter { name: String! tag: String }
  type Mutation { tag(filter: Filter): Boolean }
"#;

#[test]
fn parse_query_errors_use_gqlparser_messages_and_positions() {
    let cases = [
        (
            "{",
            "Expected Name, found <EOF> in GraphQL string at location 1:2",
        ),
        (
            "notanoperation Foo { field }",
            "Unexpected Name \"notanoperation\" in GraphQL string at location 1:1",
        ),
        ("...", "Unexpected ... in GraphQL string at location 1:1"),
        (
            "{ foo: {} }",
            "Expected Name, found { in GraphQL string at location 1:8",
        ),
        (
            "query Foo($x: Complex = { a: { b: [ $var ] } }) { field }",
            "Unexpected $ in GraphQL string at location 1:37",
        ),
        (
            "fragment on on on { on }",
            "Unexpected Name \"on\" in GraphQL string at location 1:10",
        ),
        (
            "{__typename{...}}",
            "Expected {, found } in GraphQL string at location 1:16",
        ),
        (
            "{...{__typename{...{}}}}",
            "expected at least one definition, found } in GraphQL string at location 1:21",
        ),
    ];
    for (query, want) in cases {
        assert_eq!(
            error_reason("graphql.parse_query", &[s(query)]),
            want,
            "query {query:?}"
        );
    }
}

#[test]
fn parse_schema_errors_use_gqlparser_messages_and_positions() {
    let cases = [
        (
            "type Hello {}",
            "expected at least one definition, found } in GraphQL string at location 1:13",
        ),
        (
            "extend type Hello",
            "Unexpected <EOF> in GraphQL string at location 1:18",
        ),
        (
            "\n  \"Description\"\n  extend type Hello {\n    world: String\n  }\n",
            "Unexpected String \"Description\" in GraphQL string at location 2:4",
        ),
        (
            "union Hello = || Wo | Rld",
            "Expected Name, found | in GraphQL string at location 1:16",
        ),
        (
            "input Hello {\n  world(foo: Int): String\n}",
            "Expected :, found ( in GraphQL string at location 2:8",
        ),
        (
            "directive @foo on FIELD | INCORRECT_LOCATION",
            "Unexpected Name \"INCORRECT_LOCATION\" in GraphQL string at location 1:27",
        ),
        (
            "type o{d(g:[",
            "Expected Name, found <EOF> in GraphQL string at location 1:13",
        ),
        (
            "\"\"\"\r",
            "Unexpected <Invalid> in GraphQL string at location 2:1",
        ),
        (
            "scalar Foo \"bad",
            "Unexpected <Invalid> in GraphQL string at location 1:16",
        ),
    ];
    for (schema, want) in cases {
        assert_eq!(
            error_reason("graphql.parse_schema", &[s(schema)]),
            want,
            "schema {schema:?}"
        );
    }
}

#[test]
fn parse_query_builds_the_pruned_gqlparser_ast() {
    let got = call(
        "graphql.parse_query",
        &[s(r#"query Q($ep: Episode! = JEDI) @dir { a: hero(episode: $ep, list: [1, "x"], o: {k: null}) { ... on Human { height } ...F } }
           fragment F on Character { name }"#)],
    )
    .expect("parses");
    let want = json(
        r#"{"Operations": [{"Name": "Q", "Operation": "query",
            "Directives": [{"Location": "", "Name": "dir"}],
            "VariableDefinitions": [{"Variable": "ep", "Used": false,
                "Type": {"NamedType": "Episode", "NonNull": true},
                "DefaultValue": {"ExpectedTypeHasDefault": false, "Kind": 7, "Raw": "JEDI"}}],
            "SelectionSet": [{"Alias": "a", "Name": "hero",
                "Arguments": [
                    {"Name": "episode", "Value": {"ExpectedTypeHasDefault": false, "Kind": 0, "Raw": "ep"}},
                    {"Name": "list", "Value": {"ExpectedTypeHasDefault": false, "Kind": 8, "Raw": "",
                        "Children": [
                            {"Name": "", "Value": {"ExpectedTypeHasDefault": false, "Kind": 1, "Raw": "1"}},
                            {"Name": "", "Value": {"ExpectedTypeHasDefault": false, "Kind": 3, "Raw": "x"}}]}},
                    {"Name": "o", "Value": {"ExpectedTypeHasDefault": false, "Kind": 9, "Raw": "",
                        "Children": [{"Name": "k", "Value": {"ExpectedTypeHasDefault": false, "Kind": 6, "Raw": "null"}}]}}],
                "SelectionSet": [
                    {"TypeCondition": "Human", "SelectionSet": [{"Alias": "height", "Name": "height"}]},
                    {"Name": "F"}]}]}],
          "Fragments": [{"Name": "F", "TypeCondition": "Character",
            "SelectionSet": [{"Alias": "name", "Name": "name"}]}]}"#,
    );
    assert_eq!(got, want);
}

#[test]
fn parse_schema_builds_the_pruned_gqlparser_ast() {
    let got = call(
        "graphql.parse_schema",
        &[s(r#""""
              Doc
              """
              type T implements I @d { f(a: [Int!] = [1]): String }
              extend union U = A | B
              schema { query: T }
              directive @d repeatable on OBJECT | FIELD"#)],
    )
    .expect("parses");
    let want = json(
        r#"{"Definitions": [{"BuiltIn": false, "Description": "Doc", "Kind": "OBJECT", "Name": "T",
              "Interfaces": ["I"], "Directives": [{"Location": "", "Name": "d"}],
              "Fields": [{"Description": "", "Name": "f", "Type": {"NamedType": "String", "NonNull": false},
                  "Arguments": [{"Description": "", "Name": "a",
                      "Type": {"NamedType": "", "NonNull": false, "Elem": {"NamedType": "Int", "NonNull": true}},
                      "DefaultValue": {"ExpectedTypeHasDefault": false, "Kind": 8, "Raw": "",
                          "Children": [{"Name": "", "Value": {"ExpectedTypeHasDefault": false, "Kind": 1, "Raw": "1"}}]}}]}]}],
            "Extensions": [{"BuiltIn": false, "Description": "", "Kind": "UNION", "Name": "U", "Types": ["A", "B"]}],
            "Schema": [{"Description": "", "OperationTypes": [{"Operation": "query", "Type": "T"}]}],
            "Directives": [{"Description": "", "IsRepeatable": true, "Locations": ["OBJECT", "FIELD"], "Name": "d"}]}"#,
    );
    assert_eq!(got, want);
}

#[test]
fn block_strings_drop_common_indentation() {
    let got = call(
        "graphql.parse_query",
        &[s("{ f(a: \"\"\"\n    one\n      two\n    \"\"\") }")],
    )
    .expect("parses");
    let raw = got["Operations"][0]["SelectionSet"][0]["Arguments"][0]["Value"]["Raw"].clone();
    assert_eq!(raw, s("one\n  two"));
}

#[test]
fn operands_of_the_wrong_type() {
    assert!(matches!(
        call("graphql.parse_query", &[Value::from(1)]),
        Err(BuiltinError::Operand { position: 1, .. })
    ));
    assert!(matches!(
        call("graphql.parse", &[s("{ a }"), Value::from(true)]),
        Err(BuiltinError::Operand { position: 2, .. })
    ));
    assert_eq!(
        call("graphql.is_valid", &[Value::from(1), s(SCHEMA)]),
        Ok(Value::from(false))
    );
    assert_eq!(
        call("graphql.schema_is_valid", &[Value::new_array()]),
        Ok(Value::from(false))
    );
    let unverified = call("graphql.parse_and_verify", &[s("{"), s(SCHEMA)]).expect("a result");
    assert_eq!(unverified, json("[false, {}, {}]"));
}

#[test]
fn the_prelude_parses() {
    let doc = super::parser::parse_schema(super::schema::PRELUDE, true).expect("prelude parses");
    assert!(doc.definitions.iter().all(|d| d.built_in));
    assert_eq!(doc.directives.len(), 4);
}

#[test]
fn schema_validation() {
    assert!(schema_is_valid(SCHEMA));
    assert!(schema_is_valid("extend type User { id: ID! }"));
    assert!(schema_is_valid(
        "type Query { x: Int }\ndirective @d(a: String = \"b\") on SCHEMA\nextend schema @d"
    ));
    for bad in [
        "type Hello implements World { field: String }",
        "union Hello = World",
        "schema { query: Query }",
        "extend scalar Foo @deprecated\nextend type Foo @deprecated",
        "interface IA { id: ID! }\ninterface IIA implements IA { id: ID! }\ntype A implements IIA { id: ID! }",
        "type Pupil { name: String }\ninput PupilInput { friend: Pupil }",
        "type T { a: Int a: Int }",
        "type __T { a: Int }",
        "type T { a: Int @include(if: true) }",
        "type T { a(x: T): Int }",
        "enum E { true }",
        "interface I { a: Int! }\ntype T implements I { a: Int }",
        "type Query { a: Int }\ntype Query { b: Int }",
    ] {
        assert!(!schema_is_valid(bad), "schema should be invalid: {bad}");
    }
    assert_eq!(
        error_reason("graphql.parse", &[s("{ a }"), s("union U = X")]),
        "Error in gqlparser SchemaDocument to Schema conversion: input:1:7: Undefined type \"X\"."
    );
}

#[test]
fn valid_queries() {
    for query in [
        "{ hero { id name ... on Droid { primaryFunction } ... on Human { height } } }",
        "query Q($ep: Episode = JEDI) { hero(episode: $ep) { __typename name } }",
        "{ search(text: \"an\") { __typename ... on Human { name } ... on Starship { name } } }",
        "query { hero { ...F } } fragment F on Character { friends { name } }",
        "mutation { tag(filter: {name: \"x\"}) }",
        "{ count }",
        "{ a: count(limit: 1) b: count(limit: 2) }",
        "{ count(limit: 1) count(limit: 1) }",
        "{ hero { ... on Human { n: name } ... on Droid { n: primaryFunction } } search(text: \"x\") { ... on Human { id } ... on Droid { id } } }",
        "query ($n: Int) { count(limit: $n) }",
        "{ __schema { queryType { name } } }",
        "",
    ] {
        assert!(is_valid(query, SCHEMA), "query should be valid: {query}");
    }
}

#[test]
fn validation_rules() {
    let cases = [
        (
            "{ nope }",
            "Cannot query field \"nope\" on type \"Query\" in GraphQL",
        ),
        (
            "{ hero { nme } }",
            "Cannot query field \"nme\" on type \"Character\". Did you mean \"name\"?",
        ),
        (
            "{ hero { height } }",
            "Cannot query field \"height\" on type \"Character\". Did you mean to use an inline fragment on \"Human\"?",
        ),
        (
            "{ count(limt: 1) }",
            "Unknown argument \"limt\" on field \"Query.count\". Did you mean \"limit\"?",
        ),
        (
            "{ hero(episode: JED) { id } }",
            "Value \"JED\" does not exist in \"Episode\" enum. Did you mean the enum value \"JEDI\"?",
        ),
        (
            "{ count(max: 1) }",
            "Unknown argument \"max\" on field \"Query.count\"",
        ),
        (
            "{ search { __typename } }",
            "Field \"search\" argument \"text\" of type \"String!\" is required, but it was not provided",
        ),
        (
            "{ hero }",
            "Field \"hero\" of type \"Character\" must have a selection of subfields",
        ),
        (
            "{ count { x } }",
            "Field \"count\" must not have a selection since type \"Int\" has no subfields",
        ),
        (
            "query Q($x: Int) { count }",
            "Variable \"$x\" is never used in operation \"Q\"",
        ),
        ("{ count(limit: $x) }", "Variable \"$x\" is not defined"),
        (
            "query ($x: String) { count(limit: $x) }",
            "Variable \"$x\" of type \"String\" used in position expecting type \"Int\"",
        ),
        (
            "{ count(limit: \"ten\") }",
            "Int cannot represent non-integer value: \"ten\"",
        ),
        (
            "{ hero(episode: SOON) { id } }",
            "Value \"SOON\" does not exist in \"Episode\" enum",
        ),
        (
            "mutation { tag(filter: {tag: \"x\"}) }",
            "Field \"Filter.name\" of required type \"String!\" was not provided",
        ),
        ("{ hero { ...F } }", "Unknown fragment \"F\""),
        (
            "{ hero { id } } fragment F on Droid { id }",
            "Fragment \"F\" is never used",
        ),
        (
            "{ hero { ...A } } fragment A on Character { ...B } fragment B on Character { ...A }",
            "Cannot spread fragment \"A\" within itself via \"B\"",
        ),
        (
            "{ hero { ... on Starship { id } } }",
            "Fragment cannot be spread here as objects of type \"Character\" can never be of type \"Starship\"",
        ),
        ("{ hero { ... on Nope { id } } }", "Unknown type \"Nope\""),
        ("{ count @nope }", "Unknown directive \"@nope\""),
        (
            "{ count @skip(if: true) @skip(if: false) }",
            "The directive \"@skip\" can only be used once at this location",
        ),
        (
            "{ hero { x: id x: name } }",
            "Fields \"x\" conflict because id and name are different fields",
        ),
        (
            "{ count(limit: 1) count(limit: 2) }",
            "Fields \"count\" conflict because they have differing arguments",
        ),
        (
            "subscription { count }",
            "Schema does not support operation type \"subscription\"",
        ),
        (
            "{ count } { count }",
            "This anonymous operation must be the only defined operation",
        ),
        (
            "query A { count } query A { count }",
            "There can be only one operation named \"A\"",
        ),
        (
            "query ($h: Character) { count }",
            "Variable \"$h\" cannot be non-input type \"Character\"",
        ),
        (
            "{ count(limit: 1, limit: 2) }",
            "There can be only one argument named \"limit\"",
        ),
    ];
    for (query, want) in cases {
        let got = validation_error(query, SCHEMA);
        assert!(
            got.contains(want) && got.contains(" in GraphQL string at location "),
            "query {query:?}: got {got:?}, want it to contain {want:?}"
        );
    }
}

#[test]
fn validation_error_reports_the_first_position() {
    let schema = "extend type Query { myAction(myEnum: Locale!): SomeResult! }\ntype SomeResult { id: String }\nenum Locale { EN LT DE }";
    let query =
        "\n  query SomeOperation {\n    # no argument\n    myAction {\n      id\n    }\n  }\n";
    assert_eq!(
        validation_error(query, schema),
        "Field \"myAction\" argument \"myEnum\" of type \"Locale!\" is required, but it was not provided in GraphQL string at location 4:5"
    );
}

#[test]
fn ast_objects_are_accepted_as_documents() {
    let schema = call("graphql.parse_schema", &[s(SCHEMA)]).expect("parses");
    let query = call(
        "graphql.parse_query",
        &[s("{ hero(episode: JEDI) { name } }")],
    )
    .expect("parses");
    assert_eq!(
        call("graphql.is_valid", &[query.clone(), schema.clone()]),
        Ok(Value::from(true))
    );
    let verified =
        call("graphql.parse_and_verify", &[query.clone(), schema.clone()]).expect("a result");
    assert_eq!(
        verified,
        Value::from(vec![Value::from(true), query, schema.clone()])
    );

    let unknown_arg = json(
        r#"{"Operations": [{"Name": "", "Operation": "query", "SelectionSet": [
            {"Alias": "count", "Name": "count", "Arguments": [{"Name": "a", "Value": {"Kind": 7, "Raw": "b"}}]}]}]}"#,
    );
    assert_eq!(
        call("graphql.is_valid", &[unknown_arg, schema.clone()]),
        Ok(Value::from(false))
    );
    // As in gqlparser, every selection object decodes as a field first.
    let inline = json(
        r#"{"Operations": [{"Operation": "query", "SelectionSet": [
            {"Alias": "hero", "Name": "hero", "SelectionSet": [{"TypeCondition": "Human", "SelectionSet": [{"Alias": "height", "Name": "height"}]}]}]}]}"#,
    );
    assert_eq!(
        call("graphql.is_valid", &[inline, schema.clone()]),
        Ok(Value::from(false))
    );
    let mut numeric_keys = std::collections::BTreeMap::new();
    numeric_keys.insert(Value::from(1), Value::from(2));
    assert_eq!(
        call(
            "graphql.is_valid",
            &[Value::from(numeric_keys), schema.clone()]
        ),
        Ok(Value::from(false))
    );
    // A selection that does not decode as a field falls back to a spread.
    let bad_arguments = json(
        r#"{"Operations": [{"Operation": "query", "SelectionSet": [{"Alias": "count", "Name": "count", "Arguments": "bad"}]}]}"#,
    );
    assert_eq!(
        error_reason("graphql.parse", &[bad_arguments, schema.clone()]),
        "Unknown fragment \"count\" in GraphQL string at location 0:0"
    );
    let wrong_type = json(r#"{"Operations": [{"Name": 5}]}"#);
    assert!(matches!(
        call("graphql.parse", &[wrong_type, schema]),
        Err(BuiltinError::Invalid { .. })
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 200;
    let query = format!("{}{}", "{ a ".repeat(depth), "}".repeat(depth));
    let schema = "type Query { a: Query }";
    assert_eq!(
        call("graphql.is_valid", &[s(&query), s(schema)]),
        Ok(Value::from(false)),
        "leaf selection missing, but the document parses and validates"
    );
    let too_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let reason = error_reason(
        "graphql.parse_query",
        &[s(&format!("{{ f(a: {too_deep}) }}"))],
    );
    assert!(
        reason.starts_with("document nesting exceeds 256 levels"),
        "{reason}"
    );
    let reason = error_reason(
        "graphql.parse_schema",
        &[s(&format!(
            "type T {{ f: {}Int{} }}",
            "[".repeat(5000),
            "]".repeat(5000)
        ))],
    );
    assert!(
        reason.starts_with("document nesting exceeds 256 levels"),
        "{reason}"
    );
}

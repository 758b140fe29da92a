//! `strings.render_template`: a Go `text/template` subset with Go's
//! semantics, as OPA renders it (`v1/topdown/template.go`): default
//! `missingkey` handling, and every `<no value>` in the output replaced
//! by `<undefined>`.
//!
//! Supported: see `parse`. Not supported (an error): `define`,
//! `template`, `block`, and the functions `html`, `js`, `urlquery`,
//! `slice` and `call`; methods of values (`.x.String` on a number).

mod exec;
mod funcs;
mod lex;
mod parse;
mod value;

use regorus::Value;

use self::value::GoVal;

/// Renders `template` with the variables object `vars`.
pub(super) fn render(template: &str, vars: &Value) -> Result<String, String> {
    let data = GoVal::from_value(vars)?;
    let nodes = parse::parse(template).map_err(|e| format!("template: template:1: {e}"))?;
    let out = exec::execute(&nodes, data).map_err(|e| format!("template: template:1: {e}"))?;
    Ok(out.replace("<no value>", "<undefined>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(template: &str, vars: &str) -> Result<String, String> {
        render(template, &Value::from_json_str(vars).unwrap())
    }

    #[test]
    fn fields_and_missing_keys() {
        assert_eq!(
            r("{{.test}}", r#"{"test": "hello world"}"#).unwrap(),
            "hello world"
        );
        assert_eq!(r("{{.test}}", r#"{"test": 2023}"#).unwrap(), "2023");
        assert_eq!(
            r("test {{.foo}} {{.bar}} {{.baz}}", r#"{"baz": 1}"#).unwrap(),
            "test <undefined> <undefined> 1"
        );
        assert_eq!(
            r("{{.a.b.c}}", r#"{"a": {"b": {"c": true}}}"#).unwrap(),
            "true"
        );
        assert_eq!(r("{{.a.b}}", r#"{}"#).unwrap(), "<undefined>");
        assert!(r("{{.a.b}}", r#"{"a": null}"#).is_err());
        assert!(r("{{.a.b}}", r#"{"a": "s"}"#).is_err());
    }

    #[test]
    fn range_if_and_variables() {
        assert_eq!(
            r(
                "{{range $i, $name := .hellonames}}{{if $i}},{{end}}hello {{$name}}{{end}}",
                r#"{"hellonames": ["rohan", "john doe"]}"#
            )
            .unwrap(),
            "hello rohan,hello john doe"
        );
        assert_eq!(
            r(
                "{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}",
                r#"{"m": {"b": 2, "a": 1}}"#
            )
            .unwrap(),
            "a=1;b=2;"
        );
        assert_eq!(
            r("{{range .xs}}{{.}}{{else}}none{{end}}", r#"{"xs": []}"#).unwrap(),
            "none"
        );
        assert_eq!(
            r(
                "{{if .x}}a{{else if .y}}b{{else}}c{{end}}",
                r#"{"y": true}"#
            )
            .unwrap(),
            "b"
        );
        assert_eq!(
            r(
                "{{with .x}}{{.n}}{{end}}{{$v := 3}}{{$v}}",
                r#"{"x": {"n": "N"}}"#
            )
            .unwrap(),
            "N3"
        );
        assert_eq!(
            r(
                "{{range .xs}}{{if eq . \"3\"}}{{break}}{{end}}{{.}}{{end}}",
                r#"{"xs": [1, 2, 3, 4]}"#
            )
            .unwrap(),
            "12"
        );
    }

    #[test]
    fn printing_and_functions() {
        assert_eq!(
            r("{{.}}", r#"{"a": [1, "x", null], "b": {"c": false}}"#).unwrap(),
            "map[a:[1 x <nil>] b:map[c:false]]"
        );
        assert_eq!(
            r("{{len .xs}} {{index .xs 1}}", r#"{"xs": ["a", "b"]}"#).unwrap(),
            "2 b"
        );
        assert_eq!(
            r(r#"{{printf "%s-%d-%q" .s 7 "q"}}"#, r#"{"s": "x"}"#).unwrap(),
            r#"x-7-"q""#
        );
        assert_eq!(r(r#"{{print 1 2 "a" 3}}"#, "{}").unwrap(), "1 2a3");
        assert_eq!(
            r(
                r#"{{if and .a (not .b)}}yes{{end}}"#,
                r#"{"a": 1, "b": false}"#
            )
            .unwrap(),
            "yes"
        );
        assert_eq!(
            r("{{- \"a\" }}  \n {{- /* c */ -}}  b", "{}").unwrap(),
            "ab"
        );
        assert_eq!(r("{{ .x | len }}", r#"{"x": "abc"}"#).unwrap(), "3");
    }

    #[test]
    fn errors() {
        assert!(r("{{.x", "{}").is_err());
        assert!(r("{{if .x}}", "{}").is_err());
        assert!(r("{{end}}", "{}").is_err());
        assert!(r("{{nofunc 1}}", "{}").is_err());
        assert!(r("{{template \"x\"}}", "{}").is_err());
        assert!(r("{{len .missing}}", "{}").is_err());
        assert!(r("{{eq 1 \"a\"}}", "{}").is_err());
        // A JSON number is a `json.Number` (a string kind), not an int.
        assert!(r("{{range .xs}}{{if eq . 3}}{{end}}{{end}}", r#"{"xs": [3]}"#).is_err());
        let set = Value::from(std::collections::BTreeMap::from([(
            Value::from("s"),
            Value::from(std::collections::BTreeSet::from([Value::from(1u64)])),
        )]));
        assert!(render("{{.s}}", &set).is_err());
    }
}

//! The values generated requests are made of: client IPs, methods, paths,
//! API keys, header names and values, bodies, status codes, chain states and
//! the forms a token is sent in.

use super::fixtures::{
    KEY_ALICE, KEY_BOB, KEY_EMPTY_USER, KEY_NO_USER, KEY_NOT_OBJECT, KEY_NUMERIC_USER, KEY_PARTNER,
    KEY_ZOE,
};

pub const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "192.168.7.20",
    "2001:db8::7",
    "",
    "203.0.113.9",
];
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
pub const QUERIES: &[&str] = &[
    "",
    "?x=1",
    "?x=1&y=a%20b",
    "?q=caf%C3%A9&flag",
    "?a=1&a=2",
    "/sub/resource",
    "?%ZZ=bad+value",
    "?emoji=%F0%9F%A6%80",
];
pub const API_KEY_HEADERS: &[&str] = &[
    "X-API-Key",
    "x-api-key",
    "X-Api-Key",
    "X-API-KEY",
    "x-API-key",
];
pub const TENANTS: &[&str] = &["acme", "globex", "", "ÜnïTenant ✓", "acme "];
pub const STATES: &[&str] = &[
    "",
    "{}",
    r#"{"user":"alice"}"#,
    r#"{"user":"bob","claims":{"sub":"bob","roles":["reader"]}}"#,
    r#"{"claims":{"sub":"zoë"},"note":"ünï 🦀"}"#,
    r#"{"x":[1,2.5,{"y":null}],"big":12345678901234567890}"#,
];

pub fn api_keys() -> Vec<(&'static str, String)> {
    vec![
        ("alice", KEY_ALICE.into()),
        ("bob", KEY_BOB.into()),
        ("partner", KEY_PARTNER.into()),
        ("zoe_unicode", KEY_ZOE.into()),
        ("entry_without_user", KEY_NO_USER.into()),
        ("entry_empty_user", KEY_EMPTY_USER.into()),
        ("entry_not_object", KEY_NOT_OBJECT.into()),
        ("entry_numeric_user", KEY_NUMERIC_USER.into()),
        ("unknown", "ak_live_unknown_0000".into()),
        ("empty", String::new()),
        ("blank", " ".into()),
        ("trailing_space", format!("{KEY_ALICE} ")),
        ("upper_case", KEY_ALICE.to_uppercase()),
        ("long", "k".repeat(4096)),
        ("cyrillic", "ключ".into()),
    ]
}

pub fn odd_headers(n: u64) -> Vec<(String, String)> {
    vec![
        ("user-agent".into(), "curl/8.5.0".into()),
        ("accept".into(), "application/json".into()),
        ("X-Request-Id".into(), format!("req-{n}")),
        ("x-ünïcode".into(), "välüe ✓ 🦀".into()),
        ("x-empty".into(), String::new()),
        ("X-Mixed-Case".into(), "MiXeD".into()),
        ("x-long".into(), "x".repeat(1000)),
        ("x-quote".into(), "\"q\" 'x' \\ back".into()),
        ("x-newline".into(), "a\r\nb".into()),
        ("x-forwarded-for".into(), "203.0.113.1, 10.0.0.1".into()),
        ("cookie".into(), "session=abc; theme=dark".into()),
        ("x-nul".into(), "a\u{0}b".into()),
    ]
}

/// (content type, body, note) of request bodies.
pub fn request_bodies() -> Vec<(Option<&'static str>, Vec<u8>, &'static str)> {
    vec![
        (None, Vec::new(), "no_body"),
        (
            Some("application/json"),
            br#"{"name":"x","internal_id":1}"#.to_vec(),
            "json_body",
        ),
        (Some("text/plain"), "héllo".as_bytes().to_vec(), "text_body"),
        (
            Some("application/json"),
            b"{broken".to_vec(),
            "broken_json_body",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"a=1&b=2".to_vec(),
            "form_body",
        ),
        (
            Some("application/json"),
            b"[1,\"two\",{\"3\":null}]".to_vec(),
            "json_array_body",
        ),
    ]
}

/// (content type, body, note) of response bodies.
pub fn response_bodies() -> Vec<(Option<&'static str>, Vec<u8>, &'static str)> {
    let deep = format!(
        "{}{{\"internal_id\":1,\"k\":2}}{}",
        "{\"a\":".repeat(40),
        "}".repeat(40)
    );
    let json = Some("application/json");
    vec![
        (json, br#"{"id":1,"name":"alice","internal_id":"u-123"}"#.to_vec(), "flat"),
        (
            json,
            r#"{"users":[{"id":1,"internal_id":10},{"id":2,"internal_id":20,"profile":{"internal_id":30,"bio":"ünï"}}],"total":2}"#
                .as_bytes()
                .to_vec(),
            "nested_arrays",
        ),
        (json, br#"[{"internal_id":1,"a":[{"internal_id":2}]},3,"x",null]"#.to_vec(), "top_level_array"),
        (
            json,
            br#"{"data":{"internal_id":5,"keep":true},"items":[{"secret":"s0","id":0},{"secret":"s1"}],"meta":{"trace":{"id":"t","span":1}},"password":"hunter2"}"#
                .to_vec(),
            "dotted_targets",
        ),
        (json, br#"{"data.internal_id":1,"data":{"internal_id":2},"items":{"0":{"secret":"x"}}}"#.to_vec(), "dotted_keys"),
        (json, br#"{"internal_id":{"internal_id":1},"x":{"internal_id":null}}"#.to_vec(), "same_key_nested"),
        (json, b"{}".to_vec(), "empty_object"),
        (json, b"[]".to_vec(), "empty_array"),
        (json, b"\"just a string\"".to_vec(), "json_string"),
        (json, b"42".to_vec(), "json_number"),
        (json, b"null".to_vec(), "json_null"),
        (json, b"true".to_vec(), "json_true"),
        (Some("text/plain"), b"internal_id=5".to_vec(), "text"),
        (json, b"{not json".to_vec(), "broken_json"),
        (json, Vec::new(), "empty"),
        (Some("application/problem+json"), br#"{"type":"about:blank","internal_id":9}"#.to_vec(), "problem_json"),
        (
            Some("APPLICATION/JSON; charset=UTF-8"),
            r#"{"ключ":"значение","internal_id":"🦀","emoji🦀":1}"#.as_bytes().to_vec(),
            "unicode_keys",
        ),
        (
            json,
            br#"{"big":9007199254740993,"neg":-0,"float":1.5e300,"small":1e-7,"internal_id":12345678901234567890}"#.to_vec(),
            "numbers",
        ),
        (json, deep.into_bytes(), "deep"),
        (json, br#"{"a/b":{"internal_id":1},"~x":2,"secret":{"secret":3}}"#.to_vec(), "odd_keys"),
        (Some("text/html"), b"<html>internal_id</html>".to_vec(), "html"),
        (None, br#"{"internal_id":1}"#.to_vec(), "json_without_content_type"),
        (Some("application/json"), b"\xff\xfe{}".to_vec(), "invalid_utf8"),
    ]
}

pub const RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("server", "nginx"),
    ("set-cookie", "id=1; HttpOnly"),
    ("x-internal", "secret"),
    ("X-Frame-Options", "ALLOW"),
    ("Content-Length", "12"),
    ("x-ünï", "✓"),
];
pub const STATUS_CODES: &[i32] = &[200, 201, 204, 301, 404, 500, 503];

/// Authorization header forms: (header name, value with `{t}` for the token).
pub const AUTH_FORMS: &[(&str, &str)] = &[
    ("Authorization", "Bearer {t}"),
    ("authorization", "bearer {t}"),
    ("AUTHORIZATION", "BEARER {t}"),
    ("Authorization", "{t}"),
    ("Authorization", "  Bearer   {t}  "),
    ("Authorization", "Bearer {t} extra"),
    ("Authorization", "Bearer\t{t}"),
    ("Authorization", "Basic dXNlcjpwYXNz"),
    ("Authorization", "Bearer"),
    ("Authorization", "Bearer "),
    ("Authorization", ""),
];

/// Tokens every key-material route is tried with.
pub const KEY_ROUTE_TOKENS: &[&str] = &[
    "rs256_alice",
    "rs256_no_kid",
    "rs256_unknown_kid",
    "rs384_alice",
    "rs384_no_kid",
    "ps256_bob",
    "ps256_kid_matches_rs256_jwk",
    "es256_alice",
    "rs256_wrong_key",
    "rs256_signature_leading_zero_dropped",
    "rs256_signature_extra_zero",
];

/// Forms of the custom token header `X-Auth-Token`.
pub const CUSTOM_FORMS: &[(&str, &str)] = &[
    ("X-Auth-Token", "{t}"),
    ("x-auth-token", "Bearer {t}"),
    ("X-AUTH-TOKEN", "bearer {t}"),
    ("X-Auth-Token", " {t} "),
    ("X-Auth-Token", "Bearer"),
    ("X-Auth-Token", ""),
];

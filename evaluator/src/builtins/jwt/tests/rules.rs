//! OPA's `decode_verify` constraint rules and malformed input.

use regorus::Value;

use super::*;

#[test]
fn decode_verify_constraint_rules() {
    let jwt = token("HS256", r#"{"a":1}"#);
    let hdr = r#"{"alg":"HS256","typ":"JWT"}"#;
    // Key constraints: exactly one of a non-empty secret or a cert.
    assert!(dv(&jwt, "{}").is_err());
    assert!(dv(&jwt, r#"{"secret":""}"#).is_err());
    assert!(dv(&jwt, r#"{"alg":"HS256"}"#).is_err());
    let both = format!(
        r#"{{"secret":"secret","cert":{}}}"#,
        serde_json::to_string(&rsa_pem(&keys().rsa)).expect("json")
    );
    assert!(dv(&jwt, &both).is_err());
    // Unknown constraints and wrongly typed ones are errors.
    assert!(dv(&jwt, r#"{"secret":"secret","foo":1}"#).is_err());
    assert!(dv(&jwt, r#"{"secret":1}"#).is_err());
    assert!(dv(&jwt, r#"{"secret":"secret","alg":1}"#).is_err());
    assert!(dv(&jwt, r#"{"secret":"secret","time":"1"}"#).is_err());
    assert!(dv(&jwt, r#"{"secret":"secret","time":-1}"#).is_err());
    assert!(dv(&jwt, r#"{"cert":"not a key"}"#).is_err());
    assert!(matches!(
        decode_verify(&[s(&jwt), s("x")], 0.0),
        Err(BuiltinError::Operand { position: 2, .. })
    ));
    // alg constraint.
    assert_eq!(
        dv(&jwt, r#"{"secret":"secret","alg":"HS256"}"#),
        verified(hdr, r#"{"a":1}"#)
    );
    assert_eq!(
        dv(&jwt, r#"{"secret":"secret","alg":"HS512"}"#),
        unverified()
    );
    assert_eq!(dv(&jwt, r#"{"secret":"wrong"}"#), unverified());

    // exp / nbf against the wall clock (1700000000 s) or `time` (ns).
    let claims = |c: &str| token("HS256", c);
    let sec = r#"{"secret":"secret"}"#;
    assert_eq!(
        dv(&claims(r#"{"exp":1700000001}"#), sec),
        verified(hdr, r#"{"exp":1700000001}"#)
    );
    assert_eq!(dv(&claims(r#"{"exp":1700000000}"#), sec), unverified());
    assert_eq!(
        dv(&claims(r#"{"exp":1700000000.5}"#), sec),
        verified(hdr, r#"{"exp":1700000000.5}"#)
    );
    assert_eq!(
        dv(&claims(r#"{"nbf":1700000000}"#), sec),
        verified(hdr, r#"{"nbf":1700000000}"#)
    );
    assert_eq!(dv(&claims(r#"{"nbf":1700000000.5}"#), sec), unverified());
    assert_eq!(
        dv(
            &claims(r#"{"exp":5}"#),
            r#"{"secret":"secret","time":4999999999}"#
        ),
        verified(hdr, r#"{"exp":5}"#)
    );
    assert_eq!(
        dv(
            &claims(r#"{"exp":5}"#),
            r#"{"secret":"secret","time":5000000000}"#
        ),
        unverified()
    );
    assert!(dv(&claims(r#"{"exp":"5"}"#), sec).is_err());
    assert!(dv(&claims(r#"{"nbf":null}"#), sec).is_err());
    // An earlier failed check wins over a malformed later claim.
    assert_eq!(dv(&claims(r#"{"exp":1,"nbf":"x"}"#), sec), unverified());
    assert_eq!(
        dv(&claims(r#"{"exp":"5"}"#), r#"{"secret":"wrong"}"#),
        unverified()
    );

    // iss: required and equal when constrained; a non-string iss is an error.
    let iss = r#"{"secret":"secret","iss":"me"}"#;
    assert_eq!(
        dv(&claims(r#"{"iss":"me"}"#), iss),
        verified(hdr, r#"{"iss":"me"}"#)
    );
    assert_eq!(dv(&claims(r#"{"iss":"you"}"#), iss), unverified());
    assert_eq!(dv(&claims("{}"), iss), unverified());
    assert!(dv(&claims(r#"{"iss":1}"#), iss).is_err());
    assert_eq!(
        dv(&claims(r#"{"iss":1}"#), sec),
        verified(hdr, r#"{"iss":1}"#)
    );

    // aud: a token audience must match the constraint (string or array).
    let aud = r#"{"secret":"secret","aud":"api"}"#;
    assert_eq!(
        dv(&claims(r#"{"aud":"api"}"#), aud),
        verified(hdr, r#"{"aud":"api"}"#)
    );
    assert_eq!(
        dv(&claims(r#"{"aud":[1,"api"]}"#), aud),
        verified(hdr, r#"{"aud":[1,"api"]}"#)
    );
    assert_eq!(dv(&claims(r#"{"aud":["web"]}"#), aud), unverified());
    assert_eq!(dv(&claims(r#"{"aud":5}"#), aud), unverified());
    assert_eq!(dv(&claims("{}"), aud), unverified());
    assert_eq!(dv(&claims(r#"{"aud":"api"}"#), sec), unverified());
    assert_eq!(
        dv(&claims(r#"{"aud":""}"#), sec),
        verified(hdr, r#"{"aud":""}"#)
    );

    // Header rules: alg required; unknown critical members fail; bad crit errors.
    let with_header = |h: &str| token_with("HS256", h, "{}", b"secret");
    assert_eq!(dv(&with_header(r#"{"typ":"JWT"}"#), sec), unverified());
    assert_eq!(
        dv(&with_header(r#"{"alg":"HS256","crit":["x"],"x":1}"#), sec),
        unverified()
    );
    assert_eq!(
        dv(
            &with_header(r#"{"alg":"HS256","crit":["kid"],"kid":"k"}"#),
            sec
        ),
        verified(r#"{"alg":"HS256","crit":["kid"],"kid":"k"}"#, "{}")
    );
    assert!(dv(&with_header(r#"{"alg":"HS256","crit":[]}"#), sec).is_err());
    assert!(dv(&with_header(r#"{"alg":1}"#), sec).is_err());

    // Nested tokens are verified with the same key.
    let inner = token("HS256", r#"{"in":1}"#);
    let nested = token_with("HS256", r#"{"alg":"HS256","cty":"JWT"}"#, &inner, b"secret");
    assert_eq!(dv(&nested, sec), verified(hdr, r#"{"in":1}"#));
    let bad_inner = token_with("HS256", hdr, r#"{"in":1}"#, b"other");
    let nested = token_with(
        "HS256",
        r#"{"alg":"HS256","cty":"jwt"}"#,
        &bad_inner,
        b"secret",
    );
    assert_eq!(dv(&nested, sec), unverified());
}

#[test]
fn malformed_input_is_an_error() {
    let k = keys();
    let pem = rsa_pem(&k.rsa);
    let good = token("RS256", "{}");
    let (h, rest) = good.split_once('.').expect("dot");
    for bad in [
        "no-dots".to_string(),
        "a.b".to_string(),
        format!("{good}.x"),
        format!("!!!!.{rest}"),
        format!("{}.{rest}", b64u(b"not json")),
        format!("{}.{rest}", b64u(b"[1]")),
        format!("{}.{rest}", b64u(br#"{"alg":"RS256","enc":"A256GCM"}"#)),
        format!("{}!!", &good[..good.len() - 2]),
    ] {
        assert!(verify("io.jwt.verify_rs256", &bad, &pem).is_err(), "{bad}");
        assert!(run("io.jwt.decode", &[s(&bad)]).is_err(), "{bad}");
        assert!(dv(&bad, r#"{"secret":"secret"}"#).is_err(), "{bad}");
    }
    // A payload that is not JSON only matters where OPA decodes it.
    let no_json = format!("{h}.{}.", b64u(b"x"));
    assert!(run("io.jwt.decode", &[s(&no_json)]).is_err());
    // Bad keys.
    for key in [
        "",
        "garbage",
        "{}",
        r#"{"kty":"RSA","n":"AQAB"}"#,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ] {
        assert!(verify("io.jwt.verify_rs256", &good, key).is_err(), "{key}");
    }
    // Non-string arguments.
    for name in ["io.jwt.verify_rs256", "io.jwt.verify_hs256"] {
        assert!(matches!(
            run(name, &[Value::from(1u64), s(&pem)]),
            Err(BuiltinError::Operand { position: 1, .. })
        ));
        assert!(matches!(
            run(name, &[s(&good), Value::Null]),
            Err(BuiltinError::Operand { position: 2, .. })
        ));
    }
    assert!(matches!(
        run("io.jwt.decode", &[Value::Bool(true)]),
        Err(BuiltinError::Operand { position: 1, .. })
    ));
    assert!(matches!(
        run("io.jwt.decode", &[]),
        Err(BuiltinError::Operand { .. })
    ));
    assert!(matches!(
        decode_verify(&[Value::from(1u64), json(r#"{"secret":"s"}"#)], 0.0),
        Err(BuiltinError::Operand { position: 1, .. })
    ));
}

#[test]
fn errors_do_not_quote_the_token() {
    let secret_claim = "super-secret-claim-value";
    let bad = format!(
        "{}.{}.!!",
        b64u(br#"{"alg":"HS256"}"#),
        b64u(secret_claim.as_bytes())
    );
    for result in [
        run("io.jwt.decode", &[s(&bad)]),
        dv(&bad, r#"{"secret":"secret"}"#),
        verify("io.jwt.verify_hs256", &bad, "k"),
    ] {
        let msg = result.expect_err("error").to_string();
        assert!(
            !msg.contains(secret_claim) && !msg.contains(&b64u(secret_claim.as_bytes())),
            "{msg}"
        );
    }
}

#[test]
fn builtins_table_is_complete() {
    let names: Vec<&str> = super::super::BUILTINS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 17);
    for (name, arity) in super::super::BUILTINS {
        let want = match *name {
            "io.jwt.decode" => 1,
            "io.jwt.encode_sign" | "io.jwt.encode_sign_raw" => 3,
            _ => 2,
        };
        assert_eq!(*arity, want, "{name}");
        assert!(
            !matches!(call(name, &[]), Err(BuiltinError::Unknown(_))),
            "{name}"
        );
    }
    assert!(matches!(
        call("io.jwt.encode_sign_compact", &[]),
        Err(BuiltinError::Unknown(_))
    ));
}

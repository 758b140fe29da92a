//! Unit tests: digests and HMACs against known answers; certificates,
//! requests and keys made here with `rcgen` and `aws-lc-rs`, read back in
//! every input form OPA accepts; chain verification and its options; bad
//! input.

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use regorus::Value;

use super::call;
use crate::builtins::BuiltinError;

fn s(v: &str) -> Value {
    Value::from(v)
}

fn json(v: &str) -> Value {
    Value::from_json_str(v).expect("json")
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match v {
        Value::Object(o) => o.get(&s(k)).unwrap_or(&Value::Undefined),
        _ => &Value::Undefined,
    })
}

fn invalid(r: Result<Value, BuiltinError>) -> String {
    match r {
        Err(BuiltinError::Invalid { reason, .. }) => reason,
        other => panic!("expected a builtin error, got {other:?}"),
    }
}

#[test]
fn digests_and_hmacs() {
    let one = |name: &str, a: &str| call(name, &[s(a)]).expect(name);
    let two = |name: &str, a: &str, b: &str| call(name, &[s(a), s(b)]).expect(name);
    assert_eq!(
        one("crypto.md5", "lorem ipsum"),
        s("80a751fde577028640c419000e33eba6")
    );
    assert_eq!(
        one("crypto.sha1", "lorem ipsum"),
        s("bfb7759a67daeb65410490b4d98bb9da7d1ea2ce")
    );
    assert_eq!(
        one("crypto.sha256", ""),
        s("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(
        two("crypto.hmac.md5", "foo", "bar"),
        s("31b6db9e5eb4addb42f1a6ca07367adc")
    );
    assert_eq!(
        two("crypto.hmac.md5", "åäöçß🥲♙Ω", "秘密の"),
        s("20a8743c2157ac60b7e8b79c83651b8d")
    );
    assert_eq!(
        two("crypto.hmac.sha1", "foo", "bar"),
        s("85d155c55ed286a300bd1cf124de08d87e914f3a")
    );
    assert_eq!(
        two("crypto.hmac.sha256", "foo", "bar"),
        s("147933218aaabc0b8b10a2b3a5c34684c8d94341bcf10a4736dc7270f7741851")
    );
    assert_eq!(
        two("crypto.hmac.sha512", "foo", "bar"),
        s(
            "24257d7210582a65c731ec55159c8184cc24c02489453e58587f71f44c23a2d61b4b72154a89d17b2d49448a8452ea066f4fc56a2bcead45c088572ffccdb3d8"
        )
    );
    assert_eq!(two("crypto.hmac.equal", "abc", "abc"), Value::Bool(true));
    assert_eq!(two("crypto.hmac.equal", "abc", "abd"), Value::Bool(false));
    assert_eq!(two("crypto.hmac.equal", "abc", "ab"), Value::Bool(false));
    assert!(matches!(
        call("crypto.hmac.sha256", &[s("m"), Value::from(1)]),
        Err(BuiltinError::Operand { position: 2, .. })
    ));
}

/// A CA, an intermediate and a leaf for `example.com`, PEM, in the order
/// OPA wants them (root first).
struct Chain {
    root: String,
    intermediate: String,
    leaf: String,
    leaf_key: String,
    leaf_der: Vec<u8>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn chain() -> Chain {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("Test Root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, root_key);

    let inter_key = KeyPair::generate().expect("key");
    let inter_params = ca_params("Test Intermediate");
    let inter = inter_params
        .signed_by(&inter_key, &root_issuer)
        .expect("intermediate");
    let inter_issuer = Issuer::new(inter_params, inter_key);

    let leaf_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["example.com".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "example.com");
    p.distinguished_name
        .push(DnType::OrganizationName, "Example");
    p.subject_alt_names.push(SanType::URI(
        "spiffe://example.com/opa".try_into().expect("uri"),
    ));
    p.subject_alt_names
        .push(SanType::IpAddress("10.0.0.1".parse().expect("ip")));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = p.signed_by(&leaf_key, &inter_issuer).expect("leaf");
    Chain {
        root: root.pem(),
        intermediate: inter.pem(),
        leaf: leaf.pem(),
        leaf_key: leaf_key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
    }
}

#[test]
fn parse_certificates_reads_every_input_form() {
    let c = chain();
    let der_b64 = STANDARD.encode(&c.leaf_der);
    let pem_b64 = STANDARD.encode(c.leaf.as_bytes());
    for input in [c.leaf.as_str(), der_b64.as_str(), pem_b64.as_str()] {
        let certs = call("crypto.x509.parse_certificates", &[s(input)]).expect("parse");
        let cert = &certs.as_array().expect("array")[0];
        assert_eq!(get(cert, &["Subject", "CommonName"]), &s("example.com"));
        assert_eq!(
            get(cert, &["Subject", "Organization"]),
            &json(r#"["Example"]"#)
        );
        assert_eq!(
            get(cert, &["Issuer", "CommonName"]),
            &s("Test Intermediate")
        );
        assert_eq!(get(cert, &["DNSNames"]), &json(r#"["example.com"]"#));
        assert_eq!(get(cert, &["IPAddresses"]), &json(r#"["10.0.0.1"]"#));
        assert_eq!(
            get(cert, &["URIStrings"]),
            &json(r#"["spiffe://example.com/opa"]"#)
        );
        assert_eq!(get(cert, &["ExtKeyUsage"]), &json("[1, 2]"));
        assert_eq!(get(cert, &["Version"]), &Value::from(3));
        assert_eq!(get(cert, &["IsCA"]), &Value::Bool(false));
        assert_eq!(get(cert, &["PublicKeyAlgorithm"]), &Value::from(3));
        assert_eq!(get(cert, &["SignatureAlgorithm"]), &Value::from(10));
        assert_eq!(get(cert, &["Raw"]), &s(&der_b64));
        assert_eq!(get(cert, &["EmailAddresses"]), &Value::Null);
    }
    let chain_pem = format!("{}{}{}", c.root, c.intermediate, c.leaf);
    let certs = call("crypto.x509.parse_certificates", &[s(&chain_pem)]).expect("parse");
    let cas: Vec<&Value> = certs
        .as_array()
        .expect("array")
        .iter()
        .map(|c| get(c, &["IsCA"]))
        .collect();
    assert_eq!(
        cas,
        [&Value::Bool(true), &Value::Bool(true), &Value::Bool(false)]
    );
}

#[test]
fn parse_certificates_rejects_bad_input() {
    let parse = |v: &str| call("crypto.x509.parse_certificates", &[s(v)]);
    assert!(invalid(parse("foobar")).contains("illegal base64"));
    assert_eq!(
        invalid(parse("YmFkc3RyaW5n")),
        "x509: malformed certificate"
    );
    let key = chain().leaf_key;
    assert!(invalid(parse(&key)).contains("expected CERTIFICATE"));
    assert_eq!(parse(""), Ok(json("[]")));
}

#[test]
fn parse_and_verify_builds_go_chains() {
    let c = chain();
    let verify =
        |pem: &str| call("crypto.x509.parse_and_verify_certificates", &[s(pem)]).expect("verify");
    let ok = verify(&format!("{}{}{}", c.root, c.intermediate, c.leaf));
    let parts = ok.as_array().expect("array");
    assert_eq!(parts[0], Value::Bool(true));
    let names: Vec<&Value> = parts[1]
        .as_array()
        .expect("array")
        .iter()
        .map(|c| get(c, &["Subject", "CommonName"]))
        .collect();
    assert_eq!(
        names,
        [&s("example.com"), &s("Test Intermediate"), &s("Test Root")]
    );
    let unverified = json("[false, []]");
    // Wrong order, a missing intermediate, a single certificate.
    assert_eq!(
        verify(&format!("{}{}{}", c.leaf, c.intermediate, c.root)),
        unverified
    );
    assert_eq!(verify(&format!("{}{}", c.root, c.leaf)), unverified);
    assert_eq!(verify(&c.leaf), unverified);
    assert_eq!(verify("garbage"), unverified);

    let with = |options: &str| {
        call(
            "crypto.x509.parse_and_verify_certificates_with_options",
            &[
                s(&format!("{}{}{}", c.root, c.intermediate, c.leaf)),
                json(options),
            ],
        )
    };
    let valid =
        |r: Result<Value, BuiltinError>| r.expect("verify").as_array().expect("array")[0].clone();
    assert_eq!(
        valid(with(r#"{"DNSName": "example.com"}"#)),
        Value::Bool(true)
    );
    assert_eq!(
        valid(with(r#"{"DNSName": "other.com"}"#)),
        Value::Bool(false)
    );
    assert_eq!(
        valid(with(r#"{"KeyUsages": ["KeyUsageClientAuth"]}"#)),
        Value::Bool(true)
    );
    assert_eq!(
        valid(with(r#"{"KeyUsages": ["KeyUsageCodeSigning"]}"#)),
        Value::Bool(false)
    );
    // Before rcgen's default validity (1975) nothing is valid yet.
    assert_eq!(valid(with(r#"{"CurrentTime": 0}"#)), Value::Bool(false));
    assert!(invalid(with(r#"{"KeyUsages": ["Nope"]}"#)).contains("invalid entries"));
    assert_eq!(invalid(with(r#"{"Other": 1}"#)), "invalid key option");
    assert!(invalid(with(r#"{"DNSName": 1}"#)).contains("should be a string"));
}

#[test]
fn parse_certificate_request_reads_pem_and_der() {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["example.com".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "example.com");
    let csr = p.serialize_request(&key).expect("csr");
    let pem = csr.pem().expect("pem");
    let der_b64 = STANDARD.encode(csr.der().as_ref());
    for input in [pem.clone(), der_b64, STANDARD.encode(pem.as_bytes())] {
        let v = call("crypto.x509.parse_certificate_request", &[s(&input)]).expect("csr");
        assert_eq!(get(&v, &["Subject", "CommonName"]), &s("example.com"));
        assert_eq!(get(&v, &["DNSNames"]), &json(r#"["example.com"]"#));
        assert_eq!(get(&v, &["PublicKeyAlgorithm"]), &Value::from(3));
    }
    let bad = call("crypto.x509.parse_certificate_request", &[s("foobar")]);
    assert!(invalid(bad).contains("illegal base64"));
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

/// The PKCS #1 `RSAPrivateKey` inside a PKCS #8 document.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    let fields = super::der::sequence(pkcs8).expect("pkcs8");
    fields[2].content.to_vec()
}

#[test]
fn private_keys_in_every_format() {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).expect("der");
    let pkcs1_pem = pem("RSA PRIVATE KEY", &pkcs1_of(pkcs8.as_ref()));
    let ec = KeyPair::generate().expect("ec").serialize_pem();

    let keys = call(
        "crypto.parse_private_keys",
        &[s(&format!("{pkcs1_pem}{ec}"))],
    )
    .expect("keys");
    let keys = keys.as_array().expect("array");
    assert_eq!(keys.len(), 2);
    assert!(matches!(get(&keys[0], &["N"]), Value::Number(_)));
    assert_eq!(get(&keys[0], &["E"]), &Value::from(65537));
    assert_eq!(
        get(&keys[0], &["Primes"]).as_array().expect("primes").len(),
        2
    );
    assert!(matches!(get(&keys[1], &["D"]), Value::Number(_)));
    assert_eq!(get(&keys[1], &["Curve"]), &json("{}"));
    // Base64 of PEM is read too; text that is not PEM has no keys.
    let b64 = STANDARD.encode(pkcs1_pem.as_bytes());
    let again = call("crypto.parse_private_keys", &[s(&b64)]).expect("keys");
    assert_eq!(again.as_array().expect("array").len(), 1);
    assert_eq!(
        call("crypto.parse_private_keys", &[s("nope")]),
        Ok(json("[]"))
    );
    assert_eq!(call("crypto.parse_private_keys", &[s("")]), Ok(Value::Null));
    let broken = pem("RSA PRIVATE KEY", b"\x30\x03\x02\x01\x00");
    assert!(call("crypto.parse_private_keys", &[s(&broken)]).is_err());

    let jwk = call("crypto.x509.parse_rsa_private_key", &[s(&pkcs1_pem)]).expect("jwk");
    assert_eq!(get(&jwk, &["kty"]), &s("RSA"));
    assert_eq!(get(&jwk, &["e"]), &s("AQAB"));
    for field in ["n", "d", "p", "q", "dp", "dq", "qi"] {
        assert!(matches!(get(&jwk, &[field]), Value::String(_)), "{field}");
    }
    let ec_jwk = call("crypto.x509.parse_rsa_private_key", &[s(&ec)]).expect("jwk");
    assert_eq!(get(&ec_jwk, &["crv"]), &s("P-256"));
    let bad = call("crypto.x509.parse_rsa_private_key", &[s("invalid")]);
    assert!(invalid(bad).contains("illegal base64"));
    let empty = call("crypto.x509.parse_rsa_private_key", &[s("")]);
    assert_eq!(invalid(empty), "input PEM data was empty");
}

#[test]
fn parse_keypair_matches_key_and_certificate() {
    let c = chain();
    let pair = call("crypto.x509.parse_keypair", &[s(&c.leaf), s(&c.leaf_key)]).expect("pair");
    assert_eq!(
        get(&pair, &["Certificate"]),
        &Value::from(vec![s(&STANDARD.encode(&c.leaf_der))])
    );
    assert_eq!(
        get(&pair, &["Leaf", "Subject", "CommonName"]),
        &s("example.com")
    );
    // Base64 forms.
    let b64_pair = call(
        "crypto.x509.parse_keypair",
        &[
            s(&STANDARD.encode(c.leaf.as_bytes())),
            s(&STANDARD.encode(c.leaf_key.as_bytes())),
        ],
    );
    assert!(b64_pair.is_ok());
    let other = KeyPair::generate().expect("key").serialize_pem();
    let mismatch = call("crypto.x509.parse_keypair", &[s(&c.leaf), s(&other)]);
    assert!(invalid(mismatch).contains("does not match"));
}

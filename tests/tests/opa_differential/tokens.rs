//! The key pairs of the test and every JWT the cases send: valid tokens for
//! each algorithm, claim failures, wrong keys, unsigned tokens, JSON that
//! OPA's Go decoder reads differently from serde_json, and garbage.

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::fixtures::{AUDIENCE, HS_SECRET, HS_WRONG_SECRET, ISSUER, T2000, T2099, T2100};
use super::keys;
/// The key pairs tokens are signed with.
pub struct Keys {
    pub rsa_a: RsaKeyPair,
    pub rsa_b: RsaKeyPair,
    pub ec256_a: EcdsaKeyPair,
    /// `ec256_a` signing ASN.1 DER signatures (JWS wants fixed r‖s).
    pub ec256_a_der: EcdsaKeyPair,
    pub ec256_b: EcdsaKeyPair,
    pub ec384_a: EcdsaKeyPair,
    rng: SystemRandom,
}

/// Unpadded base64url, as in a JWT.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(STANDARD.decode(b64)?)
}

/// A PEM `PUBLIC KEY` block of SubjectPublicKeyInfo `der`.
fn public_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// How a token is signed.
#[derive(Clone, Copy)]
pub enum Signer<'a> {
    Rsa(&'a RsaKeyPair, &'static signature::RsaSignatureEncoding),
    Ec(&'a EcdsaKeyPair),
    Hmac(hmac::Algorithm, &'a [u8]),
    /// An empty signature segment.
    Unsigned,
    /// These bytes as the signature.
    Raw(&'a [u8]),
}

impl Keys {
    pub fn load() -> anyhow::Result<Self> {
        let rsa = |pem| {
            RsaKeyPair::from_pkcs8(&pem_der(pem)?).map_err(|e| anyhow::anyhow!("RSA key: {e}"))
        };
        let ec = |alg, pem| {
            EcdsaKeyPair::from_pkcs8(alg, &pem_der(pem)?)
                .map_err(|e| anyhow::anyhow!("EC key: {e}"))
        };
        Ok(Self {
            rsa_a: rsa(keys::RSA_A)?,
            rsa_b: rsa(keys::RSA_B)?,
            ec256_a: ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, keys::EC256_A)?,
            ec256_a_der: ec(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, keys::EC256_A)?,
            ec256_b: ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, keys::EC256_B)?,
            ec384_a: ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, keys::EC384_A)?,
            rng: SystemRandom::new(),
        })
    }

    pub fn rsa_pem(key: &RsaKeyPair) -> anyhow::Result<String> {
        let der = key
            .public_key()
            .as_der()
            .map_err(|e| anyhow::anyhow!("RSA public key: {e}"))?;
        Ok(public_pem(der.as_ref()))
    }

    pub fn ec_pem(key: &EcdsaKeyPair) -> anyhow::Result<String> {
        let der = key
            .public_key()
            .as_der()
            .map_err(|e| anyhow::anyhow!("EC public key: {e}"))?;
        Ok(public_pem(der.as_ref()))
    }

    /// The RSA public key as a JWK (`alg` only when given).
    pub fn rsa_jwk(key: &RsaKeyPair, kid: &str, alg: Option<&str>) -> Value {
        let pk = key.public_key();
        let mut jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "n": b64url(pk.modulus().big_endian_without_leading_zero()),
            "e": b64url(pk.exponent().big_endian_without_leading_zero()),
        });
        if let (Some(alg), Some(o)) = (alg, jwk.as_object_mut()) {
            o.insert("alg".into(), json!(alg));
        }
        jwk
    }

    /// The EC public key (uncompressed point) as a JWK.
    pub fn ec_jwk(key: &EcdsaKeyPair, kid: &str, crv: &str, alg: &str) -> anyhow::Result<Value> {
        let point = key.public_key().as_ref();
        anyhow::ensure!(
            point.first() == Some(&4) && point.len() % 2 == 1,
            "uncompressed EC point"
        );
        let half = (point.len() - 1) / 2;
        Ok(json!({
            "kty": "EC",
            "crv": crv,
            "kid": kid,
            "alg": alg,
            "use": "sig",
            "x": b64url(&point[1..=half]),
            "y": b64url(&point[1 + half..]),
        }))
    }

    /// A compact JWS of the raw JSON texts (any bytes) `header` and `payload`.
    pub fn jws(
        &self,
        header: &str,
        payload: impl AsRef<[u8]>,
        signer: Signer<'_>,
    ) -> anyhow::Result<String> {
        let input = format!("{}.{}", b64url(header.as_bytes()), b64url(payload.as_ref()));
        let sig = match signer {
            Signer::Rsa(key, enc) => {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(enc, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(|e| anyhow::anyhow!("RSA signing: {e}"))?;
                sig
            }
            Signer::Ec(key) => key
                .sign(&self.rng, input.as_bytes())
                .map_err(|e| anyhow::anyhow!("ECDSA signing: {e}"))?
                .as_ref()
                .to_vec(),
            Signer::Hmac(alg, secret) => hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes())
                .as_ref()
                .to_vec(),
            Signer::Unsigned => Vec::new(),
            Signer::Raw(bytes) => bytes.to_vec(),
        };
        Ok(format!("{input}.{}", b64url(&sig)))
    }
}

/// Standard claims of a valid token for `sub` with `roles`.
fn claims(sub: &str, roles: Value) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": roles, "iat": T2000, "nbf": T2000, "exp": T2100})
}

fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(b), Some(c)) = (base.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

fn header(alg: &str, kid: Option<&str>) -> String {
    match kid {
        Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string(),
        None => json!({"alg": alg, "typ": "JWT"}).to_string(),
    }
}

/// Every token the cases send, by name: valid ones for each algorithm, the
/// claim failures, wrong keys, unsigned and malformed tokens.
pub fn tokens(k: &Keys) -> anyhow::Result<Vec<(String, String)>> {
    use signature::{
        RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384,
    };
    let rs256 = Signer::Rsa(&k.rsa_a, &RSA_PKCS1_SHA256);
    let hs = |alg| Signer::Hmac(alg, HS_SECRET.as_bytes());
    let alice = claims("alice", json!(["admin"]));
    let bob = claims("bob", json!(["reader", "auditor"]));
    let dave = claims("dave", json!("reader  auditor admin"));
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, h: String, p: &Value, s: Signer<'_>| -> anyhow::Result<()> {
        out.push((name.to_string(), k.jws(&h, p.to_string(), s)?));
        Ok(())
    };
    let rs = |kid| header("RS256", Some(kid));
    add("rs256_alice", rs("rs-a"), &alice, rs256)?;
    add("rs256_bob", rs("rs-a"), &bob, rs256)?;
    add(
        "rs256_carol_no_roles",
        rs("rs-a"),
        &with(claims("carol", json!(null)), json!({"roles": null})),
        rs256,
    )?;
    add(
        "rs256_zoe_unicode",
        rs("rs-a"),
        &claims("zoë", json!([])),
        rs256,
    )?;
    add(
        "rs256_no_sub",
        rs("rs-a"),
        &with(alice.clone(), json!({"sub": null})),
        rs256,
    )?;
    add("rs256_no_kid", header("RS256", None), &bob, rs256)?;
    add("rs256_unknown_kid", rs("nope"), &bob, rs256)?;
    add(
        "rs384_alice",
        header("RS384", Some("rs-a")),
        &alice,
        Signer::Rsa(&k.rsa_a, &RSA_PKCS1_SHA384),
    )?;
    add(
        "rs512_bob",
        header("RS512", None),
        &bob,
        Signer::Rsa(&k.rsa_a, &RSA_PKCS1_SHA512),
    )?;
    add(
        "ps256_bob",
        header("PS256", None),
        &bob,
        Signer::Rsa(&k.rsa_a, &RSA_PSS_SHA256),
    )?;
    add(
        "ps384_alice",
        header("PS384", None),
        &alice,
        Signer::Rsa(&k.rsa_a, &RSA_PSS_SHA384),
    )?;
    add(
        "es256_alice",
        header("ES256", Some("es-a")),
        &alice,
        Signer::Ec(&k.ec256_a),
    )?;
    add(
        "es384_bob",
        header("ES384", Some("es384-a")),
        &bob,
        Signer::Ec(&k.ec384_a),
    )?;
    add(
        "hs256_dave",
        header("HS256", None),
        &dave,
        hs(hmac::HMAC_SHA256),
    )?;
    add(
        "hs384_bob",
        header("HS384", None),
        &bob,
        hs(hmac::HMAC_SHA384),
    )?;
    add(
        "hs512_dave",
        header("HS512", None),
        &dave,
        hs(hmac::HMAC_SHA512),
    )?;
    add(
        "hs256_wrong_secret",
        header("HS256", None),
        &dave,
        Signer::Hmac(hmac::HMAC_SHA256, HS_WRONG_SECRET.as_bytes()),
    )?;
    let rsa_a_pem = Keys::rsa_pem(&k.rsa_a)?;
    add(
        "hs256_key_confusion",
        header("HS256", None),
        &alice,
        Signer::Hmac(hmac::HMAC_SHA256, rsa_a_pem.as_bytes()),
    )?;
    // Claims.
    add(
        "rs256_expired",
        rs("rs-a"),
        &with(bob.clone(), json!({"exp": T2000})),
        rs256,
    )?;
    add(
        "rs256_nbf_future",
        rs("rs-a"),
        &with(bob.clone(), json!({"nbf": T2099})),
        rs256,
    )?;
    add(
        "rs256_wrong_iss",
        rs("rs-a"),
        &with(bob.clone(), json!({"iss": "https://evil.example.com"})),
        rs256,
    )?;
    add(
        "rs256_no_iss",
        rs("rs-a"),
        &with(bob.clone(), json!({"iss": null})),
        rs256,
    )?;
    add(
        "rs256_wrong_aud",
        rs("rs-a"),
        &with(bob.clone(), json!({"aud": "other-service"})),
        rs256,
    )?;
    add(
        "rs256_aud_array",
        rs("rs-a"),
        &with(bob.clone(), json!({"aud": ["other", AUDIENCE]})),
        rs256,
    )?;
    add(
        "rs256_aud_array_miss",
        rs("rs-a"),
        &with(bob.clone(), json!({"aud": ["other", "x"]})),
        rs256,
    )?;
    add(
        "rs256_no_exp",
        rs("rs-a"),
        &with(bob.clone(), json!({"exp": null})),
        rs256,
    )?;
    add(
        "rs256_exp_string",
        rs("rs-a"),
        &with(bob.clone(), json!({"exp": T2100.to_string()})),
        rs256,
    )?;
    add(
        "rs256_nbf_string",
        rs("rs-a"),
        &with(bob.clone(), json!({"nbf": "0"})),
        rs256,
    )?;
    add(
        "rs256_exp_float",
        rs("rs-a"),
        &with(bob.clone(), json!({"exp": 4_102_444_800.5})),
        rs256,
    )?;
    add(
        "rs256_exp_huge",
        rs("rs-a"),
        &with(bob.clone(), json!({"exp": 1.0e300})),
        rs256,
    )?;
    add(
        "rs256_realm_roles",
        rs("rs-a"),
        &with(
            claims("ünï", json!(null)),
            json!({"roles": null, "realm_access": {"roles": ["admin", "rôle-ü"]}, "name": "Zoë 🦀"}),
        ),
        rs256,
    )?;
    // Keys and algorithms.
    add(
        "rs256_wrong_key",
        rs("rs-a"),
        &alice,
        Signer::Rsa(&k.rsa_b, &RSA_PKCS1_SHA256),
    )?;
    add(
        "es256_wrong_key",
        header("ES256", Some("es-a")),
        &alice,
        Signer::Ec(&k.ec256_b),
    )?;
    add("rs_signed_es_header", header("ES256", None), &alice, rs256)?;
    add(
        "es_signed_rs_header",
        header("RS256", None),
        &alice,
        Signer::Ec(&k.ec256_a),
    )?;
    add("alg_none", header("none", None), &alice, Signer::Unsigned)?;
    add(
        "alg_none_signed",
        header("none", None),
        &alice,
        Signer::Raw(b"sig"),
    )?;
    add(
        "alg_none_upper",
        header("NONE", None),
        &alice,
        Signer::Unsigned,
    )?;
    add("alg_rs256_unsigned", rs("rs-a"), &alice, Signer::Unsigned)?;
    add("alg_unknown", header("XX999", None), &alice, rs256)?;
    add(
        "alg_missing",
        json!({"typ": "JWT"}).to_string(),
        &alice,
        rs256,
    )?;
    add(
        "alg_not_string",
        json!({"alg": 256}).to_string(),
        &alice,
        rs256,
    )?;
    // Payloads that are valid JWS but odd JSON.
    let raw_dup = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","sub":"mallory","roles":["admin"],"exp":{T2100}}}"#
    );
    out.push((
        "rs256_duplicate_sub".into(),
        k.jws(&rs("rs-a"), &raw_dup, rs256)?,
    ));
    out.push((
        "rs256_payload_array".into(),
        k.jws(&rs("rs-a"), "[1,2]", rs256)?,
    ));
    out.push((
        "rs256_payload_string".into(),
        k.jws(&rs("rs-a"), "\"alice\"", rs256)?,
    ));
    out.push((
        "rs256_payload_not_json".into(),
        k.jws(&rs("rs-a"), "not json", rs256)?,
    ));
    out.push((
        "rs256_payload_ws".into(),
        k.jws(&rs("rs-a"), format!(" {} ", bob), rs256)?,
    ));
    // JSON that Go's decoder (OPA) accepts or decodes differently from serde_json.
    let base = format!(
        r#""iss":"{ISSUER}","aud":"{AUDIENCE}","roles":["reader","auditor"],"nbf":{T2000}"#
    );
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let odd_json: Vec<(&str, Vec<u8>)> = vec![
        (
            "rs256_lone_surrogate",
            format!(r#"{{{base},"sub":"bob","exp":{T2100},"name":"\ud800"}}"#).into_bytes(),
        ),
        (
            "rs256_exp_1e400",
            format!(r#"{{{base},"sub":"bob","exp":1e400}}"#).into_bytes(),
        ),
        (
            "rs256_exp_beyond_u64",
            format!(r#"{{{base},"sub":"bob","exp":41024448000000000000000000}}"#).into_bytes(),
        ),
        (
            "rs256_deep_claim",
            format!(r#"{{{base},"sub":"bob","exp":{T2100},"deep":{deep}}}"#).into_bytes(),
        ),
        (
            "rs256_invalid_utf8_sub",
            [
                format!(r#"{{{base},"exp":{T2100},"sub":"bob"#).as_bytes(),
                &[0xe2, 0x82],
                br#""}"#,
            ]
            .concat(),
        ),
        (
            "rs256_escaped_unicode_sub",
            format!(r#"{{{base},"exp":{T2100},"sub":"b\u00f6b\ud83e\udd80"}}"#).into_bytes(),
        ),
    ];
    for (name, payload) in odd_json {
        out.push((name.into(), k.jws(&rs("rs-a"), payload, rs256)?));
    }
    // Header variants that matter to key selection.
    let header_variants: Vec<(&str, String, Signer<'_>)> = vec![
        (
            "ps256_kid_matches_rs256_jwk",
            header("PS256", Some("rs-a")),
            Signer::Rsa(&k.rsa_a, &RSA_PSS_SHA256),
        ),
        (
            "rs384_no_kid",
            header("RS384", None),
            Signer::Rsa(&k.rsa_a, &RSA_PKCS1_SHA384),
        ),
        (
            "rs256_crit_header",
            json!({"alg": "RS256", "crit": ["exp"], "exp": 1}).to_string(),
            rs256,
        ),
        (
            "duplicate_alg_header",
            r#"{"alg":"none","alg":"RS256"}"#.to_string(),
            rs256,
        ),
        (
            "es256_der_signature",
            header("ES256", Some("es-a")),
            Signer::Ec(&k.ec256_a_der),
        ),
    ];
    for (name, h, signer) in header_variants {
        out.push((name.into(), k.jws(&h, bob.to_string(), signer)?));
    }
    // RSA signatures one byte short (a leading zero dropped) and one byte long.
    let stripped = (0..4096u32)
        .find_map(|n| {
            let payload = with(bob.clone(), json!({"jti": n})).to_string();
            let tok = k.jws(&rs("rs-a"), payload, rs256).ok()?;
            let (input, sig) = tok.rsplit_once('.')?;
            let raw = URL_SAFE_NO_PAD.decode(sig).ok()?;
            (raw.first() == Some(&0)).then(|| {
                (
                    format!("{input}.{}", b64url(&raw[1..])),
                    format!("{input}.{}", b64url(&[&[0u8, 0][..], &raw[1..]].concat())),
                )
            })
        })
        .context("no RSA signature with a leading zero byte in 4096 tries")?;
    out.push(("rs256_signature_leading_zero_dropped".into(), stripped.0));
    out.push(("rs256_signature_extra_zero".into(), stripped.1));
    // Tampering and garbage.
    let valid = out
        .iter()
        .find(|(n, _)| n == "rs256_alice")
        .map(|(_, t)| t.clone())
        .context("rs256_alice")?;
    let parts: Vec<&str> = valid.split('.').collect();
    anyhow::ensure!(parts.len() == 3, "a JWS has three segments");
    let swapped = b64url(
        with(alice.clone(), json!({"sub": "mallory"}))
            .to_string()
            .as_bytes(),
    );
    let garbage: Vec<(&str, String)> = vec![
        (
            "tampered_payload",
            format!("{}.{swapped}.{}", parts[0], parts[2]),
        ),
        (
            "truncated_signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() / 2]
            ),
        ),
        (
            "padded_segments",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "std_base64_chars",
            format!("{}.{}.{}+/", parts[0], parts[1], parts[2]),
        ),
        ("two_segments", format!("{}.{}", parts[0], parts[1])),
        ("four_segments", format!("{valid}.{}", parts[2])),
        ("one_segment", "abc".into()),
        ("dots_only", "..".into()),
        ("abc_segments", "a.b.c".into()),
        ("empty_objects", "e30.e30.".into()),
        ("non_canonical_tail", "e31.e30.".into()),
        (
            "header_not_json",
            format!("bm90IGpzb24.{}.{}", parts[1], parts[2]),
        ),
        ("header_array", format!("WzFd.{}.{}", parts[1], parts[2])),
        ("unicode_token", "тест.тест.тест".into()),
        (
            "long_token",
            format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(342)
            ),
        ),
        (
            "embedded_space",
            format!("{}.{} .{}", parts[0], parts[1], parts[2]),
        ),
    ];
    out.extend(garbage.into_iter().map(|(n, t)| (n.to_string(), t)));
    Ok(out)
}

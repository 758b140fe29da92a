//! Test credentials: RSA-signed JWTs made on the spot and hashed API keys.

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::Digest as _;

/// Unpadded base64url, as in a JWT.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex SHA-256 of `key`, as API keys are stored in policy data.
pub fn sha256_hex(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// An RSA key pair generated for one test, signing RS256 tokens.
pub struct RsaSigner {
    key: KeyPair,
    rng: SystemRandom,
}

impl RsaSigner {
    /// A fresh 2048-bit key.
    pub fn generate() -> anyhow::Result<Self> {
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        let der = self
            .key
            .public_key()
            .as_der()
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).context("base64 is ASCII")?);
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }

    /// A compact JWS of `claims` with header `{"alg":"RS256","typ":"JWT"}`.
    pub fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        self.sign_with_header(&serde_json::json!({"alg": "RS256", "typ": "JWT"}), claims)
    }

    /// A compact JWS of `claims` with `header`, signed RS256 whatever the
    /// header says.
    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let signing_input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(header)?),
            b64url(&serde_json::to_vec(claims)?)
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }
}

/// A compact JWS of `claims` with header `{"alg":"HS256","typ":"JWT"}`,
/// MACed with `secret` (for algorithm-confusion cases).
pub fn hs256_token(secret: &[u8], claims: &serde_json::Value) -> anyhow::Result<String> {
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(
            &serde_json::json!({"alg": "HS256", "typ": "JWT"})
        )?),
        b64url(&serde_json::to_vec(claims)?)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(tag.as_ref())))
}

/// An unsecured JWT (`alg: none`, empty signature) of `claims`.
pub fn unsigned_token(claims: &serde_json::Value) -> anyhow::Result<String> {
    Ok(format!(
        "{}.{}.",
        b64url(&serde_json::to_vec(
            &serde_json::json!({"alg": "none", "typ": "JWT"})
        )?),
        b64url(&serde_json::to_vec(claims)?)
    ))
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

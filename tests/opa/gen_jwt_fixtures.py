#!/usr/bin/env python3
"""Generate the JWT test fixtures used by rego/policies/jwtValidation_test.rego.

Prints a Rego fragment (keys, JWKS, PEMs, tokens) to stdout. Requires pyjwt and
cryptography (test-time only). Re-running produces new keys: paste the output
into jwtValidation_test.rego between the FIXTURES markers.
"""
import base64
import json

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

EXP_2100 = 4102444800  # 2100-01-01T00:00:00Z
EXP_2000 = 946684800  # 2000-01-01T00:00:00Z
NBF_2099 = 4070908800  # 2099-01-01T00:00:00Z
ISS = "https://auth.example.com"
AUD = "api-service"
HS_SECRET = "test-hs256-secret-not-for-production-0123456789"


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def jwk(key, kid, alg):
    d = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    d.update({"kid": kid, "alg": alg, "use": "sig"})
    return d


def b64(d):
    return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).rstrip(b"=").decode()


def main():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    base = {"iss": ISS, "aud": AUD, "sub": "alice", "roles": ["admin", "reader"],
            "iat": EXP_2000, "nbf": EXP_2000, "exp": EXP_2100}

    def rs(claims, key=rsa_key, alg="RS256", kid="rs1"):
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    tokens = {
        "rs256_valid": rs(base),
        "rs256_aud_array": rs({**base, "sub": "bob", "aud": ["other-service", AUD]}),
        "rs256_no_sub": rs({k: v for k, v in base.items() if k != "sub"}),
        "rs256_expired": rs({**base, "exp": EXP_2000}),
        "rs256_nbf_future": rs({**base, "nbf": NBF_2099}),
        "rs256_wrong_iss": rs({**base, "iss": "https://evil.example.com"}),
        "rs256_wrong_aud": rs({**base, "aud": "other-service"}),
        "rs256_wrong_key": rs(base, key=rsa_other),
        "rs384_valid": rs(base, alg="RS384"),
        "es256_valid": jwt.encode({**base, "sub": "carol"}, ec_key, algorithm="ES256", headers={"kid": "es1"}),
        "hs256_valid": jwt.encode({**base, "sub": "dave"}, HS_SECRET, algorithm="HS256"),
        "hs256_wrong_secret": jwt.encode({**base, "sub": "dave"}, "some-other-secret-that-is-long-enough-0123456789", algorithm="HS256"),
        "alg_none": b64({"alg": "none", "typ": "JWT"}) + "." + b64(base) + ".",
    }
    # Valid signature over the original payload, but the payload is swapped.
    h, _, s = tokens["rs256_valid"].split(".")
    tokens["rs256_tampered"] = h + "." + b64({**base, "sub": "mallory", "roles": ["admin"]}) + "." + s

    jwks = {"keys": [jwk(rsa_key, "rs1", "RS256"), jwk(ec_key, "es1", "ES256")]}
    out = []
    out.append(f"hs_secret := {json.dumps(HS_SECRET)}")
    out.append("jwks := " + json.dumps(jwks, indent="\t"))
    out.append(f"rsa_pem := {json.dumps(pem_public(rsa_key))}")
    out.append(f"ec_pem := {json.dumps(pem_public(ec_key))}")
    for name, tok in tokens.items():
        out.append(f"tok_{name} := {json.dumps(tok)}")
    print("\n\n".join(out))


if __name__ == "__main__":
    main()

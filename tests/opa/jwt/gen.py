import json, base64, datetime, os, pickle
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519, padding, utils
from cryptography.hazmat.primitives import hashes, serialization, hmac as chmac
from cryptography import x509
from cryptography.x509.oid import NameOID

def b64u(b):
    if isinstance(b, str): b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def ub64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

KF = os.path.join(os.environ.get("JWT_VECTOR_CACHE", "/tmp"), "jwt-vector-keys.pkl")
if os.path.exists(KF):
    _K = pickle.load(open(KF, "rb"))
    K = {k: serialization.load_pem_private_key(v, None) for k, v in _K.items()}
else:
    K = {
        "rsa1": rsa.generate_private_key(65537, 2048),
        "rsa2": rsa.generate_private_key(65537, 2048),
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p256b": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "ed2": ed25519.Ed25519PrivateKey.generate(),
    }
    pickle.dump({k: v.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()) for k, v in K.items()}, open(KF, "wb"))

HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

def sign(alg, key, data, salt=None):
    if isinstance(data, str): data = data.encode()
    fam, bits = alg[:2], alg[2:]
    if alg == "EdDSA":
        return key.sign(data)
    h = HASH[bits]()
    if fam == "HS":
        m = chmac.HMAC(key if isinstance(key, bytes) else key.encode(), h); m.update(data); return m.finalize()
    if fam == "RS":
        return key.sign(data, padding.PKCS1v15(), h)
    if fam == "PS":
        return key.sign(data, padding.PSS(padding.MGF1(h), h.digest_size if salt is None else salt), h)
    if fam == "ES":
        der = key.sign(data, ec.ECDSA(h))
        r, s = utils.decode_dss_signature(der)
        n = (key.curve.key_size + 7) // 8
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    raise ValueError(alg)

def tok(alg, key, payload, header=None, salt=None, sigalg=None):
    h = {"alg": alg, "typ": "JWT"} if header is None else header
    hs = h if isinstance(h, str) else b64u(json.dumps(h, separators=(",", ":")))
    ps = payload if isinstance(payload, str) else b64u(json.dumps(payload, separators=(",", ":")))
    si = hs + "." + ps
    sig = sign(sigalg or alg, key, si, salt) if key is not None else b""
    return si + "." + b64u(sig)

def pub_pem(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

CF = os.path.join(os.environ.get("JWT_VECTOR_CACHE", "/tmp"), "jwt-vector-certs.pkl")
def _cert(k):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(1000).not_valid_before(datetime.datetime(2020,1,1)).not_valid_after(datetime.datetime(2120,1,1)))
    signer = K["p256"]
    c = b.sign(signer, hashes.SHA256())
    return c.public_bytes(serialization.Encoding.PEM).decode()
if os.path.exists(CF):
    CERT = pickle.load(open(CF, "rb"))
else:
    CERT = {k: _cert(v) for k, v in K.items()}
    pickle.dump(CERT, open(CF, "wb"))

def i2b(i, n=None):
    n = n or max(1, (i.bit_length() + 7) // 8)
    return i.to_bytes(n, "big")

def jwk(name, private=False, **extra):
    k = K[name]
    if isinstance(k, rsa.RSAPrivateKey):
        pn = k.public_key().public_numbers()
        d = {"kty": "RSA", "n": b64u(i2b(pn.n)), "e": b64u(i2b(pn.e))}
        if private:
            pv = k.private_numbers()
            d.update(d=b64u(i2b(pv.d)), p=b64u(i2b(pv.p)), q=b64u(i2b(pv.q)), dp=b64u(i2b(pv.dmp1)), dq=b64u(i2b(pv.dmq1)), qi=b64u(i2b(pv.iqmp)))
    elif isinstance(k, ec.EllipticCurvePrivateKey):
        pn = k.public_key().public_numbers()
        n = (k.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[k.curve.name]
        d = {"kty": "EC", "crv": crv, "x": b64u(i2b(pn.x, n)), "y": b64u(i2b(pn.y, n))}
        if private:
            d["d"] = b64u(i2b(k.private_numbers().private_value, n))
    else:
        raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        d = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        if private:
            d["d"] = b64u(k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
    d.update(extra)
    return d

def js(o):
    return json.dumps(o)
FUT = 4102444800  # 2100
PAST = 946684800  # 2000

//! The RSA fast path (`aws-lc-rs`) against the reference path (`num-bigint`,
//! Go's rules step for step): on keys of 1024 to 4096 bits, odd sizes,
//! small, large and out-of-range exponents, every call must answer the same
//! on valid, tampered, resized and random signatures. Also the caches:
//! repeated calls answer as the first.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, RsaPssSaltLength, UnparsedPublicKey};
use num_bigint::BigUint;

use super::super::sig::{self, Hash, RsaKey};
use super::*;

/// Keys made for this test (primes from a seeded generator), for what
/// `aws-lc-rs` cannot generate: sizes below 2048 or not a multiple of 8,
/// and exponents other than 65537.
struct CustomKey {
    name: &'static str,
    e: u64,
    p: &'static str,
    q: &'static str,
}

const CUSTOM_KEYS: &[CustomKey] = &[
    CustomKey {
        name: "1024-bit, e = 65537",
        e: 65537,
        p: "d78362c8c04e057c7a9cf1fd2d608b027362c53b8980b619d0d22518c4f7ae789c71962a0004c56926dc68465e62abbf4173293ae52c5338ace5d9c5bfdc7959",
        q: "f04e8c06a6ffcb51600ed5cd98d24b4bda1961894cc3fd6a220c2b9759ae306b8494b1e0ea00b3729bbf45a751e0a979a9aeb87c7f5761e35307da6d434a9f79",
    },
    CustomKey {
        name: "1024-bit, e = 3",
        e: 3,
        p: "e81b5669644b0e02e3fa478b0ea2aaeda8cade7269315d5a0e76e60b508107dfe1410adb5bb00f73ed2b2ea49f14b8a6d0b125623fa0b8ec030277b937c9d8f1",
        q: "e60ba2829c31b504409283e1cfce2ccf4f5728ca85f4861241679d7d2a1f692e22018d05d2ae1b8928b4f5de17db6bcec35b40fa64db51889bcb4c8412da8841",
    },
    CustomKey {
        name: "1031-bit, e = 65537",
        e: 65537,
        p: "cbb7b0fabce58ba5eef0ed9950c7eb5f8ae867858363d624c7b4592d46dd4ed9c7981749ce10a7d2920c24adc2c903f55da5dad08aa30092c142b301a8e499b1f",
        q: "6185a65c0ee86d662655e11983f05291af40fdc15763ab9d0f4fec2f7d2176a9313cc14c8571786de5515eaa32f6a857de7a1824577adc226618d7f9571f09ca5",
    },
    CustomKey {
        name: "2047-bit, e = 65537",
        e: 65537,
        p: "ee2218894cf79733dce78fff44d7dbbd2623b4c838e2af5e83c775747f9512032eec9e31b3b5cc0a706f648a74e8095ae3ed589f6ed4ba80b99a4f64e7f284197f4c8527912e0326300ecd46f61c4da11c14cdbf27839f099d31a9bc631f9c433d366e645637e91799007cc528db192aae75b5483a0f58d204274df0b4f758f5",
        q: "6073de947bc98fbef797b1d30c66c5ecad686ca721e81c20fbc0236259b7c983ac9e3797b6bc9470e0afaae9ea2ae2731b6c2cec6fba24b1dc2129c62314e98fbb37b3a6376401fcaebffaedef27be241f3540abde02cc63e290e6b4813e0ffdc5ba8945e5e4149a342e53e453c10f83baf2748a2af05ad8aa87807b3924faa5",
    },
    CustomKey {
        name: "2048-bit, e = 3",
        e: 3,
        p: "d66c3acfdaf931ce02fae91aabc30133e5366c609a3ce8ec8f36fdd021413e4b55dae2e4d7a54b5a16dd3ab6a5c229599f4631ae9940b824e64f0956d387113d3d7cb40f566ea4c0e309fc816ab388df79c0268e22f47f073e5d7d01c96265d30d90fe9d3f7d6a6cc638b23019fc46609038751d3371e243c613d2a4069eec63",
        q: "f26fcbaac4874856872f4abf0455b5dabbd977255fa726f0f34536b8a17b7e3a8b73364951a4d0c75b2f79ba11e8289cb458f0c2c34fe2203ff56172c96cf246c037e0ef1b5832e0ae6b2a81e90c4535714d536ea0a16d4eb0bfea5e96e990f85af13d7be491d958b33dd814f6edfeb917571ca863e523b037c0d8d23b0096ed",
    },
    CustomKey {
        name: "2049-bit, e = 65537",
        e: 65537,
        p: "18c96fe99ce4177946932d52075bfa04b07dc45614a8f8db98d7e0b6dfd5627aad5c288658129a31bb2b6d8b4d9c364b9ff29b9f772231c977a391ee8fa3f6975f28c35b74f0c20071c6e11f26a994abd3658829cb39b0539b810e09e71d9d657d81e8b333626c0a9c476ea8ceb92ec7a35f28661f8b1046f30d2e2d6f888b49d",
        q: "f0507cb900e56eb33bb38c9e5b9b0e5291c75c22b4a4531ea1d229e5b031aaca2086306789a89672d56ef38a134b170b618c016c7b0b73c8f420a06bc7e865f524c0b87b1999998bfcf9d532a8cf99e826f9d60ed62918d79b793377316805fc4c77efdde98ef58b0729bd4d983e1f1e599260ba23f26cab187aea3a732028a5",
    },
    CustomKey {
        name: "2048-bit, e = 2^31 - 1",
        e: 2147483647,
        p: "fb26bc9a3c51948f028310bf6ca0a142303f105636a7a3ea1483ca9a599caab42d76ba252cec4025eb87a8b8c4c4c37185565f386150925b9bf601d1cf98d64e7be64c66182366f1c0c4742b2a286e6a209bb374511ddc76175ca86267ec8b2b63ca2560ad593ebcd292e2849c79c7636000f6e3f256f18e25d12b326955065f",
        q: "ea3cd15e1484a5c7f40d12c95e7b06b782874132691e7c0c6fdafb0d455d64b6f9df72c6a2bf16cadc768db9128b98b955400eefe23084f3e4c320eaa55fd4678d204f6913d8288facd3807bdc727b77cb6f5eb7ef303ef5bf72ab375cf321051898e1939a44cd9bc33305d38c509f8e53683e078bb3381b16874d6283103f5f",
    },
    CustomKey {
        name: "2048-bit, e = 2^31 + 1 (Go rejects)",
        e: 2147483649,
        p: "dc42695bb6987b7964a0e8ab3d5637938ddf136acb09767b5c751b130551efc6ccb233d8edbd8cc6a7d95d7c645f87c3808ca0af9f8a03f42f6f2ba9e23ce35312ac7dbd210c0661236a385db665808e3f9912ccf0dc3c3f0ec834e97f0ffa36fa4802aebce97f99c258516aebec8641e3996fea87d3191f3d98b595775b51a9",
        q: "ef002fe3df75ab306e67a8eb37dafad1807872fc78bfc18bbc3879d18464bc99a7a1046a7ab4e473989dc57f0281808c2da748a47977fca76f129779e104579e7a5609116ada15cee340b3b560c36e6304bc4cacdac3d84ed9d38c5ce2c271331a27069a4d1051da4cb71443db1783eae65ea092162afa760a522b63fe804b69",
    },
    CustomKey {
        name: "2048-bit, e = 2^32 + 15 (Go rejects)",
        e: 4294967311,
        p: "d0c0aa61f909f62d537b57ca718606d7952da35e65dcfd4409d7db1bd3089a558f5e736b4929ccd69b68ba34ad4b5847c0295aa83c4965cfbc51312ad0bd9d3d58a9e2fe32aa873f3f01db9ac1d3e8dff30dea04b3df8e770ab1effdb17641b164e0f0060244799ed35a1e530f30bdd66d8a835ef234dd513bd8bfbc48e5c20b",
        q: "deb42967c89694e55af9c13ee4af2877f425319f42dc269064b66e4e095b0a2e932183cbd52c37b6e05da74b49fa80170efe79d4ab7b0cf7984f22e7886a25474a328bc1c6ca23c1e9a9ee67663dca5d38c90d4c05b76a46a7e87dc5df2115808be37f988c6dc4916aaedfa2eef7a06a4973309bae44727ba6fcd46e60cda599",
    },
];

/// xorshift64*: reproducible choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A key under test: its public half and a way to sign with it.
struct TestKey {
    name: String,
    n: BigUint,
    e: BigUint,
    signer: Signer,
}

enum Signer {
    AwsLc(RsaKeyPair),
    /// `d mod p-1`, `d mod q-1`, `q^-1 mod p` (CRT), or `None` where `e`
    /// has no inverse.
    Crt {
        p: BigUint,
        q: BigUint,
        dp: BigUint,
        dq: BigUint,
        q_inv: BigUint,
    },
}

fn hex(s: &str) -> BigUint {
    BigUint::parse_bytes(s.as_bytes(), 16).expect("hex")
}

fn custom(k: &CustomKey) -> TestKey {
    let (p, q, e) = (hex(k.p), hex(k.q), BigUint::from(k.e));
    let one = BigUint::from(1u8);
    let dp = e.modinv(&(&p - &one)).expect("e invertible mod p-1");
    let dq = e.modinv(&(&q - &one)).expect("e invertible mod q-1");
    let q_inv = q.modinv(&p).expect("q invertible mod p");
    TestKey {
        name: k.name.to_string(),
        n: &p * &q,
        e,
        signer: Signer::Crt {
            p,
            q,
            dp,
            dq,
            q_inv,
        },
    }
}

fn generated(size: KeySize, name: &str) -> TestKey {
    let pair = RsaKeyPair::generate(size).expect("rsa");
    let public = pair.public_key();
    TestKey {
        name: name.to_string(),
        n: BigUint::from_bytes_be(public.modulus().big_endian_without_leading_zero()),
        e: BigUint::from_bytes_be(public.exponent().big_endian_without_leading_zero()),
        signer: Signer::AwsLc(pair),
    }
}

const HASHES: [Hash; 3] = [Hash::Sha256, Hash::Sha384, Hash::Sha512];

impl TestKey {
    fn bits(&self) -> usize {
        self.n.bits() as usize
    }

    fn size(&self) -> usize {
        self.bits().div_ceil(8)
    }

    /// `m^d mod n` as a modulus-sized string.
    fn private_op(&self, em: &[u8]) -> Vec<u8> {
        let Signer::Crt {
            p,
            q,
            dp,
            dq,
            q_inv,
        } = &self.signer
        else {
            panic!("aws-lc-rs keys sign themselves");
        };
        let m = BigUint::from_bytes_be(em);
        let m1 = m.modpow(dp, p);
        let m2 = m.modpow(dq, q);
        let h = (q_inv * ((&m1 + p) - (&m2 % p))) % p;
        let s = (m2 + h * q).to_bytes_be();
        let mut out = vec![0; self.size() - s.len()];
        out.extend_from_slice(&s);
        out
    }

    fn sign_pkcs1(&self, hash: Hash, msg: &[u8]) -> Vec<u8> {
        if let Signer::AwsLc(pair) = &self.signer {
            let enc: &'static dyn signature::RsaEncoding = match hash {
                Hash::Sha256 => &signature::RSA_PKCS1_SHA256,
                Hash::Sha384 => &signature::RSA_PKCS1_SHA384,
                Hash::Sha512 => &signature::RSA_PKCS1_SHA512,
            };
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(enc, &SystemRandom::new(), msg, &mut sig)
                .expect("sign");
            return sig;
        }
        let t = [hash.digest_info_prefix(), &hash.digest(&[msg])].concat();
        let mut em = vec![0xff; self.size()];
        em[0] = 0;
        em[1] = 1;
        let at = em.len() - t.len();
        em[at - 1] = 0;
        em[at..].copy_from_slice(&t);
        self.private_op(&em)
    }

    /// The largest salt the key takes with `hash`.
    fn max_salt(&self, hash: Hash) -> usize {
        (self.bits() - 1).div_ceil(8) - hash.len() - 2
    }

    fn sign_pss(&self, hash: Hash, msg: &[u8], salt: &[u8]) -> Vec<u8> {
        if let Signer::AwsLc(pair) = &self.signer {
            let enc: &'static dyn signature::RsaEncoding = match (hash, salt.len()) {
                (Hash::Sha256, 32) => &signature::RSA_PSS_SHA256,
                (Hash::Sha384, 48) => &signature::RSA_PSS_SHA384,
                (Hash::Sha512, 64) => &signature::RSA_PSS_SHA512,
                (Hash::Sha256, 0) => {
                    &const { signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Custom(0)) }
                }
                (Hash::Sha384, 0) => {
                    &const { signature::RSA_PSS_SHA384.with_pss_salt_length(RsaPssSaltLength::Custom(0)) }
                }
                (Hash::Sha512, 0) => {
                    &const { signature::RSA_PSS_SHA512.with_pss_salt_length(RsaPssSaltLength::Custom(0)) }
                }
                (Hash::Sha256, _) => {
                    &const { signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max) }
                }
                (Hash::Sha384, _) => {
                    &const { signature::RSA_PSS_SHA384.with_pss_salt_length(RsaPssSaltLength::Max) }
                }
                (Hash::Sha512, _) => {
                    &const { signature::RSA_PSS_SHA512.with_pss_salt_length(RsaPssSaltLength::Max) }
                }
            };
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(enc, &SystemRandom::new(), msg, &mut sig)
                .expect("sign");
            return sig;
        }
        // EMSA-PSS-ENCODE (RFC 8017 9.1.1).
        let em_bits = self.bits() - 1;
        let em_len = em_bits.div_ceil(8);
        let h = hash.digest(&[&[0u8; 8], &hash.digest(&[msg]), salt]);
        let mut db = vec![0u8; em_len - h.len() - 1];
        let one_at = db.len() - salt.len() - 1;
        db[one_at] = 1;
        db[one_at + 1..].copy_from_slice(salt);
        sig::mgf1_xor(&mut db, hash, &h);
        db[0] &= 0xff >> (8 * em_len - em_bits);
        let em = [db.as_slice(), &h, &[0xbc]].concat();
        self.private_op(&em)
    }
}

/// Counts the comparisons and how many the fast path answered.
#[derive(Default)]
struct Tally {
    cases: usize,
    fast: usize,
    valid: usize,
}

/// Checks one call both ways; `expected` where the answer is known.
#[allow(clippy::too_many_arguments)]
fn check(
    tally: &mut Tally,
    key: &TestKey,
    fast: &RsaKey,
    pss: Option<Option<usize>>,
    hash: Hash,
    msg: &[u8],
    sig_bytes: &[u8],
    expected: Option<bool>,
    what: &str,
) {
    let (got, reference) = match pss {
        None => (
            fast.verify_pkcs1(hash, msg, sig_bytes),
            sig::rsa_pkcs1_verify(&key.n, &key.e, hash, msg, sig_bytes),
        ),
        Some(salt) => (
            fast.verify_pss(hash, msg, sig_bytes, salt),
            sig::rsa_pss_verify(&key.n, &key.e, hash, msg, sig_bytes, salt),
        ),
    };
    let label = format!("{} {hash:?} {pss:?}: {what}", key.name);
    assert_eq!(got, reference, "fast and reference paths differ: {label}");
    if let Some(expected) = expected {
        assert_eq!(reference, expected, "unexpected answer: {label}");
    }
    tally.cases += 1;
    tally.fast += usize::from(fast.uses_aws_lc(pss.is_some(), hash));
    tally.valid += usize::from(reference);
}

fn flip_bit(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = rng.below(out.len());
    out[i] ^= 1 << rng.below(8);
    out
}

/// Every check for one key; `go_ok` is whether Go accepts the key at all.
fn check_key(tally: &mut Tally, rng: &mut Rng, key: &TestKey, go_ok: bool) {
    let fast = RsaKey::new(key.n.clone(), key.e.clone());
    let k = key.size();
    let valid = Some(go_ok);
    let invalid = Some(false);
    for (i, &hash) in HASHES.iter().enumerate() {
        let msg_len = 1 + rng.below(300);
        let msg = rng.bytes(msg_len);
        let other_hash = HASHES[(i + 1) % 3];

        // PKCS #1 v1.5.
        let good = key.sign_pkcs1(hash, &msg);
        let pkcs1 = |tally: &mut Tally, sig: &[u8], m: &[u8], h, exp, what| {
            check(tally, key, &fast, None, h, m, sig, exp, what)
        };
        pkcs1(tally, &good, &msg, hash, valid, "valid");
        pkcs1(tally, &good, &msg, other_hash, invalid, "other hash");
        let bad = flip_bit(rng, &good);
        pkcs1(tally, &bad, &msg, hash, invalid, "signature bit flipped");
        pkcs1(
            tally,
            &good,
            &flip_bit(rng, &msg),
            hash,
            invalid,
            "message bit flipped",
        );
        pkcs1(
            tally,
            &good[1..],
            &msg,
            hash,
            invalid,
            "signature one byte short",
        );
        let longer = [&[0u8][..], &good].concat();
        pkcs1(tally, &longer, &msg, hash, invalid, "leading zero added");
        pkcs1(
            tally,
            &good[..k - 1],
            &msg,
            hash,
            invalid,
            "last byte dropped",
        );
        let n_bytes = key.n.to_bytes_be();
        pkcs1(tally, &n_bytes, &msg, hash, invalid, "signature = n");
        let above = (&key.n + BigUint::from(8u8)).to_bytes_be();
        if above.len() == k {
            pkcs1(tally, &above, &msg, hash, invalid, "signature > n");
        }
        pkcs1(tally, &vec![0xff; k], &msg, hash, invalid, "all ones");
        pkcs1(tally, &vec![0; k], &msg, hash, invalid, "zero");
        let mut one = vec![0; k];
        one[k - 1] = 1;
        pkcs1(tally, &one, &msg, hash, invalid, "one");
        pkcs1(tally, &rng.bytes(k), &msg, hash, None, "random");
        // A leading zero byte in a valid signature (about 1 in 256).
        if good[0] == 0 {
            pkcs1(
                tally,
                &good[1..],
                &msg,
                hash,
                invalid,
                "leading zero stripped",
            );
        }

        // PSS: detected salt length (verify_ps*) and hash-sized (decode_verify).
        let auto = Some(None);
        let sized = Some(Some(hash.len()));
        let mut salts = vec![hash.len(), 0, key.max_salt(hash)];
        if let Signer::Crt { .. } = key.signer {
            salts.push(20);
        }
        // (1024-bit keys have no room for SHA-512's 64-byte salt.)
        salts.retain(|&len| len <= key.max_salt(hash));
        for salt_len in salts {
            let salt = rng.bytes(salt_len);
            let good = key.sign_pss(hash, &msg, &salt);
            let pss = |tally: &mut Tally, mode, sig: &[u8], m: &[u8], h, exp, what: &str| {
                let what = format!("salt {salt_len}: {what}");
                check(tally, key, &fast, mode, h, m, sig, exp, &what)
            };
            let hash_sized = Some(go_ok && salt_len == hash.len());
            pss(tally, auto, &good, &msg, hash, valid, "valid");
            pss(tally, sized, &good, &msg, hash, hash_sized, "valid");
            pss(tally, auto, &good, &msg, other_hash, invalid, "other hash");
            let bad = flip_bit(rng, &good);
            pss(
                tally,
                auto,
                &bad,
                &msg,
                hash,
                invalid,
                "signature bit flipped",
            );
            pss(
                tally,
                sized,
                &bad,
                &msg,
                hash,
                invalid,
                "signature bit flipped",
            );
            let m2 = flip_bit(rng, &msg);
            pss(
                tally,
                auto,
                &good,
                &m2,
                hash,
                invalid,
                "message bit flipped",
            );
            pss(
                tally,
                sized,
                &good[1..],
                &msg,
                hash,
                invalid,
                "one byte short",
            );
            let longer = [&[0u8][..], &good].concat();
            pss(
                tally,
                auto,
                &longer,
                &msg,
                hash,
                invalid,
                "leading zero added",
            );
            // The two paddings never verify each other's signatures.
            pkcs1(
                tally,
                &good,
                &msg,
                hash,
                invalid,
                "PSS signature as PKCS #1",
            );
        }
        let pss_random = rng.bytes(k);
        check(
            tally,
            key,
            &fast,
            auto,
            hash,
            &msg,
            &pss_random,
            None,
            "PSS random",
        );
        check(
            tally,
            key,
            &fast,
            sized,
            hash,
            &msg,
            &pss_random,
            None,
            "PSS random",
        );
        check(
            tally,
            key,
            &fast,
            auto,
            hash,
            &msg,
            &good,
            invalid,
            "PKCS #1 as PSS",
        );
        check(
            tally,
            key,
            &fast,
            sized,
            hash,
            &msg,
            &good,
            invalid,
            "PKCS #1 as PSS",
        );
    }
}

/// Checks every key, returning the tally.
fn check_keys(keys: &[(TestKey, bool)], seed: u64) -> Tally {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for (key, go_ok) in keys {
        check_key(&mut tally, &mut rng, key, *go_ok);
    }
    tally
}

#[test]
fn fast_and_reference_paths_agree_on_generated_keys() {
    let sizes = [
        (KeySize::Rsa2048, "2048-bit (aws-lc-rs)"),
        (KeySize::Rsa3072, "3072-bit (aws-lc-rs)"),
        (KeySize::Rsa4096, "4096-bit (aws-lc-rs)"),
    ];
    let keys: Vec<(TestKey, bool)> = std::thread::scope(|scope| {
        let handles = sizes.map(|(size, name)| scope.spawn(move || generated(size, name)));
        handles
            .into_iter()
            .map(|h| (h.join().expect("keygen"), true))
            .collect()
    });
    let tally = check_keys(&keys, 0x9e37_79b9_7f4a_7c15);
    // 3 keys x 3 hashes x (13 PKCS #1 + 3 salts x 9 PSS + 4) calls, each
    // answered by aws-lc-rs.
    assert!(tally.cases >= 390, "only {} cases", tally.cases);
    assert_eq!(tally.fast, tally.cases);
    assert!(tally.valid >= 45, "only {} valid signatures", tally.valid);
}

#[test]
fn fast_and_reference_paths_agree_on_custom_keys() {
    let keys: Vec<(TestKey, bool)> = CUSTOM_KEYS
        .iter()
        .map(|k| (custom(k), !k.name.contains("Go rejects")))
        .collect();
    let tally = check_keys(&keys, 0x2545_f491_4f6c_dd1d);
    assert!(tally.cases >= 1400, "only {} cases", tally.cases);
    assert!(
        tally.fast >= 600,
        "the fast path answered only {} of {} cases",
        tally.fast,
        tally.cases
    );
    assert!(tally.valid >= 110, "only {} valid signatures", tally.valid);
}

#[test]
fn fast_path_is_taken_only_where_it_answers_as_go() {
    let keys: Vec<TestKey> = CUSTOM_KEYS.iter().map(custom).collect();
    let by_name = |name: &str| {
        keys.iter()
            .find(|k| k.name.starts_with(name))
            .map(|k| RsaKey::new(k.n.clone(), k.e.clone()))
            .expect("key")
    };
    let uses = |key: &RsaKey| [false, true].map(|pss| HASHES.map(|h| key.uses_aws_lc(pss, h)));
    // 1024–2047 bits: only RS256 and RS512 (aws-lc-rs's 1024–8192 bit
    // PKCS #1 algorithms); Go's own size minimum is 1024.
    for name in [
        "1024-bit, e = 65537",
        "1024-bit, e = 3",
        "1031-bit",
        "2047-bit",
    ] {
        assert_eq!(
            uses(&by_name(name)),
            [[true, false, true], [false, false, false]],
            "{name}"
        );
    }
    for name in ["2048-bit, e = 3", "2049-bit", "2048-bit, e = 2^31 - 1"] {
        assert_eq!(uses(&by_name(name)), [[true; 3]; 2], "{name}");
    }
    // Exponents Go refuses (AWS-LC would take them): never the fast path.
    for name in ["2048-bit, e = 2^31 + 1", "2048-bit, e = 2^32 + 15"] {
        assert_eq!(uses(&by_name(name)), [[false; 3]; 2], "{name}");
    }
    // AWS-LC itself verifies with such a key, which Go (and so OPA) does not.
    let key = keys
        .iter()
        .find(|k| k.name.starts_with("2048-bit, e = 2^31 + 1"))
        .expect("key");
    let sig_bytes = key.sign_pkcs1(Hash::Sha256, b"msg");
    let der = RsaKey::der_for_test(&key.n, &key.e);
    assert!(
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(b"msg", &sig_bytes)
            .is_ok()
    );
    assert!(!sig::rsa_pkcs1_verify(
        &key.n,
        &key.e,
        Hash::Sha256,
        b"msg",
        &sig_bytes
    ));
    assert!(!RsaKey::new(key.n.clone(), key.e.clone()).verify_pkcs1(
        Hash::Sha256,
        b"msg",
        &sig_bytes
    ));

    // Even, 1 and oversized exponents, an even modulus, and moduli outside
    // 1024..=8192 bits.
    let n2048 = &keys[4].n;
    for e in [2u64, 1, 65536, 1 << 40 | 1] {
        let key = RsaKey::new(n2048.clone(), BigUint::from(e));
        assert_eq!(uses(&key), [[false; 3]; 2], "e = {e}");
    }
    let even = RsaKey::new(n2048 + 1u8, BigUint::from(65537u32));
    assert_eq!(uses(&even), [[false; 3]; 2], "even modulus");
    let small = RsaKey::new((BigUint::from(1u8) << 1023) - 1u8, BigUint::from(65537u32));
    assert_eq!(uses(&small), [[false; 3]; 2], "1023 bits");
    let big = RsaKey::new((BigUint::from(1u8) << 8192) + 1u8, BigUint::from(65537u32));
    assert_eq!(uses(&big), [[false; 3]; 2], "8193 bits");
    assert!(!big.verify_pkcs1(Hash::Sha256, b"msg", &[1u8; 1025]));
    let max = RsaKey::new((BigUint::from(1u8) << 8192) - 1u8, BigUint::from(65537u32));
    assert_eq!(uses(&max), [[true; 3]; 2], "8192 bits");
}

/// Through the builtins: the caches answer repeated calls as the first.
#[test]
fn cached_calls_answer_as_fresh_ones() {
    let k = keys();
    let pem = rsa_pem(&k.rsa);
    let wrong = rsa_pem(&k.rsa2);
    let jwt = token("RS256", r#"{"sub":"cache","exp":4102444800}"#);
    // One signature character changed (a full 6 bits, not the last one).
    let at = jwt.rfind('.').expect("dot") + 5;
    let swap = if &jwt[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swap}{}", &jwt[..at], &jwt[at + 1..]);
    let constraints = |key: &str| {
        format!(
            r#"{{"cert": {}}}"#,
            serde_json::to_string(key).expect("json")
        )
    };
    for _ in 0..3 {
        assert_eq!(verify("io.jwt.verify_rs256", &jwt, &pem), T);
        assert_eq!(verify("io.jwt.verify_rs256", &jwt, &wrong), F);
        assert_eq!(verify("io.jwt.verify_rs384", &jwt, &pem), F);
        assert_eq!(verify("io.jwt.verify_ps256", &jwt, &pem), F);
        assert_eq!(verify("io.jwt.verify_rs256", &tampered, &pem), F);
        assert!(verify("io.jwt.verify_rs256", &jwt, "not a key").is_err());
        assert!(verify("io.jwt.verify_rs256", "a.b", &pem).is_err());
        assert_eq!(
            dv(&jwt, &constraints(&pem)),
            verified(
                r#"{"alg":"RS256","typ":"JWT"}"#,
                r#"{"sub":"cache","exp":4102444800}"#
            )
        );
        assert_eq!(dv(&jwt, &constraints(&wrong)), unverified());
        // The signature check is cached, the claims are not: past `exp`
        // the same token no longer verifies.
        let late = format!(
            r#"{{"cert": {}, "time": 4102444800000000000}}"#,
            serde_json::to_string(&pem).expect("json")
        );
        assert_eq!(
            decode_verify(&[s(&jwt), json(&late)], 1_700_000_000e9),
            unverified()
        );
        assert!(dv(&jwt, &constraints("not a key")).is_err());
    }
}

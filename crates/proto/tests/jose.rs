//! JWE and Concat KDF against RFC vectors and an independent (RustCrypto)
//! decryptor.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ward_proto::b64;
use ward_proto::jwe::{self, concat_kdf, FlattenedJwe, JweError, Recipient};
use ward_proto::jwk::{Curve, Jwk, TeeKeyPair};

/// RFC 7518 Appendix C: ECDH-ES Concat KDF example (A128GCM, "Alice", "Bob").
#[test]
fn concat_kdf_matches_rfc7518_appendix_c() {
    let z = [
        158u8, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110,
        163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    let mut out = [0u8; 16];
    concat_kdf(&z, "A128GCM", b"Alice", b"Bob", &mut out);
    assert_eq!(b64::url_encode(out), "VqqN6vgjbSBcIijNcacQGg");
}

/// RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK, the
/// primitive behind A256KW.
#[test]
fn aes_kw_matches_rfc3394_4_6() {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
    let kek =
        hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").unwrap();
    let data =
        hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F").unwrap();
    let mut out = [0u8; 40];
    AesKek::new(&AES_256, &kek)
        .unwrap()
        .wrap(&data, &mut out)
        .unwrap();
    assert_eq!(
        hex::encode_upper(out),
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    );
}

/// Decrypt an ECDH-ES+A256KW / A256GCM JWE using only RustCrypto crates.
fn independent_decrypt(secret: &p256::SecretKey, jwe: &FlattenedJwe) -> Vec<u8> {
    let header: serde_json::Value =
        serde_json::from_slice(&b64::url_decode("p", &jwe.protected).unwrap()).unwrap();
    assert_eq!(header["alg"], "ECDH-ES+A256KW");
    assert_eq!(header["enc"], "A256GCM");
    let x = b64::url_decode("x", header["epk"]["x"].as_str().unwrap()).unwrap();
    let y = b64::url_decode("y", header["epk"]["y"].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let epk = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), epk.as_affine());
    // Concat KDF with sha2, written out independently of ward's.
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(shared.raw_secret_bytes());
    h.update((14u32).to_be_bytes());
    h.update(b"ECDH-ES+A256KW");
    h.update(0u32.to_be_bytes());
    h.update(0u32.to_be_bytes());
    h.update(256u32.to_be_bytes());
    let kek = h.finalize();
    let kek_bytes: [u8; 32] = kek.into();
    let kek = aes_kw::KekAes256::from(kek_bytes);
    let mut cek = [0u8; 32];
    kek.unwrap(&b64::url_decode("k", &jwe.encrypted_key).unwrap(), &mut cek)
        .unwrap();
    let cipher = Aes256Gcm::new_from_slice(&cek).unwrap();
    let mut ct = b64::url_decode("c", &jwe.ciphertext).unwrap();
    ct.extend_from_slice(&b64::url_decode("t", &jwe.tag).unwrap());
    let iv = b64::url_decode("iv", &jwe.iv).unwrap();
    cipher
        .decrypt(
            &aes_gcm::Nonce::from(<[u8; 12]>::try_from(iv.as_slice()).unwrap()),
            Payload {
                msg: &ct,
                aad: jwe.protected.as_bytes(),
            },
        )
        .unwrap()
}

#[test]
fn accepts_ward_jwe_in_independent_decryptor() {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = secret.public_key().to_encoded_point(false);
    let jwk = Jwk::ec(Curve::P256, point.as_bytes(), Some("ECDH-ES+A256KW"));
    let recipient = Recipient::from_jwk(&jwk).unwrap();
    let msg = b"the secret resource \x00\xff bytes";
    let jwe = jwe::encrypt(&recipient, msg).unwrap();
    assert_eq!(independent_decrypt(&secret, &jwe), msg);
}

#[test]
fn accepts_roundtrip_for_every_key_type() {
    for key in [
        TeeKeyPair::generate_ec(Curve::P256).unwrap(),
        TeeKeyPair::generate_ec(Curve::P384).unwrap(),
        TeeKeyPair::generate_ec(Curve::P521).unwrap(),
        TeeKeyPair::generate_rsa().unwrap(),
    ] {
        let recipient = Recipient::from_jwk(&key.public_jwk()).unwrap();
        for msg in [&b""[..], b"x", &[7u8; 10_000]] {
            let jwe = jwe::encrypt(&recipient, msg).unwrap();
            assert_eq!(jwe::decrypt(&key, &jwe).unwrap(), msg, "{key:?}");
        }
    }
}

#[test]
fn rejects_tampering_wrong_key_and_garbage() {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let jwe = jwe::encrypt(&Recipient::from_jwk(&key.public_jwk()).unwrap(), b"secret").unwrap();
    let other = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    assert_eq!(jwe::decrypt(&other, &jwe).unwrap_err(), JweError::Decrypt);
    let rsa = TeeKeyPair::generate_rsa().unwrap();
    assert_eq!(jwe::decrypt(&rsa, &jwe).unwrap_err(), JweError::KeyMismatch);

    let flip = |s: &str| {
        let mut b = b64::url_decode("x", s).unwrap();
        b[0] ^= 1;
        b64::url_encode(b)
    };
    let mut t = jwe.clone();
    t.ciphertext = flip(&t.ciphertext);
    assert_eq!(jwe::decrypt(&key, &t).unwrap_err(), JweError::Decrypt);
    let mut t = jwe.clone();
    t.tag = flip(&t.tag);
    assert_eq!(jwe::decrypt(&key, &t).unwrap_err(), JweError::Decrypt);
    let mut t = jwe.clone();
    t.encrypted_key = flip(&t.encrypted_key);
    assert_eq!(jwe::decrypt(&key, &t).unwrap_err(), JweError::Decrypt);
    // A protected header changed in any way breaks the AAD.
    let mut t = jwe.clone();
    let mut h: serde_json::Value =
        serde_json::from_slice(&b64::url_decode("p", &t.protected).unwrap()).unwrap();
    h["kid"] = "x".into();
    t.protected = b64::url_encode(serde_json::to_vec(&h).unwrap());
    assert_eq!(jwe::decrypt(&key, &t).unwrap_err(), JweError::Decrypt);

    for bad in [
        FlattenedJwe {
            protected: "!!".into(),
            ..jwe.clone()
        },
        FlattenedJwe {
            protected: b64::url_encode("[]"),
            ..jwe.clone()
        },
        FlattenedJwe {
            iv: b64::url_encode([0u8; 5]),
            ..jwe.clone()
        },
        FlattenedJwe {
            tag: String::new(),
            ..jwe.clone()
        },
        FlattenedJwe {
            protected: b64::url_encode(r#"{"alg":"dir","enc":"A256GCM"}"#),
            ..jwe.clone()
        },
        FlattenedJwe {
            protected: b64::url_encode(r#"{"alg":"ECDH-ES+A256KW","enc":"A128CBC-HS256"}"#),
            ..jwe.clone()
        },
        FlattenedJwe {
            protected: b64::url_encode(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}"#),
            ..jwe.clone()
        },
    ] {
        assert!(jwe::decrypt(&key, &bad).is_err());
    }
}

#[test]
fn rejects_off_curve_and_mismatched_recipients() {
    let jwk = Jwk::ec(Curve::P256, &[4u8; 65], None);
    assert!(Recipient::from_jwk(&jwk).is_err());
    let mut jwk = TeeKeyPair::generate_ec(Curve::P256).unwrap().public_jwk();
    jwk.alg = Some("RSA-OAEP-256".into());
    assert!(Recipient::from_jwk(&jwk).is_err());
}

/// The protected header has the member order and shape of the captured
/// reference response.
#[test]
fn header_shape_matches_capture() {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let jwe = jwe::encrypt(&Recipient::from_jwk(&key.public_jwk()).unwrap(), b"k").unwrap();
    let header = String::from_utf8(b64::url_decode("p", &jwe.protected).unwrap()).unwrap();
    assert!(
        header.starts_with(
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":""#
        ),
        "{header}"
    );
    let text = serde_json::to_string(&jwe).unwrap();
    let keys: Vec<&str> = ["protected", "encrypted_key", "iv", "ciphertext", "tag"].to_vec();
    let mut last = 0;
    for k in keys {
        let i = text.find(&format!("\"{k}\"")).unwrap();
        assert!(i >= last);
        last = i;
    }
}

//! Public keys as JWKs, exactly as kube-apiserver serves them at
//! `/openid/v1/jwks`: `kid` is the base64url SHA-256 of the key's PKIX (SPKI)
//! DER, RSA keys are RS256, EC keys ES256/384/512 by curve.

use base64::Engine as _;
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

contract::message_error! {
    /// A PEM file or key that is not a usable public key.
    KeyError
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every public key in a PEM file (`PUBLIC KEY` or `RSA PUBLIC KEY`
/// blocks) as a JWK.
pub fn jwks_from_pem(pem: &[u8]) -> Result<Vec<Value>, KeyError> {
    let mut keys = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("not a PEM file: {e}"))?;
        let spki = match block.label.as_str() {
            "PUBLIC KEY" => block.contents,
            "RSA PUBLIC KEY" => wrap_pkcs1(&block.contents),
            other => {
                return Err(format!(
                    "PEM block {other:?} is not a public key (expected PUBLIC KEY or RSA PUBLIC KEY; give the public half of --service-account-signing-key-file)"
                ).into())
            }
        };
        keys.push(jwk_from_spki(&spki)?);
    }
    if keys.is_empty() {
        return Err("no PEM public key found".into());
    }
    Ok(keys)
}

/// One SPKI DER public key as a JWK.
pub fn jwk_from_spki(der: &[u8]) -> Result<Value, KeyError> {
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(der).map_err(|e| format!("not a DER public key: {e}"))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let kid = b64(digest.as_ref());
    match spki
        .parsed()
        .map_err(|e| format!("unreadable public key: {e}"))?
    {
        PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                let start = b
                    .iter()
                    .position(|x| *x != 0)
                    .unwrap_or(b.len().saturating_sub(1));
                b64(&b[start..])
            };
            Ok(
                json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
                      "n": strip(rsa.modulus), "e": strip(rsa.exponent)}),
            )
        }
        PublicKey::EC(point) => {
            let data = point.data();
            let (crv, alg, len) = match data.len() {
                65 => ("P-256", "ES256", 32),
                97 => ("P-384", "ES384", 48),
                133 => ("P-521", "ES512", 66),
                n => return Err(format!("EC public key of {n} bytes: only uncompressed P-256, P-384 and P-521 keys sign ServiceAccount tokens").into()),
            };
            if data[0] != 4 {
                return Err("compressed EC public keys are not supported".into());
            }
            Ok(
                json!({"use": "sig", "kty": "EC", "kid": kid, "crv": crv, "alg": alg,
                      "x": b64(&data[1..1 + len]), "y": b64(&data[1 + len..])}),
            )
        }
        _ => Err("only RSA and EC keys sign ServiceAccount tokens".into()),
    }
}

/// PKCS#1 RSAPublicKey -> SubjectPublicKeyInfo DER.
fn wrap_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = body.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
    }
    // rsaEncryption OID with NULL parameters.
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = algorithm.to_vec();
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // An RSA-2048 public key (SPKI) and the same key as PKCS#1.
    const RSA_SPKI: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn rsa_spki_and_pkcs1_give_the_same_jwk() {
        let spki = jwks_from_pem(RSA_SPKI.as_bytes()).unwrap();
        assert_eq!(spki.len(), 1);
        assert_eq!(spki[0]["kty"], "RSA");
        assert_eq!(spki[0]["e"], "AQAB");
        assert_eq!(spki[0]["alg"], "RS256");
        // The modulus has no leading zero byte.
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(spki[0]["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(n.len(), 256);
        let der = x509_parser::pem::Pem::iter_from_buffer(RSA_SPKI.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .contents;
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&der).unwrap();
        let pkcs1 = parsed.subject_public_key.data.to_vec();
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&pkcs1)
        );
        assert_eq!(jwks_from_pem(pem.as_bytes()).unwrap(), spki);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(jwks_from_pem(b"hello").is_err());
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = jwks_from_pem(private.as_bytes()).unwrap_err();
        assert!(e.0.contains("not a public key"), "{e}");
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(jwks_from_pem(junk.as_bytes()).is_err());
    }
}

//! Every rule of `jwt.rs`, one table: each token is refused for the reason
//! named, or accepted with the identity its claims give. No process, no
//! network, no clock but the one passed in.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use super::*;
use crate::testing::{b64, claims, jwks, t0, t0_secs, TestKey, AUDIENCE, ISSUER};

fn raw_jwt(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(Into::into);
    h
}

fn check(token: &str, keys: &KeySet) -> Result<TokenIdentity, VerifyError> {
    let audiences = [AUDIENCE.to_string(), "vault".to_string()];
    let rules = Rules {
        issuer: ISSUER,
        audiences: &audiences,
        leeway: Duration::from_secs(10),
    };
    verify(&crate::secret::Secret::new(token), keys, &rules, t0())
}

enum Want {
    Ok,
    Malformed,
    Rejected(&'static str),
}

#[test]
fn every_rule() {
    let key = TestKey::new("key-1");
    let keys = KeySet::parse(&jwks(&[&key])).unwrap().0;
    let now = t0_secs();
    let good = claims(
        "team-a",
        "app",
        "uid-app",
        Some(("app-1", "pod-uid-1")),
        now,
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        key.sign(&c)
    };
    let valid = key.sign(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    let hs256 = |secret: &[u8]| {
        jsonwebtoken::encode(
            &header(Algorithm::HS256, Some("key-1")),
            &good,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let jwk_x = key.jwk()["x"].as_str().unwrap().to_string();
    let tampered = {
        let mut c = good.clone();
        c["kubernetes.io"]["namespace"] = json!("kube-system");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, Want)> = vec![
        ("valid", valid.clone(), Want::Ok),
        (
            "valid, audience vault",
            with(&|c| c["aud"] = json!("vault")),
            Want::Ok,
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            Want::Malformed,
        ),
        ("garbage", "not a token".into(), Want::Malformed),
        ("garbage in three parts", "a.b.c".into(), Want::Malformed),
        (
            "oversized",
            format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
            Want::Malformed,
        ),
        (
            "no signature",
            format!("{}.{}.", parts[0], parts[1]),
            Want::Rejected("signature"),
        ),
        (
            "alg none",
            raw_jwt(&json!({"alg": "none", "kid": "key-1"}), &good, b""),
            Want::Rejected("algorithm"),
        ),
        (
            "alg none, no kid",
            raw_jwt(&json!({"alg": "none"}), &good, b""),
            Want::Rejected("algorithm"),
        ),
        (
            "HS256 with the public key PEM",
            hs256(key.public_pem().as_bytes()),
            Want::Rejected("algorithm"),
        ),
        (
            "HS256 with the JWK's x",
            hs256(jwk_x.as_bytes()),
            Want::Rejected("algorithm"),
        ),
        (
            "ES384 header on an ES256 key",
            key.sign_with(&header(Algorithm::ES256, Some("key-1")), &good)
                .replacen(
                    parts[0],
                    &b64(br#"{"alg":"ES384","kid":"key-1","typ":"JWT"}"#),
                    1,
                ),
            Want::Rejected("algorithm"),
        ),
        (
            "unknown kid",
            TestKey::new("key-unknown").sign(&good),
            Want::Rejected("key id"),
        ),
        (
            "no kid with one key",
            key.sign_with(&header(Algorithm::ES256, None), &good),
            Want::Ok,
        ),
        (
            "wrong key, right kid",
            TestKey::new("key-1").sign(&good),
            Want::Rejected("signature"),
        ),
        ("tampered claims", tampered, Want::Rejected("signature")),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
            Want::Rejected("issuer"),
        ),
        (
            "no issuer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Want::Rejected("lacks"),
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!(["other"])),
            Want::Rejected("audience"),
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Want::Rejected("lacks"),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Want::Rejected("lacks"),
        ),
        (
            "expired",
            with(&|c| c["exp"] = json!(now - 60)),
            Want::Rejected("expired"),
        ),
        (
            "expired within the leeway",
            with(&|c| c["exp"] = json!(now - 5)),
            Want::Ok,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now + 60)),
            Want::Rejected("not valid yet"),
        ),
        (
            "not yet valid within the leeway",
            with(&|c| c["nbf"] = json!(now + 5)),
            Want::Ok,
        ),
        (
            "exp 2^63+5",
            with(&|c| c["exp"] = json!(9_223_372_036_854_775_813u64)),
            Want::Rejected("out of range"),
        ),
        (
            "exp u64::MAX",
            with(&|c| c["exp"] = json!(u64::MAX)),
            Want::Rejected("out of range"),
        ),
        (
            "nbf u64::MAX",
            with(&|c| c["nbf"] = json!(u64::MAX)),
            Want::Rejected("not valid yet"),
        ),
        (
            "negative exp",
            with(&|c| c["exp"] = json!(-1)),
            Want::Rejected("cannot be read"),
        ),
        (
            "fractional exp",
            with(&|c| c["exp"] = json!(1.5e12)),
            Want::Rejected("cannot be read"),
        ),
        (
            "no kubernetes.io",
            with(&|c| {
                c.as_object_mut().unwrap().remove("kubernetes.io");
            }),
            Want::Rejected("kubernetes.io"),
        ),
        (
            "empty namespace",
            with(&|c| c["kubernetes.io"]["namespace"] = json!("")),
            Want::Rejected("namespace"),
        ),
        (
            "no serviceaccount uid",
            with(&|c| c["kubernetes.io"]["serviceaccount"] = json!({"name": "app"})),
            Want::Rejected("serviceaccount"),
        ),
        (
            "pod without uid",
            with(&|c| c["kubernetes.io"]["pod"] = json!({"name": "p"})),
            Want::Rejected("pod"),
        ),
        (
            "sub of another account",
            with(&|c| c["sub"] = json!("system:serviceaccount:team-a:admin")),
            Want::Rejected("subject"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, token, want) in &cases {
        let got = check(token, &keys);
        let ok = match (want, &got) {
            (Want::Ok, Ok(_)) | (Want::Malformed, Err(VerifyError::Malformed(_))) => true,
            (Want::Rejected(why), Err(VerifyError::Rejected(m))) => m.contains(why),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_identity_is_the_claims() {
    let key = TestKey::new("key-1");
    let keys = KeySet::parse(&jwks(&[&key])).unwrap().0;
    let now = t0_secs();
    let id = check(
        &key.sign(&claims("ns", "sa", "uid-sa", Some(("p", "uid-p")), now)),
        &keys,
    )
    .unwrap();
    assert_eq!(
        id,
        TokenIdentity {
            namespace: "ns".into(),
            service_account: "sa".into(),
            service_account_uid: "uid-sa".into(),
            pod_name: Some("p".into()),
            pod_uid: Some("uid-p".into()),
            expires: t0() + Duration::from_secs(3600),
            audiences: 1,
        }
    );
    let id = check(&key.sign(&claims("ns", "sa", "uid-sa", None, now)), &keys).unwrap();
    assert_eq!((id.pod_name, id.pod_uid), (None, None));
    // The accepted audiences the token carries, as bits of the agent's list
    // (sts.amazonaws.com, vault).
    let mut c = claims("ns", "sa", "uid-sa", None, now);
    for (aud, want) in [
        (json!("vault"), 0b10),
        (json!(["vault", "other", "sts.amazonaws.com"]), 0b11),
    ] {
        c["aud"] = aud;
        assert_eq!(check(&key.sign(&c), &keys).unwrap().audiences, want);
    }
}

#[test]
fn key_sets() {
    let a = TestKey::new("a");
    let b = TestKey::new("b");
    let (set, skipped) = KeySet::parse(&jwks(&[&a, &b])).unwrap();
    assert_eq!((set.len(), skipped), (2, 0));
    // Symmetric and broken keys are skipped, not fatal.
    let doc =
        json!({"keys": [a.jwk(), {"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, {"kty": "EC"}]});
    let (set, skipped) = KeySet::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!((set.len(), skipped), (1, 2));
    assert!(KeySet::parse(b"{}").is_err());
    assert!(KeySet::parse(b"not json").is_err());
    // No kid with two keys is ambiguous.
    let (two, _) = KeySet::parse(&jwks(&[&a, &b])).unwrap();
    let no_kid = a.sign_with(
        &header(Algorithm::ES256, None),
        &claims("ns", "sa", "u", None, t0_secs()),
    );
    assert!(matches!(
        check(&no_kid, &two),
        Err(VerifyError::Rejected(_))
    ));
    // A withdrawn key is noticed; an added one is not a withdrawal.
    let (only_a, _) = KeySet::parse(&jwks(&[&a])).unwrap();
    assert!(only_a.is_subset_of(&two));
    assert!(!two.is_subset_of(&only_a));
}

#[test]
fn unverified_identity_reads_the_sidecars_token() {
    let key = TestKey::new("k");
    let token = key.sign(&claims("ns", "sa", "uid", Some(("p", "pu")), t0_secs()));
    let id = unverified_identity(&crate::secret::Secret::new(token)).unwrap();
    assert_eq!(
        (id.namespace.as_str(), id.pod_name.as_deref()),
        ("ns", Some("p"))
    );
    assert!(unverified_identity(&crate::secret::Secret::new("x.y.z")).is_none());
    let huge_exp = key.sign(&json!({"exp": u64::MAX, "kubernetes.io": {"namespace": "n", "serviceaccount": {"name": "s", "uid": "u"}}}));
    assert!(unverified_identity(&crate::secret::Secret::new(huge_exp)).is_none());
}

//! The node agent refuses every forged or unusable token before anything
//! reaches STS, and serves a valid one; the wire contract SDKs rely on.
//! Real binary, real moto behind the tests' counting proxy.

use e2e_tests::agent::*;
use serde_json::{json, Value};

fn header(alg: jsonwebtoken::Algorithm, kid: Option<&str>) -> jsonwebtoken::Header {
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = kid.map(str::to_string);
    h
}

fn b64(v: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A JWT from raw parts (for headers jsonwebtoken refuses to produce).
fn raw_jwt(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_get_nothing_and_never_reach_sts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let agent = Agent::start("serve", &node_args(&issuer, &proxy.url), &[]).await?;
    let key = &issuer.keys[0];
    let kid = key.kid.as_str();
    let good = claims("team-a", "app", "uid-app", Some(("app-1", "pod-uid-1")));
    let valid = issuer.token(&good);
    let q = role_query(ROLE);

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        issuer.token(&c)
    };
    let other_key = SigningKey::generate(kid)?; // same kid, different key
    let unknown_kid = SigningKey::generate("key-unknown")?;
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let mut c = good.clone();
        c["kubernetes.io"]["namespace"] = json!("kube-system");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let no_signature = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!("{}.{}.", parts[0], parts[1])
    };
    let hs256_with_public_key = {
        let secret = jsonwebtoken::EncodingKey::from_secret(key.public_pem().as_bytes());
        jsonwebtoken::encode(
            &header(jsonwebtoken::Algorithm::HS256, Some(kid)),
            &good,
            &secret,
        )?
    };
    let hs256_with_jwk_x = {
        let x = key.jwk()["x"].as_str().unwrap().to_string();
        let secret = jsonwebtoken::EncodingKey::from_secret(x.as_bytes());
        jsonwebtoken::encode(
            &header(jsonwebtoken::Algorithm::HS256, Some(kid)),
            &good,
            &secret,
        )?
    };
    let now = now_secs();
    let cases: Vec<(&str, String, u16)> = vec![
        ("no signature", no_signature, 403),
        (
            "two segments",
            valid.rsplit_once('.').unwrap().0.to_string(),
            400,
        ),
        (
            "alg none",
            raw_jwt(&json!({"alg": "none", "kid": kid}), &good, b""),
            403,
        ),
        (
            "alg none, no kid",
            raw_jwt(&json!({"alg": "none"}), &good, b""),
            403,
        ),
        (
            "HS256 signed with the public key PEM",
            hs256_with_public_key,
            403,
        ),
        ("HS256 signed with the JWK x", hs256_with_jwk_x, 403),
        ("unknown kid", unknown_kid.sign(&good)?, 403),
        ("wrong key, right kid", other_key.sign(&good)?, 403),
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(now - 3600);
                c["iat"] = json!(now - 7200);
                c["nbf"] = json!(now - 7200);
            }),
            403,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now + 3600)),
            403,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            403,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!(["https://kubernetes.default.svc"])),
            403,
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            403,
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            403,
        ),
        ("tampered claims", tampered, 403),
        (
            "missing kubernetes claims",
            with(&|c| {
                c.as_object_mut().unwrap().remove("kubernetes.io");
            }),
            403,
        ),
        (
            "missing serviceaccount uid",
            with(&|c| c["kubernetes.io"]["serviceaccount"]["uid"] = json!("")),
            403,
        ),
        (
            "subject of another account",
            with(&|c| c["sub"] = json!("system:serviceaccount:kube-system:admin")),
            403,
        ),
        (
            "pod claim without uid",
            with(&|c| c["kubernetes.io"]["pod"] = json!({"name": "p"})),
            403,
        ),
        ("oversized", format!("{valid}{}", "A".repeat(20_000)), 400),
        ("garbage", "not-a-token".to_string(), 400),
        ("three dots of garbage", "a.b.c".to_string(), 400),
        ("Bearer of garbage", "Bearer ....".to_string(), 400),
    ];
    let mut failures = Vec::new();
    for (name, token, want) in &cases {
        let (status, ct, body) = agent.get(Some(token), &q).await?;
        if status != *want || ct != "application/json" || body.get("AccessKeyId").is_some() {
            failures.push(format!("{name}: {status} {ct} {body}"));
        }
        if body["code"].as_str().is_none_or(str::is_empty)
            || body["message"].as_str().is_none_or(str::is_empty)
        {
            failures.push(format!("{name}: error body without code/message: {body}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", agent.log_tail());
    assert_eq!(proxy.assume_calls(), 0, "a forged token reached STS");

    // A kid-less ES256 token is valid: the key set has one key.
    let no_kid = key.sign_with(header(jsonwebtoken::Algorithm::ES256, None), &good)?;
    let (status, _, _) = agent.get(Some(&no_kid), &q).await?;
    assert_eq!(status, 200);
    // And so is the plain valid token, once, for everything above.
    let (status, ct, body) = agent.get(Some(&valid), &q).await?;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{body}");
    assert_eq!(
        proxy.assume_calls(),
        1,
        "the two valid tokens share one identity"
    );
    let rejections = agent
        .metric("credential_agent_token_rejections_total")
        .await?;
    assert!(rejections >= 18.0, "{rejections}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let agent = Agent::start("serve", &node_args(&issuer, &proxy.url), &[]).await?;
    let token = issuer.token(&claims("team-a", "app", "uid-app", None));
    let q = role_query(ROLE);

    let (status, ct, body) = agent.get(Some(&token), &q).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "application/json");
    for field in [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "AccountId",
        "Expiration",
    ] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} in {body}"
        );
    }
    let exp = body["Expiration"].as_str().unwrap();
    assert_eq!(exp.len(), 20, "{exp}");
    assert!(exp.ends_with('Z') && exp.as_bytes()[10] == b'T', "{exp}");
    assert_eq!(body["AccountId"], "123456789012");

    // Errors: JSON with code and message, the right status.
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, q.clone(), 400, "MissingToken"),
        (Some(""), q.clone(), 400, "MissingToken"),
        (Some(&token), String::new(), 400, "InvalidRoleArn"),
        (Some(&token), "?role=app".into(), 400, "InvalidRoleArn"),
        (Some(&token), "?role=%ZZ".into(), 400, "InvalidRoleArn"),
        (
            Some(&token),
            role_query("arn:aws:iam::123456789012:user/bob"),
            400,
            "InvalidRoleArn",
        ),
        (Some("x.y.z"), q.clone(), 400, "InvalidToken"),
    ];
    for (tok, query, want, code) in cases {
        let (status, ct, body) = agent.get(tok, &query).await?;
        assert_eq!(
            (status, ct.as_str(), body["code"].as_str()),
            (want, "application/json", Some(code)),
            "{query}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| m.len() > 10),
            "{body}"
        );
    }
    // Unknown path: 404 JSON.
    let r = reqwest::get(format!("{}/latest/meta-data/", agent.url)).await?;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");

    // DNS rebinding guard: a foreign Host header gets 403, even with a valid token.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/credentials{q}", agent.url))
        .header("host", "attacker.example.com")
        .header("authorization", &token)
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await?;
    assert_eq!(body["code"], "HostNotAllowed");
    assert!(body.get("AccessKeyId").is_none());
    // `localhost:<port>` names the loopback listener: allowed.
    let r = reqwest::Client::new()
        .get(format!("http://localhost:{}/v1/credentials{q}", agent.port))
        .header("authorization", &token)
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    // Health and metrics on their own listeners.
    assert_eq!(
        reqwest::get(format!("{}/healthz", agent.health))
            .await?
            .status(),
        200
    );
    let metrics = reqwest::get(format!("{}/metrics", agent.metrics))
        .await?
        .text()
        .await?;
    for name in [
        "credential_agent_requests_total{status=\"200\"}",
        "credential_agent_cache_hits_total",
        "credential_agent_cache_misses_total",
        "credential_agent_sts_request_duration_seconds",
        "credential_agent_identities_cached 1",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    // Every label value is there from the start; these ones counted.
    assert!(
        !metrics.contains("credential_agent_requests_total{status=\"200\"} 0\n"),
        "{metrics}"
    );
    assert!(
        reqwest::get(format!("{}/metrics", agent.url))
            .await?
            .status()
            == 404
    );

    // Graceful shutdown.
    assert_eq!(agent.terminate()?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_signing_key_is_picked_up_rate_limited() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let agent = Agent::start("serve", &node_args(&issuer, &moto.url), &[]).await?;
    let q = role_query(ROLE);
    // A token of the current key, verified once (and so cached as verified).
    let old_key_token = issuer.token(&claims("team-a", "old", "uid-old", None));
    assert_eq!(agent.get(Some(&old_key_token), &q).await?.0, 200);
    let rotated = SigningKey::generate("key-2")?;
    let token = rotated.sign(&claims("team-a", "app", "uid-app", None))?;
    // Before the issuer publishes the key: refused. A flood of unknown kids
    // makes at most one fetch per interval (1 s here).
    let before = agent.metric("credential_agent_jwks_fetches_total").await?;
    for _ in 0..30 {
        let (status, _, _) = agent.get(Some(&token), &q).await?;
        assert_eq!(status, 403);
    }
    let fetched = agent.metric("credential_agent_jwks_fetches_total").await? - before;
    assert!(
        fetched <= 2.0,
        "{fetched} JWKS fetches for 30 unknown-kid requests"
    );
    // The issuer rotates: the new kid is fetched on demand.
    issuer.keys.push(rotated);
    issuer.write_jwks()?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, body) = agent.get(Some(&token), &q).await?;
    assert_eq!(status, 200, "{body}\n{}", agent.log_tail());
    // Fetching the set again without withdrawing anything keeps the old
    // key's token valid...
    assert_eq!(agent.get(Some(&old_key_token), &q).await?.0, 200);
    // ...withdrawing the old key refuses its tokens from the next fetch on,
    // even one verified before.
    issuer.keys.remove(0);
    issuer.write_jwks()?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unknown = SigningKey::generate("key-3")?.sign(&claims("team-a", "app", "uid-app", None))?;
    assert_eq!(agent.get(Some(&unknown), &q).await?.0, 403); // makes the agent fetch
    let (status, _, body) = agent.get(Some(&old_key_token), &q).await?;
    assert_eq!(
        status, 403,
        "a withdrawn key's token was still served: {body}"
    );
    assert_eq!(agent.get(Some(&token), &q).await?.0, 200);
    Ok(())
}

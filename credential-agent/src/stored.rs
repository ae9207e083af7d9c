//! What the cache keeps per identity: the credentials STS returned, as they
//! came (one shared allocation; the secret key and session token stay
//! [`Secret`]s until the response body is written), and the pod's token
//! for refreshes, compressed: a compact JWS is kept as its decoded
//! signature and its decoded header and payload LZ4-compressed against the
//! cache's [`TokenDictionary`] (any other token as it came). Unpacking gives
//! back exactly the token, or an error, never something else. Neither type
//! prints its content in Debug output.
//!
//! Measured trick by trick at 10,000 identities (docs/benchmarks.md): the
//! token compression buys 17% of RSS and stays; base64-decoded credentials
//! (8%), squashed UUIDs (2%) and a length-prefixed format of its own went.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::secret::Secret;
use crate::sts::Credentials;

/// Credentials as the cache holds them and serves them: cheap to clone.
#[derive(Clone)]
pub struct CachedCredentials(Arc<Credentials>);

impl CachedCredentials {
    pub fn new(c: &Credentials) -> Self {
        CachedCredentials(Arc::new(c.clone()))
    }

    pub fn access_key_id(&self) -> &str {
        &self.0.access_key_id
    }

    pub fn assumed_role(&self) -> Option<&crate::sts::AssumedRole> {
        self.0.assumed_role.as_ref()
    }

    pub fn account_id(&self) -> Option<&str> {
        self.0.account_id.as_deref().filter(|a| !a.is_empty())
    }

    pub fn secret_access_key(&self) -> &Secret {
        &self.0.secret_access_key
    }

    pub fn session_token(&self) -> &Secret {
        &self.0.session_token
    }

    pub fn expiration(&self) -> SystemTime {
        self.0.expiration
    }
}

impl fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("access_key_id", &self.access_key_id())
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration())
            .finish()
    }
}

/// What the tokens one cache keeps are compressed against: the decoded
/// header and payload of the first JWS it stored (never a signature, so
/// this is no usable token). Tokens of one issuer share most of it: the
/// header, `iss`, `aud`, the claim names, the node.
#[derive(Default)]
pub struct TokenDictionary(OnceLock<Box<[u8]>>);

/// The most of a token kept as dictionary.
const DICTIONARY_MAX: usize = 4096;

impl TokenDictionary {
    fn learn(&self, sample: &[u8]) -> &[u8] {
        self.0
            .get_or_init(|| sample[..sample.len().min(DICTIONARY_MAX)].into())
    }

    fn get(&self) -> &[u8] {
        self.0.get().map_or(&[], |d| d)
    }
}

/// A stored token that does not unpack (it cannot happen short of memory
/// corruption; it is an error all the same, never an empty token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cached token does not unpack")]
pub struct CorruptToken;

/// The forms of a stored token, by its first byte.
const AS_IS: u8 = 0;
/// Then `header_len`, `plain_len`, `signature_len` (u16, little endian),
/// the signature, and the LZ4 block of header + payload.
const JWS: u8 = 1;
const JWS_HEAD: usize = 7;

/// A pod's token as the cache holds it for refreshes, with its fingerprint
/// ([`Secret::fingerprint`]) to tell a new token from the one kept. One
/// allocation: a form byte, then the token as it came or compressed.
pub struct StoredToken {
    fingerprint: u64,
    data: Box<[u8]>,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Base64url without padding, decoded only when it re-encodes exactly.
fn decode_exact(s: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    (URL_SAFE_NO_PAD.encode(&bytes) == s).then_some(bytes)
}

impl StoredToken {
    pub fn new(token: &Secret, dictionary: &TokenDictionary) -> Self {
        let data = Self::compress(token.expose(), dictionary).unwrap_or_else(|| {
            let mut d = Vec::with_capacity(1 + token.len());
            d.push(AS_IS);
            d.extend_from_slice(token.expose().as_bytes());
            d.into_boxed_slice()
        });
        StoredToken {
            fingerprint: token.fingerprint(),
            data,
        }
    }

    /// A canonical compact JWS as decoded signature + compressed header and
    /// payload, kept only if it unpacks to exactly `text`.
    fn compress(text: &str, dictionary: &TokenDictionary) -> Option<Box<[u8]>> {
        let mut parts = text.split('.');
        let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (h, p, sig) = (decode_exact(h)?, decode_exact(p)?, decode_exact(sig)?);
        let header_len = u16::try_from(h.len()).ok()?;
        let mut plain = h;
        plain.extend_from_slice(&p);
        let plain_len = u16::try_from(plain.len()).ok()?;
        let signature_len = u16::try_from(sig.len()).ok()?;
        let block = lz4_flex::block::compress_with_dict(&plain, dictionary.learn(&plain));
        let mut data = Vec::with_capacity(JWS_HEAD + sig.len() + block.len());
        data.push(JWS);
        for n in [header_len, plain_len, signature_len] {
            data.extend_from_slice(&n.to_le_bytes());
        }
        data.extend_from_slice(&sig);
        data.extend_from_slice(&block);
        let data = data.into_boxed_slice();
        let back = Self::expand(&data, dictionary).ok()?;
        (back.expose() == text).then_some(data)
    }

    fn expand(data: &[u8], dictionary: &TokenDictionary) -> Result<Secret, CorruptToken> {
        match data.first() {
            Some(&AS_IS) => std::str::from_utf8(&data[1..])
                .map(Secret::new)
                .map_err(|_| CorruptToken),
            Some(&JWS) => {
                let n = |at: usize| -> Result<usize, CorruptToken> {
                    let b = data.get(at..at + 2).ok_or(CorruptToken)?;
                    Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
                };
                let (header_len, plain_len, signature_len) = (n(1)?, n(3)?, n(5)?);
                let rest = data.get(JWS_HEAD..).ok_or(CorruptToken)?;
                let (sig, block) = rest.split_at_checked(signature_len).ok_or(CorruptToken)?;
                let plain =
                    lz4_flex::block::decompress_with_dict(block, plain_len, dictionary.get())
                        .map_err(|_| CorruptToken)?;
                let (h, p) = plain.split_at_checked(header_len).ok_or(CorruptToken)?;
                Ok(Secret::new(format!(
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode(h),
                    URL_SAFE_NO_PAD.encode(p),
                    URL_SAFE_NO_PAD.encode(sig)
                )))
            }
            _ => Err(CorruptToken),
        }
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The token, exactly as it was presented (with the dictionary it was
    /// stored with); anything else is an error.
    pub fn token(&self, dictionary: &TokenDictionary) -> Result<Secret, CorruptToken> {
        let t = Self::expand(&self.data, dictionary)?;
        if t.fingerprint() == self.fingerprint {
            Ok(t)
        } else {
            Err(CorruptToken)
        }
    }

    /// Bytes held for the token (for the tests' size check).
    pub fn stored_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ASIAEXAMPLEKEY".into(),
            secret_access_key: Secret::new("SECRET-MARKER-d81f"),
            session_token: Secret::new("SESSION-MARKER-77aa"),
            account_id: Some("123456789012".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 5),
            assumed_role: None,
        }
    }

    #[test]
    fn credentials_are_kept_exactly_and_never_printed() {
        let c = CachedCredentials::new(&creds());
        assert_eq!(c.access_key_id(), "ASIAEXAMPLEKEY");
        assert_eq!(c.secret_access_key().expose(), "SECRET-MARKER-d81f");
        assert_eq!(c.session_token().expose(), "SESSION-MARKER-77aa");
        assert_eq!(c.account_id(), Some("123456789012"));
        assert_eq!(
            c.expiration(),
            SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 5)
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("MARKER"), "{debug}");
        let none = CachedCredentials::new(&Credentials {
            account_id: Some(String::new()),
            ..creds()
        });
        assert_eq!(none.account_id(), None);
    }

    fn jws(sub: &str, n: u32) -> String {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let payload = format!(
            r#"{{"aud":["sts.amazonaws.com"],"exp":{n},"iat":1700000000,"iss":"https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF","jti":"5d0a1c2e-8f4b-4a3c-9d2e-{n:012x}","kubernetes.io":{{"namespace":"team","node":{{"name":"ip-10-0-1-23.eu-west-1.compute.internal","uid":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}},"pod":{{"name":"{sub}-{n}","uid":"a1b2c3d4-e5f6-4a5b-8c7d-{n:012x}"}},"serviceaccount":{{"name":"{sub}","uid":"0f1e2d3c-4b5a-4968-8776-{n:012x}"}}}},"nbf":1700000000,"sub":"system:serviceaccount:team:{sub}"}}"#
        );
        let sig: Vec<u8> = (0..256u32).map(|i| (i * 7 + n) as u8).collect();
        format!(
            "{}.{}.{}",
            enc(r#"{"alg":"RS256","kid":"abc123"}"#),
            enc(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn tokens_come_back_exactly() {
        let dict = TokenDictionary::default();
        let cases = [
            jws("app", 1),
            jws("other", 2),
            "not.a.jws".to_string(),
            "a.b".to_string(),
            "eyJhIjoxfQ.eyJiIjoyfQ.sig+with/std=".to_string(),
            "plain-token-with-no-dots".to_string(),
            String::new(),
        ];
        for t in &cases {
            let secret = Secret::new(t.as_str());
            let s = StoredToken::new(&secret, &dict);
            assert_eq!(s.token(&dict).unwrap(), secret, "{t}");
            assert_eq!(s.fingerprint(), secret.fingerprint());
            assert_eq!(format!("{s:?}"), "<redacted>");
        }
        // EKS-sized tokens shrink well below their text.
        let t = jws("app", 3);
        let s = StoredToken::new(&Secret::new(t.as_str()), &dict);
        assert!(
            s.stored_len() * 10 < t.len() * 6,
            "{} of {}",
            s.stored_len(),
            t.len()
        );
    }

    #[test]
    fn a_corrupt_token_is_an_error_never_another_token() {
        let dict = TokenDictionary::default();
        let t = Secret::new(jws("app", 1).as_str());
        let mut s = StoredToken::new(&t, &dict);
        assert_eq!(s.data[0], JWS, "a JWS is compressed");
        let last = s.data.len() - 1;
        s.data[last] ^= 0x55;
        assert_eq!(s.token(&dict), Err(CorruptToken));
        // Cut at every length: an error or the token, never another.
        let whole = StoredToken::new(&t, &dict);
        for n in 0..whole.data.len() {
            let cut = StoredToken {
                fingerprint: whole.fingerprint,
                data: whole.data[..n].into(),
            };
            assert_eq!(cut.token(&dict), Err(CorruptToken), "cut at {n}");
        }
        // Another cache's dictionary does not give back a wrong token either.
        let other = TokenDictionary::default();
        other.learn(b"something else entirely");
        let fresh = StoredToken::new(&t, &dict);
        assert!(
            fresh.token(&other).is_err_and(|e| e == CorruptToken) || fresh.token(&other) == Ok(t)
        );
    }
}

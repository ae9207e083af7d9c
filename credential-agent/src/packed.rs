//! Compact storage for what the cache keeps per identity: the credentials
//! (one allocation, the base64 session token stored decoded) and the pod's
//! token (one allocation, its base64url segments stored decoded). Decoding is
//! used only when re-encoding gives back exactly the original text, so what
//! is served or sent to STS is byte for byte what was received.
//! Neither type prints its content in Debug output.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::secret::Secret;
use crate::sts::Credentials;

const RAW: u8 = 0;
const DECODED: u8 = 1;

/// Appends `(u32 length, bytes)`.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads the `index`-th `(u32 length, bytes)` field.
fn field(data: &[u8], index: usize) -> &[u8] {
    let mut at = 0;
    let mut i = 0;
    while let Some(head) = data.get(at..at + 4) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let start = at + 4;
        let Some(bytes) = data.get(start..start + len) else {
            break;
        };
        if i == index {
            return bytes;
        }
        at = start + len;
        i += 1;
    }
    &[]
}

/// Base64 text -> (mode, bytes): decoded when that round-trips exactly.
fn squeeze<'a>(text: &'a str, engine: &impl Engine) -> (u8, Cow<'a, [u8]>) {
    if let Ok(bytes) = engine.decode(text) {
        if engine.encode(&bytes) == text {
            return (DECODED, Cow::Owned(bytes));
        }
    }
    (RAW, Cow::Borrowed(text.as_bytes()))
}

fn unsqueeze(mode: u8, bytes: &[u8], engine: &impl Engine) -> String {
    if mode == DECODED {
        engine.encode(bytes)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Credentials as the cache holds them.
pub struct CachedCredentials {
    expiration: SystemTime,
    /// access key id, account id, secret key, token mode (1 byte), token.
    data: Box<[u8]>,
}

impl CachedCredentials {
    pub fn new(c: &Credentials) -> Self {
        let (mode, token) = squeeze(c.session_token.expose(), &STANDARD);
        let mut data = Vec::with_capacity(
            c.access_key_id.len() + c.secret_access_key.len() + token.len() + 40,
        );
        put(&mut data, c.access_key_id.as_bytes());
        put(&mut data, c.account_id.as_deref().unwrap_or("").as_bytes());
        put(&mut data, c.secret_access_key.expose().as_bytes());
        put(&mut data, &[mode]);
        put(&mut data, &token);
        CachedCredentials {
            expiration: c.expiration,
            data: data.into_boxed_slice(),
        }
    }

    fn text(&self, index: usize) -> &str {
        std::str::from_utf8(field(&self.data, index)).unwrap_or("")
    }

    pub fn access_key_id(&self) -> &str {
        self.text(0)
    }

    pub fn account_id(&self) -> Option<&str> {
        Some(self.text(1)).filter(|a| !a.is_empty())
    }

    pub fn secret_access_key(&self) -> &str {
        self.text(2)
    }

    pub fn session_token(&self) -> String {
        let mode = field(&self.data, 3).first().copied().unwrap_or(RAW);
        unsqueeze(mode, field(&self.data, 4), &STANDARD)
    }

    pub fn expiration(&self) -> SystemTime {
        self.expiration
    }
}

impl fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("access_key_id", &self.access_key_id())
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// A pod's token as the cache holds it for refreshes.
pub struct PackedToken {
    /// Per segment: mode (1 byte) and bytes.
    data: Box<[u8]>,
}

impl PackedToken {
    pub fn new(token: &Secret) -> Self {
        let text = token.expose();
        let mut data = Vec::with_capacity(text.len());
        for segment in text.split('.') {
            let (mode, bytes) = squeeze(segment, &URL_SAFE_NO_PAD);
            put(&mut data, &[mode]);
            put(&mut data, &bytes);
        }
        PackedToken {
            data: data.into_boxed_slice(),
        }
    }

    /// The token, exactly as it was presented.
    pub fn unpack(&self) -> Secret {
        let mut out = String::new();
        let mut i = 0;
        let mut at = 0;
        while at < self.data.len() {
            let mode = field(&self.data, i).first().copied().unwrap_or(RAW);
            let bytes = field(&self.data, i + 1);
            if i > 0 {
                out.push('.');
            }
            out.push_str(&unsqueeze(mode, bytes, &URL_SAFE_NO_PAD));
            at += 4 + 1 + 4 + bytes.len();
            i += 2;
        }
        Secret::new(out)
    }
}

impl fmt::Debug for PackedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_exactly() {
        let cases = [
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
            "a.b.c",                    // not decodable: kept raw
            "eyJhbGciOiJub25lIn0.e30.", // empty segment
            "no-dots-at-all",
            "",
            "x.y",
            "Zm9v.YmFy.YmF6_-", // url-safe characters
            "Zm9v=.YmFy.YmF6",  // padding: not canonical unpadded, kept raw
        ];
        for t in cases {
            let s = Secret::new(t);
            assert_eq!(PackedToken::new(&s).unpack().expose(), t, "{t:?}");
        }
    }

    #[test]
    fn credentials_round_trip_and_shrink() {
        let token = STANDARD.encode((0..750).map(|i| (i * 7 % 256) as u8).collect::<Vec<_>>());
        for (session, account) in [
            (token.as_str(), Some("123456789012")),
            ("not base64!", None),
            ("", None),
        ] {
            let c = Credentials {
                access_key_id: "ASIAEXAMPLE".into(),
                secret_access_key: Secret::new("secret/with+chars="),
                session_token: Secret::new(session),
                account_id: account.map(str::to_string),
                expiration: SystemTime::UNIX_EPOCH,
            };
            let p = CachedCredentials::new(&c);
            assert_eq!(p.access_key_id(), "ASIAEXAMPLE");
            assert_eq!(p.secret_access_key(), "secret/with+chars=");
            assert_eq!(p.session_token(), session);
            assert_eq!(p.account_id(), account);
            assert_eq!(p.expiration(), SystemTime::UNIX_EPOCH);
            let dbg = format!("{p:?}");
            assert!(!dbg.contains("secret/") && (session.is_empty() || !dbg.contains(session)));
        }
        let c = Credentials {
            access_key_id: "A".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new(token.clone()),
            account_id: None,
            expiration: SystemTime::UNIX_EPOCH,
        };
        assert!(CachedCredentials::new(&c).data.len() < token.len() * 80 / 100);
    }
}

//! Compact storage for what the cache keeps per identity: the credentials
//! (one allocation, the base64 session token stored decoded) and the pod's
//! token (one allocation, its base64url segments stored decoded). Decoding is
//! used only when re-encoding gives back exactly the original text, so what
//! is served or sent to STS is byte for byte what was received.
//! Neither type prints its content in Debug output.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::secret::Secret;
use crate::sts::Credentials;

/// The top bit of a field's length: its bytes are base64-decoded text.
const DECODED: u32 = 1 << 31;

/// Appends one text field, `(u32 length | DECODED?, bytes)`, decoded when
/// re-encoding gives back exactly `text`.
fn put(out: &mut Vec<u8>, text: &str, engine: &impl Engine) {
    let (flag, bytes) = squeeze(text, engine);
    let len = u32::try_from(bytes.len())
        .unwrap_or(DECODED - 1)
        .min(DECODED - 1);
    out.extend_from_slice(&(len | flag).to_le_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

/// Base64 text -> (flag, bytes): decoded when that round-trips exactly.
fn squeeze<'a>(text: &'a str, engine: &impl Engine) -> (u32, Cow<'a, [u8]>) {
    if let Ok(bytes) = engine.decode(text) {
        if engine.encode(&bytes) == text {
            return (DECODED, Cow::Owned(bytes));
        }
    }
    (0, Cow::Borrowed(text.as_bytes()))
}

/// The text fields packed from `at` on, in order.
fn fields<'a, E: Engine>(
    data: &'a [u8],
    at: usize,
    engine: &'a E,
) -> impl Iterator<Item = String> + 'a {
    let mut at = at;
    std::iter::from_fn(move || {
        let head = data.get(at..at + 4)?;
        let word = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let len = (word & !DECODED) as usize;
        let bytes = data.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        Some(if word & DECODED != 0 {
            engine.encode(bytes)
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        })
    })
}

/// Credentials as the cache holds them: one shared allocation holding the
/// expiration, then access key id, account id, secret key and session token.
#[derive(Clone)]
pub struct CachedCredentials {
    data: Arc<[u8]>,
}

impl CachedCredentials {
    pub fn new(c: &Credentials) -> Self {
        let token = c.session_token.expose();
        let mut data = Vec::with_capacity(12 + 16 + c.access_key_id.len() + 40 + token.len());
        let (secs, nanos) = match c.expiration.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                // Before 1970: kept as a negative second count, whole seconds.
                let back = e.duration();
                (-i64::try_from(back.as_secs()).unwrap_or(i64::MAX), 0)
            }
        };
        data.extend_from_slice(&secs.to_le_bytes());
        data.extend_from_slice(&nanos.to_le_bytes());
        put(&mut data, &c.access_key_id, &STANDARD);
        put(&mut data, c.account_id.as_deref().unwrap_or(""), &STANDARD);
        put(&mut data, c.secret_access_key.expose(), &STANDARD);
        put(&mut data, token, &STANDARD);
        CachedCredentials { data: data.into() }
    }

    fn text(&self, index: usize) -> String {
        fields(&self.data, 12, &STANDARD)
            .nth(index)
            .unwrap_or_default()
    }

    pub fn access_key_id(&self) -> String {
        self.text(0)
    }

    pub fn account_id(&self) -> Option<String> {
        Some(self.text(1)).filter(|a| !a.is_empty())
    }

    pub fn secret_access_key(&self) -> String {
        self.text(2)
    }

    pub fn session_token(&self) -> String {
        self.text(3)
    }

    pub fn expiration(&self) -> SystemTime {
        let mut secs = [0u8; 8];
        let mut nanos = [0u8; 4];
        secs.copy_from_slice(self.data.get(..8).unwrap_or(&[0; 8]));
        nanos.copy_from_slice(self.data.get(8..12).unwrap_or(&[0; 4]));
        let secs = i64::from_le_bytes(secs);
        let nanos = u32::from_le_bytes(nanos);
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
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

/// A pod's token as the cache holds it for refreshes: one allocation with
/// its fingerprint ([`Secret::fingerprint`]) and its segments.
pub struct PackedToken {
    data: Box<[u8]>,
}

impl PackedToken {
    pub fn new(token: &Secret) -> Self {
        let text = token.expose();
        let mut data = Vec::with_capacity(8 + text.len());
        data.extend_from_slice(&token.fingerprint().to_le_bytes());
        for segment in text.split('.') {
            put(&mut data, segment, &URL_SAFE_NO_PAD);
        }
        PackedToken {
            data: data.into_boxed_slice(),
        }
    }

    /// The fingerprint of the token this holds.
    pub fn fingerprint(&self) -> u64 {
        let mut fp = [0u8; 8];
        fp.copy_from_slice(self.data.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(fp)
    }

    /// The token, exactly as it was presented.
    pub fn unpack(&self) -> Secret {
        let segments: Vec<String> = fields(&self.data, 8, &URL_SAFE_NO_PAD).collect();
        Secret::new(segments.join("."))
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
            assert_eq!(p.account_id().as_deref(), account);
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

    #[test]
    fn expiration_round_trips() {
        let at = |d: SystemTime| {
            let c = Credentials {
                access_key_id: "ASIA".into(),
                secret_access_key: Secret::new("s"),
                session_token: Secret::new("t"),
                account_id: None,
                expiration: d,
            };
            CachedCredentials::new(&c).expiration()
        };
        let later = SystemTime::UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789);
        assert_eq!(at(later), later);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(at(before), before);
    }

    #[test]
    fn token_keeps_its_fingerprint() {
        let s = Secret::new("a.b.c");
        assert_eq!(PackedToken::new(&s).fingerprint(), s.fingerprint());
        assert_ne!(
            PackedToken::new(&Secret::new("a.b.d")).fingerprint(),
            s.fingerprint()
        );
    }
}

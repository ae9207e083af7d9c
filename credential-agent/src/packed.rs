//! Compact storage for what the cache keeps per identity: the credentials
//! (one shared allocation, base64 fields stored decoded) and the pod's token
//! (one allocation: a compact JWS as its decoded signature plus its header
//! and payload, UUIDs squashed to 16 bytes and LZ4-compressed against the
//! cache's [`TokenDictionary`]; any other text as decoded segments).
//! Decoding and compression are used only when they give back exactly the
//! original text, so what is served or sent to STS is byte for byte what was
//! received. Neither type prints its content in Debug output.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
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

/// What the tokens one cache packs are compressed against: the decoded
/// header and payload of the first JWT it packed (never a signature, so
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

/// Token layouts after the fingerprint.
const SEGMENTS: u8 = 0;
const COMPACT_JWS: u8 = 1;

/// A pod's token as the cache holds it for refreshes: one allocation with
/// its fingerprint ([`Secret::fingerprint`]), then either
/// - a compact JWS (three canonical base64url segments): the header and
///   payload decoded and LZ4-compressed against the cache's
///   [`TokenDictionary`], the signature decoded; or
/// - any other text: its dot-separated segments, each decoded when that
///   round-trips.
///
/// Unpacking gives back exactly the token that was packed; packing checks
/// that before it keeps the compressed form.
pub struct PackedToken {
    data: Box<[u8]>,
}

impl PackedToken {
    pub fn new(token: &Secret, dictionary: &TokenDictionary) -> Self {
        let fp = token.fingerprint().to_le_bytes();
        if let Some(data) = Self::compact_jws(token.expose(), dictionary) {
            let mut out = Vec::with_capacity(8 + data.len());
            out.extend_from_slice(&fp);
            out.extend_from_slice(&data);
            return PackedToken {
                data: out.into_boxed_slice(),
            };
        }
        let text = token.expose();
        let mut data = Vec::with_capacity(9 + text.len());
        data.extend_from_slice(&fp);
        data.push(SEGMENTS);
        for segment in text.split('.') {
            put(&mut data, segment, &URL_SAFE_NO_PAD);
        }
        PackedToken {
            data: data.into_boxed_slice(),
        }
    }

    /// `[COMPACT_JWS][header len][header+payload len][squashed len][signature len][signature][LZ4 block]`,
    /// lengths as u32, if the token is a canonical compact JWS whose header
    /// and payload hold no 0xFF byte (UTF-8 JSON never does).
    fn compact_jws(text: &str, dictionary: &TokenDictionary) -> Option<Vec<u8>> {
        let mut parts = text.split('.');
        let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |s: &str| match squeeze(s, &URL_SAFE_NO_PAD) {
            (DECODED, bytes) => Some(bytes.into_owned()),
            _ => None,
        };
        let (h, p, sig) = (decode(h)?, decode(p)?, decode(sig)?);
        let mut hp = h;
        let h_len = hp.len();
        hp.extend_from_slice(&p);
        if hp.contains(&UUID_MARK) {
            return None;
        }
        let squashed = squash_uuids(&hp);
        let dict = dictionary.learn(&squashed);
        let block = lz4_flex::block::compress_with_dict(&squashed, dict);
        // Kept only if it gives back exactly these bytes.
        let back = lz4_flex::block::decompress_with_dict(&block, squashed.len(), dict).ok()?;
        if expand_uuids(&back)? != hp {
            return None;
        }
        let len = |n: usize| u32::try_from(n).ok().map(u32::to_le_bytes);
        let mut out = Vec::with_capacity(17 + sig.len() + block.len());
        out.push(COMPACT_JWS);
        out.extend_from_slice(&len(h_len)?);
        out.extend_from_slice(&len(hp.len())?);
        out.extend_from_slice(&len(squashed.len())?);
        out.extend_from_slice(&len(sig.len())?);
        out.extend_from_slice(&sig);
        out.extend_from_slice(&block);
        Some(out)
    }

    /// The fingerprint of the token this holds.
    pub fn fingerprint(&self) -> u64 {
        let mut fp = [0u8; 8];
        fp.copy_from_slice(self.data.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(fp)
    }

    /// The token, exactly as it was presented (with the dictionary it was
    /// packed with).
    pub fn unpack(&self, dictionary: &TokenDictionary) -> Secret {
        let text = match self.data.get(8) {
            Some(&COMPACT_JWS) => self.unpack_jws(dictionary).unwrap_or_default(),
            _ => {
                let segments: Vec<String> = fields(&self.data, 9, &URL_SAFE_NO_PAD).collect();
                segments.join(".")
            }
        };
        Secret::new(text)
    }

    fn unpack_jws(&self, dictionary: &TokenDictionary) -> Option<String> {
        let word = |at: usize| -> Option<usize> {
            let b = self.data.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let (h_len, hp_len, squashed_len, sig_len) = (word(9)?, word(13)?, word(17)?, word(21)?);
        let sig = self.data.get(25..25 + sig_len)?;
        let block = self.data.get(25 + sig_len..)?;
        let squashed =
            lz4_flex::block::decompress_with_dict(block, squashed_len, dictionary.get()).ok()?;
        let hp = expand_uuids(&squashed)?;
        if hp.len() != hp_len {
            return None;
        }
        let (h, p) = hp.split_at_checked(h_len)?;
        Some(format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(p),
            URL_SAFE_NO_PAD.encode(sig)
        ))
    }
}

/// Marks a squashed UUID: never a byte of UTF-8 text.
const UUID_MARK: u8 = 0xFF;

/// A lowercase UUID (`8-4-4-4-12` hex digits) at the start of `b`, as 16 bytes.
fn uuid_at(b: &[u8]) -> Option<[u8; 16]> {
    let text = b.get(..36)?;
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in text.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
        nibbles += 1;
    }
    Some(out)
}

/// Every lowercase UUID (Kubernetes uids, `jti`) as a mark and 16 bytes:
/// 17 bytes instead of 36, and LZ4 finds no matches in random hex anyway.
fn squash_uuids(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(u) = uuid_at(&b[i..]) {
            out.push(UUID_MARK);
            out.extend_from_slice(&u);
            i += 36;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn expand_uuids(b: &[u8]) -> Option<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(b.len() + 64);
    let mut i = 0;
    while i < b.len() {
        if b[i] == UUID_MARK {
            let u = b.get(i + 1..i + 17)?;
            for (n, byte) in u.iter().enumerate() {
                if matches!(n, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 15) as usize]);
            }
            i += 17;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
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
        let uuids = [
            r#"{"uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","x":"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"}"#,
            r#"{"almost":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f","dash":"0f1e2d3c_4b5a-6978-8796-a5b4c3d2e1f0"}"#,
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f00f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            r"\u00ff\u00fe ÿþ",
        ]
        .map(|p| {
            format!(
                "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
                URL_SAFE_NO_PAD.encode(p.as_bytes())
            )
        });
        let not_utf8 = format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode([0x7b, 0xff, 0x00, 0x7d])
        );
        let d = TokenDictionary::default();
        assert_eq!(
            PackedToken::new(&Secret::new(not_utf8.as_str()), &d).data[8],
            SEGMENTS
        );
        assert_eq!(
            PackedToken::new(&Secret::new(uuids[0].as_str()), &d).data[8],
            COMPACT_JWS
        );
        let cases: Vec<&str> = cases
            .iter()
            .copied()
            .chain(uuids.iter().map(String::as_str))
            .chain([not_utf8.as_str()])
            .collect();
        // Each case against a fresh dictionary (learned from itself), and
        // all of them against one dictionary learned from the first, in
        // both orders.
        for &t in &cases {
            let d = TokenDictionary::default();
            let s = Secret::new(t);
            assert_eq!(PackedToken::new(&s, &d).unpack(&d).expose(), t, "{t:?}");
        }
        for order in [cases.clone(), cases.iter().rev().copied().collect()] {
            let d = TokenDictionary::default();
            let packed: Vec<_> = order
                .iter()
                .map(|t| PackedToken::new(&Secret::new(*t), &d))
                .collect();
            for (p, t) in packed.iter().zip(&order) {
                assert_eq!(p.unpack(&d).expose(), *t);
            }
        }
    }

    /// A projected token as EKS issues them (RS256, Kubernetes 1.30 claims).
    fn k8s_token(sa: &str, n: u32) -> String {
        let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let uuid = |_| {
            let h = format!("{:032x}", rand::random::<u128>());
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        };
        let header = r#"{"alg":"RS256","kid":"6f8c2b1a9e0d4c3b2a1f0e9d8c7b6a5f4e3d2c1b"}"#;
        let now = 1_790_000_000 + n as u64;
        let payload = format!(
            r#"{{"aud":["sts.amazonaws.com"],"exp":{},"iat":{now},"iss":"https://oidc.eks.us-west-2.amazonaws.com/id/9F3B1C2D4E5A6B7C8D9E0F1A2B3C4D5E","jti":"{}","kubernetes.io":{{"namespace":"payments","node":{{"name":"ip-10-0-12-34.us-west-2.compute.internal","uid":"{}"}},"pod":{{"name":"{sa}-7d9f8b6c5-x2k4p","uid":"{}"}},"serviceaccount":{{"name":"{sa}","uid":"{}"}},"warnafter":{}}},"nbf":{now},"sub":"system:serviceaccount:payments:{sa}"}}"#,
            now + 86400,
            uuid(1),
            uuid(2),
            uuid(3),
            uuid(4),
            now + 3607
        );
        let sig: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
        format!(
            "{}.{}.{}",
            b(header.as_bytes()),
            b(payload.as_bytes()),
            b(&sig)
        )
    }

    #[test]
    fn kubernetes_tokens_shrink_and_round_trip() {
        let d = TokenDictionary::default();
        let tokens: Vec<String> = (0..50).map(|i| k8s_token(&format!("app-{i}"), i)).collect();
        let packed: Vec<_> = tokens
            .iter()
            .map(|t| PackedToken::new(&Secret::new(t.as_str()), &d))
            .collect();
        for (p, t) in packed.iter().zip(&tokens) {
            assert_eq!(p.unpack(&d).expose(), t);
            assert_eq!(p.data[8], COMPACT_JWS);
        }
        assert_eq!(
            squash_uuids(b"{\"uid\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\"}").len(),
            8 + 17 + 2
        );
        // The token text is about 1,200 characters, decoded about 900
        // bytes; packed against the dictionary, well under 600.
        let t = &tokens[49];
        let p = &packed[49];
        assert!(t.len() > 1100, "{}", t.len());
        assert!(
            p.data.len() < 600,
            "{} bytes for {} characters",
            p.data.len(),
            t.len()
        );
        // The dictionary holds no signature: it is no usable token.
        let sig = URL_SAFE_NO_PAD
            .decode(tokens[0].rsplit('.').next().unwrap())
            .unwrap();
        assert!(!d.get().windows(16).any(|w| w == &sig[..16]));
        assert!(d.get().starts_with(br#"{"alg":"RS256""#));
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
        let d = TokenDictionary::default();
        assert_eq!(PackedToken::new(&s, &d).fingerprint(), s.fingerprint());
        assert_ne!(
            PackedToken::new(&Secret::new("a.b.d"), &d).fingerprint(),
            s.fingerprint()
        );
    }
}

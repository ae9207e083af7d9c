//! A string that must never be printed: tokens, secret keys, session tokens.
//!
//! `Secret` has no `Display`, and its `Debug` prints `<redacted>`, so a secret
//! that ends up in a struct that is logged with `{:?}` stays hidden.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (STS, the HTTP body).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        // Lengths are not secret (tokens of one issuer have similar lengths);
        // the contents are compared without early exit.
        mine.len() == other.len() && bool::from(mine.ct_eq(other))
    }

    /// A short fingerprint for telling two tokens apart in memory. Never
    /// logged; not a MAC.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Replaces every occurrence of `secret` in `text` (for messages that come
/// back from STS and might echo what was sent).
pub fn scrub(text: &str, secret: &Secret) -> String {
    if secret.len() < 8 {
        return text.to_string();
    }
    text.replace(secret.expose(), "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("MARKER-abc-123");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(!format!("{:?}", Some(s.clone())).contains("MARKER"));
    }

    #[test]
    fn constant_time_compare() {
        let s = Secret::new("token-value");
        assert!(s.ct_eq(b"token-value"));
        assert!(!s.ct_eq(b"token-valuf"));
        assert!(!s.ct_eq(b"token-valu"));
        assert!(!s.ct_eq(b""));
    }

    #[test]
    fn scrub_removes_the_secret() {
        let s = Secret::new("eyJ-secret-token");
        assert_eq!(
            scrub("bad token eyJ-secret-token here", &s),
            "bad token <redacted> here"
        );
    }
}

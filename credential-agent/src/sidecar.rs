//! The sidecar's authenticator: the pod's projected token file, re-read when
//! the kubelet rotates it. A caller is served only if it presents the
//! current (or the just-replaced) file content, compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::verify::MAX_TOKEN_BYTES;

#[derive(Default)]
struct Tokens {
    current: Option<Secret>,
    previous: Option<Secret>,
}

pub struct TokenFile {
    path: PathBuf,
    tokens: Mutex<Tokens>,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenFile {
            path: path.into(),
            tokens: Mutex::new(Tokens::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token as last read.
    pub fn current(&self) -> Option<Secret> {
        self.lock().current.clone()
    }

    /// Reads the file; when its content changed, the old content stays
    /// acceptable as `previous` (an SDK may have read it just before).
    pub async fn reload(&self) -> Result<Secret> {
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot read the token file {}: {e}",
                self.path.display()
            ))
        })?;
        if bytes.is_empty() || bytes.len() > MAX_TOKEN_BYTES {
            return Err(Error::Unavailable(format!(
                "the token file {} is empty or larger than 16 KiB",
                self.path.display()
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Unavailable(format!(
                "the token file {} is not text",
                self.path.display()
            ))
        })?;
        let fresh = Secret::new(text);
        let mut t = self.lock();
        if t.current.as_ref() != Some(&fresh) {
            t.previous = t.current.take();
            t.current = Some(fresh.clone());
        }
        Ok(fresh)
    }

    /// Returns the current token if `presented` is the current or previous
    /// one; re-reads the file once when it matches neither (it may have
    /// just been rotated).
    pub async fn authenticate(&self, presented: &[u8]) -> Result<Secret> {
        if let Some(current) = self.matches(presented) {
            return Ok(current);
        }
        self.reload().await?;
        self.matches(presented).ok_or(Error::TokenMismatch)
    }

    fn matches(&self, presented: &[u8]) -> Option<Secret> {
        let t = self.lock();
        let current = t.current.as_ref()?;
        // Both comparisons always run.
        let a = current.ct_eq(presented);
        let b = t.previous.as_ref().is_some_and(|p| p.ct_eq(presented));
        (a | b).then(|| current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_current_and_previous_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let tf = TokenFile::new(&path);
        assert!(matches!(
            tf.authenticate(b"other").await,
            Err(Error::TokenMismatch)
        ));
        assert_eq!(tf.authenticate(b"first").await.unwrap().expose(), "first");
        // Rotation: the new token works at once, the old one still does.
        std::fs::write(&path, "second").unwrap();
        assert_eq!(tf.authenticate(b"second").await.unwrap().expose(), "second");
        assert_eq!(tf.authenticate(b"first").await.unwrap().expose(), "second");
        // Two rotations later the first is gone.
        std::fs::write(&path, "third").unwrap();
        tf.reload().await.unwrap();
        assert!(tf.authenticate(b"first").await.is_err());
        assert!(tf.authenticate(b"secon").await.is_err());
        assert!(tf.authenticate(b"").await.is_err());
    }

    #[tokio::test]
    async fn unreadable_file_is_unavailable() {
        let tf = TokenFile::new("/nonexistent/token");
        let e = tf.authenticate(b"x").await.unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("/nonexistent/token"));
    }
}

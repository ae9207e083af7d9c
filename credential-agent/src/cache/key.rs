//! What credentials are cached under, typed ([`Key`]), and how an entry
//! keeps it ([`PackedKey`]): the key's fields and the session name of its
//! STS calls in one allocation, each field found by the length stored in a
//! fixed header, never by searching for a separator. A node may hold tens of
//! thousands of entries, which is why the key is packed (see
//! docs/benchmarks.md); the packing lives here and nowhere else.

use contract::RoleArn;

use crate::sts::session_name;

/// What credentials are cached under. Built only from verified token claims
/// and the requested role (`auth.rs`), never from anything else a caller
/// sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub role_arn: RoleArn,
    /// Set with `--cache-scope pod`.
    pub pod_uid: Option<String>,
    /// The broker's PodIdentityAssociation (uid and generation): an update
    /// of the association gets new credentials. `None` on the agent.
    pub association: Option<String>,
    /// The token's accepted audiences, as a bitmask over the agent's
    /// `--audience` list: a token for another audience of the same
    /// ServiceAccount does not share these credentials (STS may refuse it;
    /// it must be asked).
    pub audiences: u32,
}

/// The string fields of a key.
const FIELDS: usize = 6;
/// The audience bitmask, then each string field's length as a u16.
const HEADER: usize = 4 + FIELDS * 2;

impl Key {
    fn fields(&self) -> [&str; FIELDS] {
        [
            &self.namespace,
            &self.service_account,
            &self.service_account_uid,
            self.role_arn.as_str(),
            self.pod_uid.as_deref().unwrap_or(""),
            self.association.as_deref().unwrap_or(""),
        ]
    }

    /// The packed form the map is searched with: the audience bitmask, the
    /// six string fields' lengths (u16, little-endian), then the fields.
    /// `pod_uid: None` and `Some("")` pack alike: a pod always has a uid.
    /// `None` when a field is over 64 KiB (claims come from a token of at
    /// most 16 KiB, so only a bug could get here).
    pub(super) fn packed(&self) -> Option<Vec<u8>> {
        let fields = self.fields();
        let len: usize = fields.iter().map(|f| f.len()).sum();
        let mut out = Vec::with_capacity(HEADER + len);
        out.extend_from_slice(&self.audiences.to_le_bytes());
        for f in fields {
            out.extend_from_slice(&u16::try_from(f.len()).ok()?.to_le_bytes());
        }
        for f in fields {
            out.extend_from_slice(f.as_bytes());
        }
        Some(out)
    }

    /// The session name this key gives when the pod is not part of it.
    pub fn default_session_name(&self) -> String {
        session_name(&self.namespace, &self.service_account, None)
    }
}

/// A key as an entry keeps it, followed by the session name when that is not
/// the one the key gives.
pub(super) struct PackedKey(Box<[u8]>);

impl PackedKey {
    /// `packed` is `key.packed()`.
    pub(super) fn new(key: &Key, mut bytes: Vec<u8>, session: &str) -> PackedKey {
        if session != key.default_session_name() {
            bytes.extend_from_slice(session.as_bytes());
        }
        PackedKey(bytes.into_boxed_slice())
    }

    fn len_of(&self, i: usize) -> usize {
        let at = 4 + i * 2;
        self.0
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, |b| u16::from_le_bytes(b) as usize)
    }

    fn field(&self, i: usize) -> &str {
        let start = HEADER + (0..i).map(|j| self.len_of(j)).sum::<usize>();
        self.0
            .get(start..start + self.len_of(i))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The bytes the map compares: the header and the fields.
    pub(super) fn key_bytes(&self) -> &[u8] {
        let end = HEADER + (0..FIELDS).map(|j| self.len_of(j)).sum::<usize>();
        self.0.get(..end).unwrap_or(&self.0)
    }

    pub(super) fn namespace(&self) -> &str {
        self.field(0)
    }

    pub(super) fn service_account(&self) -> &str {
        self.field(1)
    }

    pub(super) fn service_account_uid(&self) -> &str {
        self.field(2)
    }

    pub(super) fn role_arn(&self) -> &str {
        self.field(3)
    }

    /// Empty when the key is not per pod.
    pub(super) fn pod_uid(&self) -> &str {
        self.field(4)
    }

    /// The key's association (broker) or backend marker (agent).
    pub(super) fn association(&self) -> Option<&str> {
        Some(self.field(5)).filter(|a| !a.is_empty())
    }

    /// The session name of this key's STS calls.
    pub(super) fn session_name(&self) -> String {
        let stored = self.0.get(self.key_bytes().len()..).unwrap_or_default();
        match std::str::from_utf8(stored) {
            Ok(s) if !s.is_empty() => s.to_string(),
            _ => session_name(self.namespace(), self.service_account(), None),
        }
    }

    /// The typed key back (tests and diagnostics).
    #[cfg(test)]
    pub(super) fn key(&self) -> Key {
        let pod = self.field(4);
        Key {
            namespace: self.field(0).into(),
            service_account: self.field(1).into(),
            service_account_uid: self.field(2).into(),
            role_arn: RoleArn::parse(self.role_arn()).expect("packed from a RoleArn"),
            pod_uid: (!pod.is_empty()).then(|| pod.into()),
            association: (!self.field(5).is_empty()).then(|| self.field(5).into()),
            audiences: self
                .0
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, sa: &str, uid: &str, pod: Option<&str>) -> Key {
        Key {
            namespace: ns.into(),
            service_account: sa.into(),
            service_account_uid: uid.into(),
            role_arn: "arn:aws:iam::123456789012:role/path/app".parse().unwrap(),
            pod_uid: pod.map(Into::into),
            association: None,
            audiences: 1,
        }
    }

    #[test]
    fn packed_keys_give_their_fields_back() {
        let cases = [
            key("ns", "app", "uid-1", None),
            key("ns", "app", "uid-1", Some("pod-uid")),
            key("", "", "", None),
            // Separators inside fields cannot make two keys alike.
            key("a\0b", "c", "d", None),
            key("a", "b\0c", "d", None),
            key("ns", "app", "\u{e9}\u{1F600}", Some("p")),
            Key {
                audiences: 2,
                ..key("ns", "app", "uid-1", None)
            },
            Key {
                association: Some("assoc-uid/1".into()),
                ..key("ns", "app", "uid-1", Some("pod-uid"))
            },
        ];
        for (i, k) in cases.iter().enumerate() {
            for session in [k.default_session_name(), "ns.app.pod-x".to_string()] {
                let p = PackedKey::new(k, k.packed().unwrap(), &session);
                assert_eq!(&p.key(), k);
                assert_eq!(p.key_bytes(), k.packed().unwrap().as_slice());
                assert_eq!(p.role_arn(), "arn:aws:iam::123456789012:role/path/app");
                assert_eq!(p.session_name(), session, "{k:?}");
            }
            for (j, other) in cases.iter().enumerate() {
                assert_eq!(i == j, k.packed() == other.packed(), "{k:?} vs {other:?}");
            }
        }
    }

    #[test]
    fn the_default_session_name_is_not_stored() {
        let k = key("ns", "app", "uid-1", None);
        let with_default = PackedKey::new(&k, k.packed().unwrap(), &k.default_session_name());
        assert_eq!(with_default.0.len(), k.packed().unwrap().len());
        assert_eq!(with_default.session_name(), "ns.app");
        // A name that differs only by a suffix is stored.
        let odd = PackedKey::new(&k, k.packed().unwrap(), "ns.app-");
        assert_eq!(odd.session_name(), "ns.app-");
    }
}

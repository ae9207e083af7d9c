//! One cached identity: its packed key, the pod token it refreshes with, the
//! credentials, the STS call in flight, the last failure and its deadlines.
//! Kept small on purpose: a node may hold tens of thousands
//! (`entries_stay_small` pins the sizes).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::key::PackedKey;
use super::WeakFlight;
use crate::stored::CachedCredentials;
use crate::stored::StoredToken;
use crate::sts::StsError;

/// An instant on a cache's clock in 8 bytes (also as `Option<Tick>`):
/// nanoseconds since the cache was made, plus one. Exact both ways for 584
/// years, so paused-time tests see the same instants as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Tick(pub(super) NonZeroU64);

pub(super) struct Issued {
    pub(super) creds: CachedCredentials,
    pub(super) valid_until: Tick,
}

pub(super) struct Failure {
    pub(super) error: StsError,
    pub(super) until: Instant,
    pub(super) token_fp: u64,
    /// STS calls failed in a row.
    pub(super) failures: u32,
}

/// Kept small on purpose (88 bytes): a node may hold thousands.
pub(super) struct State {
    /// Holds its fingerprint too.
    pub(super) token: StoredToken,
    pub(super) token_valid_until: Option<Tick>,
    pub(super) creds: Option<Issued>,
    /// Boxed: `Option<WeakFlight>` would be 16 bytes in every entry.
    pub(super) inflight: Option<Box<WeakFlight>>,
    /// Boxed: rare, and entries should stay small.
    pub(super) failure: Option<Box<Failure>>,
    pub(super) next_refresh: Option<Tick>,
    pub(super) last_used: Tick,
    /// The deadline of this entry's one live item in the scheduler's heap.
    pub(super) scheduled_at: Option<Tick>,
}

pub(super) struct Entry {
    /// The key, and the session name when the key does not give it.
    pub(super) key: PackedKey,
    /// Out of the map: no longer refreshed or scheduled. Changed only with
    /// the state locked.
    removed: AtomicBool,
    state: Mutex<State>,
}

impl Entry {
    pub(super) fn new(key: PackedKey, state: State) -> Self {
        Entry {
            key,
            removed: AtomicBool::new(false),
            state: Mutex::new(state),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn removed(&self) -> bool {
        self.removed.load(AtomicOrdering::Relaxed)
    }

    pub(super) fn set_removed(&self) {
        self.removed.store(true, AtomicOrdering::Relaxed);
    }
}

/// An entry in the map, found by its packed key (`Key::packed()`): the map
/// holds one pointer per identity and no second copy of the key.
pub(super) struct Slot(pub(super) Arc<Entry>);

impl Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.0.key.key_bytes()
    }
}
impl Hash for Slot {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.key.key_bytes().hash(h)
    }
}
impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.0.key.key_bytes() == other.0.key.key_bytes()
    }
}
impl Eq for Slot {}

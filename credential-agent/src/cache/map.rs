//! The cache's entries, indexed per identity in eviction order (see
//! [`Map`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};

use super::entry::{Entry, Slot, Tick};
use super::permits::IdentityId;

/// One identity's entries (at most `max_roles_per_identity`) and when it
/// was last asked for.
struct Roles {
    entries: Members,
    last_used: Tick,
}

/// An identity's entries: most identities have one, kept without an
/// allocation of its own.
pub(super) enum Members {
    One(Weak<Entry>),
    Many(Vec<Weak<Entry>>),
}

impl Members {
    fn len(&self) -> usize {
        match self {
            Members::One(_) => 1,
            Members::Many(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, w: Weak<Entry>) {
        match self {
            Members::One(first) => *self = Members::Many(vec![first.clone(), w]),
            Members::Many(v) => v.push(w),
        }
    }

    /// Drops `entry` from the members.
    fn remove(&mut self, entry: &Arc<Entry>) {
        let is = |w: &Weak<Entry>| std::ptr::eq(w.as_ptr(), Arc::as_ptr(entry));
        match self {
            Members::One(w) if is(w) => *self = Members::Many(Vec::new()),
            Members::One(_) => {}
            Members::Many(v) => {
                v.retain(|w| !is(w));
                if v.len() == 1 {
                    if let Some(only) = v.pop() {
                        *self = Members::One(only);
                    }
                }
            }
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, Weak<Entry>> {
        match self {
            Members::One(w) => std::slice::from_ref(w).iter(),
            Members::Many(v) => v.iter(),
        }
    }
}

/// The entries, each identity's entries, and the identities in eviction
/// order: under `max_entries`, an entry of the identity holding the most
/// goes first (among equals, the identity used least recently; within it,
/// its least recently used entry), so a flood of roles or pods evicts its
/// own entries before anyone else's. Every step is O(log n) or O(roles of
/// one identity); nothing scans the map.
#[derive(Default)]
pub(super) struct Map {
    pub(super) slots: HashSet<Slot>,
    per_identity: HashMap<IdentityId, Roles>,
    order: BTreeSet<(Reverse<usize>, Tick, IdentityId)>,
}

impl Map {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn roles_of(&self, id: IdentityId) -> usize {
        self.per_identity.get(&id).map_or(0, |r| r.entries.len())
    }

    /// Records that `id` was asked for at `now`.
    pub(super) fn touch(&mut self, id: IdentityId, now: Tick) {
        if let Some(r) = self.per_identity.get_mut(&id) {
            if now > r.last_used {
                self.order
                    .remove(&(Reverse(r.entries.len()), r.last_used, id));
                r.last_used = now;
                self.order.insert((Reverse(r.entries.len()), now, id));
            }
        }
    }

    pub(super) fn insert(&mut self, entry: Arc<Entry>, id: IdentityId, now: Tick) {
        let w = Arc::downgrade(&entry);
        match self.per_identity.get_mut(&id) {
            Some(r) => {
                self.order
                    .remove(&(Reverse(r.entries.len()), r.last_used, id));
                r.entries.push(w);
                r.last_used = r.last_used.max(now);
                self.order
                    .insert((Reverse(r.entries.len()), r.last_used, id));
            }
            None => {
                self.per_identity.insert(
                    id,
                    Roles {
                        entries: Members::One(w),
                        last_used: now,
                    },
                );
                self.order.insert((Reverse(1), now, id));
            }
        }
        self.slots.insert(Slot(entry));
    }

    /// Removes this very entry (not another one with its key).
    pub(super) fn remove(&mut self, entry: &Arc<Entry>, id: IdentityId) -> bool {
        let bytes = entry.key.key_bytes();
        if !self
            .slots
            .get(bytes)
            .is_some_and(|e| Arc::ptr_eq(&e.0, entry))
        {
            return false;
        }
        self.slots.remove(bytes);
        if let Some(r) = self.per_identity.get_mut(&id) {
            self.order
                .remove(&(Reverse(r.entries.len()), r.last_used, id));
            r.entries.remove(entry);
            if r.entries.is_empty() {
                self.per_identity.remove(&id);
            } else {
                self.order
                    .insert((Reverse(r.entries.len()), r.last_used, id));
            }
        }
        true
    }

    /// The entry to evict first.
    pub(super) fn victim(&self) -> Option<(Arc<Entry>, IdentityId)> {
        let &(_, _, id) = self.order.first()?;
        let entry = self
            .per_identity
            .get(&id)?
            .entries
            .iter()
            .filter_map(Weak::upgrade)
            .min_by_key(|e| e.lock().last_used)?;
        Some((entry, id))
    }
}

//! Refresh and idle deadlines: every entry has at most one live item in one
//! heap, served by one task. An entry is refreshed in the background before
//! its credentials run low, and dropped when unused for the idle timeout.

use std::cmp::Reverse;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::entry::{Entry, State, Tick};
use super::Inner;

/// One pending wake-up of the scheduler for an entry.
pub(super) struct Due {
    pub(super) at: Tick,
    pub(super) entry: Weak<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Inner {
    /// When the scheduler must next look at an entry: its refresh point
    /// (once it has credentials) or the moment it becomes idle.
    pub(super) fn next_event(&self, st: &State) -> Tick {
        let idle_at = self.idle_at(st);
        match (&st.creds, st.next_refresh) {
            (Some(_), Some(due)) => due.min(idle_at),
            _ => idle_at,
        }
    }

    /// When the entry becomes idle unless asked for again.
    pub(super) fn idle_at(&self, st: &State) -> Tick {
        self.tick(self.instant(st.last_used) + self.cfg.idle_timeout)
    }

    /// Makes `at` the entry's one live wake-up; older heap items for it
    /// become stale and are skipped when they come up.
    pub(super) fn schedule(&self, entry: &Arc<Entry>, st: &mut State, at: Tick) {
        if st.scheduled_at == Some(at) {
            return;
        }
        st.scheduled_at = Some(at);
        let mut heap = self.heap();
        let earliest = heap.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.push(Reverse(Due {
            at,
            entry: Arc::downgrade(entry),
        }));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// The scheduler reached `at` for this entry: drop it if idle, start a
    /// refresh if due, else schedule the next look.
    pub(super) fn on_due(self: &Arc<Self>, entry: &Arc<Entry>, at: Tick, now: Instant) {
        {
            let mut st = entry.lock();
            if entry.removed() || st.scheduled_at != Some(at) {
                return; // evicted, or a stale item
            }
            st.scheduled_at = None;
            if self.tick(now) < self.idle_at(&st) {
                return self.refresh_or_reschedule(entry, &mut st, now);
            }
        }
        if self.remove_if_idle(entry, now) {
            return;
        }
        let mut st = entry.lock();
        self.refresh_or_reschedule(entry, &mut st, now);
    }

    pub(super) fn refresh_or_reschedule(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        st: &mut State,
        now: Instant,
    ) {
        if st.inflight.as_ref().is_some_and(|w| w.upgrade().is_some()) {
            return; // its completion schedules the next look
        }
        let now_tick = self.tick(now);
        let due = st.creds.is_some() && st.next_refresh.is_some_and(|d| now_tick >= d);
        if due {
            if st.token_valid_until.is_some_and(|t| t <= now_tick) {
                // Only a request can bring a newer token; until then there
                // is nothing STS would accept.
                st.next_refresh =
                    Some(self.tick(now + self.cfg.backoff_max.min(Duration::from_secs(30))));
                self.metrics.refresh("skipped_token_expired");
            } else {
                // Spawned; completion records the result and reschedules.
                tokio::spawn(Inner::flight(self, entry, st, true));
                return;
            }
        }
        let at = self.next_event(st);
        self.schedule(entry, st, at);
    }

    /// Drops the entry if it is still idle; true if it is gone.
    pub(super) fn remove_if_idle(&self, entry: &Arc<Entry>, now: Instant) -> bool {
        let mut map = self.map();
        let st = entry.lock();
        if entry.removed() {
            return true;
        }
        if self.tick(now) < self.idle_at(&st) {
            return false;
        }
        entry.set_removed();
        map.remove(entry, self.entry_holder(entry));
        self.metrics.identities.set(map.len() as i64);
        self.metrics.eviction("idle");
        true
    }
}

/// The one task that serves every entry's refresh and idle deadlines.
pub(super) async fn scheduler(inner: Arc<Inner>) {
    loop {
        let next = inner.heap().peek().map(|Reverse(d)| inner.instant(d.at));
        match next {
            None => inner.wake.notified().await,
            Some(at) if at > inner.clock.now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = inner.wake.notified() => {}
                }
            }
            Some(_) => {}
        }
        let now = inner.clock.now();
        let now_tick = inner.tick(now);
        loop {
            let due = {
                let mut heap = inner.heap();
                match heap.peek() {
                    Some(Reverse(d)) if d.at <= now_tick => heap.pop().map(|Reverse(d)| d),
                    _ => None,
                }
            };
            let Some(due) = due else { break };
            if let Some(entry) = due.entry.upgrade() {
                inner.on_due(&entry, due.at, now);
            }
        }
    }
}

//! STS slots handed out fairly: at most `max_concurrent_sts` calls run at
//! once over all identities, and while they are all taken, waiting calls get
//! the next free slot round-robin by identity (namespace + ServiceAccount
//! uid), not in arrival order. One pod flooding the agent with requests thus
//! waits behind its own calls, not in front of everyone else's.
//!
//! A waiter that gives up (its caller left, or its wait timed out) is
//! skipped; a slot is never lost: it goes back when the call that held it
//! ends, or when a grant reaches a waiter that is already gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Who a waiting call belongs to (a hash of namespace and ServiceAccount uid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdentityId(pub(crate) u64);

#[derive(Default)]
struct Queues {
    free: usize,
    waiting: HashMap<IdentityId, VecDeque<oneshot::Sender<Permit>>>,
    /// Identities with someone waiting, in the order they are served.
    ring: VecDeque<IdentityId>,
}

pub(crate) struct FairPermits {
    queues: Mutex<Queues>,
}

/// One STS slot; handed to the next waiter when dropped.
pub(crate) struct Permit {
    owner: Arc<FairPermits>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.owner.release();
    }
}

impl FairPermits {
    pub(crate) fn new(slots: usize) -> Arc<Self> {
        Arc::new(FairPermits {
            queues: Mutex::new(Queues {
                free: slots.max(1),
                ..Queues::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for a call of `id`. Dropping the future gives up
    /// the place in the queue.
    pub(crate) async fn acquire(self: &Arc<Self>, id: IdentityId) -> Permit {
        let rx = {
            let mut q = self.lock();
            if q.free > 0 && q.ring.is_empty() {
                q.free -= 1;
                return Permit {
                    owner: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = q.waiting.entry(id).or_default();
            // Waiters that gave up leave their sender behind: drop them here
            // so one identity's queue holds only live waiters.
            queue.retain(|s| !s.is_closed());
            let was_empty = queue.is_empty();
            queue.push_back(tx);
            if was_empty && !q.ring.contains(&id) {
                q.ring.push_back(id);
            }
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // The sender is only dropped unsent when the whole set is gone.
            Err(_) => std::future::pending().await,
        }
    }

    /// Gives a freed slot to the next identity in the ring with a live
    /// waiter, or back to the free count.
    fn release(self: &Arc<Self>) {
        let mut q = self.lock();
        loop {
            let Some(id) = q.ring.pop_front() else {
                q.free += 1;
                return;
            };
            let Some(queue) = q.waiting.get_mut(&id) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                q.waiting.remove(&id);
            } else {
                q.ring.push_back(id);
            }
            let Some(tx) = next else { continue };
            match tx.send(Permit {
                owner: self.clone(),
            }) {
                Ok(()) => return,
                // The waiter is gone: this permit must not release again
                // (the lock is held); the slot goes to the next waiter.
                Err(unsent) => std::mem::forget(unsent),
            }
        }
    }

    /// Slots not taken (tests).
    #[cfg(test)]
    pub(super) fn free(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_go_round_robin_by_identity() {
        let permits = FairPermits::new(1);
        let held = permits.acquire(IdentityId(0)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // The flooder queues ten calls before the victim queues one.
        for i in 0..10 {
            let (p, o) = (permits.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = p.acquire(IdentityId(1)).await;
                o.lock().unwrap().push(format!("flood-{i}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        let (p, o) = (permits.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = p.acquire(IdentityId(2)).await;
            o.lock().unwrap().push("victim".into());
        }));
        tokio::task::yield_now().await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order[0], "flood-0");
        assert_eq!(order[1], "victim", "{order:?}");
        assert_eq!(permits.free(), 1, "every slot came back");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_that_gave_up_are_skipped_and_no_slot_is_lost() {
        let permits = FairPermits::new(2);
        let a = permits.acquire(IdentityId(1)).await;
        let b = permits.acquire(IdentityId(1)).await;
        // Five waiters give up after a second.
        for _ in 0..5 {
            let p = permits.clone();
            let waited = tokio::time::timeout(Duration::from_secs(1), async move {
                p.acquire(IdentityId(3)).await
            })
            .await;
            assert!(waited.is_err());
        }
        let p = permits.clone();
        let live = tokio::spawn(async move { p.acquire(IdentityId(4)).await });
        tokio::task::yield_now().await;
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(1), live).await;
        assert!(got.is_ok(), "the live waiter got the slot");
        drop(got);
        drop(b);
        assert_eq!(permits.free(), 2);
        assert!(permits.lock().waiting.is_empty() && permits.lock().ring.is_empty());
    }
}

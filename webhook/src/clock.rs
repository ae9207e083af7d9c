//! The webhook's one source of time. The webhook reads only monotonic time
//! (request durations); waits and deadlines are tokio timers, which
//! `#[tokio::test(start_paused = true)]` drives. `clippy.toml` forbids
//! reading the clocks anywhere but here.

#![allow(clippy::disallowed_methods)]

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl Clock {
    /// Monotonic now (tokio's clock).
    pub fn now(&self) -> Instant {
        Instant::now()
    }
}

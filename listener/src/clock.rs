//! The one clock of both daemons (re-exported as `crate::clock::Clock` by the
//! webhook and the agent). Everything else takes a [`Clock`]: each daemon's
//! `clippy.toml` forbids `SystemTime::now` and `Instant::now` outside it, so
//! tests decide what time it is.
//!
//! Monotonic time is tokio's (`tokio::time::Instant`), which
//! `#[tokio::test(start_paused = true)]` drives. Wall-clock time is either
//! the system's, or, for tests, a fixed start plus however far tokio's clock
//! has moved since, so paused-time tests see token and credential
//! expirations move with the deadlines they schedule.

#![allow(clippy::disallowed_methods)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// `None`: the system clock. `Some`: wall time `.0` at tokio instant `.1`.
    anchor: Option<(SystemTime, Instant)>,
}

impl Clock {
    /// The real clocks.
    pub fn system() -> Self {
        Clock { anchor: None }
    }

    /// Wall time starts at `wall` now and follows tokio's clock from here.
    pub fn starting_at(wall: SystemTime) -> Self {
        Clock {
            anchor: Some((wall, Instant::now())),
        }
    }

    /// Monotonic now (tokio's clock).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Wall-clock now.
    pub fn wall(&self) -> SystemTime {
        match self.anchor {
            None => SystemTime::now(),
            Some((wall, at)) => wall + Instant::now().saturating_duration_since(at),
        }
    }

    /// Seconds since the Unix epoch (0 before it).
    pub fn unix_seconds(&self) -> u64 {
        self.wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }

    /// The monotonic instant at which wall time `at` is reached (now, if it
    /// has passed).
    pub fn instant_of(&self, at: SystemTime) -> Instant {
        let now = self.now();
        let ahead = at.duration_since(self.wall()).unwrap_or(Duration::ZERO);
        // A signed but absurd time (a token's exp in the year 10^11) is
        // "never", not an overflow.
        now.checked_add(ahead)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_test_clock_follows_paused_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Clock::starting_at(start);
        assert_eq!(clock.wall(), start);
        assert_eq!(clock.unix_seconds(), 1_800_000_000);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.wall(), start + Duration::from_secs(90));
        let later = clock.instant_of(start + Duration::from_secs(100));
        assert_eq!(later - clock.now(), Duration::from_secs(10));
        assert_eq!(clock.instant_of(start), clock.now(), "a past time is now");
        let far = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2);
        assert!(
            clock.instant_of(far) > clock.now(),
            "no overflow, far ahead"
        );
    }
}

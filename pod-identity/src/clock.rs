//! The CLI's one source of time: the clock the daemons use too
//! (`listener::clock`). `doctor` compares certificate expiry and annotation
//! times with it; checks take the time as an argument (`Facts::now`), so
//! tests pick it; `clippy.toml` forbids reading the clocks anywhere else.

pub use listener::clock::Clock;

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    i64::try_from(Clock::system().unix_seconds()).unwrap_or(i64::MAX)
}

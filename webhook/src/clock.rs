//! The webhook's one source of time: the clock both daemons share
//! (`listener::clock`). The webhook reads only monotonic time (request
//! durations); waits and deadlines are tokio timers, which
//! `#[tokio::test(start_paused = true)]` drives. `clippy.toml` forbids
//! reading the clocks anywhere but there.

pub use listener::clock::Clock;

//! The agent's one source of time: the clock both daemons share
//! (`listener::clock`). `clippy.toml` forbids reading the clocks anywhere
//! else, so tests decide what time it is.

pub use listener::clock::Clock;

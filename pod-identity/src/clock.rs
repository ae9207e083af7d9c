//! The CLI's one source of time: `doctor` compares certificate expiry and
//! annotation times with it. Checks take the time as an argument
//! (`Facts::now`), so tests pick it; `clippy.toml` forbids reading the
//! clocks anywhere but here.

#![allow(clippy::disallowed_methods)]

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

//! The one duration syntax of both binaries' flags: Go's `time.ParseDuration`
//! (`100ms`, `2s`, `1m30s`, `1.5h`), as the upstream webhook's flags take
//! them, plus a bare number of seconds (`3600`), as the agent's
//! `--session-duration` has always taken.

use std::time::Duration;

/// A value that is not a duration; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

impl From<String> for DurationError {
    fn from(s: String) -> Self {
        DurationError(s)
    }
}

impl From<&str> for DurationError {
    fn from(s: &str) -> Self {
        DurationError(s.to_string())
    }
}

/// Parses a duration flag value. Negative, empty and out-of-range (over 10^9
/// seconds) values are errors that say what is accepted.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 1_000_000_000)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {input:?} is out of range").into());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {input:?}").into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {input:?} (use 90s, 15m, 1h)"))?;
        if num_len == 0 {
            return Err(format!("{input:?} is not a duration (use 90s, 15m, 1h)").into());
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid number in duration {input:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {input:?} (ns, us, ms, s, m, h)"
                )
                .into())
            }
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("duration {input:?} is out of range").into());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("0", Duration::ZERO),
            ("90", Duration::from_secs(90)),
            ("3600", Duration::from_secs(3600)),
            ("100ms", Duration::from_millis(100)),
            ("2s", Duration::from_secs(2)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("90m", Duration::from_secs(5400)),
            ("250us", Duration::from_micros(250)),
            (" 5s ", Duration::from_secs(5)),
        ];
        for (input, want) in ok {
            assert_eq!(parse(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "-1s",
            "-5",
            "1x",
            "ms",
            "1s2",
            "..s",
            "soon",
            "1 h",
            "99999999999",
            "1e3s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}

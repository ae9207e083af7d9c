//! The cache's settings, their defaults and the rules that make
//! refresh-ahead possible.

use std::time::Duration;

contract::message_error! {
    /// Settings under which refresh-ahead cannot work.
    CacheConfigError
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// DurationSeconds asked of STS.
    pub session_duration: Duration,
    /// Never hand out credentials with less left than this while STS works
    /// (botocore refreshes 15 minutes before expiry).
    pub min_remaining: Duration,
    /// Refresh starts when this much more than `min_remaining` is left...
    pub refresh_margin: Duration,
    /// ...plus a random part of this (spreads refreshes of many identities).
    pub refresh_jitter: Duration,
    /// How long a permanent STS refusal for one token is remembered.
    pub negative_ttl: Duration,
    /// First retry delay after a failed STS call; doubles per failure.
    pub backoff_base: Duration,
    /// Cap of the retry delay.
    pub backoff_max: Duration,
    /// Identities not asked for within this time are dropped.
    pub idle_timeout: Duration,
    /// Most identities kept; the least recently used one makes room.
    pub max_entries: usize,
    /// One STS call may take this long.
    pub sts_timeout: Duration,
    /// STS calls in flight at once, over all identities.
    pub max_concurrent_sts: usize,
    /// How long a call waits for one of those slots before it fails (429).
    pub sts_queue_timeout: Duration,
    /// Roles one identity (namespace + ServiceAccount uid) may have cached
    /// or being fetched; a request for one more is refused (429).
    pub max_roles_per_identity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            session_duration: Duration::from_secs(3600),
            min_remaining: Duration::from_secs(15 * 60),
            refresh_margin: Duration::from_secs(5 * 60),
            refresh_jitter: Duration::from_secs(5 * 60),
            negative_ttl: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(90 * 60),
            max_entries: 20_000,
            sts_timeout: Duration::from_secs(10),
            max_concurrent_sts: 16,
            sts_queue_timeout: Duration::from_secs(5),
            max_roles_per_identity: 8,
        }
    }
}

impl CacheConfig {
    /// Rejects settings under which refresh-ahead cannot work.
    pub fn validate(&self) -> Result<(), CacheConfigError> {
        let secs = self.session_duration.as_secs();
        if !(900..=43200).contains(&secs) {
            return Err(format!(
                "session duration {secs}s is outside STS's range of 900 to 43200 seconds"
            )
            .into());
        }
        let lead = self.min_remaining + self.refresh_margin + self.refresh_jitter;
        if self.session_duration <= lead + Duration::from_secs(60) {
            return Err(format!(
                "session duration {secs}s leaves no time between refreshes: it must exceed \
                 min-remaining + refresh margin + refresh jitter + 60s = {}s",
                lead.as_secs() + 60
            )
            .into());
        }
        if self.max_entries == 0 {
            return Err("max entries must be at least 1".into());
        }
        if self.max_roles_per_identity == 0 {
            return Err("max roles per identity must be at least 1".into());
        }
        if self.sts_queue_timeout.is_zero() {
            return Err("the STS queue timeout must be positive".into());
        }
        if self.max_concurrent_sts == 0 {
            return Err("max concurrent STS calls must be at least 1".into());
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return Err("backoff base must be positive and at most backoff max".into());
        }
        Ok(())
    }
}

//! Cache behaviour under paused tokio time, with a scripted STS.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::UNIX_EPOCH;

use super::entry::{Entry, Slot, State, Tick};
use super::schedule::Due;
use super::*;
use crate::sts::StsErrorKind;

/// Wall-clock time at the start of every test; it then follows tokio's
/// paused clock.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Monotonic now (tokio's paused clock).
fn now() -> Instant {
    Clock::system().now()
}

/// A scripted STS: answers after `delay`, with credentials named after the
/// call number, or with the error currently set.
struct FakeSts {
    calls: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    delay: Mutex<Duration>,
    fail_with: Mutex<Option<StsError>>,
    /// tokio instant each credential was issued at, by call number.
    issued: Mutex<Vec<Instant>>,
    tokens: Mutex<Vec<String>>,
    /// (role, session name) of each call.
    sessions: Mutex<Vec<(String, String)>>,
    clock: Clock,
}

impl FakeSts {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(FakeSts {
            calls: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: Arc::new(AtomicUsize::new(0)),
            delay: Mutex::new(delay),
            fail_with: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            clock: Clock::starting_at(t0()),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn fail(&self, e: Option<StsError>) {
        *self.fail_with.lock().unwrap() = e;
    }
    fn issued_at(&self, key_id: &str) -> Instant {
        let n: usize = key_id.trim_start_matches("AKIA").parse().unwrap();
        self.issued.lock().unwrap()[n - 1]
    }
}

impl Exchanger for FakeSts {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.delay.lock().unwrap();
        let fail = self.fail_with.lock().unwrap().clone();
        self.tokens
            .lock()
            .unwrap()
            .push(req.token.expose().to_string());
        self.sessions
            .lock()
            .unwrap()
            .push((req.role_arn.clone(), req.session_name.clone()));
        let issued = now() + delay;
        let clock = self.clock;
        self.issued.lock().unwrap().push(issued);
        let (in_flight, max) = (self.in_flight.clone(), self.max_in_flight.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(e) = fail {
                return Err(e);
            }
            Ok(Credentials {
                access_key_id: format!("AKIA{n}"),
                secret_access_key: Secret::new(format!("secret{n}")),
                session_token: Secret::new(format!("session{n}")),
                account_id: Some("123456789012".into()),
                expiration: clock.wall() + Duration::from_secs(req.duration_seconds as u64),
                assumed_role: None,
            })
        }
        .boxed()
    }
}

fn key(sa: &str) -> Key {
    Key {
        namespace: "ns".into(),
        service_account: sa.into(),
        service_account_uid: format!("uid-{sa}"),
        role_arn: "arn:aws:iam::123456789012:role/app".parse().unwrap(),
        pod_uid: None,
        association: None,
        audiences: 1,
    }
}

fn lookup(sa: &str, token: &str) -> Lookup {
    Lookup {
        key: key(sa),
        session_name: format!("ns.{sa}"),
        token: Secret::new(token),
        token_expires: Some(t0() + Duration::from_secs(365 * 86400)),
    }
}

fn cache_with(sts: Arc<FakeSts>, cfg: CacheConfig, jitter: f64) -> Cache {
    let clock = sts.clock;
    Cache::new(
        sts,
        cfg,
        Arc::new(move || jitter),
        Arc::new(Metrics::new()),
        clock,
    )
}

fn denied() -> StsError {
    StsError::new(StsErrorKind::Denied, "AccessDenied", "not authorized")
}

fn unavailable() -> StsError {
    StsError::new(StsErrorKind::Unavailable, "InternalFailure", "down")
}

/// Lets spawned tasks run without moving the clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_sts_call() {
    let sts = FakeSts::new(Duration::from_millis(500));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = cache.clone();
            tokio::spawn(async move { c.get(lookup("app", &format!("token-{}", i % 3))).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let served = t.await.unwrap().unwrap();
        ids.insert(served.credentials.access_key_id().to_string());
    }
    assert_eq!(sts.calls(), 1);
    assert_eq!(ids.len(), 1);
    // And the next request is a plain hit.
    let again = cache.get(lookup("app", "token-0")).await.unwrap();
    assert_eq!(again.source, Source::Cached);
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_failure() {
    let sts = FakeSts::new(Duration::from_millis(500));
    sts.fail(Some(unavailable()));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.get(lookup("app", "t")).await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.code(), "InternalFailure");
    }
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn sts_call_survives_the_request_that_started_it() {
    let sts = FakeSts::new(Duration::from_secs(3));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let c = cache.clone();
    let first = tokio::spawn(async move { c.get(lookup("app", "t")).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.abort(); // the SDK gave up
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served = cache.get(lookup("app", "t")).await.unwrap();
    assert_eq!(served.source, Source::Cached);
    assert_eq!(served.credentials.access_key_id(), "AKIA1");
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn different_identities_do_not_share() {
    let sts = FakeSts::new(Duration::from_millis(10));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let a = cache.get(lookup("a", "t")).await.unwrap();
    let b = cache.get(lookup("b", "t")).await.unwrap();
    let mut other_role = lookup("a", "t");
    other_role.key.role_arn = "arn:aws:iam::123456789012:role/other".parse().unwrap();
    let c = cache.get(other_role).await.unwrap();
    let mut new_uid = lookup("a", "t");
    new_uid.key.service_account_uid = "recreated".into();
    let d = cache.get(new_uid).await.unwrap();
    let ids: std::collections::HashSet<_> = [a, b, c, d]
        .iter()
        .map(|s| s.credentials.access_key_id().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(sts.calls(), 4);
    assert_eq!(cache.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_so_no_caller_waits_and_nothing_short_is_served() {
    let sts = FakeSts::new(Duration::from_millis(200));
    let cfg = CacheConfig::default();
    let cache = cache_with(sts.clone(), cfg.clone(), 0.5);
    let start = now();
    let first = cache.get(lookup("app", "t")).await.unwrap();
    assert_eq!(first.source, Source::Fetched);
    // Ask every minute for 6 hours, as a busy pod would.
    for _ in 0..360 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let served = cache.get(lookup("app", "t")).await.unwrap();
        assert_eq!(served.source, Source::Cached, "waited on STS");
        let issued = sts.issued_at(served.credentials.access_key_id());
        let left = (issued + cfg.session_duration).saturating_duration_since(now());
        assert!(left >= cfg.min_remaining, "served with {left:?} left");
    }
    // One refresh per (3600 - 15m - 5m - 2.5m jitter) = 2550 s: 6 h / 2550 s ~ 8.5.
    let elapsed = now() - start;
    let expected = 1 + (elapsed.as_secs() / 2550) as usize;
    assert!(
        (expected - 1..=expected + 1).contains(&sts.calls()),
        "{} calls in {elapsed:?}",
        sts.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_point_follows_jitter() {
    for (jitter, refresh_after) in [(0.0, 2400u64), (1.0, 2100)] {
        let sts = FakeSts::new(Duration::ZERO);
        let cache = cache_with(sts.clone(), CacheConfig::default(), jitter);
        cache.get(lookup("app", "t")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(refresh_after - 1)).await;
        settle().await;
        assert_eq!(sts.calls(), 1, "jitter {jitter}: refreshed too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(sts.calls(), 2, "jitter {jitter}: not refreshed");
    }
}

#[tokio::test(start_paused = true)]
async fn outage_serves_cached_until_expiry_with_bounded_retries() {
    let sts = FakeSts::new(Duration::from_millis(100));
    let cfg = CacheConfig::default();
    let cache = cache_with(sts.clone(), cfg.clone(), 0.0);
    cache.get(lookup("app", "t")).await.unwrap();
    sts.fail(Some(unavailable()));
    let mut stale_seen = false;
    // Until the credential expires (3600 s), every request gets it.
    for _ in 0..59 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let served = cache.get(lookup("app", "t")).await.unwrap();
        assert_eq!(served.credentials.access_key_id(), "AKIA1");
        stale_seen |= served.source == Source::Stale;
    }
    assert!(stale_seen, "never fell back to the cached credential");
    // Retries back off: the background started at 2400 s, 1200 s of outage
    // with backoff doubling from 1 s to 300 s is about 12 calls; requests
    // add at most one call per negative-ttl window when they are not served
    // from the cache.
    let calls = sts.calls();
    assert!((5..=80).contains(&calls), "{calls} STS calls during outage");
    // After expiry, the error shows.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let err = cache.get(lookup("app", "t")).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 503);
    // STS back: fresh credentials.
    sts.fail(None);
    tokio::time::sleep(Duration::from_secs(cfg.negative_ttl.as_secs() + 1)).await;
    let served = cache.get(lookup("app", "t")).await.unwrap();
    assert_ne!(served.credentials.access_key_id(), "AKIA1");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_remembered_briefly_per_token() {
    let sts = FakeSts::new(Duration::from_millis(10));
    sts.fail(Some(denied()));
    let cfg = CacheConfig::default();
    let cache = cache_with(sts.clone(), cfg.clone(), 0.0);
    for _ in 0..10 {
        let e = cache.get(lookup("app", "t1")).await.unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
    }
    assert_eq!(sts.calls(), 1, "retrying SDK hammered STS");
    // A new token is worth a try at once.
    cache.get(lookup("app", "t2")).await.unwrap_err();
    assert_eq!(sts.calls(), 2);
    assert_eq!(sts.tokens.lock().unwrap().last().unwrap(), "t2");
    // After the negative TTL, the same token is tried again.
    tokio::time::sleep(cfg.negative_ttl + Duration::from_secs(1)).await;
    sts.fail(None);
    let ok = cache.get(lookup("app", "t2")).await.unwrap();
    assert_eq!(ok.source, Source::Fetched);
    assert_eq!(sts.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_back_off() {
    let sts = FakeSts::new(Duration::from_millis(10));
    sts.fail(Some(unavailable()));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 1.0);
    // 1000 requests over 20 s: backoff 1, 2, 4, 8 s (capped at negative ttl 10 s).
    for _ in 0..1000 {
        let _ = cache.get(lookup("app", "t")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = sts.calls();
    assert!((3..=7).contains(&calls), "{calls} calls");
}

#[tokio::test(start_paused = true)]
async fn idle_identities_are_dropped_and_not_refreshed() {
    let sts = FakeSts::new(Duration::from_millis(10));
    let cfg = CacheConfig {
        idle_timeout: Duration::from_secs(30 * 60),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    cache.get(lookup("app", "t")).await.unwrap();
    assert_eq!(cache.len(), 1);
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    settle().await;
    assert_eq!(cache.len(), 0);
    tokio::time::sleep(Duration::from_secs(10 * 3600)).await;
    settle().await;
    assert_eq!(sts.calls(), 1, "refreshed an identity nobody uses");
    // Used again: fetched again.
    let served = cache.get(lookup("app", "t")).await.unwrap();
    assert_eq!(served.source, Source::Fetched);
}

#[tokio::test(start_paused = true)]
async fn entry_count_is_bounded_lru_first() {
    let sts = FakeSts::new(Duration::from_millis(1));
    let cfg = CacheConfig {
        max_entries: 3,
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    for sa in ["a", "b", "c"] {
        cache.get(lookup(sa, "t")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cache.get(lookup("a", "t")).await.unwrap(); // a is now the most recent
    cache.get(lookup("d", "t")).await.unwrap();
    assert_eq!(cache.len(), 3);
    assert!(cache.contains(&key("a")));
    assert!(
        !cache.contains(&key("b")),
        "least recently used not evicted"
    );
    assert!(cache.contains(&key("c")));
    assert!(cache.contains(&key("d")));
}

#[tokio::test(start_paused = true)]
async fn refresh_waits_for_a_live_token() {
    let sts = FakeSts::new(Duration::from_millis(1));
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let mut l = lookup("app", "short-lived");
    l.token_expires = Some(sts.clock.wall() + Duration::from_secs(600));
    cache.get(l).await.unwrap();
    // Refresh due at 2400 s, but the token died at 600 s.
    tokio::time::sleep(Duration::from_secs(2500)).await;
    settle().await;
    assert_eq!(sts.calls(), 1);
    // A request brings a new token (credential still has > 15 min: a hit)...
    let served = cache.get(lookup("app", "fresh")).await.unwrap();
    assert_eq!(served.source, Source::Cached);
    // ...and the next refresh uses it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(sts.calls(), 2);
    assert_eq!(sts.tokens.lock().unwrap().last().unwrap(), "fresh");
}

#[tokio::test(start_paused = true)]
async fn slow_sts_times_out() {
    let sts = FakeSts::new(Duration::from_secs(60));
    let cfg = CacheConfig {
        sts_timeout: Duration::from_secs(5),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    let err = cache.get(lookup("app", "t")).await.unwrap_err();
    assert_eq!(err.code(), "StsTimeout");
    assert_eq!(err.status().as_u16(), 503);
}

#[tokio::test(start_paused = true)]
async fn sts_calls_are_bounded_over_identities() {
    let sts = FakeSts::new(Duration::from_secs(1));
    let cfg = CacheConfig {
        max_concurrent_sts: 4,
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    let started = now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let c = cache.clone();
            tokio::spawn(async move { c.get(lookup(&format!("sa-{i}"), "t")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sts.calls(), 20);
    assert_eq!(sts.max_in_flight.load(Ordering::SeqCst), 4);
    // 20 calls of 1 s, 4 at a time.
    assert_eq!(started.elapsed().as_secs(), 5);
}

#[test]
fn config_validation() {
    assert!(CacheConfig::default().validate().is_ok());
    let short = CacheConfig {
        session_duration: Duration::from_secs(900),
        ..CacheConfig::default()
    };
    assert!(short.validate().unwrap_err().0.contains("must exceed"));
    let huge = CacheConfig {
        session_duration: Duration::from_secs(50_000),
        ..CacheConfig::default()
    };
    assert!(huge.validate().unwrap_err().0.contains("900 to 43200"));
    let zero = CacheConfig {
        max_entries: 0,
        ..CacheConfig::default()
    };
    assert!(zero.validate().is_err());
}

/// The per-identity structures stay in their allocation classes (see
/// docs/benchmarks.md): an entry in 144-byte chunks, a map slot one pointer.
#[cfg(target_pointer_width = "64")]
#[test]
fn entries_stay_small() {
    assert_eq!(std::mem::size_of::<Tick>(), 8);
    assert_eq!(std::mem::size_of::<Option<Tick>>(), 8);
    assert!(
        std::mem::size_of::<State>() <= 88,
        "{}",
        std::mem::size_of::<State>()
    );
    assert!(
        std::mem::size_of::<Entry>() <= 120,
        "{}",
        std::mem::size_of::<Entry>()
    );
    assert_eq!(std::mem::size_of::<Slot>(), 8);
    assert_eq!(std::mem::size_of::<Due>(), 16);
    // Per identity: its entries inline when there is one.
    assert_eq!(std::mem::size_of::<super::map::Members>(), 24);
}

/// STS gets the role and session name of the request that made the entry,
/// on the first call and on refreshes, whether the session name is the one
/// the key gives (not stored) or another (per-pod scope, stored).
#[tokio::test(start_paused = true)]
async fn sts_gets_the_role_and_session_name() {
    let sts = FakeSts::new(Duration::ZERO);
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    let mut per_pod = lookup("web", "t-web");
    per_pod.key.pod_uid = Some("uid-pod-1".into());
    per_pod.key.role_arn = "arn:aws:iam::123456789012:role/path/web".parse().unwrap();
    per_pod.session_name = "ns.web.web-7d9f-x2k4p".into();
    // A name that differs from the default only by a suffix the key has not.
    let mut odd = lookup("db", "t-db");
    odd.session_name = "ns.db-".into();
    for l in [lookup("app", "t-app"), per_pod, odd] {
        cache.get(l).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(3600)).await;
    settle().await;
    let sessions = sts.sessions.lock().unwrap().clone();
    assert_eq!(
        sts.calls(),
        6,
        "three first calls, three refreshes: {sessions:?}"
    );
    let app = (
        "arn:aws:iam::123456789012:role/app".to_string(),
        "ns.app".to_string(),
    );
    let web = (
        "arn:aws:iam::123456789012:role/path/web".to_string(),
        "ns.web.web-7d9f-x2k4p".to_string(),
    );
    let db = (
        "arn:aws:iam::123456789012:role/app".to_string(),
        "ns.db-".to_string(),
    );
    for want in [app, web, db] {
        assert_eq!(
            sessions.iter().filter(|s| **s == want).count(),
            2,
            "{want:?} in {sessions:?}"
        );
    }
}

/// STS gets each pod's token exactly as presented, on the first call and
/// on refreshes.
#[tokio::test(start_paused = true)]
async fn sts_gets_jws_tokens_exactly() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let jws = |sa: &str, uid: &str| {
        let header = r#"{"alg":"RS256","kid":"0123456789abcdef0123456789abcdef01234567"}"#;
        let payload = format!(
            r#"{{"aud":["sts.amazonaws.com"],"iss":"https://issuer.example","kubernetes.io":{{"namespace":"ns","serviceaccount":{{"name":"{sa}","uid":"{uid}"}}}},"sub":"system:serviceaccount:ns:{sa}"}}"#
        );
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(format!("signature-of-{sa}"))
        )
    };
    let a = jws("a", "3f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    let b = jws("b", "7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d");
    let sts = FakeSts::new(Duration::ZERO);
    let cache = cache_with(sts.clone(), CacheConfig::default(), 0.0);
    cache.get(lookup("a", &a)).await.unwrap();
    cache.get(lookup("b", &b)).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    settle().await;
    let tokens = sts.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens.iter().filter(|t| **t == a).count(), 2);
    assert_eq!(tokens.iter().filter(|t| **t == b).count(), 2);
}

fn lookup_role(sa: &str, role: usize) -> Lookup {
    let mut l = lookup(sa, "t");
    l.key.role_arn = format!("arn:aws:iam::123456789012:role/r{role}")
        .parse()
        .unwrap();
    l
}

/// One identity cannot hold more than its share of roles; others can.
#[tokio::test(start_paused = true)]
async fn roles_per_identity_are_capped() {
    let sts = FakeSts::new(Duration::ZERO);
    let cfg = CacheConfig {
        max_roles_per_identity: 3,
        idle_timeout: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    for r in 0..3 {
        cache.get(lookup_role("flood", r)).await.unwrap();
    }
    let err = cache.get(lookup_role("flood", 3)).await.unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (429, "TooManyRoles"));
    // Roles it has are still served; another identity is not affected.
    cache.get(lookup_role("flood", 0)).await.unwrap();
    cache.get(lookup_role("victim", 9)).await.unwrap();
    assert_eq!(sts.calls(), 4);
    // Once its unused roles are dropped, it may ask for others.
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    cache.get(lookup_role("flood", 3)).await.unwrap();
}

/// With per-pod keys (cache scope pod, Pod Identity) the cap counts roles
/// per pod: many pods of one ServiceAccount are all served, while one pod
/// asking for more roles than the cap is still refused.
#[tokio::test(start_paused = true)]
async fn pods_of_one_service_account_are_not_roles() {
    let sts = FakeSts::new(Duration::ZERO);
    let cfg = CacheConfig {
        max_roles_per_identity: 3,
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    for p in 0..10 {
        let mut l = lookup("web", &format!("tok-{p}"));
        l.key.pod_uid = Some(format!("pod-{p}"));
        cache.get(l).await.unwrap();
    }
    assert_eq!(sts.calls(), 10);
    for r in 0..4 {
        let mut l = lookup_role("web", r);
        l.key.pod_uid = Some("pod-x".into());
        let got = cache.get(l).await;
        assert_eq!(got.is_ok(), r < 3, "role {r}: {got:?}");
    }
}

/// While every STS slot is taken, the next free one goes to an identity
/// that has not had one, not to the flooder's next queued call.
#[tokio::test(start_paused = true)]
async fn sts_slots_go_round_robin_across_identities() {
    let sts = FakeSts::new(Duration::from_secs(1));
    let cfg = CacheConfig {
        max_concurrent_sts: 1,
        sts_queue_timeout: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    let started = now();
    let mut flood = Vec::new();
    for r in 0..8 {
        let c = cache.clone();
        flood.push(tokio::spawn(
            async move { c.get(lookup_role("flood", r)).await },
        ));
        tokio::task::yield_now().await;
    }
    let c = cache.clone();
    let victim = tokio::spawn(async move {
        c.get(lookup("victim", "t")).await.unwrap();
        now()
    });
    let victim_served = victim.await.unwrap() - started;
    // The flooder's running call and at most one more of its queued calls
    // (it queued first) go before the victim's: 3 s, where arrival order
    // would give 9 s.
    assert_eq!(victim_served.as_secs(), 3, "{victim_served:?}");
    for f in flood {
        f.await.unwrap().unwrap();
    }
    assert_eq!(sts.calls(), 9);
}

/// A call waiting for an STS slot whose callers all leave is dropped before
/// it starts; the entry is neither stuck nor leaked.
#[tokio::test(start_paused = true)]
async fn abandoned_queued_calls_never_reach_sts() {
    let sts = FakeSts::new(Duration::from_secs(10));
    let cfg = CacheConfig {
        max_concurrent_sts: 1,
        sts_queue_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(120),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    let c = cache.clone();
    let busy = tokio::spawn(async move { c.get(lookup("busy", "t")).await });
    settle().await;
    // Callers that hang up after 50 ms, for 20 roles of another identity.
    for r in 0..20 {
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            cache.get(lookup_role("quitter", r % 8)),
        )
        .await;
        assert!(gave_up.is_err());
    }
    busy.await.unwrap().unwrap();
    settle().await;
    assert_eq!(sts.calls(), 1, "no abandoned call reached STS");
    assert_eq!(cache.inner.sts_permits.free(), 1);
    // The quitter's entries were scheduled again when their calls were
    // dropped: they are dropped when idle, like any other.
    assert_eq!(cache.len(), 9);
    tokio::time::sleep(Duration::from_secs(121)).await;
    settle().await;
    assert_eq!(cache.len(), 0, "no entry stuck");
    // And the quitter can still be served.
    cache.get(lookup_role("quitter", 0)).await.unwrap();
    assert_eq!(sts.calls(), 2);
}

/// A call that waits longer than the queue timeout for a slot gets 429.
#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_is_bounded() {
    let sts = FakeSts::new(Duration::from_secs(60));
    let cfg = CacheConfig {
        max_concurrent_sts: 1,
        sts_queue_timeout: Duration::from_secs(5),
        sts_timeout: Duration::from_secs(120),
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    let c = cache.clone();
    let _busy = tokio::spawn(async move { c.get(lookup("busy", "t")).await });
    settle().await;
    let started = now();
    let err = cache.get(lookup("waiter", "t")).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (429, "StsQueueTimeout")
    );
    assert_eq!((now() - started).as_secs(), 5);
    assert_eq!(sts.calls(), 1);
}

/// Under `max_entries`, the identity holding the most entries loses one
/// first, even when another identity's entry is older.
#[tokio::test(start_paused = true)]
async fn eviction_takes_from_the_largest_identity_first() {
    let sts = FakeSts::new(Duration::ZERO);
    let cfg = CacheConfig {
        max_entries: 6,
        max_roles_per_identity: 8,
        ..CacheConfig::default()
    };
    let cache = cache_with(sts.clone(), cfg, 0.0);
    // The victim's one entry is the oldest of all.
    cache.get(lookup("victim", "t")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for r in 0..5 {
        cache.get(lookup_role("flood", r)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Three more roles for the flooder: each evicts one of its own, the
    // least recently used first.
    for r in 5..8 {
        cache.get(lookup_role("flood", r)).await.unwrap();
    }
    assert_eq!(cache.len(), 6);
    assert!(
        cache.contains(&key("victim")),
        "the other identity kept its entry"
    );
    for r in 0..3 {
        assert!(
            !cache.contains(&lookup_role("flood", r).key),
            "role {r} should be gone"
        );
    }
    for r in 3..8 {
        assert!(
            cache.contains(&lookup_role("flood", r).key),
            "role {r} should be kept"
        );
    }
    // Among identities of one entry each, the least recently used goes.
    let cache = cache_with(
        sts.clone(),
        CacheConfig {
            max_entries: 2,
            ..CacheConfig::default()
        },
        0.0,
    );
    cache.get(lookup("a", "t")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cache.get(lookup("b", "t")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cache.get(lookup("a", "t")).await.unwrap();
    cache.get(lookup("c", "t")).await.unwrap();
    assert!(cache.contains(&key("a")) && cache.contains(&key("c")) && !cache.contains(&key("b")));
}

//! The STS side: AssumeRoleWithWebIdentity through aws-sdk-sts, the client
//! settings every STS call shares, the node agent's routing between web
//! identity and Pod Identity, and RoleSessionName; `errors.rs`: the error
//! classification the cache and the HTTP layer rely on.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::secret::Secret;

mod errors;

pub use errors::{
    classify, metric_code, metric_series, HttpStatus, StsError, StsErrorKind, METRIC_CODES,
};
pub(crate) use errors::{map_sdk_error, map_service_error};

/// Credentials as STS issued them.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// The account of the assumed role (5th field of the assumed-role ARN).
    pub account_id: Option<String>,
    pub expiration: SystemTime,
    /// The assumed-role user (ARN, id) when the caller reports it (the
    /// broker's answer carries it; the container credentials format has no
    /// place for it).
    pub assumed_role: Option<AssumedRole>,
}

/// STS's `AssumedRoleUser`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedRole {
    pub arn: String,
    pub id: String,
}

/// One AssumeRoleWithWebIdentity call.
#[derive(Clone, Debug)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    /// The key's association (the broker's association version, or
    /// [`EKS_AUTH`] for the node agent's Pod Identity backend).
    pub association: Option<String>,
    pub token: Secret,
    pub duration_seconds: i32,
}

/// The association marker of the node agent's Pod Identity keys: only code
/// sets a key's association, never a request.
pub const EKS_AUTH: &str = "eks-auth";

/// The node agent's exchanger: web identity for `?role=` requests, and the
/// EKS Auth API for Pod Identity ones, when configured.
pub struct Routed {
    pub web_identity: std::sync::Arc<dyn Exchanger>,
    pub pod_identity: Option<std::sync::Arc<dyn Exchanger>>,
}

impl Exchanger for Routed {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        match (&self.pod_identity, req.association.as_deref()) {
            (Some(p), Some(EKS_AUTH)) => p.assume(req),
            (None, Some(EKS_AUTH)) => futures::future::ready(Err(StsError::new(
                StsErrorKind::Invalid,
                "PodIdentityDisabled",
                "Pod Identity is not configured on this agent (--eks-auth-endpoint)",
            )))
            .boxed(),
            _ => self.web_identity.assume(req),
        }
    }
}

/// Something that exchanges a web identity token for credentials. The real
/// one is [`AwsSts`]; unit tests use scripted fakes.
pub trait Exchanger: Send + Sync + 'static {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>>;
}

/// AssumeRoleWithWebIdentity through aws-sdk-sts (unsigned, as the API
/// allows). Retries are the cache's business, so the SDK makes one attempt.
#[derive(Clone)]
pub struct AwsSts {
    client: aws_sdk_sts::Client,
}

/// The STS client settings every STS call of this crate uses: the region,
/// an endpoint override, no SDK retries (the cache retries), the attempt
/// timeout, and one rustls (aws-lc) HTTP client keeping a few connections
/// warm. Credentials are the caller's to add (none: unsigned calls).
pub fn client_config(
    region: &str,
    endpoint: Option<&str>,
    attempt_timeout: Duration,
) -> aws_sdk_sts::config::Builder {
    use aws_sdk_sts::config::{retry::RetryConfig, timeout::TimeoutConfig, Region};
    let mut builder = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3).min(attempt_timeout))
                .operation_attempt_timeout(attempt_timeout)
                .operation_timeout(attempt_timeout)
                .build(),
        );
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    builder.http_client(http_client())
}

/// The HTTPS client of STS calls. A burst of concurrent first requests opens
/// as many connections; keep a few warm, not all of them (each idle one
/// holds buffers).
pub fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    http_client_with(None)
}

/// [`http_client`] trusting what `tls` says (a CA of the EKS Auth endpoint).
pub fn http_client_with(
    tls: Option<aws_smithy_http_client::tls::TlsContext>,
) -> aws_sdk_sts::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let builder = aws_smithy_http_client::Builder::new()
        .pool_max_idle_per_host(4)
        .pool_idle_timeout(Duration::from_secs(60))
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    match tls {
        Some(ctx) => builder.tls_context(ctx).build_https(),
        None => builder.build_https(),
    }
}

impl AwsSts {
    pub fn new(region: &str, endpoint: Option<&str>, attempt_timeout: Duration) -> Self {
        AwsSts {
            client: aws_sdk_sts::Client::from_conf(
                client_config(region, endpoint, attempt_timeout).build(),
            ),
        }
    }
}

impl Exchanger for AwsSts {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let client = self.client.clone();
        async move {
            let result = client
                .assume_role_with_web_identity()
                .role_arn(&req.role_arn)
                .role_session_name(&req.session_name)
                .web_identity_token(req.token.expose())
                .duration_seconds(req.duration_seconds)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let c = out.credentials.ok_or_else(|| {
                        StsError::new(
                            StsErrorKind::Failed,
                            "MalformedResponse",
                            "STS answered without credentials",
                        )
                    })?;
                    let expiration = SystemTime::try_from(c.expiration).map_err(|_| {
                        StsError::new(
                            StsErrorKind::Failed,
                            "MalformedResponse",
                            "STS answered with an unusable expiration time",
                        )
                    })?;
                    let account_id = out
                        .assumed_role_user
                        .as_ref()
                        .and_then(|u| u.arn.split(':').nth(4))
                        .filter(|a| !a.is_empty())
                        .map(str::to_string);
                    Ok(Credentials {
                        access_key_id: c.access_key_id,
                        secret_access_key: Secret::new(c.secret_access_key),
                        session_token: Secret::new(c.session_token),
                        account_id,
                        expiration,
                        assumed_role: None,
                    })
                }
                Err(err) => Err(map_sdk_error(err, &req.token)),
            }
        }
        .boxed()
    }
}
/// A RoleSessionName from namespace, ServiceAccount and (optionally) pod:
/// `ns.sa` or `ns.sa.pod`, characters outside `[\w+=,.@-]` replaced by `-`,
/// at most 64 characters (a long name keeps its start and gets a hash
/// suffix so two long names stay distinct), at least 2.
pub fn session_name(namespace: &str, service_account: &str, pod: Option<&str>) -> String {
    let mut raw = format!("{namespace}.{service_account}");
    if let Some(p) = pod.filter(|p| !p.is_empty()) {
        raw.push('.');
        raw.push_str(p);
    }
    let clean = contract::RoleArn::sanitize_name(&raw);
    let mut out = if clean.len() > 64 {
        // FNV-1a: stable across releases, unlike DefaultHasher.
        let mut h: u32 = 0x811c9dc5;
        for b in clean.bytes() {
            h ^= b as u32;
            h = h.wrapping_mul(0x01000193);
        }
        format!("{}-{h:08x}", &clean[..55])
    } else {
        clean
    };
    while out.len() < 2 {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_codes_are_bounded() {
        // Every code the classifier knows is a label value of its own...
        for code in [
            "AccessDenied",
            "Throttling",
            "IDPCommunicationError",
            "StsUnreachable",
        ] {
            assert_eq!(metric_code(code), code);
        }
        // ...and whatever else an endpoint sends is `other`.
        for code in ["", "Surprise", "AccessDenied ", &"x".repeat(10_000)] {
            assert_eq!(metric_code(code), "other");
        }
        let labels: std::collections::BTreeSet<_> =
            StsErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), StsErrorKind::ALL.len());
        // The series exported from the start are the ones errors produce:
        // a documented code with any status keeps its kind.
        let series = metric_series();
        for code in METRIC_CODES.iter().filter(|c| !c.starts_with("Sts")) {
            for status in [None, Some(400), Some(403), Some(429), Some(500)] {
                let pair = (classify(code, status).label(), *code);
                assert!(series.contains(&pair), "{pair:?}");
            }
        }
        for status in [None, Some(400), Some(403), Some(429), Some(500), Some(502)] {
            let pair = (classify("Surprise", status).label(), "other");
            assert!(series.contains(&pair), "{pair:?}");
        }
    }

    #[test]
    fn classification_table() {
        let cases: &[(&str, Option<u16>, StsErrorKind, u16)] = &[
            ("AccessDenied", Some(403), StsErrorKind::Denied, 403),
            ("InvalidIdentityToken", Some(400), StsErrorKind::Denied, 403),
            (
                "ExpiredTokenException",
                Some(400),
                StsErrorKind::Denied,
                403,
            ),
            ("IDPRejectedClaim", Some(403), StsErrorKind::Denied, 403),
            ("ValidationError", Some(400), StsErrorKind::Invalid, 400),
            ("Throttling", Some(400), StsErrorKind::Throttled, 429),
            (
                "IDPCommunicationError",
                Some(400),
                StsErrorKind::Unavailable,
                503,
            ),
            ("InternalFailure", Some(500), StsErrorKind::Unavailable, 503),
            ("Whatever", Some(503), StsErrorKind::Unavailable, 503),
            ("Whatever", Some(429), StsErrorKind::Throttled, 429),
            ("Whatever", Some(400), StsErrorKind::Failed, 502),
            ("Whatever", None, StsErrorKind::Failed, 502),
        ];
        for (code, status, kind, http) in cases {
            let k = classify(code, *status);
            assert_eq!(k, *kind, "{code} {status:?}");
            assert_eq!(StsError::new(k, *code, "m").status(), *http, "{code}");
        }
        assert!(StsError::new(StsErrorKind::Denied, "x", "y").is_permanent());
        assert!(!StsError::new(StsErrorKind::Throttled, "x", "y").is_permanent());
    }

    #[test]
    fn session_names_follow_sts_rules() {
        let valid = |s: &str| {
            (2..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        };
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("default", "app", None, Some("default.app")),
            (
                "default",
                "app",
                Some("app-7d9f"),
                Some("default.app.app-7d9f"),
            ),
            ("ns", "sa", Some(""), Some("ns.sa")),
            ("ns", "s a/ü", None, Some("ns.s-a--")),
            ("", "", None, Some(".-")),
        ];
        for (ns, sa, pod, want) in cases {
            let got = session_name(ns, sa, *pod);
            assert!(valid(&got), "{got}");
            if let Some(w) = want {
                assert_eq!(&got, w);
            }
        }
        let long_a = session_name(&"n".repeat(63), &"a".repeat(253), Some("p1"));
        let long_b = session_name(&"n".repeat(63), &"a".repeat(253), Some("p2"));
        assert!(valid(&long_a) && valid(&long_b));
        assert_eq!(long_a.len(), 64);
        assert_ne!(long_a, long_b);
    }
}

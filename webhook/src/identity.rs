//! What a ServiceAccount asks for: its settings as kept in the cache, the
//! resolution of those settings against the flags, and the warnings a
//! mistyped or invalid annotation earns.

use serde::Deserialize;

use crate::config::{InjectionConfig, MIN_TOKEN_EXPIRATION};

pub const ROLE_ARN: &str = "role-arn";
pub const AUDIENCE: &str = "audience";
pub const STS_REGIONAL_ENDPOINTS: &str = "sts-regional-endpoints";
pub const TOKEN_EXPIRATION: &str = "token-expiration";
pub const SKIP_CONTAINERS: &str = "skip-containers";
pub const CREDENTIAL_MODE: &str = "credential-mode";

/// Annotation names this webhook reads from ServiceAccounts.
const SA_NAMES: &[&str] = &[
    ROLE_ARN,
    AUDIENCE,
    STS_REGIONAL_ENDPOINTS,
    TOKEN_EXPIRATION,
    CREDENTIAL_MODE,
];
/// Annotation names this webhook reads from pods.
pub const POD_NAMES: &[&str] = &[TOKEN_EXPIRATION, SKIP_CONTAINERS, CREDENTIAL_MODE];

/// How a pod with a role gets its credentials: chosen by `--credential-mode`,
/// then the ServiceAccount's `<prefix>/credential-mode`, then the pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CredentialMode {
    /// IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE; the SDK calls STS.
    #[default]
    WebIdentity,
    /// The node's credential-agent, through AWS_CONTAINER_CREDENTIALS_FULL_URI.
    Agent,
    /// A credential-agent native sidecar in the pod.
    Sidecar,
}

impl CredentialMode {
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim() {
            "web-identity" => Some(CredentialMode::WebIdentity),
            "agent" => Some(CredentialMode::Agent),
            "sidecar" => Some(CredentialMode::Sidecar),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::WebIdentity => "web-identity",
            CredentialMode::Agent => "agent",
            CredentialMode::Sidecar => "sidecar",
        }
    }

    pub fn with_role(self, role_arn: String) -> Mode {
        match self {
            CredentialMode::WebIdentity => Mode::WebIdentity { role_arn },
            CredentialMode::Agent => Mode::Agent { role_arn },
            CredentialMode::Sidecar => Mode::Sidecar { role_arn },
        }
    }
}

/// Kubernetes refuses projected tokens that live longer than this.
pub const MAX_TOKEN_EXPIRATION: i64 = 1 << 32;

/// The part of a ServiceAccount the cache keeps: its uid, the annotations under
/// the configured prefix (keyed by the name after `prefix/`) and the keys of
/// annotations that look like a mistyped prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccountEntry {
    pub uid: String,
    pub annotations: Vec<(String, String)>,
    pub near_misses: Vec<String>,
}

impl ServiceAccountEntry {
    /// Builds an entry from all of a ServiceAccount's annotations, keeping only
    /// what the webhook needs.
    pub fn from_annotations<'a>(
        uid: &str,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
        prefix: &str,
    ) -> Self {
        let mut entry = ServiceAccountEntry {
            uid: uid.to_string(),
            ..Default::default()
        };
        for (key, value) in annotations {
            if let Some(name) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) {
                if SA_NAMES.contains(&name) {
                    entry
                        .annotations
                        .push((name.to_string(), value.to_string()));
                }
            } else if is_near_miss(key, prefix, SA_NAMES) {
                entry.near_misses.push(key.to_string());
            }
        }
        entry.annotations.sort();
        entry.annotations.shrink_to_fit();
        entry.near_misses.shrink_to_fit();
        entry
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One entry of the upstream `pod-identity-webhook` ConfigMap (`data.config`,
/// a JSON object keyed by `namespace/serviceaccount`). Field names match
/// case-insensitively, as Go's encoding/json does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigMapEntry {
    #[serde(
        rename = "RoleARN",
        alias = "roleARN",
        alias = "roleArn",
        alias = "rolearn",
        default
    )]
    pub role_arn: String,
    #[serde(rename = "Audience", alias = "audience", default)]
    pub audience: String,
    #[serde(
        rename = "UseRegionalSTS",
        alias = "useRegionalSTS",
        alias = "useRegionalSts",
        default
    )]
    pub use_regional_sts: bool,
    #[serde(rename = "TokenExpiration", alias = "tokenExpiration", default)]
    pub token_expiration: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    InvalidRoleArn,
    NearMissAnnotation,
    InvalidAnnotationValue,
    SidecarNotInjected,
}

impl WarningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::InvalidRoleArn => "invalid_role_arn",
            WarningKind::NearMissAnnotation => "near_miss_annotation",
            WarningKind::InvalidAnnotationValue => "invalid_annotation_value",
            WarningKind::SidecarNotInjected => "sidecar_not_injected",
        }
    }
}

/// A problem worth telling the user about in the AdmissionResponse `warnings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

/// Which credentials a pod gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE.
    WebIdentity { role_arn: String },
    /// The node agent: AWS_CONTAINER_CREDENTIALS_FULL_URI naming the role +
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    Agent { role_arn: String },
    /// A credential-agent sidecar for the role, reached on loopback.
    Sidecar { role_arn: String },
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    /// for identities listed in the container credentials config (upstream's
    /// EKS Pod Identity mode: the URI as configured, no role in it).
    ContainerCredentials,
}

impl Mode {
    /// The role, for every mode that names one.
    pub fn role_arn(&self) -> Option<&str> {
        match self {
            Mode::WebIdentity { role_arn }
            | Mode::Agent { role_arn }
            | Mode::Sidecar { role_arn } => Some(role_arn),
            Mode::ContainerCredentials => None,
        }
    }
}

/// Everything the mutation needs to know about the pod's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mode: Mode,
    pub audience: String,
    pub regional_sts: bool,
    /// Token lifetime before the pod's own annotation is considered.
    pub token_expiration: i64,
    /// Seconds taken off a default (86400 s) container-credentials token
    /// lifetime so pods do not all refresh at once; drawn by the caller.
    pub expiration_jitter: i64,
}

/// The upper bound of the container-credentials expiration jitter (2 hours).
pub const MAX_EXPIRATION_JITTER: i64 = 7200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub identity: Option<Identity>,
    pub warnings: Vec<Warning>,
}

/// Resolves what a pod of this ServiceAccount gets: ServiceAccount annotations
/// first, then the ConfigMap entry, then the flags. Identities listed in the
/// container credentials config get that mode, whatever else is set.
pub fn resolve(
    sa_name: &str,
    namespace: &str,
    sa: Option<&ServiceAccountEntry>,
    cm: Option<&ConfigMapEntry>,
    container_credentials: bool,
    cfg: &InjectionConfig,
) -> Resolution {
    let mut warnings = Vec::new();
    let prefix = &cfg.annotation_prefix;
    if let Some(sa) = sa {
        for key in &sa.near_misses {
            let name = key.rsplit('/').next().unwrap_or(key);
            warnings.push(Warning {
                kind: WarningKind::NearMissAnnotation,
                message: format!(
                    "ServiceAccount {namespace}/{sa_name} has annotation {key:?}, which looks like a mistyped {:?}; it is ignored",
                    format!("{prefix}/{name}")
                ),
            });
        }
    }
    let sa_get = |name: &str| sa.and_then(|s| s.get(name));
    let sa_role = sa_get(ROLE_ARN).map(str::trim).filter(|r| !r.is_empty());
    let cm_role = cm.map(|c| c.role_arn.trim()).filter(|r| !r.is_empty());
    let from_sa = sa_role.is_some();

    let role_arn = match sa_role.or(cm_role) {
        Some(role) => match validate_role_arn(role) {
            Ok(()) => Some(role.to_string()),
            Err(why) => {
                let source = if from_sa {
                    format!("ServiceAccount {namespace}/{sa_name} annotation {prefix}/{ROLE_ARN}")
                } else {
                    format!("ConfigMap pod-identity-webhook entry {namespace}/{sa_name}")
                };
                warnings.push(Warning {
                    kind: WarningKind::InvalidRoleArn,
                    message: format!(
                        "{source} is not a valid IAM role ARN ({why}); AWS credentials were not injected"
                    ),
                });
                None
            }
        },
        None => None,
    };

    let mode = if container_credentials {
        Mode::ContainerCredentials
    } else if let Some(role_arn) = role_arn {
        let mut requested = cfg.credential_mode;
        if let Some(v) = sa_get(CREDENTIAL_MODE) {
            match CredentialMode::parse(v) {
                Some(m) => requested = m,
                None => warnings.push(Warning {
                    kind: WarningKind::InvalidAnnotationValue,
                    message: format!(
                        "ServiceAccount {namespace}/{sa_name} annotation {prefix}/{CREDENTIAL_MODE}={v:?} is not one of web-identity, agent, sidecar; using {}",
                        requested.as_str()
                    ),
                }),
            }
        }
        requested.with_role(role_arn)
    } else {
        return Resolution {
            identity: None,
            warnings,
        };
    };

    let audience = match (&mode, sa_get(AUDIENCE), cm.filter(|_| !from_sa)) {
        (Mode::ContainerCredentials, _, _) => cfg.container_credentials.audience.clone(),
        (_, Some(a), _) if !a.trim().is_empty() => a.trim().to_string(),
        (_, _, Some(c)) if !c.audience.is_empty() => c.audience.clone(),
        _ => cfg.token_audience.clone(),
    };

    let mut regional_sts = cfg.sts_regional_endpoint;
    if let Some(c) = cm.filter(|_| !from_sa) {
        regional_sts = c.use_regional_sts;
    }
    if let Some(v) = sa_get(STS_REGIONAL_ENDPOINTS) {
        match parse_go_bool(v) {
            Some(b) => regional_sts = b,
            None => warnings.push(Warning {
                kind: WarningKind::InvalidAnnotationValue,
                message: format!(
                    "ServiceAccount {namespace}/{sa_name} annotation {prefix}/{STS_REGIONAL_ENDPOINTS}={v:?} is not a boolean; using {regional_sts}"
                ),
            }),
        }
    }

    let mut token_expiration = cfg.token_expiration;
    if let Some(c) = cm.filter(|_| !from_sa) {
        if c.token_expiration != 0 {
            token_expiration = clamp_expiration(c.token_expiration);
        }
    }
    if let Some(v) = sa_get(TOKEN_EXPIRATION) {
        match v.trim().parse::<i64>() {
            Ok(n) => token_expiration = clamp_expiration(n),
            Err(_) => warnings.push(Warning {
                kind: WarningKind::InvalidAnnotationValue,
                message: format!(
                    "ServiceAccount {namespace}/{sa_name} annotation {prefix}/{TOKEN_EXPIRATION}={v:?} is not a number of seconds; using {token_expiration}"
                ),
            }),
        }
    }

    Resolution {
        identity: Some(Identity {
            mode,
            audience,
            regional_sts,
            token_expiration,
            expiration_jitter: 0,
        }),
        warnings,
    }
}

/// Raises a token lifetime to Kubernetes' minimum and caps it at its maximum.
pub fn clamp_expiration(seconds: i64) -> i64 {
    seconds.clamp(MIN_TOKEN_EXPIRATION, MAX_TOKEN_EXPIRATION)
}

/// Go's strconv.ParseBool.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Checks that `arn` is an IAM role ARN: `arn:<partition>:iam::<12 digits>:role/[<path>/]<name>`.
pub fn validate_role_arn(arn: &str) -> Result<(), String> {
    if arn.len() < 20 || arn.len() > 2048 {
        return Err("length must be 20 to 2048 characters".into());
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts[..] else {
        return Err("expected arn:<partition>:iam::<account>:role/<name>".into());
    };
    if scheme != "arn" {
        return Err("must start with \"arn:\"".into());
    }
    if !partition.starts_with("aws")
        || !partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
    {
        return Err(format!("unknown partition {partition:?}"));
    }
    if service != "iam" {
        return Err(format!("service must be \"iam\", not {service:?}"));
    }
    if !region.is_empty() {
        return Err("IAM ARNs have no region".into());
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("account {account:?} is not 12 digits"));
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err("resource must start with \"role/\"".into());
    };
    let mut segments: Vec<&str> = path_and_name.split('/').collect();
    let name = segments.pop().unwrap_or_default();
    let role_char = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(role_char) {
        return Err(format!(
            "role name {name:?} is not 1-64 characters of [A-Za-z0-9_+=,.@-]"
        ));
    }
    if segments
        .iter()
        .any(|s| s.is_empty() || !s.chars().all(|c| ('!'..='~').contains(&c)))
    {
        return Err("role path has an empty or invalid segment".into());
    }
    Ok(())
}

/// True when `key` is `<domain>/<name>` for a name we read, with a domain that
/// is not `prefix` but close to it (a typo), or when it is the bare name.
pub fn is_near_miss(key: &str, prefix: &str, names: &[&str]) -> bool {
    let (domain, name) = match key.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", key),
    };
    if !names.contains(&name) || domain == prefix {
        return false;
    }
    if domain.is_empty() {
        return true;
    }
    let d = domain.to_ascii_lowercase();
    let p = prefix.to_ascii_lowercase();
    d == p || levenshtein(&d, &p) <= 4
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::111122223333:role/s3-reader";

    fn entry(pairs: &[(&str, &str)]) -> ServiceAccountEntry {
        ServiceAccountEntry::from_annotations("uid-1", pairs.iter().copied(), "eks.amazonaws.com")
    }

    #[test]
    fn credential_mode_flag_then_service_account() {
        let flags = |m: CredentialMode| InjectionConfig {
            credential_mode: m,
            ..InjectionConfig::default()
        };
        let cases: &[(CredentialMode, Option<&str>, Option<Mode>, usize)] = &[
            (
                CredentialMode::WebIdentity,
                None,
                Some(Mode::WebIdentity {
                    role_arn: ARN.into(),
                }),
                0,
            ),
            (
                CredentialMode::Agent,
                None,
                Some(Mode::Agent {
                    role_arn: ARN.into(),
                }),
                0,
            ),
            (
                CredentialMode::WebIdentity,
                Some("sidecar"),
                Some(Mode::Sidecar {
                    role_arn: ARN.into(),
                }),
                0,
            ),
            (
                CredentialMode::Sidecar,
                Some("web-identity"),
                Some(Mode::WebIdentity {
                    role_arn: ARN.into(),
                }),
                0,
            ),
            (
                CredentialMode::Agent,
                Some("Agent!"),
                Some(Mode::Agent {
                    role_arn: ARN.into(),
                }),
                1,
            ),
        ];
        for (flag, annotation, want, warnings) in cases {
            let mut pairs = vec![("eks.amazonaws.com/role-arn", ARN)];
            if let Some(a) = annotation {
                pairs.push(("eks.amazonaws.com/credential-mode", a));
            }
            let r = resolve(
                "app",
                "ns",
                Some(&entry(&pairs)),
                None,
                false,
                &flags(*flag),
            );
            assert_eq!(r.identity.map(|i| i.mode), *want, "{flag:?} {annotation:?}");
            assert_eq!(r.warnings.len(), *warnings, "{:?}", r.warnings);
        }
        // No role: nothing, whatever the mode.
        let r = resolve(
            "app",
            "ns",
            Some(&entry(&[("eks.amazonaws.com/credential-mode", "agent")])),
            None,
            false,
            &flags(CredentialMode::Agent),
        );
        assert!(r.identity.is_none());
        // Listed in the container credentials config: that mode, as upstream.
        let r = resolve(
            "app",
            "ns",
            Some(&entry(&[
                ("eks.amazonaws.com/role-arn", ARN),
                ("eks.amazonaws.com/credential-mode", "sidecar"),
            ])),
            None,
            true,
            &flags(CredentialMode::Agent),
        );
        assert_eq!(r.identity.unwrap().mode, Mode::ContainerCredentials);
        // A typo of the new annotation is caught like the others.
        let e = entry(&[("eks.amazonaws.co/credential-mode", "agent")]);
        assert_eq!(e.near_misses.len(), 1);
    }

    #[test]
    fn role_arn_validation_table() {
        let good = [
            ARN,
            "arn:aws-cn:iam::111122223333:role/s3-reader",
            "arn:aws-us-gov:iam::111122223333:role/path/to/my-role_1+=,.@",
            "arn:aws:iam::000000000000:role/a",
        ];
        for arn in good {
            assert_eq!(validate_role_arn(arn), Ok(()), "{arn}");
        }
        let bad = [
            "",
            "s3-reader",
            "arn:aws:iam::11112222333:role/x-too-short-account",
            "arn:aws:iam::111122223333:user/bob",
            "arn:aws:s3:::111122223333:role/x",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:gcp:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/has space",
            "arn:aws:iam::111122223333:role//double",
            "arn:aws:iam::abcdefghijkl:role/x",
        ];
        for arn in bad {
            assert!(validate_role_arn(arn).is_err(), "{arn:?} should be invalid");
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(65));
        assert!(validate_role_arn(&long).is_err());
    }

    #[test]
    fn entry_keeps_only_prefixed_known_annotations_and_near_misses() {
        let e = entry(&[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/unrelated", "x"),
            ("eks.amazon.com/role-arn", ARN),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("example.com/audience", "x"),
            ("role-arn", ARN),
        ]);
        assert_eq!(
            e.annotations,
            vec![("role-arn".to_string(), ARN.to_string())]
        );
        assert_eq!(
            e.near_misses,
            vec![
                "eks.amazon.com/role-arn".to_string(),
                "role-arn".to_string()
            ]
        );
    }

    #[test]
    fn near_miss_table() {
        let p = "eks.amazonaws.com";
        let cases = [
            ("eks.amazon.com/role-arn", true),
            ("eks.amazonaws.co/role-arn", true),
            ("EKS.amazonaws.com/role-arn", true),
            ("eks-amazonaws.com/role-arn", true),
            ("eks.amazonaws.com/role-arn", false),
            ("example.org/role-arn", false),
            ("eks.amazon.com/something-else", false),
            ("role-arn", true),
        ];
        for (key, want) in cases {
            assert_eq!(is_near_miss(key, p, SA_NAMES), want, "{key}");
        }
    }

    #[test]
    fn resolve_precedence_table() {
        let cfg = InjectionConfig {
            sts_regional_endpoint: true,
            token_expiration: 3600,
            ..Default::default()
        };
        // SA annotations override flags.
        let sa = entry(&[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/audience", "my-aud"),
            ("eks.amazonaws.com/sts-regional-endpoints", "false"),
            ("eks.amazonaws.com/token-expiration", "100"),
        ]);
        let r = resolve("sa", "ns", Some(&sa), None, false, &cfg);
        let id = r.identity.unwrap();
        assert_eq!(
            id.mode,
            Mode::WebIdentity {
                role_arn: ARN.into()
            }
        );
        assert_eq!(id.audience, "my-aud");
        assert!(!id.regional_sts);
        assert_eq!(id.token_expiration, 600, "raised to the minimum");
        assert!(r.warnings.is_empty());

        // Flags apply when the SA says nothing else.
        let sa = entry(&[("eks.amazonaws.com/role-arn", ARN)]);
        let id = resolve("sa", "ns", Some(&sa), None, false, &cfg)
            .identity
            .unwrap();
        assert_eq!(id.audience, "sts.amazonaws.com");
        assert!(id.regional_sts);
        assert_eq!(id.token_expiration, 3600);

        // ConfigMap entry when the SA has no role.
        let cm = ConfigMapEntry {
            role_arn: ARN.into(),
            audience: "cm-aud".into(),
            use_regional_sts: false,
            token_expiration: 7200,
        };
        let id = resolve("sa", "ns", None, Some(&cm), false, &cfg)
            .identity
            .unwrap();
        assert_eq!(id.audience, "cm-aud");
        assert!(!id.regional_sts);
        assert_eq!(id.token_expiration, 7200);

        // Container credentials win over a role ARN.
        let sa = entry(&[("eks.amazonaws.com/role-arn", ARN)]);
        let id = resolve("sa", "ns", Some(&sa), None, true, &cfg)
            .identity
            .unwrap();
        assert_eq!(id.mode, Mode::ContainerCredentials);
        assert_eq!(id.audience, "pods.eks.amazonaws.com");

        // Nothing: no identity, no warning.
        let r = resolve("sa", "ns", Some(&entry(&[])), None, false, &cfg);
        assert_eq!(r, Resolution::default());
        assert_eq!(
            resolve("sa", "ns", None, None, false, &cfg),
            Resolution::default()
        );
    }

    #[test]
    fn invalid_values_warn() {
        let cfg = InjectionConfig::default();
        let sa = entry(&[("eks.amazonaws.com/role-arn", "not-an-arn")]);
        let r = resolve("sa", "ns", Some(&sa), None, false, &cfg);
        assert!(r.identity.is_none(), "an invalid ARN is not injected");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].kind, WarningKind::InvalidRoleArn);
        assert!(
            r.warnings[0].message.contains("ns/sa"),
            "{}",
            r.warnings[0].message
        );

        let sa = entry(&[("eks.amazon.com/role-arn", ARN)]);
        let r = resolve("sa", "ns", Some(&sa), None, false, &cfg);
        assert!(r.identity.is_none());
        assert_eq!(r.warnings[0].kind, WarningKind::NearMissAnnotation);
        assert!(r.warnings[0].message.contains("eks.amazonaws.com/role-arn"));

        let sa = entry(&[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/sts-regional-endpoints", "yes"),
            ("eks.amazonaws.com/token-expiration", "1h"),
        ]);
        let r = resolve("sa", "ns", Some(&sa), None, false, &cfg);
        assert!(r.identity.is_some());
        let kinds: Vec<_> = r.warnings.iter().map(|w| w.kind).collect();
        assert_eq!(kinds, vec![WarningKind::InvalidAnnotationValue; 2]);
    }
}

//! What a ServiceAccount asks for: its settings as kept in the cache, the
//! upstream ConfigMap's entries, and their resolution against the flags into
//! the pod's [`Identity`], with the warnings a mistyped or invalid annotation
//! earns.

use contract::RoleArn;
use serde::Deserialize;

use super::annotations::{
    is_near_miss, parse_go_bool, AUDIENCE, CREDENTIAL_MODE, ROLE_ARN, SERVICE_ACCOUNT_NAMES,
    STS_REGIONAL_ENDPOINTS, TOKEN_EXPIRATION,
};
use super::config::{clamp_expiration, InjectionConfig};
use super::mode::{CredentialMode, Mode};
use super::warning::{Warning, WarningKind};

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
                if SERVICE_ACCOUNT_NAMES.contains(&name) {
                    entry
                        .annotations
                        .push((name.to_string(), value.to_string()));
                }
            } else if is_near_miss(key, prefix, SERVICE_ACCOUNT_NAMES) {
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
        Some(role) => match RoleArn::parse(role) {
            Ok(arn) => Some(arn),
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
                        "ServiceAccount {namespace}/{sa_name} annotation {prefix}/{CREDENTIAL_MODE}={v:?} is not one of {}; using {}",
                        CredentialMode::NAMES.join(", "),
                        requested.as_str()
                    ),
                }),
            }
        }
        super::mode::with_role(requested, role_arn)
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
                    role_arn: ARN.parse().unwrap(),
                }),
                0,
            ),
            (
                CredentialMode::Agent,
                None,
                Some(Mode::Agent {
                    role_arn: ARN.parse().unwrap(),
                }),
                0,
            ),
            (
                CredentialMode::WebIdentity,
                Some("sidecar"),
                Some(Mode::Sidecar {
                    role_arn: ARN.parse().unwrap(),
                }),
                0,
            ),
            (
                CredentialMode::Sidecar,
                Some("web-identity"),
                Some(Mode::WebIdentity {
                    role_arn: ARN.parse().unwrap(),
                }),
                0,
            ),
            (
                CredentialMode::Agent,
                Some("Agent!"),
                Some(Mode::Agent {
                    role_arn: ARN.parse().unwrap(),
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
                role_arn: ARN.parse().unwrap()
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
            role_arn: ARN.parse().unwrap(),
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
    fn role_arn_rule_is_the_contracts() {
        // The agent refuses these too (contract::RoleArn); the webhook must
        // not inject a role the agent would then refuse.
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(65));
        for arn in ["arn:aws:iam::111122223333:role//double", long.as_str()] {
            let sa = entry(&[("eks.amazonaws.com/role-arn", arn)]);
            let r = resolve(
                "sa",
                "ns",
                Some(&sa),
                None,
                false,
                &InjectionConfig::default(),
            );
            assert!(r.identity.is_none(), "{arn}");
            assert_eq!(r.warnings[0].kind, WarningKind::InvalidRoleArn);
        }
        // Surrounding whitespace in the annotation is tolerated, as before.
        let sa = entry(&[(
            "eks.amazonaws.com/role-arn",
            " arn:aws:iam::111122223333:role/x ",
        )]);
        let r = resolve(
            "sa",
            "ns",
            Some(&sa),
            None,
            false,
            &InjectionConfig::default(),
        );
        assert_eq!(
            r.identity.unwrap().mode.role_arn().map(RoleArn::as_str),
            Some("arn:aws:iam::111122223333:role/x")
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

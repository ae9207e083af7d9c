//! Reading annotations: the pod's own (`<prefix>/token-expiration`,
//! `skip-containers`, `credential-mode`) and Go booleans. The near-miss rule
//! that turns a mistyped annotation domain into a warning is
//! `contract::annotations::is_near_miss` (re-exported here), shared with
//! `pod-identity doctor`.

use std::collections::HashSet;

pub use contract::annotations::*;

use super::config::clamp_expiration;
use super::mode::CredentialMode;
use super::warning::{Warning, WarningKind};

/// What a pod's own annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAnnotations<'a> {
    /// `<prefix>/token-expiration`, clamped to Kubernetes' bounds.
    pub token_expiration: Option<i64>,
    /// `<prefix>/skip-containers`, trimmed.
    pub skip_containers: HashSet<&'a str>,
    /// `<prefix>/credential-mode`, when valid.
    pub credential_mode: Option<CredentialMode>,
}

/// Reads a pod's annotations. Invalid values and mistyped keys become
/// warnings; `fallback_expiration` is the lifetime a warning says is used.
pub fn read_pod<'a>(
    annotations: &[(&'a str, &'a str)],
    prefix: &str,
    fallback_expiration: i64,
    warnings: &mut Vec<Warning>,
) -> PodAnnotations<'a> {
    let mut out = PodAnnotations::default();
    for &(key, value) in annotations {
        let Some(name) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) else {
            if is_near_miss(key, prefix, POD_NAMES) {
                warnings.push(Warning::new(
                    WarningKind::NearMissAnnotation,
                    format!(
                        "pod annotation {key:?} looks like a mistyped {:?}; it is ignored",
                        format!("{prefix}/{}", key.rsplit('/').next().unwrap_or(key))
                    ),
                ));
            }
            continue;
        };
        match name {
            TOKEN_EXPIRATION => match value.trim().parse::<i64>() {
                Ok(n) => out.token_expiration = Some(clamp_expiration(n)),
                Err(_) => warnings.push(Warning::new(
                    WarningKind::InvalidAnnotationValue,
                    format!(
                        "pod annotation {key}={value:?} is not a number of seconds; using {}",
                        out.token_expiration.unwrap_or(fallback_expiration)
                    ),
                )),
            },
            SKIP_CONTAINERS => out
                .skip_containers
                .extend(value.split(',').map(str::trim).filter(|s| !s.is_empty())),
            CREDENTIAL_MODE => match CredentialMode::parse(value) {
                Some(m) => out.credential_mode = Some(m),
                None => warnings.push(Warning::new(
                    WarningKind::InvalidAnnotationValue,
                    format!(
                        "pod annotation {key}={value:?} is not one of {}; it is ignored",
                        CredentialMode::NAMES.join(", ")
                    ),
                )),
            },
            _ => {}
        }
    }
    out
}

/// Go's strconv.ParseBool.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "eks.amazonaws.com";

    #[test]
    fn go_bool_table() {
        for t in ["1", "t", "T", "true", "TRUE", "True", " true "] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRuE", "2"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn pod_annotations_table() {
        // (annotations, token expiration, skipped, mode, warnings)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<i64>,
            &'a [&'a str],
            Option<CredentialMode>,
            usize,
        );
        let cases: &[Case] = &[
            (&[], None, &[], None, 0),
            (
                &[("eks.amazonaws.com/token-expiration", "3600")],
                Some(3600),
                &[],
                None,
                0,
            ),
            (
                &[("eks.amazonaws.com/token-expiration", "5")],
                Some(600),
                &[],
                None,
                0,
            ),
            (
                &[("eks.amazonaws.com/token-expiration", "1h")],
                None,
                &[],
                None,
                1,
            ),
            (
                &[("eks.amazonaws.com/skip-containers", " a, b ,,c")],
                None,
                &["a", "b", "c"],
                None,
                0,
            ),
            (
                &[("eks.amazonaws.com/credential-mode", " agent ")],
                None,
                &[],
                Some(CredentialMode::Agent),
                0,
            ),
            (
                &[("eks.amazonaws.com/credential-mode", "Agent!")],
                None,
                &[],
                None,
                1,
            ),
            (
                &[("eks.amazon.com/token-expiration", "3600")],
                None,
                &[],
                None,
                1,
            ),
            (
                &[("example.com/role-arn", "x"), ("app", "y")],
                None,
                &[],
                None,
                0,
            ),
        ];
        for (annotations, exp, skipped, mode, n) in cases {
            let mut warnings = Vec::new();
            let got = read_pod(annotations, P, 86400, &mut warnings);
            assert_eq!(got.token_expiration, *exp, "{annotations:?}");
            let mut skip: Vec<_> = got.skip_containers.into_iter().collect();
            skip.sort();
            assert_eq!(skip, *skipped, "{annotations:?}");
            assert_eq!(got.credential_mode, *mode, "{annotations:?}");
            assert_eq!(warnings.len(), *n, "{annotations:?}: {warnings:?}");
        }
    }
}

//! How a pod gets its credentials: the credential modes, and the final choice
//! for one pod (the pod's own annotation overrides the ServiceAccount's and
//! the flag's choice; sidecar mode falls back to web identity where a sidecar
//! cannot work).

use contract::RoleArn;

use super::warning::{Warning, WarningKind};

/// How a pod with a role gets its credentials: chosen by `--credential-mode`,
/// then the ServiceAccount's `<prefix>/credential-mode`, then the pod's.
pub use contract::mode::CredentialMode;

/// The mode `m` for `role_arn`.
pub fn with_role(m: CredentialMode, role_arn: RoleArn) -> Mode {
    match m {
        CredentialMode::WebIdentity => Mode::WebIdentity { role_arn },
        CredentialMode::Agent => Mode::Agent { role_arn },
        CredentialMode::Sidecar => Mode::Sidecar { role_arn },
    }
}

/// Which credentials a pod gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE.
    WebIdentity { role_arn: RoleArn },
    /// The node agent: AWS_CONTAINER_CREDENTIALS_FULL_URI naming the role +
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    Agent { role_arn: RoleArn },
    /// A credential-agent sidecar for the role, reached on loopback.
    Sidecar { role_arn: RoleArn },
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    /// for identities listed in the container credentials config (upstream's
    /// EKS Pod Identity mode: the URI as configured, no role in it).
    ContainerCredentials,
}

impl Mode {
    /// The role, for every mode that names one.
    pub fn role_arn(&self) -> Option<&RoleArn> {
        match self {
            Mode::WebIdentity { role_arn }
            | Mode::Agent { role_arn }
            | Mode::Sidecar { role_arn } => Some(role_arn),
            Mode::ContainerCredentials => None,
        }
    }
}

/// What a pod needs to be known for the final choice of its mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodFacts {
    /// The pod's own `<prefix>/credential-mode`, if valid.
    pub requested: Option<CredentialMode>,
    pub host_network: bool,
}

/// The mode a pod gets: the ServiceAccount's (or flag's) `resolved` mode,
/// overridden by the pod's annotation (never for identities of the container
/// credentials config), and web identity instead of a sidecar where a
/// sidecar cannot work, with a warning saying why.
pub fn choose(resolved: &Mode, pod: PodFacts, native_sidecars: bool) -> (Mode, Option<Warning>) {
    let mut mode = resolved.clone();
    if let (Some(m), Some(role)) = (pod.requested, resolved.role_arn()) {
        mode = with_role(m, role.clone());
    }
    if let Mode::Sidecar { role_arn } = &mode {
        let why = if pod.host_network {
            Some("the pod uses hostNetwork, so a credential-agent sidecar on loopback would be reachable from the whole node")
        } else if !native_sidecars {
            Some("the cluster does not run native sidecars (Kubernetes 1.29 or later)")
        } else {
            None
        };
        if let Some(why) = why {
            let warning = Warning::new(
                WarningKind::SidecarNotInjected,
                format!("{why}; the pod gets web identity credentials instead of a sidecar"),
            );
            return (
                Mode::WebIdentity {
                    role_arn: role_arn.clone(),
                },
                Some(warning),
            );
        }
    }
    (mode, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_table() {
        let role: RoleArn = "arn:aws:iam::111122223333:role/r".parse().unwrap();
        let web = Mode::WebIdentity {
            role_arn: role.clone(),
        };
        let agent = Mode::Agent {
            role_arn: role.clone(),
        };
        let sidecar = Mode::Sidecar {
            role_arn: role.clone(),
        };
        let cc = Mode::ContainerCredentials;
        use CredentialMode as C;
        // (resolved, pod annotation, hostNetwork, native sidecars) -> (mode, warned)
        type Case<'a> = (&'a Mode, Option<C>, bool, bool, &'a Mode, bool);
        let cases: &[Case] = &[
            (&web, None, false, true, &web, false),
            (&web, Some(C::Agent), false, true, &agent, false),
            (&agent, Some(C::WebIdentity), false, true, &web, false),
            (&web, Some(C::Sidecar), false, true, &sidecar, false),
            (&sidecar, None, false, true, &sidecar, false),
            (&sidecar, None, true, true, &web, true),
            (&sidecar, None, false, false, &web, true),
            (&web, Some(C::Sidecar), true, true, &web, true),
            (&agent, None, true, false, &agent, false),
            (&cc, Some(C::Agent), false, true, &cc, false),
            (&cc, Some(C::Sidecar), true, false, &cc, false),
        ];
        for (resolved, requested, host_network, native, want, warned) in cases {
            let facts = PodFacts {
                requested: *requested,
                host_network: *host_network,
            };
            let (got, warning) = choose(resolved, facts, *native);
            assert_eq!(&&got, want, "{resolved:?} {facts:?} native={native}");
            assert_eq!(warning.is_some(), *warned, "{resolved:?} {facts:?}");
            if let Some(w) = warning {
                assert_eq!(w.kind, WarningKind::SidecarNotInjected);
            }
        }
        assert_eq!(
            CredentialMode::NAMES.map(|n| CredentialMode::parse(n).unwrap().as_str()),
            CredentialMode::NAMES
        );
    }
}

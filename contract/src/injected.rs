//! Whether a pod got what the webhook injects, read back from the pod: the
//! rule `pod-identity doctor` and the webhook's missing-injection metric
//! share. A pod asks for a role when its ServiceAccount carries a valid role
//! annotation; it has credentials when a container (not skipped, not the
//! credential sidecar itself) has the variables of a credential mode.

use crate::RoleArn;

/// Variables of the web-identity mode.
pub const WEB_IDENTITY_ENV: [&str; 2] = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];
/// Variables of the container-credentials modes (agent, sidecar).
pub const CONTAINER_CREDENTIALS_ENV: [&str; 2] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The projected token volume of the web-identity mode (upstream's name).
pub const WEB_IDENTITY_VOLUME: &str = "aws-iam-token";
/// The projected token volume of the container-credentials modes (EKS Pod
/// Identity's name).
pub const CONTAINER_CREDENTIALS_VOLUME: &str = "eks-pod-identity-token";
/// The token audience of EKS Pod Identity (and of this project's
/// container-credentials modes by default).
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// What a container's environment shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    WebIdentity,
    ContainerCredentials,
    /// Neither set of variables (or only part of one).
    Nothing,
}

/// Reads a container's environment variable names.
pub fn container<'a>(env: impl IntoIterator<Item = &'a str>) -> Injected {
    let names: Vec<&str> = env.into_iter().collect();
    let has = |set: &[&str]| set.iter().all(|v| names.contains(v));
    if has(&WEB_IDENTITY_ENV) {
        Injected::WebIdentity
    } else if has(&CONTAINER_CREDENTIALS_ENV) {
        Injected::ContainerCredentials
    } else {
        Injected::Nothing
    }
}

/// One container of a pod, as the rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container<'a> {
    pub name: &'a str,
    pub env: Vec<&'a str>,
}

/// The containers that should carry credentials: all but those named in
/// `skip` and the credential sidecar (`sidecar_name`).
pub fn candidates<'p, 'a>(
    containers: &'p [Container<'a>],
    skip: &[&str],
    sidecar_name: &str,
) -> Vec<&'p Container<'a>> {
    containers
        .iter()
        .filter(|c| !skip.contains(&c.name) && c.name != sidecar_name)
        .collect()
}

/// True when the pod's ServiceAccount asks for a role (`role_annotation` is
/// a valid role ARN) and no candidate container got credentials.
pub fn missing_injection(
    role_annotation: Option<&str>,
    containers: &[Container<'_>],
    skip: &[&str],
    sidecar_name: &str,
) -> bool {
    missing(
        role_annotation,
        containers
            .iter()
            .map(|c| (c.name, container(c.env.iter().copied()))),
        skip,
        sidecar_name,
    )
}

/// [`missing_injection`] over containers already read with [`container`]
/// (name, what its environment shows), for callers that keep only that.
pub fn missing<'a>(
    role_annotation: Option<&str>,
    containers: impl IntoIterator<Item = (&'a str, Injected)>,
    skip: &[&str],
    sidecar_name: &str,
) -> bool {
    if role_annotation.is_none_or(|a| RoleArn::parse(a.trim()).is_err()) {
        return false;
    }
    let mut any = false;
    for (name, injected) in containers {
        if skip.contains(&name) || name == sidecar_name {
            continue;
        }
        if injected != Injected::Nothing {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/app";

    fn c<'a>(name: &'a str, env: &[&'a str]) -> Container<'a> {
        Container {
            name,
            env: env.to_vec(),
        }
    }

    #[test]
    fn table() {
        let web = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "X"];
        let cc = [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ];
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<Container<'a>>,
            Vec<&'a str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("injected", Some(ROLE), vec![c("app", &web)], vec![], false),
            ("agent mode", Some(ROLE), vec![c("app", &cc)], vec![], false),
            ("missed", Some(ROLE), vec![c("app", &["X"])], vec![], true),
            (
                "half the variables",
                Some(ROLE),
                vec![c("app", &["AWS_ROLE_ARN"])],
                vec![],
                true,
            ),
            ("no role asked", None, vec![c("app", &[])], vec![], false),
            (
                "invalid role",
                Some("arn:nope"),
                vec![c("app", &[])],
                vec![],
                false,
            ),
            (
                "role with spaces",
                Some(" arn:aws:iam::123456789012:role/app "),
                vec![c("app", &[])],
                vec![],
                true,
            ),
            (
                "every container skipped",
                Some(ROLE),
                vec![c("app", &[])],
                vec!["app"],
                false,
            ),
            (
                "one of two injected",
                Some(ROLE),
                vec![c("a", &web), c("b", &[])],
                vec![],
                false,
            ),
            (
                "sidecar alone is not credentials",
                Some(ROLE),
                vec![c("app", &[]), c("aws-credential-agent", &[])],
                vec![],
                true,
            ),
        ];
        for (name, role, containers, skip, want) in cases {
            assert_eq!(
                missing_injection(role, &containers, &skip, "aws-credential-agent"),
                want,
                "{name}"
            );
        }
        assert_eq!(container(web), Injected::WebIdentity);
        assert_eq!(container(cc), Injected::ContainerCredentials);
    }
}

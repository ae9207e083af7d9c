//! Annotation and label names users write on ServiceAccounts and pods.
//! Annotations live under a configurable domain (`--annotation-prefix`,
//! default [`DEFAULT_PREFIX`]); the names below are what follows `<prefix>/`.

/// The annotation domain of EKS and of the upstream webhook.
pub const DEFAULT_PREFIX: &str = "eks.amazonaws.com";

/// ServiceAccount: the IAM role its pods get.
pub const ROLE_ARN: &str = "role-arn";
/// ServiceAccount: the projected token's audience.
pub const AUDIENCE: &str = "audience";
/// ServiceAccount: `AWS_STS_REGIONAL_ENDPOINTS=regional` (a Go boolean).
pub const STS_REGIONAL_ENDPOINTS: &str = "sts-regional-endpoints";
/// ServiceAccount or pod: the projected token's lifetime in seconds.
pub const TOKEN_EXPIRATION: &str = "token-expiration";
/// Pod: containers (comma-separated names) left alone.
pub const SKIP_CONTAINERS: &str = "skip-containers";
/// ServiceAccount or pod: `web-identity`, `agent` or `sidecar`.
pub const CREDENTIAL_MODE: &str = "credential-mode";

/// Names read from ServiceAccounts.
pub const SERVICE_ACCOUNT_NAMES: &[&str] = &[
    ROLE_ARN,
    AUDIENCE,
    STS_REGIONAL_ENDPOINTS,
    TOKEN_EXPIRATION,
    CREDENTIAL_MODE,
];
/// Names read from pods.
pub const POD_NAMES: &[&str] = &[TOKEN_EXPIRATION, SKIP_CONTAINERS, CREDENTIAL_MODE];

/// Label set on pods that get container credentials (value `enabled`).
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";

/// True when `key` is `<domain>/<name>` for a name we read, with a domain that
/// is not `prefix` but close to it (a typo), or when it is the bare name.
pub fn is_near_miss(key: &str, prefix: &str, names: &[&str]) -> bool {
    let (domain, name) = match key.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", key),
    };
    if domain == prefix && names.contains(&name) {
        return false;
    }
    let name_near = names.contains(&name) || names.iter().any(|n| name_is_near(name, n));
    if !name_near {
        return false;
    }
    if domain.is_empty() {
        return names.contains(&name);
    }
    let d = domain.to_ascii_lowercase();
    let p = prefix.to_ascii_lowercase();
    d == p || levenshtein(&d, &p) <= 4
}

/// A name written another way: `role_arn`, `Role-ARN`, `rolearn`, or one
/// or two letters off (`role-ar`, `role-arm`) for names long enough that
/// this does not reach another word.
fn name_is_near(name: &str, want: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '-' && *c != '_' && *c != '.')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (fold(name), fold(want));
    a == b || (b.len() >= 7 && levenshtein(&a, &b) <= 1)
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

    const P: &str = "eks.amazonaws.com";

    #[test]
    fn near_miss_table() {
        let cases = [
            ("eks.amazon.com/role-arn", true),
            ("eks.amazonaws.co/role-arn", true),
            ("EKS.amazonaws.com/role-arn", true),
            ("eks-amazonaws.com/role-arn", true),
            ("eks.amazonaws.com/role-arn", false),
            ("example.org/role-arn", false),
            ("eks.amazon.com/something-else", false),
            ("role-arn", true),
            // The name written another way, under the right or a near domain.
            ("eks.amazonaws.com/role_arn", true),
            ("eks.amazonaws.com/Role-ARN", true),
            ("eks.amazonaws.com/rolearn", true),
            ("eks.amazonaws.com/role-arm", true),
            ("eks.amazonaws.com/sts_regional_endpoints", true),
            ("eks.amazon.com/role_arn", true),
            // Other names of the domain, and bare look-alikes, are not.
            ("eks.amazonaws.com/pod-identity", false),
            ("eks.amazonaws.com/audience", false),
            ("example.org/role_arn", false),
            ("role_arn", false),
        ];
        for (key, want) in cases {
            assert_eq!(is_near_miss(key, P, SERVICE_ACCOUNT_NAMES), want, "{key}");
        }
    }
}

//! An IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/[<path>/]<name>`.
//!
//! The webhook refuses to inject an invalid one (with a warning) and the agent
//! refuses to call STS for one, so both must agree on exactly which strings
//! are role ARNs: this is that rule.

use std::fmt;

/// Why a string is not a role ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoleArnError(String);

/// A validated IAM role ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn(String);

/// Characters IAM allows in a role name (and, here, in each path segment).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

impl RoleArn {
    /// Longest ARN IAM returns for a role.
    pub const MAX_LEN: usize = 2048;
    /// Longest role name IAM allows.
    pub const MAX_NAME_LEN: usize = 64;

    /// Whether `name` is a role name IAM accepts: 1-64 of `[A-Za-z0-9_+=,.@-]`.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty() && name.len() <= Self::MAX_NAME_LEN && name.chars().all(is_name_char)
    }

    /// `s` with every character IAM does not allow in a role or session
    /// name (outside `[A-Za-z0-9_+=,.@-]`) replaced by `-`.
    pub fn sanitize_name(s: &str) -> String {
        s.chars()
            .map(|c| if is_name_char(c) { c } else { '-' })
            .collect()
    }

    /// Checks `arn` and keeps it as written (no trimming: callers decide
    /// whether surrounding whitespace is tolerated).
    pub fn parse(arn: &str) -> Result<RoleArn, RoleArnError> {
        let err = |m: String| Err(RoleArnError(m));
        if arn.len() < 20 || arn.len() > Self::MAX_LEN {
            return err(format!("length must be 20 to {} characters", Self::MAX_LEN));
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [scheme, partition, service, region, account, resource] = parts[..] else {
            return err("expected arn:<partition>:iam::<account>:role/<name>".into());
        };
        if scheme != "arn" {
            return err("must start with \"arn:\"".into());
        }
        if !partition.starts_with("aws")
            || !partition
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return err(format!("unknown partition {partition:?}"));
        }
        if service != "iam" {
            return err(format!("service must be \"iam\", not {service:?}"));
        }
        if !region.is_empty() {
            return err("IAM ARNs have no region".into());
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return err(format!("account {account:?} is not 12 digits"));
        }
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return err("resource must start with \"role/\"".into());
        };
        let (path, name) = match path_and_name.rsplit_once('/') {
            Some((path, name)) => (Some(path), name),
            None => (None, path_and_name),
        };
        if name.is_empty() || name.len() > Self::MAX_NAME_LEN || !name.chars().all(is_name_char) {
            return err(format!(
                "role name {name:?} is not 1-{} characters of [A-Za-z0-9_+=,.@-]",
                Self::MAX_NAME_LEN
            ));
        }
        if let Some(path) = path {
            if path
                .split('/')
                .any(|s| s.is_empty() || !s.chars().all(is_name_char))
            {
                return err(
                    "role path has an empty segment or one not of [A-Za-z0-9_+=,.@-]".into(),
                );
            }
        }
        Ok(RoleArn(arn.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The role's name (the part after the last `/`).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The 12-digit account id.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }

    /// The partition (`aws`, `aws-cn`, `aws-us-gov`, ...).
    pub fn partition(&self) -> &str {
        self.0.split(':').nth(1).unwrap_or_default()
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RoleArn {
    type Err = RoleArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoleArn::parse(s)
    }
}

impl AsRef<str> for RoleArn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one table both binaries are held to (the webhook's and the agent's
    /// own tests call the same `RoleArn::parse`).
    #[test]
    fn role_arn_table() {
        let good = [
            "arn:aws:iam::111122223333:role/s3-reader",
            "arn:aws-cn:iam::111122223333:role/s3-reader",
            "arn:aws-us-gov:iam::111122223333:role/path/to/my-role_1+=,.@",
            "arn:aws:iam::000000000000:role/a",
            "arn:aws:iam::123456789012:role/a+b=c,d.e@f_g-h",
        ];
        for arn in good {
            let parsed = RoleArn::parse(arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(parsed.as_str(), arn);
        }
        let long_name = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(65));
        let max_name = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(64));
        assert!(RoleArn::parse(&max_name).is_ok());
        let too_long = format!("arn:aws:iam::111122223333:role/{}/x", "p".repeat(2048));
        let bad = [
            "",
            "s3-reader",
            "app",
            "arn:aws:iam::11112222333:role/x-too-short-account",
            "arn:aws:iam::111122223333:user/bob",
            "arn:aws:s3:::111122223333:role/x",
            "arn:aws:s3::123456789012:role/app",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:gcp:iam::111122223333:role/x",
            "arn:AWS:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/path/",
            "arn:aws:iam::111122223333:role/has space",
            "arn:aws:iam::111122223333:role//double",
            "arn:aws:iam::111122223333:role/a//b",
            "arn:aws:iam::111122223333:role/pa~th/x",
            "arn:aws:iam::abcdefghijkl:role/x",
            "arn:aws:iam::123456789012:role/app\n",
            " arn:aws:iam::123456789012:role/app",
            "arn:aws:iam::123456789012:role/ap\u{e9}",
            long_name.as_str(),
            too_long.as_str(),
        ];
        for arn in bad {
            assert!(RoleArn::parse(arn).is_err(), "{arn:?} should be refused");
        }
    }

    #[test]
    fn parts() {
        let a = RoleArn::parse("arn:aws-cn:iam::111122223333:role/team/app").unwrap();
        assert_eq!(a.name(), "app");
        assert_eq!(a.account(), "111122223333");
        assert_eq!(a.partition(), "aws-cn");
        assert_eq!(a.to_string(), "arn:aws-cn:iam::111122223333:role/team/app");
    }
}

//! Debug output of every type that holds a token or a secret hides it.

use std::time::{Duration, UNIX_EPOCH};

use credential_agent::cache::{Key, Lookup, Served, Source};
use credential_agent::error::Error;
use credential_agent::secret::Secret;
use credential_agent::stored::{CachedCredentials, StoredToken, TokenDictionary};
use credential_agent::sts::{AssumeRequest, Credentials, StsError, StsErrorKind};

const TOKEN: &str = "eyJTOKENMARKER.payload-marker.signature-marker";
const SECRET: &str = "SECRETMARKER-abcdef";
const SESSION: &str = "SESSIONMARKER-abcdef";

#[test]
fn debug_never_prints_secrets() {
    let creds = Credentials {
        access_key_id: "AKIA".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Secret::new(SESSION),
        account_id: None,
        expiration: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        assumed_role: None,
    };
    let lookup = Lookup {
        key: Key {
            namespace: "ns".into(),
            service_account: "sa".into(),
            service_account_uid: "uid".into(),
            role_arn: "arn:aws:iam::123456789012:role/r".parse().unwrap(),
            pod_uid: None,
            association: None,
            audiences: 1,
        },
        session_name: "ns.sa".into(),
        token: Secret::new(TOKEN),
        token_expires: None,
    };
    let req = AssumeRequest {
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        session_name: "ns.sa".into(),
        association: None,
        token: Secret::new(TOKEN),
        duration_seconds: 3600,
    };
    let served = Served {
        credentials: CachedCredentials::new(&creds),
        source: Source::Cached,
    };
    let err = Error::Sts(StsError::new(StsErrorKind::Denied, "AccessDenied", "no"));
    let outputs = [
        format!("{creds:?}"),
        format!("{creds:#?}"),
        format!("{lookup:?}"),
        format!("{req:?}"),
        format!("{served:?}"),
        format!(
            "{:?}",
            StoredToken::new(&Secret::new(TOKEN), &TokenDictionary::default())
        ),
        format!("{err:?} {err}"),
    ];
    for out in outputs {
        for marker in ["MARKER", TOKEN, SECRET, SESSION] {
            assert!(!out.contains(marker), "{marker} in {out}");
        }
        // The non-secret parts are still there to debug with.
        assert!(
            out.contains("AKIA")
                || out.contains("ns.sa")
                || out.contains("AccessDenied")
                || out == "<redacted>",
            "{out}"
        );
    }
}

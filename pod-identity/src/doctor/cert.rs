//! Does a webhook configuration's `caBundle` verify the serving
//! certificate, for the name the API server calls, now? Pure: the chain, the
//! bundle, the name and the time are arguments.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

contract::message_error! {
    /// Why a serving certificate does not verify, or cannot be read.
    CertError
}

/// What was found out about a serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertVerdict {
    /// Unix seconds.
    pub not_after: Option<i64>,
    pub dns_names: Vec<String>,
    /// `Ok` when the bundle verifies the chain for the name at the time.
    pub result: Result<(), CertError>,
}

/// PEM certificates -> DER.
pub fn pem_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// The leaf's notAfter (Unix seconds) and subject alternative names.
pub fn leaf_facts(leaf: &[u8]) -> Result<(i64, Vec<String>), CertError> {
    let (_, c) = X509Certificate::from_der(leaf)
        .map_err(|e| format!("the serving certificate is not X.509: {e}"))?;
    let names = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|g| g.to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok((c.validity().not_after.timestamp(), names))
}

pub fn verify(chain: &[Vec<u8>], ca_bundle_pem: &[u8], name: &str, now: i64) -> CertVerdict {
    let Some(leaf) = chain.first() else {
        return CertVerdict {
            not_after: None,
            dns_names: Vec::new(),
            result: Err("no serving certificate".into()),
        };
    };
    let (not_after, dns_names) = match leaf_facts(leaf) {
        Ok((t, names)) => (Some(t), names),
        Err(e) => {
            return CertVerdict {
                not_after: None,
                dns_names: Vec::new(),
                result: Err(e),
            }
        }
    };
    let result = check(chain, ca_bundle_pem, name, now, not_after);
    CertVerdict {
        not_after,
        dns_names,
        result,
    }
}

fn check(
    chain: &[Vec<u8>],
    ca_bundle_pem: &[u8],
    name: &str,
    now: i64,
    not_after: Option<i64>,
) -> Result<(), CertError> {
    if not_after.is_some_and(|t| t <= now) {
        return Err("the serving certificate has expired".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    let cas = pem_certs(ca_bundle_pem);
    if cas.is_empty() {
        return Err("the caBundle holds no PEM certificate".into());
    }
    for ca in cas {
        roots
            .add(CertificateDer::from(ca))
            .map_err(|e| format!("a caBundle certificate is unusable: {e}"))?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let server_name =
        ServerName::try_from(name.to_string()).map_err(|e| format!("{name:?}: {e}"))?;
    let [leaf, rest @ ..] = chain else {
        return Err("no serving certificate".into());
    };
    let end = CertificateDer::from(leaf.clone());
    let intermediates: Vec<CertificateDer> = rest
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    verifier
        .verify_server_cert(&end, &intermediates, &server_name, &[], at)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
                "the caBundle does not verify the serving certificate (signed by another CA)"
                    .to_string()
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            ) => {
                format!("the serving certificate is not valid for {name}")
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
                ..
            }) => "the serving certificate (or its CA) has expired".to_string(),
            other => format!("the serving certificate does not verify: {other}"),
        })
        .map_err(CertError)
}

/// Test certificates: a CA (PEM) and a serving chain for `names`, valid
/// from 2020 until `not_after` (year, month, day). Shared by the tests of
/// this file and of the checks.
#[cfg(test)]
pub(crate) fn test_pki(names: &[&str], not_after: (i32, u8, u8)) -> (String, Vec<Vec<u8>>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), vec![cert.der().to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca_pem: String,
        chain: Vec<Vec<u8>>,
    }

    fn pki(names: &[&str], not_after: (i32, u8, u8)) -> Pki {
        let (ca_pem, chain) = test_pki(names, not_after);
        Pki { ca_pem, chain }
    }

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    #[test]
    fn table() {
        let good = pki(&["pod-identity.kube-system.svc", "127.0.0.1"], (2030, 1, 1));
        let v = verify(
            &good.chain,
            good.ca_pem.as_bytes(),
            "pod-identity.kube-system.svc",
            NOW,
        );
        assert_eq!(v.result, Ok(()));
        assert!(v
            .dns_names
            .iter()
            .any(|n| n.contains("pod-identity.kube-system.svc")));
        assert!(
            verify(&good.chain, good.ca_pem.as_bytes(), "127.0.0.1", NOW)
                .result
                .is_ok()
        );
        let other = pki(&["x"], (2030, 1, 1));
        let e = verify(&good.chain, other.ca_pem.as_bytes(), "127.0.0.1", NOW)
            .result
            .unwrap_err();
        assert!(e.0.contains("another CA"), "{e}");
        let e = verify(&good.chain, good.ca_pem.as_bytes(), "other.ns.svc", NOW)
            .result
            .unwrap_err();
        assert!(e.0.contains("not valid for other.ns.svc"), "{e}");
        let expired = pki(&["127.0.0.1"], (2026, 1, 1));
        let e = verify(&expired.chain, expired.ca_pem.as_bytes(), "127.0.0.1", NOW)
            .result
            .unwrap_err();
        assert!(e.0.contains("expired"), "{e}");
        assert!(verify(&[], b"", "x", NOW).result.is_err());
        assert!(verify(&good.chain, b"junk", "127.0.0.1", NOW)
            .result
            .unwrap_err()
            .0
            .contains("no PEM"));
    }
}

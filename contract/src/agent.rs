//! The credential agent's contract with the webhook and with applications:
//! where the node agent listens, how the role is named in the credentials
//! URI, and the command line, ports and environment of the sidecar the
//! webhook renders. The agent's clap defaults and the webhook's sidecar
//! spec both come from here, and a test starts the agent with exactly the
//! arguments the webhook renders.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The node agent's link-local IPv4 address (as EKS Pod Identity's).
pub const NODE_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
/// The node agent's IPv6 address.
pub const NODE_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);
/// Port of the node agent's credentials listeners.
pub const NODE_PORT: u16 = 80;
/// Path of the container credentials endpoint.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";
/// The node agent's credentials URL (without the role).
pub const NODE_URL: &str = "http://169.254.170.23/v1/credentials";
/// Query parameter naming the role in node mode.
pub const ROLE_QUERY: &str = "role";

/// Default port of the sidecar's credentials listener (loopback).
pub const SIDECAR_PORT: u16 = 2702;
/// Default port of `/healthz` and `/readyz`.
pub const HEALTH_PORT: u16 = 2703;
/// Default port of Prometheus `/metrics`.
pub const METRICS_PORT: u16 = 2705;

/// The agent's subcommand for the in-pod sidecar.
pub const SIDECAR_SUBCOMMAND: &str = "sidecar";
/// The agent's flags the webhook's sidecar spec sets.
pub const FLAG_LISTEN: &str = "listen";
pub const FLAG_HEALTH_LISTEN: &str = "health-listen";
pub const FLAG_METRICS_LISTEN: &str = "metrics-listen";
/// Environment the sidecar reads its role, token and region from (the
/// variables of the AWS SDKs' web identity provider).
pub const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
pub const ENV_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
pub const ENV_REGION: &str = "AWS_REGION";

/// The node agent's default credentials listeners.
pub fn node_listen_addrs() -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V4(NODE_IPV4), NODE_PORT),
        SocketAddr::new(IpAddr::V6(NODE_IPV6), NODE_PORT),
    ]
}

/// Where a sidecar serves credentials, health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidecarPorts {
    pub credentials: u16,
    pub health: u16,
    pub metrics: u16,
}

impl Default for SidecarPorts {
    fn default() -> Self {
        SidecarPorts {
            credentials: SIDECAR_PORT,
            health: HEALTH_PORT,
            metrics: METRICS_PORT,
        }
    }
}

impl SidecarPorts {
    /// The sidecar's credentials listener: loopback, so only the pod reaches it.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.credentials)
    }

    /// The URL applications in the pod use.
    pub fn credentials_url(&self) -> String {
        format!("http://{}{CREDENTIALS_PATH}", self.listen())
    }

    /// The agent's arguments for this sidecar (the kubelet probes health on
    /// the pod IP, Prometheus scrapes metrics there).
    pub fn args(&self) -> Vec<String> {
        vec![
            SIDECAR_SUBCOMMAND.to_string(),
            format!("--{FLAG_LISTEN}={}", self.listen()),
            format!("--{FLAG_HEALTH_LISTEN}=0.0.0.0:{}", self.health),
            format!("--{FLAG_METRICS_LISTEN}=0.0.0.0:{}", self.metrics),
        ]
    }
}

/// `<agent URL>?role=<URL-encoded role ARN>` (or `&role=` after a query):
/// the URI an application in agent mode fetches credentials from.
pub fn role_uri(agent_url: &str, role_arn: &str) -> String {
    let mut encoded = String::with_capacity(role_arn.len() * 2);
    for b in role_arn.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(b as char)
            }
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    let sep = if agent_url.contains('?') { '&' } else { '?' };
    format!("{agent_url}{sep}{ROLE_QUERY}={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_url_is_the_node_address() {
        assert_eq!(
            NODE_URL,
            format!("http://{NODE_IPV4}{CREDENTIALS_PATH}"),
            "NODE_URL must name NODE_IPV4 on port 80"
        );
        assert_eq!(node_listen_addrs()[1].to_string(), "[fd00:ec2::23]:80");
    }

    #[test]
    fn sidecar_args_and_url() {
        let p = SidecarPorts::default();
        assert_eq!(
            p.args(),
            [
                "sidecar",
                "--listen=127.0.0.1:2702",
                "--health-listen=0.0.0.0:2703",
                "--metrics-listen=0.0.0.0:2705"
            ]
        );
        assert_eq!(p.credentials_url(), "http://127.0.0.1:2702/v1/credentials");
    }

    #[test]
    fn role_uri_encodes_the_role() {
        assert_eq!(
            role_uri(NODE_URL, "arn:aws:iam::111122223333:role/a/b+c"),
            "http://169.254.170.23/v1/credentials?role=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fa%2Fb%2Bc"
        );
        assert_eq!(
            role_uri(
                "http://h/v1/credentials?x=1",
                "arn:aws:iam::111122223333:role/r"
            ),
            "http://h/v1/credentials?x=1&role=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fr"
        );
    }
}

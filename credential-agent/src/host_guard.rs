//! DNS-rebinding guard: a request's `Host` must name an address the agent
//! listens on, so a web page that points a hostname of its own at
//! 169.254.170.23 or 127.0.0.1 cannot make a browser in a pod fetch
//! credentials for it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// DNS-rebinding guard: the Host header must name an address we listen on.
#[derive(Debug, Default)]
pub struct HostGuard {
    exact: HashSet<String>,
    /// Ports of wildcard listeners: any IP literal (or localhost) with them.
    wildcard_ports: HashSet<u16>,
}

fn host_forms(ip: IpAddr, port: u16) -> Vec<String> {
    let ip_s = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut out = vec![format!("{ip_s}:{port}")];
    if port == 80 {
        out.push(ip_s);
    }
    if ip.is_loopback() {
        out.push(format!("localhost:{port}"));
        if port == 80 {
            out.push("localhost".into());
        }
    }
    out
}

impl HostGuard {
    pub fn for_addrs(addrs: &[SocketAddr]) -> Self {
        let mut g = HostGuard::default();
        for a in addrs {
            if a.ip().is_unspecified() {
                g.wildcard_ports.insert(a.port());
            } else {
                g.exact.extend(host_forms(a.ip(), a.port()));
            }
        }
        g
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.exact.contains(&host) {
            return true;
        }
        if self.wildcard_ports.is_empty() {
            return false;
        }
        // host[:port] with an IP literal or localhost.
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(':') && (n.starts_with('[') || !n.contains(':')) => {
                match p.parse::<u16>() {
                    Ok(p) => (n.to_string(), p),
                    Err(_) => return false,
                }
            }
            _ => (host.clone(), 80),
        };
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        let ok_name = name == "localhost" || literal.parse::<IpAddr>().is_ok();
        ok_name && self.wildcard_ports.contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_guard() {
        let g = HostGuard::for_addrs(&[
            "169.254.170.23:80".parse().unwrap(),
            "[fd00:ec2::23]:80".parse().unwrap(),
            "127.0.0.1:2702".parse().unwrap(),
        ]);
        for ok in [
            "169.254.170.23",
            "169.254.170.23:80",
            "[fd00:ec2::23]",
            "[FD00:EC2::23]:80",
            "127.0.0.1:2702",
            "localhost:2702",
        ] {
            assert!(g.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example.com",
            "evil.example.com:80",
            "169.254.170.23:8080",
            "127.0.0.1",
            "localhost",
            "127.0.0.2:2702",
        ] {
            assert!(!g.allows(bad), "{bad}");
        }
        let wild = HostGuard::for_addrs(&["0.0.0.0:8080".parse().unwrap()]);
        assert!(wild.allows("10.1.2.3:8080"));
        assert!(wild.allows("[::1]:8080"));
        assert!(wild.allows("localhost:8080"));
        assert!(!wild.allows("10.1.2.3:80"));
        assert!(!wild.allows("rebind.example.com:8080"));
    }
}

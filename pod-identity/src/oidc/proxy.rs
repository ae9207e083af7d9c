//! The issuer's HTTPS visit through a proxy, as curl and the AWS SDKs do:
//! `HTTPS_PROXY` (or `https_proxy`) names an `http://[user:pass@]host:port`
//! proxy, `NO_PROXY` (or `no_proxy`) the hosts reached directly. The tunnel
//! is an HTTP `CONNECT`; TLS to the issuer runs inside it, so the
//! certificate and thumbprint are the issuer's own.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

contract::message_error! {
    /// An unusable HTTPS_PROXY, or a proxy that did not open the tunnel.
    ProxyError
}

/// The most of a proxy's answer to CONNECT that is read.
const MAX_CONNECT_REPLY: usize = 8 * 1024;

/// A proxy to reach a host through. Its Debug output leaves out the
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as Basic proxy authorization.
    pub credentials: Option<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `HTTPS_PROXY` as it may be shown: any `user:password@` replaced.
fn shown(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), raw),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => raw.to_string(),
    }
}

/// The proxy for `host:port`, from the environment (`get` reads a variable;
/// injected so that the rule is tested without touching the process
/// environment). An unusable `HTTPS_PROXY` is an error, never ignored.
pub fn proxy_for(
    host: &str,
    port: u16,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, ProxyError> {
    let var = |name: &str| {
        get(name)
            .or_else(|| get(&name.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let Some(raw) = var("HTTPS_PROXY") else {
        return Ok(None);
    };
    if let Some(no_proxy) = var("NO_PROXY") {
        if bypassed(host, port, &no_proxy) {
            return Ok(None);
        }
    }
    let with_scheme = if raw.contains("://") {
        raw.clone()
    } else {
        format!("http://{raw}")
    };
    let (scheme, rest) = with_scheme
        .split_once("://")
        .unwrap_or(("http", &with_scheme));
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "HTTPS_PROXY {:?}: only http:// proxies are supported (the tunnel is an HTTP CONNECT)",
            shown(&raw)
        )
        .into());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (
            Some(
                percent_encoding::percent_decode_str(c)
                    .decode_utf8_lossy()
                    .into_owned(),
            ),
            h,
        ),
        None => (None, authority),
    };
    let (phost, pport) = split_host_port(hostport)
        .ok_or_else(|| format!("HTTPS_PROXY {:?} is not http://host[:port]", shown(&raw)))?;
    Ok(Some(Proxy {
        host: phost,
        port: pport.unwrap_or(80),
        credentials,
    }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        Some(_) => Some((s.to_string(), None)),
        None => Some((s.to_string(), None)),
    }
}

/// Whether `NO_PROXY` sends `host:port` directly: `*`; an exact host or
/// address; a domain and its subdomains (`example.com`, `.example.com`);
/// each optionally with `:port`. Case-insensitive, as host names are.
fn bypassed(host: &str, port: u16, no_proxy: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, eport) = match split_host_port(entry) {
                Some(x) => x,
                None => return false,
            };
            if eport.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.to_ascii_lowercase();
            let domain = name.trim_start_matches("*.").trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
}

/// Opens a tunnel to `host:port` through `proxy`.
pub async fn connect(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| format!("connecting to the proxy {}:{}: {e}", proxy.host, proxy.port))?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(c);
        req.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("proxy {}:{}: {e}", proxy.host, proxy.port))?;
    // Read the answer's head byte by byte: nothing after it may be consumed,
    // since the TLS handshake follows on the same stream.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_REPLY {
            return Err(format!(
                "proxy {}:{}: its answer to CONNECT is over {MAX_CONNECT_REPLY} bytes",
                proxy.host, proxy.port
            )
            .into());
        }
        let b = tcp
            .read_u8()
            .await
            .map_err(|e| format!("proxy {}:{} closed the tunnel: {e}", proxy.host, proxy.port))?;
        head.push(b);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!(
            "proxy {}:{} refused CONNECT {target}: {status_line}",
            proxy.host, proxy.port
        )
        .into());
    }
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn which_hosts_go_through_the_proxy() {
        let p = |host: &str, port: u16, vars: &[(&str, &str)]| proxy_for(host, port, env(vars));
        let proxy = Proxy {
            host: "proxy.corp".into(),
            port: 3128,
            credentials: None,
        };
        assert_eq!(p("oidc.example", 443, &[]), Ok(None));
        assert_eq!(
            p(
                "oidc.example",
                443,
                &[("HTTPS_PROXY", "http://proxy.corp:3128")]
            ),
            Ok(Some(proxy.clone()))
        );
        assert_eq!(
            p("oidc.example", 443, &[("https_proxy", "proxy.corp:3128")]),
            Ok(Some(proxy.clone()))
        );
        assert_eq!(
            p(
                "oidc.example",
                443,
                &[("HTTPS_PROXY", "http://u%40x:p%3Aw@proxy.corp:3128/")]
            ),
            Ok(Some(Proxy {
                credentials: Some("u@x:p:w".into()),
                ..proxy.clone()
            }))
        );
        assert_eq!(
            p("oidc.example", 443, &[("HTTPS_PROXY", "http://proxy.corp")]),
            Ok(Some(Proxy {
                port: 80,
                ..proxy.clone()
            }))
        );
        assert_eq!(
            p("oidc.example", 443, &[("HTTPS_PROXY", "http://[::1]:8080")]),
            Ok(Some(Proxy {
                host: "::1".into(),
                port: 8080,
                credentials: None
            }))
        );
        let through = [("HTTPS_PROXY", "http://proxy.corp:3128")];
        for (host, port, no_proxy, direct) in [
            ("oidc.example", 443, "*", true),
            ("oidc.example", 443, "oidc.example", true),
            ("OIDC.Example", 443, "oidc.example", true),
            ("a.oidc.example", 443, ".oidc.example", true),
            ("a.oidc.example", 443, "oidc.example", true),
            ("a.oidc.example", 443, "*.oidc.example", true),
            ("xoidc.example", 443, "oidc.example", false),
            ("oidc.example", 443, "oidc.example:8443", false),
            ("oidc.example", 8443, "oidc.example:8443", true),
            ("127.0.0.1", 443, "localhost, 127.0.0.1", true),
            ("::1", 443, "[::1]", true),
            ("oidc.example", 443, "other.example,,", false),
        ] {
            let mut vars = through.to_vec();
            vars.push(("NO_PROXY", no_proxy));
            let got = p(host, port, &vars).unwrap();
            assert_eq!(got.is_none(), direct, "{host}:{port} NO_PROXY={no_proxy}");
            let mut lower = through.to_vec();
            lower.push(("no_proxy", no_proxy));
            assert_eq!(
                p(host, port, &lower).unwrap().is_none(),
                direct,
                "no_proxy={no_proxy}"
            );
        }
        assert!(p("h", 443, &[("HTTPS_PROXY", "https://proxy.corp")]).is_err());
        // The proxy's password reaches no error and no Debug output.
        for bad in [
            "https://u:PASS-MARKER-3c1@proxy.corp:3128",
            "http://u:PASS-MARKER-3c1@proxy.corp:port/x",
        ] {
            let e = p("h", 443, &[("HTTPS_PROXY", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("PASS-MARKER") && e.contains("***@proxy.corp"),
                "{e}"
            );
        }
        let ok = p(
            "h",
            443,
            &[("HTTPS_PROXY", "http://u:PASS-MARKER-3c1@proxy.corp")],
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{ok:?}").contains("PASS-MARKER"), "{ok:?}");
        assert!(p("h", 443, &[("HTTPS_PROXY", "http://proxy.corp:port")]).is_err());
        assert!(p("h", 443, &[("HTTPS_PROXY", "http://")]).is_err());
    }
}

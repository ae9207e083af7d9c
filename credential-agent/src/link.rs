//! `credential-agent setup-link`: the node's init step. Puts the agent's
//! link-local addresses (169.254.170.23/32 and fd00:ec2::23/128) on a dummy
//! interface over netlink, so the DaemonSet's init container needs
//! NET_ADMIN only. Idempotent; an IPv6 failure is logged, not fatal.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct LinkReport {
    pub interface: String,
    pub created: bool,
    /// Addresses now on the interface.
    pub added: Vec<IpAddr>,
    /// Addresses that could not be added, with the reason.
    pub failed: Vec<(IpAddr, String)>,
}

const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

fn netlink_code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such interface.
        Err(e) if netlink_code(&e) == Some(19) => Ok(None),
        Err(e) => Err(Error::Link(format!("cannot look up interface {name}: {e}"))),
    }
}

/// Creates `interface` (a dummy link) unless it exists, brings it up and
/// adds each address. IPv4 failures are errors; IPv6 failures are reported
/// in `failed` (nodes without IPv6 still get the IPv4 address).
impl std::fmt::Display for LinkReport {
    /// `pod-identity0: created, addresses 169.254.170.23, fd00:ec2::23`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let added: Vec<String> = self.added.iter().map(|a| a.to_string()).collect();
        write!(
            f,
            "{}: {} {}",
            self.interface,
            if self.created { "created," } else { "exists," },
            if added.is_empty() {
                "no addresses".to_string()
            } else {
                format!("addresses {}", added.join(", "))
            }
        )
    }
}

pub async fn setup(interface: &str, addresses: &[IpAddr]) -> Result<LinkReport> {
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
        return Err(Error::Config(format!(
            "interface name {interface:?} is not valid (1-15 characters, no '/' or spaces)"
        )));
    }
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| Error::Link(format!("cannot open a netlink socket: {e}")))?;
    let conn_task = tokio::spawn(conn);
    let result = setup_with(&handle, interface, addresses).await;
    conn_task.abort();
    result
}

async fn setup_with(handle: &Handle, interface: &str, addresses: &[IpAddr]) -> Result<LinkReport> {
    let mut created = false;
    let index = match link_index(handle, interface).await? {
        Some(i) => i,
        None => {
            match handle
                .link()
                .add(LinkDummy::new(interface).build())
                .execute()
                .await
            {
                Ok(()) => created = true,
                Err(e) if netlink_code(&e) == Some(EEXIST) => {}
                Err(e) if netlink_code(&e) == Some(EOPNOTSUPP) => {
                    return Err(Error::Link(format!(
                        "cannot create dummy interface {interface}: this kernel has no dummy \
                         link support (load the 'dummy' module), or pass --interface with an \
                         existing interface of the node (in the Helm chart: agent.setupLink.interface)"
                    )))
                }
                Err(e) => {
                    return Err(Error::Link(format!(
                        "cannot create dummy interface {interface}: {e} (the init container \
                         needs the NET_ADMIN capability)"
                    )))
                }
            }
            link_index(handle, interface).await?.ok_or_else(|| {
                Error::Link(format!("interface {interface} vanished after creation"))
            })?
        }
    };
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::Link(format!("cannot bring {interface} up: {e}")))?;
    let mut report = LinkReport {
        interface: interface.to_string(),
        created,
        added: Vec::new(),
        failed: Vec::new(),
    };
    for addr in addresses {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        let res = handle
            .address()
            .add(index, *addr, prefix)
            .replace()
            .execute()
            .await;
        match res {
            Ok(()) => report.added.push(*addr),
            Err(e) if netlink_code(&e) == Some(EEXIST) => report.added.push(*addr),
            Err(e) if addr.is_ipv6() => {
                tracing::warn!(address = %addr, error = %e, "cannot add the IPv6 address; continuing without it");
                report.failed.push((*addr, e.to_string()));
            }
            Err(e) => {
                return Err(Error::Link(format!(
                    "cannot add {addr}/{prefix} to {interface}: {e}"
                )))
            }
        }
    }
    Ok(report)
}

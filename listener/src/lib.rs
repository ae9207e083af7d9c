//! The plain-HTTP serving loop of every listener both binaries run without
//! TLS (the agent's credentials, health and metrics listeners, the webhook's
//! metrics port). A client, or a hostile pod on the node, cannot hold it
//! open or exhaust it:
//!
//! - a connection must send a complete request head within
//!   `header_read_timeout`, and an idle keep-alive connection waiting for its
//!   next request is closed after the same time (hyper times the wait for
//!   every request head, the first and each one after);
//! - request heads are bounded (`max_header_bytes`);
//! - at most `max_connections` connections at once, and at most
//!   `max_connections_per_peer` from one IP address (on a node each pod has
//!   its own address; hostNetwork pods share the node's). A connection over
//!   a cap is closed at once, before anything is read, and reported to
//!   `on_reject`.
//!
//! HTTP/1.1 only: the container credentials protocol and Prometheus scrapes
//! use it. There is one timeout for both waits: the idle timeout of a
//! keep-alive connection is its header-read timeout.
//!
//! [`daemon`] holds the start-up and shutdown helpers both binaries share.

pub mod clock;
pub mod daemon;
#[cfg(feature = "tls")]
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// `max_connections` were open.
    Total,
    /// `max_connections_per_peer` were open from this address.
    PerPeer,
}

impl Rejected {
    /// Every kind, for metrics that export each label value from the start.
    pub const ALL: [Rejected; 2] = [Rejected::Total, Rejected::PerPeer];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Total => "max_connections",
            Rejected::PerPeer => "max_connections_per_peer",
        }
    }
}

/// Called for every connection closed at once.
pub type OnReject = Arc<dyn Fn(Rejected) + Send + Sync>;

/// Open connections, in all and by peer address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// The connection caps of one listener, for a serving loop of its own
/// ([`serve`]) or another's (the webhook's TLS listener admits each
/// accepted connection through it).
#[derive(Clone)]
pub struct Limiter {
    counts: Arc<Mutex<Counts>>,
    limits: Limits,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            counts: Arc::default(),
            limits,
        }
    }

    /// Admits a connection from `peer`, or says which cap it is over. The
    /// slot is given back when the returned [`Slot`] is dropped.
    pub fn admit(&self, peer: IpAddr) -> Result<Slot, Rejected> {
        admit(&self.counts, peer, &self.limits)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection; gives its slot back when dropped.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, peer: IpAddr, limits: &Limits) -> Result<Slot, Rejected> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if c.total >= limits.max_connections {
        return Err(Rejected::Total);
    }
    let n = c.by_peer.entry(peer).or_insert(0);
    if *n >= limits.max_connections_per_peer {
        return Err(Rejected::PerPeer);
    }
    *n += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        peer,
    })
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then stops accepting, lets in-flight requests finish and returns when
/// every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    on_reject: OnReject,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limiter = Limiter::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
            // Reap finished connection tasks as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match limiter.admit(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                drop(stream);
                on_reject(why);
                continue;
            }
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::pin!(conn);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;

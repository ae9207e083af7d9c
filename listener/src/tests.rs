//! Each limit against the client it stops, on real loopback sockets
//! (127.0.0.1 and 127.0.0.2 as two peers), under paused tokio time.

use std::net::SocketAddr;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::*;

struct Server {
    addr: SocketAddr,
    rejected: Arc<Mutex<Vec<Rejected>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn server(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let r = rejected.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        app,
        limits,
        Arc::new(move |why| r.lock().unwrap().push(why)),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        rejected,
        stop: Some(tx),
        task,
    }
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{local}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends one request and reads the response head; the connection stays open.
async fn request(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// True when the server closed the connection (EOF or reset).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf).await, Ok(0) | Err(_))
}

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 8,
        max_connections_per_peer: 3,
        max_header_bytes: 8192,
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    let srv = server(limits()).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    let mut partial = TcpStream::connect(srv.addr).await.unwrap();
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed(&mut silent).await);
    assert!(closed(&mut partial).await);
    // At the timeout (virtual time is exact), not before, not at hyper's 30 s.
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed() {
    let srv = server(limits()).await;
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    assert!(request(&mut c).await.starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    assert!(closed(&mut c).await);
    let idle = idle_since.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&idle),
        "{idle:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_oversized_head_is_refused() {
    let srv = server(limits()).await;
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = c.write_all(big.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = c.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || head.starts_with("HTTP/1.1 431"), "{head}");
}

#[tokio::test(start_paused = true)]
async fn one_peer_cannot_take_every_connection() {
    let srv = server(limits()).await;
    // The attacker holds its share of half-open connections...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", srv.addr).await);
    }
    // ...and every further one is closed at once, before its timeout.
    let before = Instant::now();
    for _ in 0..20 {
        let mut extra = connect_from("127.0.0.1", srv.addr).await;
        assert!(closed(&mut extra).await);
    }
    assert!(before.elapsed() < Duration::from_secs(5), "closed at once");
    // Another peer is served meanwhile.
    let mut other = connect_from("127.0.0.2", srv.addr).await;
    assert!(request(&mut other).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        srv.rejected.lock().unwrap().as_slice(),
        [Rejected::PerPeer; 20]
    );
    // Once the attacker's connections end, it may connect again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut again = connect_from("127.0.0.1", srv.addr).await;
    assert!(request(&mut again).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(start_paused = true)]
async fn the_total_is_capped() {
    let srv = server(Limits {
        max_connections: 4,
        max_connections_per_peer: 100,
        ..limits()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(connect_from(&format!("127.0.0.{}", i + 1), srv.addr).await);
    }
    let mut over = connect_from("127.0.0.9", srv.addr).await;
    assert!(closed(&mut over).await);
    assert_eq!(srv.rejected.lock().unwrap().as_slice(), [Rejected::Total]);
    assert!(request(&mut held[0]).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_and_returns() {
    let mut srv = server(limits()).await;
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    assert!(request(&mut c).await.starts_with("HTTP/1.1 200"));
    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), srv.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(closed(&mut c).await);
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "no longer listening"
    );
}

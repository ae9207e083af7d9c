//! Connection caps on the HTTPS port: each accepted TCP connection is
//! admitted through the shared `crate::Limiter` (a global cap and a cap
//! per peer address) before its TLS handshake; one over a cap is closed at
//! once and counted. The handshake itself is bounded by axum-server's
//! timeout, and request heads by hyper's header-read timeout (set in
//! `mod.rs`). An admitted connection on which no byte moves either way for
//! `idle_timeout` is closed, so an HTTP/2 connection (which hyper's
//! header-read timeout does not cover) cannot sit open forever.

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::clock::Clock;

#[derive(Clone)]
pub struct LimitAcceptor {
    pub limiter: crate::Limiter,
    pub on_reject: crate::OnReject,
    pub idle_timeout: Duration,
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Counted;
    type Service = S;
    type Future = Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return ready(Err(e)),
        };
        match self.limiter.admit(peer) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                ready(Ok((Counted::new(stream, slot, self.idle_timeout), service)))
            }
            Err(why) => {
                (self.on_reject)(why);
                ready(Err(io::Error::other(why.as_str())))
            }
        }
    }
}

/// An admitted connection; its slot is given back when it closes. Closed
/// with `TimedOut` once no byte has moved for `idle`.
pub struct Counted<S = TcpStream> {
    stream: S,
    _slot: Option<crate::Slot>,
    idle: Duration,
    /// When a byte last moved. The timer is only re-armed when it fires, so
    /// traffic costs a clock read, not a timer-wheel update, per read/write.
    last: tokio::time::Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Counted<S> {
    fn new(stream: S, slot: crate::Slot, idle: Duration) -> Self {
        Self::with_idle(stream, Some(slot), idle)
    }

    /// Wraps any stream (tests use an in-memory duplex).
    pub fn with_idle(stream: S, slot: Option<crate::Slot>, idle: Duration) -> Self {
        let now = Clock::system().now();
        Counted {
            stream,
            _slot: slot,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    fn touch(&mut self) {
        self.last = Clock::system().now();
    }

    /// A write's outcome: bytes written count as traffic; `Pending` is
    /// checked against the idle deadline.
    fn wrote(
        &mut self,
        polled: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.idle_or_pending(cx),
            other => other,
        }
    }

    /// `Pending` from the stream: still pending, unless the connection has
    /// been idle too long.
    fn idle_or_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let deadline = self.last + self.idle;
                    if Clock::system().now() >= deadline {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connection idle for longer than --idle-timeout",
                        )));
                    }
                    // Traffic since the timer was armed: wait for the rest.
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.idle_or_pending(cx),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(polled, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_traffic_keeps_it_open() {
        let (client, server) = tokio::io::duplex(1024);
        let mut conn = Counted::with_idle(server, None, Duration::from_secs(60));
        let mut client = client;
        // Traffic every 50 s keeps it open past several idle periods.
        let mut buf = [0u8; 8];
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            client.write_all(b"ping").await.unwrap();
            let n = conn.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ping");
        }
        // Then silence: the read fails with TimedOut after the idle period.
        let started = Clock::system().now();
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Clock::system().now() - started, Duration::from_secs(60));
    }
}

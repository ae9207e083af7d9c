//! Connection caps on the HTTPS port: each accepted TCP connection is
//! admitted through the shared `listener::Limiter` (a global cap and a cap
//! per peer address) before its TLS handshake; one over a cap is closed at
//! once and counted. The handshake itself is bounded by axum-server's
//! timeout, and request heads by hyper's header-read timeout (set in
//! `mod.rs`).

use std::future::{ready, Ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct LimitAcceptor {
    pub limiter: listener::Limiter,
    pub on_reject: listener::OnReject,
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
                ready(Ok((
                    Counted {
                        stream,
                        _slot: slot,
                    },
                    service,
                )))
            }
            Err(why) => {
                (self.on_reject)(why);
                ready(Err(io::Error::other(why.as_str())))
            }
        }
    }
}

/// An admitted connection; its slot is given back when it closes.
pub struct Counted {
    stream: TcpStream,
    _slot: listener::Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
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
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

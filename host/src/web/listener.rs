//! One accept loop for every HTTP listener (panel, redirect, ESP-Miner
//! surface): a cap on open connections per client and in all, a deadline
//! for the TLS handshake and for each request's headers, the client's
//! address for the handlers, and a graceful stop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::limits::ConnLimiter;
use crate::ratelimit::{LogDecision, LogLimiter};

/// A client must finish the TLS handshake, and send each request's
/// headers, within this time; idle keep-alive sockets close after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections (live event streams) get to finish at stop.
const DRAIN: Duration = Duration::from_secs(2);

/// Whether the connection came over TLS; handlers read it to mark
/// cookies `Secure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Over TLS.
    pub tls: bool,
}

/// How one listener serves.
#[derive(Clone)]
pub struct ServeOptions {
    /// Shared caps on open connections.
    pub limiter: ConnLimiter,
    /// TLS configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Listener name for logs ("panel", "redirect", …).
    pub name: &'static str,
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let mut refused_log = LogLimiter::new(Duration::from_secs(60), 5);
        let mut accept_log = LogLimiter::new(Duration::from_secs(60), 5);
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        if let LogDecision::Write { suppressed } = accept_log.check(std::time::Instant::now()) {
                            warn!(listener = opts.name, suppressed, "accept failed: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            };
            let permit = match opts.limiter.try_acquire(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    if let LogDecision::Write { suppressed } =
                        refused_log.check(std::time::Instant::now())
                    {
                        warn!(listener = opts.name, %peer, suppressed, "connection refused: {why}");
                    }
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let tls = acceptor.is_some();
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req.extensions_mut().insert(Transport { tls });
                        let router = router.clone();
                        async move {
                            Ok::<_, Infallible>(
                                router
                                    .oneshot(req.map(axum::body::Body::new))
                                    .await
                                    .unwrap_or_else(|never| match never {}),
                            )
                        }
                    },
                );
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(64 * 1024);
                let result = match acceptor {
                    Some(acceptor) => {
                        let tls_stream =
                            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = http.serve_connection(TokioIo::new(tls_stream), service);
                        watcher.watch(conn).await
                    }
                    None => {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn).await
                    }
                };
                if let Err(e) = result {
                    debug!(%peer, "connection ended: {e}");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    })
}

/// Binds `addr` and serves; returns the bound address.
pub async fn bind_and_serve(
    addr: SocketAddr,
    router: Router,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, serve(listener, router, opts, shutdown)))
}

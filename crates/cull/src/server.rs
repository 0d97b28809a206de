//! The one way cull serves HTTP, for `cull run`'s `[http]` server and for `cull serve`.
//!
//! `axum::serve` puts no bound on a client: a connection that sends half a request
//! head, or nothing, or a body that never ends, is kept open for as long as the client
//! likes, and connections are accepted without limit, so a few hundred idle sockets
//! starve the clients that have something to say. This server therefore:
//!
//! * closes a connection that has not sent a complete request head within
//!   `header_read_timeout_secs` — from the moment it connects, or from the end of the
//!   previous response on a kept-alive connection, so the same bound is the idle
//!   (keep-alive) timeout;
//! * fails the body of a request that has not fully arrived `body_read_timeout_secs`
//!   after its head (a deadline for the whole body, not between two pieces of it, so
//!   that a trickle of bytes cannot hold a connection either); the webhook answers it
//!   `408`;
//! * serves at most `max_connections` connections at once, and answers a connection
//!   beyond that with an immediate `503` and `Retry-After` rather than keep it waiting;
//! * on shutdown stops accepting, lets the requests in progress finish and closes idle
//!   connections (`GracefulShutdown`).
//!
//! Bodies are limited per route where they are read: the webhook by its source's
//! `max_body_bytes`, the API by [`crate::api::MAX_BODY_BYTES`]; metrics and health
//! read none.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::Router;
use cull_model::config::{Checks, Invalid};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service as _;

/// The default of `header_read_timeout_secs`.
const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// The default of `body_read_timeout_secs`.
const BODY_READ_TIMEOUT_SECS: u64 = 30;
/// The default of `max_connections`.
const MAX_CONNECTIONS: usize = 512;

/// What a connection over `max_connections` is answered, without reading its request.
const FULL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\nconnection: close\r\ncontent-length: 61\r\n\r\n\
{\"error\":\"too many connections to this server; retry shortly\"}";

/// How long a refused connection gets to take its `503` before it is dropped.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Where an HTTP server listens and what it allows its clients: the `[http]` section of
/// a pipeline file, and the flags of `cull serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9470")]
    pub listen: SocketAddr,
    /// Seconds a connection may take to send a complete request head, counted from when
    /// it connects or finished its previous request: also the keep-alive idle timeout.
    #[arg(long, default_value_t = HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request's whole body may take to arrive after its head.
    #[arg(long, default_value_t = BODY_READ_TIMEOUT_SECS)]
    pub body_read_timeout_secs: u64,
    /// Connections served at once; one more is answered 503 at once.
    #[arg(long, default_value_t = MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            header_read_timeout_secs: HEADER_READ_TIMEOUT_SECS,
            body_read_timeout_secs: BODY_READ_TIMEOUT_SECS,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

impl Http {
    /// Returns every setting that makes no sense: a zero timeout would refuse every
    /// request, and a zero cap every connection.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.positive("header_read_timeout_secs", self.header_read_timeout_secs);
        checks.positive("body_read_timeout_secs", self.body_read_timeout_secs);
        checks.check((1..=Semaphore::MAX_PERMITS).contains(&self.max_connections), "max_connections", || {
            format!("must be between 1 and {}", Semaphore::MAX_PERMITS)
        });
        checks.finish()
    }
}

/// A bound, not yet serving, listener.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Binds `listen`, naming `setting` (`http.listen`, `--listen`) when it cannot; port 0
/// picks a free port, which [`Listener::local_addr`] returns.
pub async fn bind(listen: SocketAddr, setting: &str) -> anyhow::Result<Listener> {
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} ({setting})"))?;
    let local_addr =
        listener.local_addr().with_context(|| format!("cannot read the address bound for {listen}"))?;
    Ok(Listener { listener, local_addr })
}

impl Listener {
    /// Returns the address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `app` within the limits of `config` until `shutdown` completes, then lets
    /// the requests in progress finish.
    pub async fn serve(self, app: Router, config: &Http, shutdown: impl Future<Output = ()>) {
        let body_timeout = Duration::from_secs(config.body_read_timeout_secs);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs));
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let saturated = AtomicBool::new(false);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, typically: wait for some to be freed
                        // rather than spin.
                        tracing::warn!(listen = %self.local_addr, %error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                if !saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listen = %self.local_addr,
                        max_connections = config.max_connections,
                        "the server is full: new connections are answered 503 until some close"
                    );
                }
                tokio::spawn(refuse(stream));
                continue;
            };
            saturated.store(false, Ordering::Relaxed);
            let app = app.clone();
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    app.clone().call(request.map(|body| Body::new(DeadlineBody::new(body, body_timeout))))
                });
            let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(self.listener);
        graceful.shutdown().await;
    }
}

/// Answers a connection over the cap `503` and closes it, reading what the client sent
/// meanwhile (briefly) so that the close does not reset the answer away.
async fn refuse(mut stream: TcpStream) {
    let linger = async {
        stream.write_all(FULL_RESPONSE).await?;
        stream.shutdown().await?;
        let mut discard = [0; 4096];
        while stream.read(&mut discard).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
}

/// A request body that fails with [`io::ErrorKind::TimedOut`] once its deadline has
/// passed before it ended.
#[derive(Debug)]
struct DeadlineBody<B> {
    body: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> DeadlineBody<B> {
    fn new(body: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody { body, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let message = format!(
                    "the request body did not arrive within {} s (http.body_read_timeout_secs)",
                    self.timeout.as_secs()
                );
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, message).into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_are_named() {
        assert_eq!(Http::default().validate(), []);
        let zeros = Http {
            header_read_timeout_secs: 0,
            body_read_timeout_secs: 0,
            max_connections: 0,
            ..Http::default()
        };
        let keys: Vec<String> = zeros.validate().into_iter().map(|problem| problem.key).collect();
        assert_eq!(keys, ["header_read_timeout_secs", "body_read_timeout_secs", "max_connections"]);
    }
}

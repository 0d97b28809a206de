//! The HTTP server of a `cull run` process: `/metrics`, `/healthz` and `/readyz`.
//!
//! Liveness and readiness are separate because they answer different questions for an
//! orchestrator: `/healthz` says the process is running (restart it if not), `/readyz`
//! says it can do its job now (route work to it, or count it as up, only then). The
//! server starts before the pipeline is built, since compiling a large rule pack,
//! opening the index or reading the ticket state back can take minutes: a liveness
//! probe that got no answer meanwhile would restart the process in a loop, and an SRE
//! would see a dead port instead of what the process is doing. `/readyz` names the
//! step until then. Readiness is read from [`Health`], which the pipeline sets, so a
//! probe never waits on the pipeline.
//!
//! Binding and serving are split so that a caller (and the tests) can bind port 0 and learn
//! the port before serving. The server itself, with its timeouts and connection cap, is
//! [`crate::server`]'s.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt as _;

use cull_runtime::Metrics;

use crate::server::{self, Http, Listener};

/// The content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the pipeline tells the readiness probe: the step it is starting with, until
/// it is ready, and whether it is stopping.
#[derive(Debug)]
pub struct Health {
    /// Why the process is not ready yet; `None` once it is.
    not_ready: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health { not_ready: Mutex::new(Some("starting".to_string())), stopping: AtomicBool::new(false) }
    }
}

impl Health {
    /// Records the start-up `step` in progress (`compiling rules`, `restoring ticket
    /// state`): the process is not ready, and `/readyz` says why.
    pub fn starting(&self, step: &str) {
        *self.lock() = Some(format!("starting: {step}"));
    }

    /// Records that the brokers did not answer at start (`error` says how): the
    /// process waits for them.
    pub fn broker_unreachable(&self, error: &dyn std::fmt::Display) {
        *self.lock() = Some(format!("broker unreachable: {error}"));
    }

    /// Records that the pipeline is built and every stage reads its input.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// Records that the process is stopping (draining): an orchestrator should send
    /// no more work.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Returns `Ok` when the process is ready, or the one-line reason it is not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("stopping".to_string());
        }
        self.lock().clone().map_or(Ok(()), Err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The reason is a plain string, whole after any panic: a poisoned lock holds a
        // valid value.
        self.not_ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Routes that exist only once the pipeline is built (the webhook sources, the API),
/// served beside the probes by a server that started before them. Until they are set
/// a request to any other path is answered `503` with `Retry-After`: a webhook sender
/// retries, as it would for a process that is stopping.
#[derive(Debug, Clone, Default)]
pub struct LateRoutes(Arc<OnceLock<Router>>);

impl LateRoutes {
    /// Serves `routes` from now on; a second call changes nothing.
    pub fn set(&self, routes: Router) {
        let _ = self.0.set(routes);
    }
}

/// A bound, not yet serving, HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    listener: Listener,
    config: Http,
}

/// Binds `config.listen`; port 0 picks a free port, which [`HttpServer::local_addr`]
/// returns.
pub async fn bind(config: &Http) -> anyhow::Result<HttpServer> {
    Ok(HttpServer { listener: server::bind(config.listen, "http.listen").await?, config: config.clone() })
}

#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    late: LateRoutes,
}

impl HttpServer {
    /// Returns the address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves the endpoints, and the routes of `late` once they are set, until
    /// `shutdown` completes, then lets open requests finish.
    pub async fn serve(
        self,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        late: LateRoutes,
        shutdown: impl Future<Output = ()>,
    ) {
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz_handler))
            .fallback(late_handler)
            .with_state(AppState { metrics, health, late });
        self.listener.serve(app, &self.config, shutdown).await;
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], state.metrics.render())
}

async fn readyz_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn late_handler(State(state): State<AppState>, request: Request) -> Response {
    match state.late.0.get() {
        Some(routes) => routes.clone().oneshot(request).await.into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "starting\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cull_bus::dead_letter::Reason;
    use cull_runtime::metrics::{MatchStats, Outcome};
    use std::collections::BTreeMap;
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    /// A response as the tests need it.
    #[derive(Debug)]
    struct Response {
        status: u16,
        head: String,
        body: String,
    }

    /// Sends `GET path` over a plain socket: a client independent of the server's stack.
    async fn get(addr: SocketAddr, path: &str) -> Response {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut raw = String::new();
            stream.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            Response { status, head: head.to_ascii_lowercase(), body: body.to_string() }
        })
        .await
        .unwrap()
    }

    /// The defaults, on a free loopback port.
    fn any_port() -> Http {
        Http { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Http::default() }
    }

    /// Starts a server on a free loopback port; dropping the sender shuts it down.
    async fn start(
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        late: LateRoutes,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let server = bind(&any_port()).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(metrics, health, late, async {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_names_the_start_up_step_until_ready_then_stopping() {
        let health = Arc::new(Health::default());
        let (addr, stop, task) = start(Arc::new(Metrics::new()), health.clone(), LateRoutes::default()).await;

        let live = get(addr, "/healthz").await;
        assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));

        let response = get(addr, "/readyz").await;
        assert_eq!((response.status, response.body.as_str()), (503, "not ready: starting\n"));
        health.starting("compiling rules");
        let response = get(addr, "/readyz").await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (503, "not ready: starting: compiling rules\n")
        );
        health.broker_unreachable(&"Local: Timed out");
        let response = get(addr, "/readyz").await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (503, "not ready: broker unreachable: Local: Timed out\n")
        );
        health.set_ready();
        let response = get(addr, "/readyz").await;
        assert_eq!((response.status, response.body.as_str()), (200, "ready\n"));
        health.set_stopping();
        let response = get(addr, "/readyz").await;
        assert_eq!((response.status, response.body.as_str()), (503, "not ready: stopping\n"));
        assert_eq!(get(addr, "/healthz").await.status, 200);

        drop(stop);
        task.await.unwrap();
    }

    /// The webhook and API routes come once the pipeline is built: before, a request
    /// to them is told to come back; after, unknown paths are 404 as usual.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_routes_answer_503_until_set() {
        let late = LateRoutes::default();
        let (addr, stop, task) =
            start(Arc::new(Metrics::new()), Arc::new(Health::default()), late.clone()).await;

        let early = get(addr, "/ingest/hook").await;
        assert_eq!((early.status, early.body.as_str()), (503, "starting\n"));
        assert!(early.head.contains("retry-after: 1"), "{}", early.head);
        late.set(Router::new().route("/ingest/hook", axum::routing::get(|| async { "hooked\n" })));
        let served = get(addr, "/ingest/hook").await;
        assert_eq!((served.status, served.body.as_str()), (200, "hooked\n"));
        assert_eq!(get(addr, "/nope").await.status, 404);
        assert_eq!(get(addr, "/healthz").await.status, 200);

        drop(stop);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_stops_on_shutdown() {
        let metrics = Arc::new(Metrics::new());
        bind(&any_port())
            .await
            .unwrap()
            .serve(metrics, Arc::new(Health::default()), LateRoutes::default(), async {})
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bind_names_the_setting_when_the_port_is_taken() {
        let taken = bind(&any_port()).await.unwrap();
        let message =
            format!("{:#}", bind(&Http { listen: taken.local_addr(), ..Http::default() }).await.unwrap_err());
        assert!(
            message.contains("http.listen") && message.contains(&taken.local_addr().to_string()),
            "{message}"
        );
    }

    /// The live `/metrics` output passes `promtool check metrics` (the Prometheus
    /// project's own linter), with every kind of series populated.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_metrics_pass_promtool() {
        let metrics = Arc::new(Metrics::new());
        let mut stats = MatchStats::default();
        stats.record(Outcome::Matched);
        stats.record(Outcome::Unmatched);
        stats.record(Outcome::DeadLetter);
        metrics.record_matches(&stats);
        metrics.register_stage("match");
        metrics.record_batch("match", 3, Duration::from_millis(12));
        metrics
            .record_tickets(&BTreeMap::from([(("publisher-care".to_string(), cull_model::Priority::P2), 1)]));
        metrics.record_dead_letters("match", Reason::Oversized, 1);
        metrics.record_dead_letters(cull_runtime::metrics::INGEST, Reason::Schema, 1);
        metrics.record_panic("match");
        cull_ingest::Observer::delivered(metrics.as_ref(), "demo", 3);
        metrics.set_consumer_lag("cull-matcher", "cull.mentions", 2, 17);
        metrics.rules_reloaded(4);
        let (addr, stop, task) = start(metrics, Arc::new(Health::default()), LateRoutes::default()).await;
        let response = get(addr, "/metrics").await;
        drop(stop);
        task.await.unwrap();

        assert_eq!(response.status, 200);
        assert!(response.head.contains("content-type: text/plain; version=0.0.4"), "{}", response.head);
        assert!(response
            .body
            .contains(r#"cull_tickets_emitted_total{priority="P2",queue="publisher-care"} 1"#));

        let mut promtool = match std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot run promtool ({error}): install the Debian package `prometheus` \
                 (scripts/test.sh installs it)"
            ),
        };
        promtool.stdin.take().unwrap().write_all(response.body.as_bytes()).unwrap();
        let output = promtool.wait_with_output().unwrap();
        let report =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            output.status.success() && report.trim().is_empty(),
            "promtool check metrics: {report}\n{}",
            response.body
        );
    }
}

//! Webhook deliveries per second next to the ceiling of the receiver they go to, in
//! one run:
//!
//! * the receiver: an HTTP server on loopback that verifies every request's
//!   Standard Webhooks signature (HMAC-SHA256 over `id.timestamp.body`) and answers
//!   `200`, as a real receiver does before it takes a ticket;
//! * `receiver_ceiling`: [`CONCURRENCY`] connections posting pre-signed requests as
//!   fast as the receiver answers: no signing, no envelope, no retry bookkeeping, so
//!   the most deliveries/s this receiver takes on this machine;
//! * `webhook_sink`: the alert sink delivering batches of [`BATCH`] tickets (real
//!   mentions of `../shared/data`) with `concurrency = CONCURRENCY`, as the alert stage
//!   does: an envelope and a signature per try, the breaker's bookkeeping, the
//!   outcome of each.
//!
//! Both share one 2-thread runtime with the receiver, so they compete for the same
//! cores. Run with `cargo bench -p cull --bench alerts -- --warm-up-time 1
//! --measurement-time 5`; the last line gives both rates and their ratio.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "timing.rs"]
mod timing;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use criterion::Throughput;
use cull_alert::webhook::{message_id, Signer};
use cull_alert::{AlertConfig, AlertSink, Context, NoObserver, Outcome, Stop};
use cull_model::{Mention, Ticket};
use time::OffsetDateTime;

use timing::Timing;

/// Tickets per delivered batch (the alert stage's batches are up to 1024).
const BATCH: usize = 512;
/// Deliveries in flight, for the sink and for the ceiling alike.
const CONCURRENCY: usize = 8;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Serves the receiver on loopback; returns its URL.
async fn receiver(signer: Arc<Signer>) -> String {
    let verify = move |headers: HeaderMap, body: axum::body::Bytes| {
        let signer = Arc::clone(&signer);
        async move {
            let header =
                |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let (id, timestamp, signature) =
                (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
            let Ok(timestamp) = timestamp.parse::<i64>() else { return StatusCode::BAD_REQUEST };
            let fresh = (OffsetDateTime::now_utc().unix_timestamp() - timestamp).abs() <= 300;
            if fresh && signer.sign(&id, timestamp, &body) == signature {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(verify));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{address}/hook")
}

/// Returns `count` tickets of real mentions, as the ticketing stage makes them.
fn tickets(mentions: &[Mention]) -> Vec<Ticket> {
    mentions
        .iter()
        .enumerate()
        .map(|(i, mention)| {
            let snippet: String = mention.text.chars().take(200).collect();
            serde_json::from_value(serde_json::json!({
                "schema": "cull.ticket/v1",
                "ticket_id": format!("t-{i:08}"),
                "revision": 1,
                "created_at": "2026-12-01T10:00:00Z",
                "queue": "social-care",
                "priority": "P2",
                "priority_score": 55,
                "sla_due_at": "2026-12-01T11:00:00Z",
                "rule": {"id": "brand", "name": "Brand", "version": "r1"},
                "mention": mention,
                "spans": [{"field": "text", "start": 0, "end": 1}],
                "snippet": snippet,
            }))
            .expect("a ticket")
        })
        .collect()
}

/// A request signed once, for the ceiling.
struct Presigned {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

/// Posts every ticket's pre-signed body, `CONCURRENCY` at a time; returns the count.
async fn blast(client: &reqwest::Client, url: &str, requests: &Arc<Vec<Presigned>>) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..CONCURRENCY {
        let (client, url, requests) = (client.clone(), url.to_string(), Arc::clone(requests));
        tasks.spawn(async move {
            for Presigned { id, timestamp, signature, body } in
                requests.iter().skip(lane).step_by(CONCURRENCY)
            {
                let response = client
                    .post(&url)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the receiver answers");
                assert_eq!(response.status(), 200);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    requests.len()
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let signer = Arc::new(Signer::new(SECRET).expect("secret"));
    let url = runtime.block_on(receiver(Arc::clone(&signer)));
    let tickets = tickets(&corpus::real_mentions(BATCH / 5 + 1)[..BATCH]);

    let config: AlertConfig = toml::from_str(&format!(
        "name = 'bench'\nkind = 'webhook'\nurl = '{url}'\nsecret_env = 'BENCH_SECRET'\nconcurrency = {CONCURRENCY}\n"
    ))
    .expect("config");
    let env = |name: &str| (name == "BENCH_SECRET").then(|| SECRET.to_string());
    let context = Context { sink: "bench".into(), observer: Arc::new(NoObserver), stop: Stop::never() };
    let mut sink = AlertSink::open(0, &config, &env, context).expect("sink");

    let client = reqwest::Client::new();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let presigned: Arc<Vec<Presigned>> = Arc::new(
        tickets
            .iter()
            .map(|ticket| {
                let (id, body) = (message_id(ticket), cull_alert::webhook::body(ticket));
                let signature = signer.sign(&id, now, &body);
                Presigned { id, timestamp: now, signature, body }
            })
            .collect(),
    );

    let mut criterion = timing::criterion();
    let mut group = criterion.benchmark_group("alerts");
    group.throughput(Throughput::Elements(BATCH as u64));
    let (mut ceiling, mut delivered) = (Timing::default(), Timing::default());
    group.bench_function("receiver_ceiling", |b| {
        b.iter_custom(|iters| ceiling.measure(iters, || runtime.block_on(blast(&client, &url, &presigned))))
    });
    group.bench_function("webhook_sink", |b| {
        b.iter_custom(|iters| {
            delivered.measure(iters, || {
                let outcomes =
                    runtime.block_on(sink.deliver(&tickets, OffsetDateTime::now_utc())).expect("no stop");
                assert!(outcomes.iter().all(|o| *o == Outcome::Delivered), "every ticket delivered");
                outcomes.len()
            })
        })
    });
    group.finish();
    criterion.final_summary();
    if let (Some(ceiling), Some(delivered)) = (ceiling.per_second(BATCH), delivered.per_second(BATCH)) {
        println!(
            "\nreceiver ceiling: {ceiling:.0} requests/s; webhook sink: {delivered:.0} deliveries/s; ratio {:.2} ({CONCURRENCY} in flight)",
            delivered / ceiling
        );
    }
}

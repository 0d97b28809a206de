//! The alert stage: the tickets of the ticket topics delivered by one alert sink
//! (`cull_alert`) to a webhook, a chat or a mailbox.
//!
//! Each `[[sink.alert]]` entry is its own stage in its own consumer group, so an
//! endpoint that is down holds back only its own sink's offsets while the others
//! go on. The sink is async (HTTP, SMTP) and the stage is sync, so the stage drives
//! it on the process's tokio runtime from the blocking thread the runner calls it on.
//!
//! Nothing read is lost: a batch's offsets are committed only after every ticket in
//! it was delivered, held durably (a digest, a roll-up), or dead-lettered with the
//! ticket's bytes; a run that stops mid-retry fails the stage before its offsets
//! move, so the next start delivers the ticket again under the same `webhook-id`.

use std::sync::Arc;

use cull_alert::{AlertSink, Outcome};
use cull_bus::dead_letter::Reason;
use cull_bus::Record;
use cull_model::Ticket;
use time::OffsetDateTime;

use crate::stage::{Output, Stage, StageError};

/// Delivers the tickets it reads through one alert sink.
#[derive(Debug)]
pub struct AlertStage {
    name: String,
    sink: AlertSink,
    runtime: tokio::runtime::Handle,
}

impl AlertStage {
    /// Returns the stage `name` (`sink.alert.<name>`) delivering through `sink` on
    /// `runtime`, the process's tokio runtime.
    pub fn new(name: String, sink: AlertSink, runtime: tokio::runtime::Handle) -> AlertStage {
        AlertStage { name, sink, runtime }
    }
}

impl Stage for AlertStage {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let mut tickets: Vec<Ticket> = Vec::with_capacity(records.len());
        let mut sources: Vec<&Record> = Vec::with_capacity(records.len());
        for record in records {
            crate::fault::record(&self.name, record);
            match serde_json::from_slice::<Ticket>(&record.payload) {
                Ok(ticket) => {
                    tickets.push(ticket);
                    sources.push(record);
                }
                Err(error) => out.dead_letter(record, &format!("not a ticket: {error}"), Reason::Schema),
            }
        }
        if tickets.is_empty() {
            return Ok(());
        }
        let outcomes = self
            .runtime
            .block_on(self.sink.deliver(&tickets, OffsetDateTime::now_utc()))
            .map_err(|stopped| StageError::new(&self.name, stopped))?;
        for (record, outcome) in sources.into_iter().zip(outcomes) {
            if let Outcome::Failed(error) = outcome {
                tracing::error!(stage = %self.name, topic = %record.topic, offset = record.offset, %error, "an alert could not be delivered; its ticket goes to the dead-letter topic");
                out.dead_letter(record, &error, Reason::Undeliverable);
            }
        }
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<bool, StageError> {
        self.runtime
            .block_on(self.sink.tick(OffsetDateTime::now_utc()))
            .map_err(|stopped| StageError::new(&self.name, stopped))?;
        self.sink.make_durable(force).map_err(|error| StageError::new(&self.name, error))
    }
}

/// Opens the alert sinks of `configs` as stages, reading secrets from the process
/// environment; `stop` turns true when the run begins to stop.
pub fn alert_stages(
    configs: &[cull_alert::AlertConfig],
    metrics: &Arc<crate::Metrics>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<AlertStage>, cull_alert::AlertError> {
    let env = |name: &str| std::env::var(name).ok();
    let runtime = tokio::runtime::Handle::current();
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let name = config.stage_name();
            metrics.register_stage(&name);
            metrics.register_alert_sink(&config.name);
            let context = cull_alert::Context {
                sink: config.name.clone(),
                observer: Arc::clone(metrics) as Arc<dyn cull_alert::Observer>,
                stop: cull_alert::Stop::new(stop.clone()),
            };
            let sink = AlertSink::open(index, config, &env, context)?;
            Ok(AlertStage::new(name, sink, runtime.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cull_alert::{Context, NoObserver, Stop};

    use super::*;

    /// A webhook sink to a port nothing listens on, trying once.
    fn unreachable_sink(runtime: &tokio::runtime::Runtime) -> AlertStage {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config: cull_alert::AlertConfig = toml::from_str(&format!(
            "name = 'hook'\nkind = 'webhook'\nurl = 'http://127.0.0.1:{port}/h'\nsecret_env = 'S'\nmax_attempts = 1\ntimeout_secs = 2\n"
        ))
        .unwrap();
        let env = |_: &str| Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string());
        let context = Context { sink: "hook".into(), observer: Arc::new(NoObserver), stop: Stop::never() };
        let _entered = runtime.enter();
        let sink = AlertSink::open(0, &config, &env, context).unwrap();
        AlertStage::new("sink.alert.hook".into(), sink, runtime.handle().clone())
    }

    fn record(offset: i64, payload: &[u8]) -> Record {
        Record { topic: "cull.tickets".into(), offset, payload: payload.to_vec(), ..Record::default() }
    }

    #[test]
    fn a_record_that_is_no_ticket_and_an_undeliverable_ticket_are_dead_letters_with_their_bytes() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut stage = unreachable_sink(&runtime);
        let mention = cull_model::Mention::new("m1", "slack is down");
        let ticket = serde_json::json!({
            "schema": "cull.ticket/v1", "ticket_id": "t-1", "revision": 1, "created_at": "2026-12-01T10:00:00Z",
            "queue": "care", "priority": "P2", "priority_score": 50, "sla_due_at": "2026-12-01T11:00:00Z",
            "rule": {"id": "slack", "name": "Slack", "version": "v"}, "mention": mention, "spans": [],
            "snippet": "slack is down",
        });
        let ticket = serde_json::to_vec(&ticket).unwrap();
        let records = [record(0, b"{\"schema\": \"cull.ticket/v1\"}"), record(1, &ticket)];
        let out = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut out = Output::new("sink.alert.hook");
                    stage.process(&records, &mut out).unwrap();
                    out
                })
                .join()
                .unwrap()
        });
        let letters = out.dead_letters();
        assert_eq!(letters.len(), 2, "{letters:?}");
        assert_eq!(
            (letters[0].1, letters[0].0.payload.as_slice()),
            (Reason::Schema, records[0].payload.as_slice())
        );
        assert_eq!(
            (letters[1].1, letters[1].0.payload.as_slice()),
            (Reason::Undeliverable, ticket.as_slice())
        );
    }
}

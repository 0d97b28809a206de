//! E-mail over SMTP: a mail per ticket as it happens, or a digest.

use time::OffsetDateTime;

use crate::config::AlertConfig;
use crate::{AlertError, Context, Env, Outcome, Stopped};

/// Parses `text` as a mailbox (`Name <addr@host>` or `addr@host`).
pub fn parse_mailbox(text: &str) -> Result<(), String> {
    let _ = text;
    unimplemented!("the e-mail sink")
}

/// Sends mail for one entry.
#[derive(Debug)]
pub struct EmailSink {}

impl EmailSink {
    /// Opens the e-mail sink of entry `index`, reading its digest state.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<EmailSink, AlertError> {
        let _ = (index, config, env, context);
        unimplemented!("the e-mail sink")
    }

    /// Mails `tickets` (as it happens) or adds them to the digest.
    pub async fn deliver(
        &mut self,
        tickets: &[&cull_model::Ticket],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        let _ = (tickets, now);
        unimplemented!("the e-mail sink")
    }

    /// Sends the digest when it is due.
    pub async fn tick(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        let _ = now;
        unimplemented!("the e-mail sink")
    }

    /// Writes the digest state when due, or now with `force`; returns whether
    /// everything given so far is durable.
    pub fn make_durable(&mut self, force: bool) -> Result<bool, AlertError> {
        let _ = force;
        unimplemented!("the e-mail sink")
    }
}

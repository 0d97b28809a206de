//! Slack and Microsoft Teams: one chat message per ticket, under a rate cap per
//! destination, with one roll-up message for what exceeded it.

use time::OffsetDateTime;

use crate::config::AlertConfig;
use crate::{AlertError, Context, Env, Outcome, Stopped};

/// Posts Block Kit messages (Slack) or Adaptive Cards (Teams) to one destination.
#[derive(Debug)]
pub struct ChatSink {}

impl ChatSink {
    /// Opens the chat sink of entry `index`.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<ChatSink, AlertError> {
        let _ = (index, config, env, context);
        unimplemented!("the chat sink")
    }

    /// Delivers `tickets`, or holds those over the rate cap for the roll-up.
    pub async fn deliver(
        &mut self,
        tickets: &[&cull_model::Ticket],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        let _ = (tickets, now);
        unimplemented!("the chat sink")
    }

    /// Sends the roll-up of a minute that is over.
    pub async fn tick(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        let _ = now;
        unimplemented!("the chat sink")
    }

    /// Returns whether nothing is held for a roll-up.
    pub fn is_settled(&self) -> bool {
        unimplemented!("the chat sink")
    }
}

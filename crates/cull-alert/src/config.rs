//! One `[[sink.alert]]` entry of a pipeline file: where alerts go, which tickets
//! they are for, and how hard delivery tries.
//!
//! The entry is one flat table for every kind, so that an operator reads one list of
//! keys; a key that belongs to another kind is an error naming the kinds it is for,
//! rather than a setting silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cull_model::config::{is_label, Checks, Invalid};
use cull_model::{Priority, Ticket, TicketKind};
use serde::{Deserialize, Serialize};

/// One alert sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The sink's name: its stage is `sink.alert.<name>` and its consumer group
    /// `cull-alert-<name>`, so each sink reads the tickets at its own pace and an
    /// endpoint that is down holds back only its own sink.
    pub name: String,
    /// What it delivers to.
    pub kind: AlertKind,
    /// The endpoint (webhook, slack, teams): an `https://` URL, or `http://` for one
    /// on this machine. Slack and Teams URLs carry their credential: prefer `url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the endpoint URL instead of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The environment variable holding the Standard Webhooks signing secret
    /// (`whsec_` and base64), for kind = "webhook".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Alert only on tickets of these clients (every client's and the contact
    /// center's own when empty). A sink that reaches one client's people names that
    /// client here: nothing else keeps another client's tickets from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    /// Alert only on tickets of these queues (every queue when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Alert only on these priorities (`P1` … `P4`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<Priority>,
    /// Alert only on tickets of these rules (ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Alert only on these kinds of ticket (`ticket`, `incident`, `digest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<TicketKind>,
    /// Which revisions of a ticket: `all` (every one: a webhook receiver keeps the
    /// highest) or `first` (a person is told once per ticket). Default: `all` for a
    /// webhook, `first` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Revisions>,
    /// Tries per alert, the first included (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The backoff before the second try, in milliseconds (default 500); it doubles
    /// per try, with full jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// The longest backoff, in seconds (default 60), also the cap on a receiver's
    /// `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_secs: Option<u64>,
    /// How long one try may take, in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Consecutive failed tries after which the endpoint's circuit opens (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// How long an open circuit stays open before one probe, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_open_secs: Option<u64>,
    /// Deliveries in flight at once (default 8); the revisions of one ticket are
    /// always delivered in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// At most this many messages per minute to a chat destination (slack, teams;
    /// default [`DEFAULT_MAX_PER_MINUTE`]); what exceeds it is rolled up into one
    /// message when the minute is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    /// The e-mail settings, for kind = "email".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// The console's address (`https://cull.example.com`): alerts link a ticket's
    /// mention in it beside the mention's own URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

/// The rate cap of a chat destination when `max_per_minute` is unset: low enough
/// that a spike does not bury a channel, and well under Slack's one message a second
/// per incoming webhook.
pub const DEFAULT_MAX_PER_MINUTE: u32 = 20;

/// What an alert sink delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A Standard Webhooks endpoint: the ticket, signed.
    Webhook,
    /// A Slack incoming webhook: a Block Kit message.
    Slack,
    /// A Microsoft Teams incoming webhook or workflow: an Adaptive Card.
    Teams,
    /// E-mail over SMTP, as it happens or in digests.
    Email,
}

impl AlertKind {
    /// Returns the kind as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Webhook => "webhook",
            AlertKind::Slack => "slack",
            AlertKind::Teams => "teams",
            AlertKind::Email => "email",
        }
    }

    fn posts_http(self) -> bool {
        matches!(self, AlertKind::Webhook | AlertKind::Slack | AlertKind::Teams)
    }
}

/// Which tickets a sink alerts on; an empty list lets everything through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Clients.
    pub clients: Vec<String>,
    /// Queues.
    pub queues: Vec<String>,
    /// Priorities.
    pub priorities: Vec<Priority>,
    /// Rule ids.
    pub rules: Vec<String>,
    /// Ticket kinds.
    pub kinds: Vec<TicketKind>,
    /// Which revisions; `None` for the kind's default.
    pub revisions: Option<Revisions>,
}

/// Which revisions of a ticket a sink alerts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Revisions {
    /// Every revision.
    All,
    /// The first revision only.
    First,
}

impl Filter {
    /// Returns whether a sink of `kind` with this filter alerts on `ticket`.
    pub fn accepts(&self, kind: AlertKind, ticket: &Ticket) -> bool {
        let revisions = self.revisions.unwrap_or(match kind {
            AlertKind::Webhook => Revisions::All,
            _ => Revisions::First,
        });
        (self.clients.is_empty() || ticket.client.as_ref().is_some_and(|c| self.clients.contains(c)))
            && (self.queues.is_empty() || self.queues.contains(&ticket.queue))
            && (self.priorities.is_empty() || self.priorities.contains(&ticket.priority))
            && (self.rules.is_empty() || self.rules.contains(&ticket.rule.id))
            && (self.kinds.is_empty() || self.kinds.contains(&ticket.kind))
            && (revisions == Revisions::All || ticket.revision <= 1)
    }
}

/// How hard a delivery tries before its ticket becomes a dead letter.
///
/// A try that fails for a reason that can pass (a timeout, a refused connection,
/// HTTP 408, 429 or 5xx, an SMTP 4xx) is tried again after an exponential backoff
/// with full jitter, or after the `Retry-After` the receiver asked for (capped at
/// `backoff_max_secs`). Any other refusal (HTTP 4xx, SMTP 5xx) is final at once:
/// the same request would be refused again.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Tries per alert, the first included.
    pub max_attempts: u32,
    /// The backoff before the second try, in milliseconds; it doubles per try.
    pub backoff_initial_ms: u64,
    /// The longest backoff, in seconds, also the cap on a receiver's `Retry-After`.
    pub backoff_max_secs: u64,
    /// How long one try may take, in seconds.
    pub timeout_secs: u64,
    /// Consecutive failed tries after which the endpoint's circuit opens: no try is
    /// made for `breaker_open_secs`, then one probe decides whether it closes.
    pub breaker_failures: u32,
    /// How long an open circuit stays open, in seconds.
    pub breaker_open_secs: u64,
    /// Deliveries in flight at once (webhook); the revisions of one ticket are always
    /// delivered in order.
    pub concurrency: usize,
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            max_attempts: 6,
            backoff_initial_ms: 500,
            backoff_max_secs: 60,
            timeout_secs: 10,
            breaker_failures: 5,
            breaker_open_secs: 30,
            concurrency: 8,
        }
    }
}

impl Delivery {
    /// Returns the timeout of one try.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Returns the backoff before try `attempt + 1` (so `attempt` ≥ 1), with full
    /// jitter: uniform in 0..=base·2^(attempt−1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.backoff_max();
        let base = Duration::from_millis(self.backoff_initial_ms);
        let ceiling = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }

    /// Returns the longest wait between tries.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_secs)
    }

    fn validate(&self, checks: &mut Checks) {
        checks.positive("max_attempts", u64::from(self.max_attempts));
        checks.positive("timeout_secs", self.timeout_secs);
        checks.positive("breaker_failures", u64::from(self.breaker_failures));
        checks.positive("breaker_open_secs", self.breaker_open_secs);
        checks.positive("concurrency", self.concurrency as u64);
        checks.check(
            self.backoff_initial_ms <= self.backoff_max_secs.saturating_mul(1000),
            "backoff_initial_ms",
            || {
                format!(
                    "{} ms is longer than backoff_max_secs ({} s)",
                    self.backoff_initial_ms, self.backoff_max_secs
                )
            },
        );
    }
}

/// E-mail settings: the SMTP server, the letter, and when it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server.
    pub smtp: SmtpConfig,
    /// The sender (`cull <alerts@example.com>`).
    pub from: String,
    /// The recipients of every queue without its own in `to_by_queue`.
    #[serde(default)]
    pub to: Vec<String>,
    /// Recipients per queue, instead of `to` for that queue.
    #[serde(default)]
    pub to_by_queue: BTreeMap<String, Vec<String>>,
    /// When mail goes: each ticket as it happens, or a digest every hour, day or week.
    #[serde(default)]
    pub mode: EmailMode,
    /// The most items a digest lists; it says how many more there were.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// The order of a digest's items: `priority` (most urgent first, then newest) or
    /// `time` (newest first).
    #[serde(default)]
    pub sort: DigestSort,
    /// When a daily or weekly digest goes, `HH:MM` in `timezone`.
    #[serde(default = "default_send_at")]
    pub send_at: String,
    /// The day a weekly digest goes (`monday` … `sunday`).
    #[serde(default = "default_weekday")]
    pub weekday: String,
    /// The time zone of `send_at` (IANA name, such as `Europe/Berlin`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The `List-Unsubscribe` target: a `mailto:` or `https:` address.
    pub unsubscribe: String,
    /// Where a digest's pending items are kept, durable across restarts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

fn default_max_items() -> usize {
    50
}
fn default_send_at() -> String {
    "08:00".to_string()
}
fn default_weekday() -> String {
    "monday".to_string()
}
fn default_timezone() -> String {
    "UTC".to_string()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("data/alerts")
}

/// The SMTP server of an e-mail sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Its host name.
    pub host: String,
    /// Its port: 587 for STARTTLS, 465 for TLS, 25 for none.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (upgrade the connection; refuse a server that cannot), `tls`
    /// (TLS from the first byte) or `none` (plain text: only on this machine).
    #[serde(default)]
    pub tls: SmtpTls,
    /// The environment variable holding the user name, when the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    /// The environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// None.
    None,
}

/// When an e-mail sink sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailMode {
    /// One mail per ticket.
    #[default]
    AsItHappens,
    /// One digest an hour, on the hour.
    Hourly,
    /// One digest a day at `send_at`.
    Daily,
    /// One digest a week on `weekday` at `send_at`.
    Weekly,
}

/// The order of a digest's items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestSort {
    /// Most urgent first, then newest.
    #[default]
    Priority,
    /// Newest first.
    Time,
}

/// Names of the weekdays, as `weekday` takes them.
pub const WEEKDAYS: [&str; 7] =
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl AlertConfig {
    /// Returns which tickets this sink alerts on.
    pub fn filter(&self) -> Filter {
        Filter {
            clients: self.clients.clone(),
            queues: self.queues.clone(),
            priorities: self.priorities.clone(),
            rules: self.rules.clone(),
            kinds: self.kinds.clone(),
            revisions: self.revisions,
        }
    }

    /// Returns how hard this sink's deliveries try: its settings over the defaults.
    pub fn delivery(&self) -> Delivery {
        let default = Delivery::default();
        Delivery {
            max_attempts: self.max_attempts.unwrap_or(default.max_attempts),
            backoff_initial_ms: self.backoff_initial_ms.unwrap_or(default.backoff_initial_ms),
            backoff_max_secs: self.backoff_max_secs.unwrap_or(default.backoff_max_secs),
            timeout_secs: self.timeout_secs.unwrap_or(default.timeout_secs),
            breaker_failures: self.breaker_failures.unwrap_or(default.breaker_failures),
            breaker_open_secs: self.breaker_open_secs.unwrap_or(default.breaker_open_secs),
            concurrency: self.concurrency.unwrap_or(default.concurrency),
        }
    }

    /// Returns the rate cap of a chat destination: messages per minute.
    pub fn per_minute(&self) -> u32 {
        self.max_per_minute.unwrap_or(DEFAULT_MAX_PER_MINUTE)
    }

    /// Returns the stage name of this sink.
    pub fn stage_name(&self) -> String {
        format!("sink.alert.{}", self.name)
    }

    /// Returns the environment variables this sink reads, with their keys: what
    /// `cull config check` and `cull run` check are set before anything starts.
    pub fn environment(&self) -> Vec<(&'static str, &str)> {
        let mut vars = vec![("url_env", self.url_env.as_deref()), ("secret_env", self.secret_env.as_deref())];
        if let Some(email) = &self.email {
            vars.push(("email.smtp.username_env", email.smtp.username_env.as_deref()));
            vars.push(("email.smtp.password_env", email.smtp.password_env.as_deref()));
        }
        vars.into_iter().filter_map(|(key, var)| Some((key, var?))).collect()
    }

    /// Returns every invalid setting, keys relative to the entry.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        let kind = self.kind;
        checks.check(is_label(&self.name), "name", || {
            format!("`{}` must be 1 to 64 of a-z A-Z 0-9 . _ -", self.name)
        });
        let only = |checks: &mut Checks, key: &str, set: bool, kinds: &[AlertKind]| {
            checks.check(!set || kinds.contains(&kind), key, || {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                format!("only for kind = {}, not \"{}\"", names.join(" or "), kind.as_str())
            });
        };
        let http = [AlertKind::Webhook, AlertKind::Slack, AlertKind::Teams];
        only(&mut checks, "url", self.url.is_some(), &http);
        only(&mut checks, "url_env", self.url_env.is_some(), &http);
        only(&mut checks, "secret_env", self.secret_env.is_some(), &[AlertKind::Webhook]);
        only(
            &mut checks,
            "max_per_minute",
            self.max_per_minute.is_some(),
            &[AlertKind::Slack, AlertKind::Teams],
        );
        only(&mut checks, "email", self.email.is_some(), &[AlertKind::Email]);
        if kind.posts_http() {
            match (&self.url, &self.url_env) {
                (Some(_), Some(_)) => {
                    checks.check(false, "url_env", || "set url or url_env, not both".into())
                }
                (None, None) => checks
                    .check(false, "url", || format!("kind = \"{}\" needs url or url_env", kind.as_str())),
                (Some(url), None) => checks.nested("", endpoint_problems("url", url)),
                (None, Some(var)) => {
                    checks.check(!var.is_empty(), "url_env", || "must name a variable".into())
                }
            }
        }
        if kind == AlertKind::Webhook {
            checks.check(self.secret_env.as_deref().is_some_and(|v| !v.is_empty()), "secret_env", || {
                "a webhook is signed: name the environment variable that holds its whsec_ secret".into()
            });
        }
        if let Some(per_minute) = self.max_per_minute {
            checks.positive("max_per_minute", u64::from(per_minute));
        }
        if let Some(console) = &self.console_url {
            checks.nested("", endpoint_problems("console_url", console));
        }
        match (&self.email, kind) {
            (Some(email), _) => checks.nested("email", email.validate()),
            (None, AlertKind::Email) => checks.check(false, "email", || {
                "kind = \"email\" needs [sink.alert.email] with smtp, from, to and unsubscribe".into()
            }),
            (None, _) => {}
        }
        for (i, queue) in self.queues.iter().enumerate() {
            checks
                .check(is_label(queue), &format!("queues[{i}]"), || format!("`{queue}` is not a queue name"));
        }
        for (i, client) in self.clients.iter().enumerate() {
            if let Some(problem) = cull_model::client_name_problem(client) {
                checks.check(false, &format!("clients[{i}]"), || problem);
            }
        }
        self.delivery().validate(&mut checks);
        checks.finish()
    }
}

/// Returns the problems of an endpoint URL: it must be `https`, or `http` to this
/// machine (a receiver on loopback, or a test), so that neither a ticket nor a
/// signature crosses a network in the clear.
fn endpoint_problems(key: &str, url: &str) -> Vec<Invalid> {
    let mut checks = Checks::default();
    match reqwest::Url::parse(url) {
        Err(error) => checks.check(false, key, || format!("`{url}` is not a URL: {error}")),
        Ok(parsed) => {
            let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            checks.check(parsed.scheme() == "https" || (parsed.scheme() == "http" && local), key, || {
                format!("`{}` must be https (http only to localhost)", parsed.scheme())
            });
        }
    }
    checks.finish()
}

impl EmailConfig {
    /// Returns every invalid setting, keys relative to `email`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.smtp.host.is_empty(), "smtp.host", || "must name the SMTP server".into());
        checks.positive("smtp.port", u64::from(self.smtp.port));
        checks.check(
            self.smtp.username_env.is_some() == self.smtp.password_env.is_some(),
            "smtp.password_env",
            || "set both smtp.username_env and smtp.password_env, or neither".into(),
        );
        checks.check(crate::email::parse_mailbox(&self.from).is_ok(), "from", || {
            format!("`{}` is not an address", self.from)
        });
        checks.check(!self.to.is_empty() || !self.to_by_queue.is_empty(), "to", || {
            "name at least one recipient (to, or to_by_queue)".into()
        });
        let lists = self.to.iter().map(|to| ("to".to_string(), to)).chain(
            self.to_by_queue
                .iter()
                .flat_map(|(queue, list)| list.iter().map(move |to| (format!("to_by_queue.{queue}"), to))),
        );
        for (key, to) in lists {
            checks
                .check(crate::email::parse_mailbox(to).is_ok(), &key, || format!("`{to}` is not an address"));
        }
        for (queue, list) in &self.to_by_queue {
            checks.check(!list.is_empty(), &format!("to_by_queue.{queue}"), || "names no recipient".into());
        }
        checks.positive("max_items", self.max_items as u64);
        checks.check(crate::digest::parse_time_of_day(&self.send_at).is_some(), "send_at", || {
            format!("`{}` is not HH:MM (00:00 to 23:59)", self.send_at)
        });
        checks.check(WEEKDAYS.contains(&self.weekday.as_str()), "weekday", || {
            format!("`{}` is not one of {}", self.weekday, WEEKDAYS.join(", "))
        });
        checks.check(jiff::tz::TimeZone::get(&self.timezone).is_ok(), "timezone", || {
            format!("`{}` is not an IANA time zone (such as Europe/Berlin)", self.timezone)
        });
        let unsubscribe = self.unsubscribe.as_str();
        checks.check(
            unsubscribe.starts_with("mailto:") || unsubscribe.starts_with("https://"),
            "unsubscribe",
            || format!("`{unsubscribe}` must be a mailto: or https: address"),
        );
        checks.check(!self.state_dir.as_os_str().is_empty(), "state_dir", || "must name a directory".into());
        checks.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> AlertConfig {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(config: &AlertConfig) -> Vec<String> {
        config.validate().into_iter().map(|p| format!("{}: {}", p.key, p.message)).collect()
    }

    #[test]
    fn a_webhook_needs_an_endpoint_and_a_secret_and_keys_of_other_kinds_are_refused() {
        let config = entry("name = 'care'\nkind = 'webhook'\nmax_per_minute = 5\n");
        assert_eq!(
            problems(&config),
            [
                "max_per_minute: only for kind = slack or teams, not \"webhook\"",
                "url: kind = \"webhook\" needs url or url_env",
                "secret_env: a webhook is signed: name the environment variable that holds its whsec_ secret",
            ]
        );
        let config =
            entry("name = 'care'\nkind = 'webhook'\nurl = 'http://example.com/hook'\nsecret_env = 'S'\n");
        assert_eq!(problems(&config), ["url: `http` must be https (http only to localhost)"]);
        let config =
            entry("name = 'care'\nkind = 'webhook'\nurl = 'http://127.0.0.1:9/hook'\nsecret_env = 'S'\n");
        assert!(problems(&config).is_empty(), "{:?}", problems(&config));
    }

    #[test]
    fn an_email_sink_checks_addresses_times_and_zones() {
        let config = entry(
            "name = 'digest'\nkind = 'email'\n[email]\nfrom = 'nobody'\nto = ['a@example.com']\nmode = 'daily'\n\
             send_at = '25:00'\ntimezone = 'Mars/Olympus'\nunsubscribe = 'http://x'\n[email.smtp]\nhost = 'mail'\n",
        );
        assert_eq!(
            problems(&config),
            [
                "email.from: `nobody` is not an address",
                "email.send_at: `25:00` is not HH:MM (00:00 to 23:59)",
                "email.timezone: `Mars/Olympus` is not an IANA time zone (such as Europe/Berlin)",
                "email.unsubscribe: `http://x` must be a mailto: or https: address",
            ]
        );
        assert_eq!(
            problems(&entry("name = 'x'\nkind = 'email'\n")),
            ["email: kind = \"email\" needs [sink.alert.email] with smtp, from, to and unsubscribe"]
        );
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let error =
            toml::from_str::<AlertConfig>("name = 'x'\nkind = 'slack'\nurl = 'https://h'\nchanel = '#a'\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("unknown field `chanel`"), "{error}");
    }

    #[test]
    fn filters_select_by_queue_priority_rule_kind_and_revision() {
        let mut ticket = crate::tests::ticket("t1");
        let filter = Filter {
            queues: vec![ticket.queue.clone()],
            priorities: vec![Priority::P1],
            ..Filter::default()
        };
        ticket.priority = Priority::P1;
        assert!(filter.accepts(AlertKind::Slack, &ticket));
        ticket.priority = Priority::P2;
        assert!(!filter.accepts(AlertKind::Slack, &ticket));
        ticket.priority = Priority::P1;
        ticket.revision = 2;
        assert!(!filter.accepts(AlertKind::Slack, &ticket), "a person is told once per ticket");
        assert!(filter.accepts(AlertKind::Webhook, &ticket), "a receiver gets every revision");
        let incidents = Filter { kinds: vec![TicketKind::Incident], ..Filter::default() };
        assert!(!incidents.accepts(AlertKind::Webhook, &ticket));
    }

    #[test]
    fn a_clients_sink_alerts_on_that_clients_tickets_only() {
        let mut ticket = crate::tests::ticket("t1");
        let acme = Filter { clients: vec!["acme".into()], ..Filter::default() };
        assert!(!acme.accepts(AlertKind::Webhook, &ticket), "not the contact center's own");
        ticket.client = Some("globex".into());
        assert!(!acme.accepts(AlertKind::Webhook, &ticket));
        ticket.client = Some("acme".into());
        assert!(acme.accepts(AlertKind::Webhook, &ticket));
        assert!(Filter::default().accepts(AlertKind::Webhook, &ticket), "no filter: every client's");
        let config: AlertConfig =
            toml::from_str("name = 'x'\nkind = 'webhook'\nurl = 'https://h'\nclients = ['acme', 'Globex']\n")
                .unwrap();
        let keys: Vec<String> = config.validate().into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&"clients[1]".to_string()), "{keys:?}");
    }

    #[test]
    fn backoff_doubles_with_jitter_under_the_cap() {
        let delivery = Delivery { backoff_initial_ms: 100, backoff_max_secs: 1, ..Delivery::default() };
        for _ in 0..200 {
            assert!(delivery.backoff(1) <= Duration::from_millis(100));
            assert!(delivery.backoff(3) <= Duration::from_millis(400));
            assert!(delivery.backoff(30) <= Duration::from_secs(1));
        }
        let spread: std::collections::BTreeSet<Duration> = (0..50).map(|_| delivery.backoff(4)).collect();
        assert!(spread.len() > 10, "full jitter spreads the retries: {spread:?}");
    }
}

//! E-mail over SMTP: a mail per ticket as it happens, or a digest.
//!
//! Every mail is multipart/alternative (plain text for any client, HTML with the
//! matched words marked), carries `List-Unsubscribe` (and the RFC 8058 one-click
//! header for an https target, which large mailbox providers ask bulk senders for),
//! and a `Message-ID` fixed by the ticket revision or the digest period, so that a
//! resend after a crash is recognizable as the same mail.
//!
//! A digest's items live in [`crate::digest::State`] on disk; the sink reports them
//! durable only once written, and removes a digest only after the server accepted
//! it, so a restart neither loses nor repeats an item.

use std::path::PathBuf;
use std::time::Instant;

use cull_model::{Span, Ticket};
use jiff::Timestamp;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{AlertConfig, Delivery, EmailConfig, EmailMode, SmtpTls};
use crate::digest::{self, Group, Item, Schedule, State};
use crate::{required_env, AlertError, Context, Env, Outcome, Stopped};

/// The shortest time between two writes of the digest state without `force`: a
/// batch a few milliseconds after the last does not cost another fsync.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Parses `text` as a mailbox (`Name <addr@host>` or `addr@host`).
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse::<Mailbox>().map_err(|e| format!("`{text}` is not an address: {e}"))
}

/// Sends mail for one entry.
#[derive(Debug)]
pub struct EmailSink {
    /// Boxed, as is the config: they make the sink much larger than the others,
    /// and [`crate::AlertSink`] holds one of any kind.
    transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
    email: Box<EmailConfig>,
    from: Mailbox,
    console_url: Option<String>,
    delivery: Delivery,
    context: Context,
    /// The digest, for the digest modes.
    digest: Option<Pending>,
}

/// A digest sink's schedule and state.
#[derive(Debug)]
struct Pending {
    schedule: Schedule,
    path: PathBuf,
    state: State,
    /// The state changed since it was last written.
    dirty: bool,
    written_at: Option<Instant>,
    /// After a digest failed: no new try before then. The send already used its
    /// `max_attempts`, and ticks come every 200 ms, so the next round waits the
    /// longest backoff rather than hammer a server that is down.
    retry_at: Option<Instant>,
}

/// What became of one mail.
enum Sent {
    Accepted,
    Failed(String),
}

impl EmailSink {
    /// Opens the e-mail sink of entry `index`, reading its digest state.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<EmailSink, AlertError> {
        let invalid =
            |key: &str, message: String| AlertError::Invalid { index, key: key.to_string(), message };
        let email = config.email.clone().ok_or_else(|| invalid("email", "missing".into()))?;
        let delivery = config.delivery();
        let smtp = &email.smtp;
        let host = smtp.host.as_str();
        let tls = |host: &str| {
            TlsParameters::new(host.to_string())
                .map_err(|e| invalid("email.smtp.host", format!("TLS for `{host}`: {e}")))
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(match smtp.tls {
            SmtpTls::Starttls => Tls::Required(tls(host)?),
            SmtpTls::Tls => Tls::Wrapper(tls(host)?),
            SmtpTls::None => Tls::None,
        });
        let mut builder = builder.port(smtp.port).timeout(Some(delivery.timeout()));
        if let (Some(user_var), Some(password_var)) = (&smtp.username_env, &smtp.password_env) {
            let user = required_env(env, index, "email.smtp.username_env", user_var)?;
            let password = required_env(env, index, "email.smtp.password_env", password_var)?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from = parse_mailbox(&email.from).map_err(|e| invalid("email.from", e))?;
        let digest = match email.mode {
            EmailMode::AsItHappens => None,
            mode => {
                let schedule = Schedule {
                    mode,
                    send_at: digest::parse_time_of_day(&email.send_at)
                        .ok_or_else(|| invalid("email.send_at", "not HH:MM".into()))?,
                    weekday: digest::parse_weekday(&email.weekday)
                        .ok_or_else(|| invalid("email.weekday", "not a weekday".into()))?,
                    timezone: jiff::tz::TimeZone::get(&email.timezone)
                        .map_err(|e| invalid("email.timezone", e.to_string()))?,
                };
                let path = email.state_dir.join(format!("{}.json", context.sink));
                let state = digest::read(&path)
                    .map_err(|message| AlertError::State { sink: context.sink.clone(), message })?;
                context.observer.pending(&context.sink, state.pending());
                Some(Pending { schedule, path, state, dirty: false, written_at: None, retry_at: None })
            }
        };
        Ok(EmailSink {
            transport: Box::new(builder.build()),
            email: Box::new(email),
            from,
            console_url: config.console_url.clone(),
            delivery,
            context,
            digest,
        })
    }

    /// Mails `tickets` (as it happens) or adds them to the digest.
    pub async fn deliver(
        &mut self,
        tickets: &[&Ticket],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        let Some(digest) = &mut self.digest else {
            let mut outcomes = Vec::with_capacity(tickets.len());
            for ticket in tickets {
                let outcome = match self.ticket_mail(ticket) {
                    Err(error) => Outcome::Failed(error),
                    Ok(message) => {
                        match self.send(&message, &format!("ticket {}", ticket_key(ticket))).await? {
                            Sent::Accepted => {
                                self.context.observer.delivered(&self.context.sink, "alert");
                                Outcome::Delivered
                            }
                            Sent::Failed(error) => Outcome::Failed(error),
                        }
                    }
                };
                outcomes.push(outcome);
            }
            return Ok(outcomes);
        };
        let now = Timestamp::from_second(now.unix_timestamp()).expect("the clock is in range");
        let due = digest.schedule.next_due(now).as_second();
        for ticket in tickets {
            let item = item(ticket, self.console_url.as_deref());
            let to = recipients(&self.email, &ticket.queue);
            digest.dirty |= digest.state.add(to, item, due, self.email.max_items, self.email.sort);
        }
        self.context.observer.pending(&self.context.sink, digest.state.pending());
        Ok(vec![Outcome::Held; tickets.len()])
    }

    /// Sends the digest when it is due.
    pub async fn tick(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        let Some(digest) = &self.digest else { return Ok(()) };
        let due = match digest.state.due {
            Some(due) if due <= now.unix_timestamp() => due,
            _ => return Ok(()),
        };
        if digest.retry_at.is_some_and(|at| at > Instant::now()) {
            return Ok(());
        }
        let groups: Vec<(String, Group)> = digest.state.groups.clone().into_iter().collect();
        let mut failed = false;
        for (key, group) in groups {
            let outcome = match self.digest_mail(&group, due) {
                Err(error) => Sent::Failed(error),
                Ok(message) => self.send(&message, &format!("the digest to {key}")).await?,
            };
            let digest = self.digest.as_mut().expect("a digest sink");
            match outcome {
                Sent::Accepted => {
                    digest.state.sent(&key);
                    digest.dirty = true;
                    self.context.observer.delivered(&self.context.sink, "digest");
                }
                Sent::Failed(error) => {
                    failed = true;
                    tracing::warn!(sink = %self.context.sink, %error, "digest not sent; it stays pending and is tried again");
                }
            }
        }
        let digest = self.digest.as_mut().expect("a digest sink");
        digest.retry_at = failed.then(|| Instant::now() + self.delivery.backoff_max());
        self.context.observer.pending(&self.context.sink, digest.state.pending());
        Ok(())
    }

    /// Writes the digest state when due, or now with `force`; returns whether
    /// everything given so far is durable.
    pub fn make_durable(&mut self, force: bool) -> Result<bool, AlertError> {
        let Some(digest) = &mut self.digest else { return Ok(true) };
        if !digest.dirty {
            return Ok(true);
        }
        if !force && digest.written_at.is_some_and(|at| at.elapsed() < WRITE_INTERVAL) {
            return Ok(false);
        }
        digest::write(&digest.path, &digest.state)
            .map_err(|message| AlertError::State { sink: self.context.sink.clone(), message })?;
        digest.dirty = false;
        digest.written_at = Some(Instant::now());
        Ok(true)
    }

    /// Sends `message`, trying transient failures again with backoff.
    async fn send(&self, message: &Message, what: &str) -> Result<Sent, Stopped> {
        let sink = &self.context.sink;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.transport.send(message.clone()).await {
                Ok(_) => {
                    self.context.observer.attempt(sink, "ok");
                    return Ok(Sent::Accepted);
                }
                Err(error) => error,
            };
            let text = describe(&error);
            if error.is_permanent() || error.is_client() {
                self.context.observer.attempt(sink, "failed");
                return Ok(Sent::Failed(format!(
                    "e-mail {what}: the SMTP server refused it on try {attempt}: {text}"
                )));
            }
            if attempt >= self.delivery.max_attempts {
                self.context.observer.attempt(sink, "failed");
                return Ok(Sent::Failed(format!(
                    "e-mail {what}: failed {attempt} tries (max_attempts), the last: {text}"
                )));
            }
            self.context.observer.attempt(sink, "retry");
            let wait = self.delivery.backoff(attempt);
            tracing::warn!(sink = %sink, attempt, wait_ms = wait.as_millis() as u64, error = %text, "e-mail failed; trying again");
            if !self.context.stop.sleep(wait).await {
                return Err(Stopped {
                    sink: sink.clone(),
                    left: format!("e-mail {what}: try {attempt} failed ({text}) and the retry was given up"),
                });
            }
        }
    }

    /// Returns the mail of one ticket revision.
    fn ticket_mail(&self, ticket: &Ticket) -> Result<Message, String> {
        let title = title(ticket);
        let subject = one_line(
            &format!("[{}] {} · {}: {}", ticket.priority.as_str(), ticket.queue, ticket.rule.name, title),
            SUBJECT_CHARS,
        );
        let links = self.links(ticket);
        let mut text = format!(
            "{} ticket in {} (rule {}), first response due {}\n\n{}\n\n{}\n",
            ticket.priority.as_str(),
            ticket.queue,
            ticket.rule.name,
            ticket.sla_due_at,
            title,
            ticket.mention.text
        );
        let mut html = format!(
            "<p><strong>{}</strong> ticket in {} (rule {}), first response due {}</p>\n<h2>{}</h2>\n<p>{}</p>\n",
            esc(ticket.priority.as_str()),
            esc(&ticket.queue),
            esc(&ticket.rule.name),
            esc(&ticket.sla_due_at),
            match &ticket.mention.title {
                Some(t) => highlight(t, &ticket.spans, "title"),
                None => esc(&title),
            },
            highlight(&ticket.mention.text, &ticket.spans, "text"),
        );
        for (label, url) in &links {
            text.push_str(&format!("\n{label}: {url}"));
            html.push_str(&format!("<p><a href=\"{}\">{}</a></p>\n", attr(url), esc(label)));
        }
        let id = format!("cull.{}.{}", ticket.ticket_id, ticket.revision);
        self.message(recipients(&self.email, &ticket.queue), &subject, &id, text, html)
    }

    /// Returns the digest mail of `group`, for the period due at `due`.
    fn digest_mail(&self, group: &Group, due: i64) -> Result<Message, String> {
        let count = group.items.len() as u64 + group.more;
        let period = match self.email.mode {
            EmailMode::Hourly => "hourly",
            EmailMode::Weekly => "weekly",
            EmailMode::Daily | EmailMode::AsItHappens => "daily",
        };
        let at = Timestamp::from_second(due)
            .map(|t| {
                t.to_zoned_datetime(self.digest.as_ref().expect("a digest sink").schedule.timezone.clone())
            })
            .map_err(|e| e.to_string())?;
        let at = at.strftime("%Y-%m-%d %H:%M %Z").to_string();
        let subject = format!(
            "[cull] {count} ticket{} in the {period} digest of {at}",
            if count == 1 { "" } else { "s" }
        );
        let mut text = format!("{subject}\n");
        let mut html = format!("<h2>{}</h2>\n<ol>\n", esc(&subject));
        for item in &group.items {
            let link = item.console.as_ref().or(item.url.as_ref());
            text.push_str(&format!(
                "\n{} · SLA due {} · {}: {}\n  {}\n",
                item.priority.as_str(),
                item.sla_due_at,
                item.rule,
                item.title,
                item.snippet
            ));
            html.push_str(&format!(
                "<li><strong>{}</strong> · SLA due {} · {}: ",
                esc(item.priority.as_str()),
                esc(&item.sla_due_at),
                esc(&item.rule)
            ));
            match link {
                Some(url) => {
                    text.push_str(&format!("  {url}\n"));
                    html.push_str(&format!("<a href=\"{}\">{}</a>", attr(url), esc(&item.title)));
                }
                None => html.push_str(&esc(&item.title)),
            }
            html.push_str(&format!("<br>{}</li>\n", esc(&item.snippet)));
        }
        html.push_str("</ol>\n");
        if group.more > 0 {
            text.push_str(&format!("\nand {} more\n", group.more));
            html.push_str(&format!("<p>and {} more</p>\n", group.more));
        }
        let id = format!("cull.digest.{}.{due}.{}", self.context.sink, short_hash(&group.to.join(", ")));
        self.message(&group.to, &subject, &id, text, html)
    }

    /// Builds a mail from its parts and the headers every mail carries.
    fn message(
        &self,
        to: &[String],
        subject: &str,
        id: &str,
        text: String,
        html: String,
    ) -> Result<Message, String> {
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{id}@{domain}>")))
            .raw_header(header("List-Unsubscribe", format!("<{}>", self.email.unsubscribe)));
        if self.email.unsubscribe.starts_with("https://") {
            builder =
                builder.raw_header(header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_string()));
        }
        for address in to {
            builder = builder.to(parse_mailbox(address)?);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("cannot build the mail: {e}"))
    }

    /// Returns the links of a ticket: its mention, and the mention in the console.
    fn links(&self, ticket: &Ticket) -> Vec<(&'static str, String)> {
        let mut links = Vec::new();
        if let Some(url) = &ticket.mention.url {
            links.push(("The mention", url.clone()));
        }
        if let Some(console) = console_link(self.console_url.as_deref(), ticket) {
            links.push(("In the console", console));
        }
        links
    }
}

/// Returns the recipients of a queue's tickets: its own, else `to`.
fn recipients<'a>(email: &'a EmailConfig, queue: &str) -> &'a [String] {
    email.to_by_queue.get(queue).unwrap_or(&email.to)
}

/// Returns the key of a ticket revision.
fn ticket_key(ticket: &Ticket) -> String {
    format!("{}.r{}", ticket.ticket_id, ticket.revision)
}

/// The most characters of a subject: mail clients show about 80, and a mention's
/// title can be kilobytes.
const SUBJECT_CHARS: usize = 200;

/// Returns `text` as one line of at most `max` characters: line breaks and other
/// control characters become spaces, runs of spaces one. A title is someone else's
/// text: lettre encodes a line break in a header safely, but the subject a person
/// reads should still be one line, not a title's layout or kilobytes.
fn one_line(text: &str, max: usize) -> String {
    let mut line = String::with_capacity(text.len().min(max * 4));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    match line.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if line[cut..].chars().count() > 1 => format!("{}…", &line[..cut]),
        _ => line,
    }
}

/// Returns the title of a ticket: its mention's title, else its snippet.
fn title(ticket: &Ticket) -> String {
    ticket.mention.title.clone().filter(|t| !t.trim().is_empty()).unwrap_or_else(|| ticket.snippet.clone())
}

/// Returns the console link of a ticket's mention.
fn console_link(console_url: Option<&str>, ticket: &Ticket) -> Option<String> {
    console_url.map(|base| format!("{}/mentions/{}", base.trim_end_matches('/'), ticket.mention.id))
}

/// Returns what a digest keeps of a ticket.
fn item(ticket: &Ticket, console_url: Option<&str>) -> Item {
    let made = ticket.mention.fetched_at.as_deref().unwrap_or(&ticket.created_at);
    Item {
        key: ticket_key(ticket),
        ticket: ticket.ticket_id.clone(),
        priority: ticket.priority,
        time: made.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or_default(),
        sla_due_at: ticket.sla_due_at.clone(),
        rule: ticket.rule.name.clone(),
        queue: ticket.queue.clone(),
        title: title(ticket),
        snippet: ticket.snippet.clone(),
        url: ticket.mention.url.clone(),
        console: console_link(console_url, ticket),
    }
}

/// Returns `text` as HTML with the `spans` of `field` in `<mark>`. Spans are byte
/// offsets from the matcher; one that is out of range or not on a character
/// boundary (a ticket from another version, a bad record) is left out rather than
/// trusted, and overlapping spans merge.
pub fn highlight(text: &str, spans: &[Span], field: &str) -> String {
    let mut ranges: Vec<(usize, usize)> = spans
        .iter()
        .filter(|s| {
            s.field == field
                && s.start < s.end
                && text.is_char_boundary(s.start)
                && text.is_char_boundary(s.end)
        })
        .map(|s| (s.start, s.end))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut html = String::with_capacity(text.len() + 32);
    let mut at = 0;
    for (start, end) in merged {
        html.push_str(&esc(&text[at..start]));
        html.push_str("<mark>");
        html.push_str(&esc(&text[start..end]));
        html.push_str("</mark>");
        at = end;
    }
    html.push_str(&esc(&text[at..]));
    html
}

/// Escapes text for HTML content.
fn esc(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// Escapes text for a double-quoted HTML attribute.
fn attr(text: &str) -> String {
    html_escape::encode_double_quoted_attribute(text).into_owned()
}

/// Returns a header of a mail.
fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Returns a short stable hash of `text`, for a digest's Message-ID.
fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Returns an SMTP error with its causes.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(field: &'static str, start: usize, end: usize) -> Span {
        Span { field: field.into(), start, end }
    }

    #[test]
    fn marks_spans_escapes_and_survives_bad_offsets() {
        let text = "Slack <is> down & \"ü\"";
        assert_eq!(
            highlight(text, &[span("text", 0, 5), span("title", 0, 3)], "text"),
            "<mark>Slack</mark> &lt;is&gt; down &amp; &quot;ü&quot;"
        );
        let u = text.find('ü').unwrap();
        let bad = [
            span("text", u + 1, u + 2),
            span("text", 3, 999),
            span("text", 4, 2),
            span("text", 1, 4),
            span("text", 2, 5),
        ];
        assert_eq!(highlight(text, &bad, "text"), "S<mark>lack</mark> &lt;is&gt; down &amp; &quot;ü&quot;");
    }

    #[test]
    fn a_subject_is_one_line_of_bounded_length_whatever_the_title() {
        assert_eq!(
            one_line("Slack\r\nBcc: victim@example.com\t down\u{7}", 80),
            "Slack Bcc: victim@example.com down"
        );
        let long = one_line(&"ü".repeat(1000), 200);
        assert_eq!(long.chars().count(), 200);
        assert!(long.ends_with('…'));
        assert_eq!(one_line("exactly", 7), "exactly");
        let mut ticket = crate::tests::ticket("t3");
        ticket.mention.title = Some("Down\r\nBcc: victim@example.com".into());
        let config: AlertConfig = toml::from_str(
            "name = 'm'\nkind = 'email'\n[email]\nfrom = 'a@example.com'\nto = ['b@example.com']\n\
             unsubscribe = 'mailto:u@example.com'\n[email.smtp]\nhost = '127.0.0.1'\nport = 9\ntls = 'none'\n",
        )
        .unwrap();
        let context = crate::Context {
            sink: "m".into(),
            observer: std::sync::Arc::new(crate::NoObserver),
            stop: crate::Stop::never(),
        };
        let sink = EmailSink::open(0, &config, &|_| None, context).unwrap();
        let mail = String::from_utf8(sink.ticket_mail(&ticket).unwrap().formatted()).unwrap();
        let head = &mail[..mail.find("\r\n\r\n").unwrap()];
        assert!(!head.lines().any(|line| line.starts_with("Bcc:")), "{head}");
    }

    #[test]
    fn parses_mailboxes() {
        assert_eq!(
            parse_mailbox("cull <alerts@example.com>").unwrap().email.to_string(),
            "alerts@example.com"
        );
        assert!(parse_mailbox("nobody").is_err());
    }

    #[test]
    fn a_queue_s_own_recipients_replace_to() {
        let email: EmailConfig = toml::from_str(
            "from = 'a@example.com'\nto = ['all@example.com']\nunsubscribe = 'mailto:u@example.com'\n\
             [to_by_queue]\nbilling = ['bill@example.com']\n[smtp]\nhost = 'h'\n",
        )
        .unwrap();
        let mut billing = crate::tests::ticket("t2");
        billing.queue = "billing".into();
        let care = crate::tests::ticket("t1");
        assert_eq!(recipients(&email, &billing.queue), ["bill@example.com".to_string()]);
        assert_eq!(recipients(&email, &care.queue), ["all@example.com".to_string()]);
    }
}

//! A precision alert as a ticket, so that the alert sinks deliver it.
//!
//! The alert sinks (`[[sink.alert]]`: a signed webhook, Slack, Teams, e-mail) read the
//! ticket topics. A rule that falls under its precision threshold becomes an
//! incident ticket on the house's `quality.alert_queue`, addressed to the operators,
//! whatever client the rule's mentions are of (a client's helpdesk never sees it): a
//! sink with `queues = ["<alert_queue>"]` delivers it with the retries, the circuit
//! breaker and the digests every alert has, and nothing new has to be written for it.

use cull_model::{Mention, Priority, Ticket, TicketKind, TicketRule, TICKET_SCHEMA};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::{day_of, RuleReport};

/// Returns the alert ticket of `report` (a rule under its threshold) on `queue` at
/// `now`: one ticket id per rule and day, so a replay or a second drop the same day is
/// the same ticket.
pub fn precision_alert(report: &RuleReport, queue: &str, now: OffsetDateTime) -> Ticket {
    let at = now.format(&Rfc3339).expect("a time always formats");
    let rule = match &report.client {
        Some(client) => format!("{client}/{}", report.rule_id),
        None => report.rule_id.clone(),
    };
    let percent = |value: f64| format!("{:.0}%", value * 100.0);
    let text = format!(
        "Rule {rule}: precision {} over its last window ({} irrelevant of {} tickets with a disposition), under its threshold of {}. \
         `cull rules suggest {}{}` proposes exclusions, backtested.",
        report.precision.map_or_else(|| "-".to_string(), percent),
        report.irrelevant,
        report.feedback,
        percent(report.threshold),
        report.rule_id,
        report.client.as_deref().map(|c| format!(" --client {c}")).unwrap_or_default(),
    );
    let subject = format!("precision:{rule}@{}", day_of(now.unix_timestamp()));
    let mut mention = Mention::new(format!("quality:{subject}"), text.clone());
    mention.title = Some(format!("Rule {rule} is under its precision threshold"));
    mention.published_at = Some(at.clone());
    Ticket {
        schema: TICKET_SCHEMA.to_string(),
        ticket_id: cull_model::ticket_id(&subject, "quality"),
        revision: 1,
        created_at: at.clone(),
        queue: queue.to_string(),
        priority: Priority::P2,
        priority_score: 50,
        sla_due_at: at.clone(),
        client: None,
        rule: TicketRule {
            id: report.rule_id.clone(),
            name: format!("Precision of rule {rule}"),
            version: String::new(),
        },
        mention,
        spans: Vec::new(),
        snippet: text,
        kind: TicketKind::Incident,
        mention_count: 1,
        arrival_at: at,
        rank_offset_minutes: 0,
        factors: Vec::new(),
        sla_policy: String::new(),
        sla_target_minutes: 0,
        sla_clock: String::new(),
        late_on_arrival: false,
        incident_id: None,
        links: Vec::new(),
        overflow_from: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_a_house_incident_named_for_the_rule_and_the_day() {
        let report = RuleReport {
            rule_id: "slack".into(),
            client: Some("acme".into()),
            matches: 40,
            culled: 2,
            culls: Vec::new(),
            tickets: 30,
            feedback: 20,
            irrelevant: 12,
            precision: Some(0.4),
            previous_precision: Some(0.9),
            trend: Some(-0.5),
            threshold: 0.8,
            below_threshold: true,
            profiled: 0,
            candidates: 0,
            candidate_rate: None,
            verify_micros_per_mention: None,
        };
        let now = OffsetDateTime::from_unix_timestamp(1_796_637_600).unwrap();
        let ticket = precision_alert(&report, "rule-quality", now);
        assert_eq!(
            (ticket.kind, ticket.client.as_deref(), ticket.queue.as_str()),
            (TicketKind::Incident, None, "rule-quality")
        );
        assert!(
            ticket.snippet.contains("Rule acme/slack: precision 40%")
                && ticket.snippet.contains("12 irrelevant of 20")
        );
        assert!(ticket.snippet.contains("cull rules suggest slack --client acme"), "{}", ticket.snippet);
        let later = precision_alert(&report, "rule-quality", now + time::Duration::hours(3));
        assert_eq!(later.ticket_id, ticket.ticket_id, "one alert per rule and day");
        let tomorrow = precision_alert(&report, "rule-quality", now + time::Duration::days(1));
        assert_ne!(tomorrow.ticket_id, ticket.ticket_id);
    }
}

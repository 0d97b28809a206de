//! Every kind of ticket triage emits matches the shipped JSON Schema
//! (`schemas/cull.ticket.v1.schema.json`), so a consumer can validate against it.

use std::path::Path;

use cull_match::RuleSet;
use cull_model::{Mention, Ticket, TicketKind};
use cull_ticket::config::QueueConfig;
use cull_ticket::triage::FOLLOWERS;
use cull_ticket::{Position, TicketConfig, Triage};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/cull.ticket.v1.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("a valid schema")
}

fn rules() -> RuleSet {
    let toml =
        "[[rule]]\nid = 'slack'\nquery = 'slack'\npriority = 'P2'\nqueue = 'care'\nescalate_on = 'lawsuit'\n";
    let loaded = cull_rules::load_files([(Path::new("r.toml"), toml.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).unwrap()
}

#[test]
fn every_kind_of_ticket_matches_the_shipped_schema() {
    let rules = rules();
    let mut config = TicketConfig { vip_authors: vec!["@vip".into()], ..TicketConfig::default() };
    let care = QueueConfig {
        channel_weight: 0.8,
        max_per_hour: Some(30),
        overflow_queue: Some("care-overflow".into()),
        ..QueueConfig::default()
    };
    config.queues.insert("care".into(), care);
    config
        .queues
        .insert("care-overflow".into(), QueueConfig { max_per_hour: Some(5), ..QueueConfig::default() });
    let mut triage = Triage::new(&config).unwrap();
    let start = OffsetDateTime::parse("2026-11-25T00:00:00Z", &Rfc3339).unwrap();
    let mut tickets: Vec<Ticket> = Vec::new();
    for i in 0..300i64 {
        // Two an hour for ten hours, then a burst of late, angry, retweeted posts.
        let minute = if i < 20 { i * 30 } else { 600 };
        let now = start + time::Duration::minutes(minute);
        let mut m = Mention::new(format!("m{i}"), "Slack lost our data, we are filing a lawsuit. Terrible!");
        m.author = Some(if i % 7 == 0 { "@vip".into() } else { format!("@user{}", i % 40) });
        m.url = Some(format!("https://x.example/status/{i}"));
        m.published_at =
            Some((now - time::Duration::hours(if i % 5 == 0 { 30 } else { 0 })).format(&Rfc3339).unwrap());
        m.meta.insert(FOLLOWERS.into(), format!("{}", i * 1000));
        m.client = Some("acme".into());
        let verdict = rules.verdict(&m);
        let position = Some(Position { partition: 0, offset: i });
        tickets.extend(
            triage.triage(&m, &verdict.matched[0], &rules.rules().next().unwrap(), position, now).tickets,
        );
        tickets.extend(triage.take_incidents());
    }
    let kinds = |kind| tickets.iter().filter(|t| t.kind == kind).count();
    assert!(
        kinds(TicketKind::Ticket) > 0 && kinds(TicketKind::Incident) > 0 && kinds(TicketKind::Digest) > 0
    );
    let factors: std::collections::BTreeSet<&str> =
        tickets.iter().flat_map(|t| &t.factors).map(|f| f.factor.as_str()).collect();
    assert_eq!(
        factors.into_iter().collect::<Vec<_>>(),
        ["channel_weight", "crisis", "late", "priority", "reach", "sentiment", "spike", "velocity", "vip"],
        "every factor is exercised"
    );
    assert!(tickets.iter().any(|t| t.overflow_from.is_some()));
    let validator = schema();
    for ticket in &tickets {
        let value = serde_json::to_value(ticket).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
    }
    let mut broken = serde_json::to_value(&tickets[0]).unwrap();
    broken["priority_score"] = 101.into();
    broken["surprise"] = "an undocumented field".into();
    assert_eq!(validator.iter_errors(&broken).count(), 2, "the schema is strict enough to catch drift");
}

/// The shipped feedback schema (`schemas/cull.feedback.v1.schema.json`) accepts
/// exactly the dispositions cull reads, so a helpdesk that validates against it sends
/// nothing that is dead-lettered.
#[test]
fn the_feedback_schema_and_the_reader_agree_on_every_record() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/cull.feedback.v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Formats asserted, as a strict helpdesk would; the pattern alone is checked below.
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid schema");
    let annotating = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let base = r#""schema":"cull.feedback/v1","ticket_id":"t-1","at":"2026-12-07T10:00:00Z""#;
    let records = [
        (format!("{{{base},\"disposition\":\"resolved\"}}"), true),
        (format!("{{{base},\"disposition\":\"irrelevant\",\"client\":\"acme\",\"agent\":\"ana\",\"note\":\"spam\"}}"), true),
        (format!("{{{base},\"disposition\":\"wrong_priority\",\"priority\":\"P1\"}}"), true),
        (format!("{{{base},\"disposition\":\"duplicate\",\"duplicate_of\":\"t-0\"}}"), true),
        (format!("{{{base},\"disposition\":\"block_author\"}}"), true),
        (format!("{{{base},\"disposition\":\"wrong_priority\"}}"), false),
        (format!("{{{base},\"disposition\":\"resolved\",\"priority\":\"P1\"}}"), false),
        (format!("{{{base},\"disposition\":\"spam\"}}"), false),
        (format!("{{{base},\"disposition\":\"resolved\",\"extra\":1}}"), false),
        (format!("{{{base},\"disposition\":\"resolved\",\"client\":\"Acme\"}}"), false),
        (format!("{{{base},\"disposition\":\"resolved\",\"note\":\"{}\"}}", "n".repeat(2_001)), false),
        (r#"{"schema":"cull.feedback/v1","ticket_id":" ","disposition":"resolved","at":"2026-12-07T10:00:00Z"}"#.to_string(), false),
        (r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"yesterday"}"#.to_string(), false),
        (r#"{"schema":"cull.feedback/v2","ticket_id":"t","disposition":"resolved","at":"2026-12-07T10:00:00Z"}"#.to_string(), false),
        (r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved"}"#.to_string(), false),
        (r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"2026-02-28T23:59:59.5+05:30"}"#.to_string(), true),
    ];
    // Impossible times: the pattern refuses them even where formats are not asserted.
    for at in [
        "2026-13-07T10:00:00Z",
        "2026-12-32T10:00:00Z",
        "2026-12-07T24:00:00Z",
        "2026-12-07T10:60:00Z",
        "2026-12-07T10:00:00+25:00",
    ] {
        let json = format!(
            r#"{{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"{at}"}}"#
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(!annotating.is_valid(&value), "the pattern on {at}");
        assert!(!validator.is_valid(&value), "the schema on {at}");
        assert!(cull_model::Feedback::from_json(json.as_bytes()).is_err(), "the reader on {at}");
    }
    let february_30 = r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"2026-02-30T10:00:00Z"}"#;
    assert!(!validator.is_valid(&serde_json::from_str(february_30).unwrap()), "a date-time format");
    assert!(cull_model::Feedback::from_json(february_30.as_bytes()).is_err());
    for (json, valid) in records {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(validator.is_valid(&value), valid, "the schema on {json}");
        let read = cull_model::Feedback::from_json(json.as_bytes());
        assert_eq!(read.is_ok(), valid, "the reader on {json}: {read:?}");
    }
}

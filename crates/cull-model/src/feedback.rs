//! The `cull.feedback/v1` contract: an agent's disposition of a ticket.
//!
//! Agents see the false positives first. Their dispositions close tickets (so that a
//! queue's `max_open` counts what is really open), measure every rule's precision and
//! feed the suggestions of exclusions that would have culled a rule's noise. A
//! helpdesk sends one record per disposition to the `cull.feedback` topic or the API;
//! the latest disposition of a ticket (by `at`) is the one that counts.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::contract::{json_error, record_text, ModelError, Priority};

/// The schema string every feedback record carries.
pub const FEEDBACK_SCHEMA: &str = "cull.feedback/v1";

/// The largest feedback record read, in bytes: a disposition is an id, a word and a
/// short note.
pub const MAX_FEEDBACK_BYTES: usize = 64 * 1024;

/// How far ahead of this machine's clock a disposition's time may be.
const MAX_CLOCK_SKEW_SECS: i64 = 86_400;

/// The longest free-text note kept, in characters.
const MAX_NOTE_CHARS: usize = 2_000;

/// Whether `candidate`, a disposition and its time in Unix seconds, takes the place of
/// `kept`, the one kept so far: a later time does, and at the same second the later in
/// [`Disposition`]'s order does. The tie-break is arbitrary but total, so replicas that
/// read two same-second dispositions in different orders keep the same one; reading
/// the kept one again changes nothing.
pub fn supersedes(candidate: (Disposition, i64), kept: Option<(Disposition, i64)>) -> bool {
    kept.is_none_or(|(disposition, at)| (candidate.1, candidate.0) >= (at, disposition))
}

/// What an agent decided about a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A true match, answered.
    Resolved,
    /// A false positive: the rule should not have matched.
    Irrelevant,
    /// A true match whose priority was wrong (`priority` says the right one).
    WrongPriority,
    /// A true match that another ticket already covers (`duplicate_of`).
    Duplicate,
    /// A false positive from an author whose posts are never relevant (spam, a bot).
    BlockAuthor,
}

impl Disposition {
    /// Every disposition, in the order reports list them.
    pub const ALL: [Disposition; 5] = [
        Disposition::Resolved,
        Disposition::Irrelevant,
        Disposition::WrongPriority,
        Disposition::Duplicate,
        Disposition::BlockAuthor,
    ];

    /// Returns the name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Resolved => "resolved",
            Disposition::Irrelevant => "irrelevant",
            Disposition::WrongPriority => "wrong_priority",
            Disposition::Duplicate => "duplicate",
            Disposition::BlockAuthor => "block_author",
        }
    }

    /// Returns whether the ticket is done with: every disposition but a priority
    /// correction, which leaves the ticket to be answered.
    pub fn closes(self) -> bool {
        self != Disposition::WrongPriority
    }

    /// Returns whether the rule was wrong to match: what a rule's precision counts
    /// against it.
    pub fn is_false_positive(self) -> bool {
        matches!(self, Disposition::Irrelevant | Disposition::BlockAuthor)
    }
}

/// One disposition of one ticket (`cull.feedback/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// Always [`FEEDBACK_SCHEMA`].
    pub schema: String,
    /// The ticket disposed of.
    pub ticket_id: String,
    /// What the agent decided.
    pub disposition: Disposition,
    /// The client of the ticket (absent for the contact center's own). The API sets
    /// it from the caller's token; a record for another client's ticket is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// When it was decided (RFC 3339); the latest disposition of a ticket counts.
    pub at: String,
    /// Who decided, as the helpdesk names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For `wrong_priority`: the priority the ticket should have had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// For `duplicate`: the ticket it duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// A free-text note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Feedback {
    /// Returns a record of `disposition` of `ticket_id` at `at`.
    pub fn new(ticket_id: &str, disposition: Disposition, at: OffsetDateTime) -> Feedback {
        Feedback {
            schema: FEEDBACK_SCHEMA.to_string(),
            ticket_id: ticket_id.to_string(),
            disposition,
            client: None,
            at: at.format(&Rfc3339).expect("a time always formats"),
            agent: None,
            priority: None,
            duplicate_of: None,
            note: None,
        }
    }

    /// Parses and validates one record: at most [`MAX_FEEDBACK_BYTES`], UTF-8, JSON of
    /// this contract with schema [`FEEDBACK_SCHEMA`], a ticket id, an RFC 3339 `at`, a
    /// client name that is one, a `priority` exactly with `wrong_priority`, and a note
    /// of at most 2,000 characters.
    pub fn from_json(bytes: &[u8]) -> Result<Feedback, ModelError> {
        let text = record_text(bytes, MAX_FEEDBACK_BYTES)?;
        let feedback: Feedback = serde_json::from_str(text).map_err(json_error)?;
        feedback.validate()?;
        Ok(feedback)
    }

    /// Checks what serde cannot: see [`Feedback::from_json`].
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.schema != FEEDBACK_SCHEMA {
            return Err(ModelError::Schema { found: self.schema.clone(), expected: FEEDBACK_SCHEMA });
        }
        if self.ticket_id.trim().is_empty() {
            return Err(ModelError::EmptyField { field: "ticket_id" });
        }
        let Some(at) = self.at_unix() else {
            return Err(ModelError::Invalid {
                field: "at",
                problem: format!("{:?} is not an RFC 3339 time", self.at),
            });
        };
        // A time far ahead would outrank every real disposition of the ticket.
        if at > OffsetDateTime::now_utc().unix_timestamp() + MAX_CLOCK_SKEW_SECS {
            return Err(ModelError::Invalid {
                field: "at",
                problem: format!("{:?} is more than a day in the future", self.at),
            });
        }
        if let Some(problem) = self.client.as_deref().and_then(crate::client_name_problem) {
            return Err(ModelError::Client { problem });
        }
        match (self.disposition, self.priority) {
            (Disposition::WrongPriority, None) => {
                return Err(ModelError::Invalid {
                    field: "priority",
                    problem: "`wrong_priority` needs the priority the ticket should have had".to_string(),
                })
            }
            (disposition, Some(_)) if disposition != Disposition::WrongPriority => {
                return Err(ModelError::Invalid {
                    field: "priority",
                    problem: format!(
                        "only `wrong_priority` takes a priority, not `{}`",
                        disposition.as_str()
                    ),
                })
            }
            _ => {}
        }
        if self.note.as_ref().is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS) {
            return Err(ModelError::Invalid {
                field: "note",
                problem: format!("longer than {MAX_NOTE_CHARS} characters"),
            });
        }
        Ok(())
    }

    /// Returns `at` in seconds since the epoch.
    pub fn at_unix(&self) -> Option<i64> {
        OffsetDateTime::parse(&self.at, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Feedback, String> {
        Feedback::from_json(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_later_disposition_wins_and_a_same_second_tie_has_one_winner_in_any_order() {
        let (resolved, irrelevant) = ((Disposition::Resolved, 100), (Disposition::Irrelevant, 100));
        assert!(supersedes(resolved, None));
        assert!(supersedes((Disposition::Resolved, 101), Some(irrelevant)));
        assert!(!supersedes((Disposition::BlockAuthor, 99), Some(resolved)));
        assert!(supersedes(resolved, Some(resolved)), "a replay of the kept one");
        // Read in either order, the same one is kept.
        assert!(supersedes(irrelevant, Some(resolved)) && !supersedes(resolved, Some(irrelevant)));
    }

    #[test]
    fn a_valid_record_reads_and_writes_the_same() {
        let json = r#"{"schema":"cull.feedback/v1","ticket_id":"t-1","disposition":"wrong_priority","client":"acme","at":"2026-12-07T10:00:00Z","agent":"ana","priority":"P1","note":"VIP"}"#;
        let feedback = parse(json).unwrap();
        assert_eq!(feedback.disposition, Disposition::WrongPriority);
        assert_eq!(feedback.priority, Some(Priority::P1));
        assert_eq!(feedback.at_unix(), Some(1_796_637_600));
        assert_eq!(serde_json::to_string(&feedback).unwrap(), json);
        assert!(!feedback.disposition.closes() && !feedback.disposition.is_false_positive());
    }

    #[test]
    fn every_bad_record_is_refused_with_the_field_it_gets_wrong() {
        let base = r#""schema":"cull.feedback/v1","ticket_id":"t","at":"2026-12-07T10:00:00Z""#;
        let cases = [
            (format!("{{{base},\"disposition\":\"spam\"}}"), "unknown variant `spam`"),
            (format!("{{{base},\"disposition\":\"resolved\",\"extra\":1}}"), "unknown field `extra`"),
            ("{\"schema\":\"cull.feedback/v1\"".to_string(), "malformed JSON at line 1"),
            (
                r#"{"schema":"cull.ticket/v1","ticket_id":"t","disposition":"resolved","at":"2026-12-07T10:00:00Z"}"#
                    .to_string(),
                "unsupported schema",
            ),
            (
                r#"{"schema":"cull.feedback/v1","ticket_id":" ","disposition":"resolved","at":"2026-12-07T10:00:00Z"}"#
                    .to_string(),
                "`ticket_id` must not be empty",
            ),
            (
                r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"yesterday"}"#.to_string(),
                "field `at`: \"yesterday\" is not an RFC 3339 time",
            ),
            (
                r#"{"schema":"cull.feedback/v1","ticket_id":"t","disposition":"resolved","at":"2999-01-01T00:00:00Z"}"#
                    .to_string(),
                "more than a day in the future",
            ),
            (format!("{{{base},\"disposition\":\"wrong_priority\"}}"), "field `priority`: `wrong_priority` needs"),
            (format!("{{{base},\"disposition\":\"irrelevant\",\"priority\":\"P2\"}}"), "only `wrong_priority`"),
            (format!("{{{base},\"disposition\":\"resolved\",\"client\":\"../x\"}}"), "field `client`"),
            (format!("{{{base},\"disposition\":\"resolved\",\"note\":\"{}\"}}", "n".repeat(2_001)), "field `note`"),
        ];
        for (json, expected) in cases {
            let error = parse(&json).expect_err(&json);
            assert!(error.contains(expected), "{json}: {error}");
        }
        assert!(Feedback::from_json(b"{\"schema\":\"\xff\"}").unwrap_err().to_string().contains("UTF-8"));
        let oversized = vec![b' '; MAX_FEEDBACK_BYTES + 1];
        assert!(matches!(Feedback::from_json(&oversized), Err(ModelError::Oversized { .. })));
    }

    #[test]
    fn dispositions_close_and_count_against_precision_as_agents_mean_them() {
        let closes: Vec<_> = Disposition::ALL.iter().filter(|d| d.closes()).map(|d| d.as_str()).collect();
        assert_eq!(closes, ["resolved", "irrelevant", "duplicate", "block_author"]);
        let false_positives: Vec<_> =
            Disposition::ALL.iter().filter(|d| d.is_false_positive()).map(|d| d.as_str()).collect();
        assert_eq!(false_positives, ["irrelevant", "block_author"]);
        for disposition in Disposition::ALL {
            let json = serde_json::to_string(&disposition).unwrap();
            assert_eq!(json, format!("\"{}\"", disposition.as_str()));
        }
    }
}

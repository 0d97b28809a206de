//! A rule as an operator writes it in `rules/*.toml`.

use std::path::PathBuf;

use cull_model::{Channel, Priority};

/// What a rule example expects the rule to do with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The rule matches.
    Match,
    /// The rule's query matches but a cull removes it.
    Cull,
    /// The rule's query does not match at all.
    None,
}

impl Expect {
    /// Returns the name used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Match => "match",
            Expect::Cull => "cull",
            Expect::None => "none",
        }
    }
}

/// A rule unit test: a mention and what the rule must do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The mention text.
    pub text: String,
    /// An optional title.
    pub title: Option<String>,
    /// An optional URL.
    pub url: Option<String>,
    /// An optional author.
    pub author: Option<String>,
    /// An optional channel.
    pub channel: Option<Channel>,
    /// An optional language.
    pub lang: Option<String>,
    /// The expected outcome.
    pub expect: Expect,
    /// 1-based line of the example's `expect` key in the rule file.
    pub line: usize,
}

impl Example {
    /// Returns the example as a mention with the id `example`.
    pub fn to_mention(&self) -> cull_model::Mention {
        let mut mention = cull_model::Mention::new("example", self.text.clone());
        mention.title.clone_from(&self.title);
        mention.url.clone_from(&self.url);
        mention.author.clone_from(&self.author);
        mention.channel = self.channel;
        mention.lang.clone_from(&self.lang);
        mention
    }
}

/// The spike-detection presets a rule may name: fewer alerts, the default balance,
/// or more alerts.
pub const SPIKE_PRESETS: [&str; 3] = ["fewer", "balanced", "more"];

/// One rule of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique id across the rule set; used in ticket ids, so changing it opens new
    /// tickets.
    pub id: String,
    /// Human name shown to agents.
    pub name: String,
    /// The query that finds candidate mentions.
    pub query: String,
    /// A query; when it matches, the mention is culled for this rule.
    pub exclude: Option<String>,
    /// Queries whose occurrences are hidden from `query`.
    pub mask: Vec<String>,
    /// Ticket priority.
    pub priority: Priority,
    /// The queue (and ticket topic suffix) tickets go to.
    pub queue: String,
    /// Channels the rule applies to; empty means all.
    pub channels: Vec<Channel>,
    /// Languages the rule applies to; empty means all.
    pub langs: Vec<String>,
    /// Disabled rules are loaded and checked but never matched.
    pub enabled: bool,
    /// Whether the rule gets its own metric series.
    pub metrics: bool,
    /// The client whose mentions the rule matches (`None`: a global rule, which
    /// matches every mention). A rule in `rules/<client>/` is that client's; a rule
    /// elsewhere may name one with `client = "..."`.
    pub client: Option<String>,
    /// The client pack (directory `rules/<client>/`) the rule's file is in; `None` for
    /// the top-level files, which the contact center's staff own. A client's operator
    /// reloads only the rules of the client's pack.
    pub pack: Option<String>,
    /// A query; when it also matches a matched mention, its ticket is escalated (the
    /// crisis words of the triage score: `'"food poisoning" OR lawsuit'`).
    pub escalate_on: Option<String>,
    /// The spike-detection preset of the rule (one of [`SPIKE_PRESETS`]), when it is
    /// not the pipeline's.
    pub spike: Option<String>,
    /// Rule unit tests.
    pub examples: Vec<Example>,
    /// The file the rule came from.
    pub path: PathBuf,
    /// 1-based line of the rule's `id` key.
    pub line: usize,
}

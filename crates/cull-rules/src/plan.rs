//! The compiled form of a query: what the matcher evaluates and what becomes a Tantivy
//! query.
//!
//! A [`Plan`] is the AST with every decision already taken: words are analyzed into
//! the terms the index holds, the default scope is expanded into one branch per text
//! field, proximity operands are reduced to alternatives of a single field. The native
//! verifier (`cull-match`) and the Tantivy compiler ([`crate::tantivy_query`]) both
//! walk this one structure, which is what keeps them in agreement.

use cull_model::analyzer::Form;

/// A field of a mention that a query can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The title, analyzed, with positions.
    Title,
    /// The body text, analyzed, with positions.
    Text,
    /// The author, analyzed, with positions.
    Author,
    /// The URL, analyzed, with positions.
    Url,
    /// The host of the URL; a query value matches the host or any suffix of it that
    /// starts at a label boundary (`site:example.com` matches `www.example.com`).
    Site,
    /// The language code, one keyword.
    Lang,
    /// The channel, one keyword.
    Channel,
    /// The configured source name, one keyword.
    Source,
}

impl Field {
    /// Every field, in declaration order.
    pub const ALL: [Field; 8] = [
        Field::Title,
        Field::Text,
        Field::Author,
        Field::Url,
        Field::Site,
        Field::Lang,
        Field::Channel,
        Field::Source,
    ];

    /// The fields an unscoped clause searches.
    pub const DEFAULT: [Field; 2] = [Field::Title, Field::Text];

    /// Returns the name used in queries (`title:`) and as the Tantivy field name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Text => "text",
            Field::Author => "author",
            Field::Url => "url",
            Field::Site => "site",
            Field::Lang => "lang",
            Field::Channel => "channel",
            Field::Source => "source",
        }
    }

    /// Returns the field with the given query name.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Returns true for fields that are analyzed into positioned words (as opposed to
    /// keyword fields whose whole value is one term).
    pub fn is_text(self) -> bool {
        matches!(self, Field::Title | Field::Text | Field::Author | Field::Url)
    }
}

/// Where a positional leaf looks: a text field in one of its two spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextField {
    /// A field for which [`Field::is_text`] is true.
    pub field: Field,
    /// Folded (default) or exact (`{...}`) spelling.
    pub form: Form,
}

/// One analyzed word of a leaf.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word {
    /// Position relative to the first word of the leaf (0 for the first word; gaps
    /// appear where the analyzer skipped an overlong word).
    pub offset: u32,
    /// The term in the spelling of the leaf's [`TextField::form`].
    pub term: String,
}

/// A run of words that must occur at consecutive positions (a phrase), or a single
/// word, optionally matching any term that starts with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sequence {
    /// Where to look.
    pub field: TextField,
    /// At least one word. When there are several, `prefix` is false.
    pub words: Vec<Word>,
    /// For a single word: match every term that starts with it (`conn*`).
    pub prefix: bool,
}

impl Sequence {
    /// Returns the word of a one-word, non-prefix sequence of folded `field`.
    fn folded_word_in(&self, field: Field) -> Option<&str> {
        match self.words.as_slice() {
            [word] if self.field == (TextField { field, form: Form::Folded }) && !self.prefix => {
                Some(word.term.as_str())
            }
            _ => None,
        }
    }

    /// Returns the number of positions from the first word to the last, inclusive.
    pub fn width(&self) -> u32 {
        self.words.last().map_or(0, |w| w.offset + 1)
    }
}

/// The compiled query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Plan {
    /// A word, a prefix or an exact phrase in one field.
    Sequence(Sequence),
    /// A two-word phrase whose words may stand apart, with Tantivy's slop semantics
    /// (`"a b"~n`): the distance between the word's actual and expected positions is
    /// at most `slop`, so a swapped pair costs 2. (Phrases of three or more words are
    /// refused with slop, see [`crate::query::compile`].)
    SloppyPhrase {
        /// The phrase's words.
        sequence: Sequence,
        /// The slop budget.
        slop: u32,
    },
    /// Proximity of two operands in one field; each operand is a set of alternative
    /// sequences, all in that field.
    Near {
        /// Left operand alternatives.
        left: Vec<Sequence>,
        /// Right operand alternatives.
        right: Vec<Sequence>,
        /// At most this many other positions stand between the two occurrences.
        distance: u32,
        /// When true the left occurrence must come first (`ONEAR`).
        ordered: bool,
    },
    /// A keyword field equals a value (already normalized to the indexed form).
    Keyword {
        /// A keyword field ([`Field::is_text`] is false).
        field: Field,
        /// The value.
        value: String,
    },
    /// True when the mention has no value for a keyword field.
    Missing(Field),
    /// Every `must` is true and no `must_not` is; `must` is never empty.
    And {
        /// Clauses that must match.
        must: Vec<Plan>,
        /// Clauses that must not match.
        must_not: Vec<Plan>,
    },
    /// At least one clause is true; never empty.
    Or(Vec<Plan>),
}

impl Plan {
    /// Returns the plan as a conjunction of clauses of words, each clause an OR of
    /// whole words in the default scope (the folded title or text), when that is all
    /// the plan is: `slack (stock OR shares)` gives `[[slack], [stock, shares]]`.
    ///
    /// Such a plan matches exactly when every clause has a word among the terms of the
    /// mention's title or text, which a term lookup decides without positions: the
    /// matcher answers these plans from its prefilter alone.
    pub fn word_clauses(&self) -> Option<Vec<Vec<&str>>> {
        match self {
            Plan::And { must, must_not } if must_not.is_empty() && !must.is_empty() => {
                must.iter().map(Plan::default_scope_words).collect()
            }
            plan => Some(vec![plan.default_scope_words()?]),
        }
    }

    /// Returns the words of an OR of default-scope words (one word is an OR of the
    /// word in the title and in the text).
    fn default_scope_words(&self) -> Option<Vec<&str>> {
        let Plan::Or(any) = self else { return None };
        if let [Plan::Sequence(title), Plan::Sequence(text)] = any.as_slice() {
            if let (Some(a), Some(b)) = (title.folded_word_in(Field::Title), text.folded_word_in(Field::Text))
            {
                return (a == b).then(|| vec![a]);
            }
        }
        let mut words = Vec::new();
        for alternative in any {
            words.extend(alternative.default_scope_words()?);
        }
        (!words.is_empty()).then_some(words)
    }

    /// Calls `visit` for every [`Sequence`] under this plan that is not under a
    /// `must_not`, that is, every leaf that can contribute a highlighted span.
    pub fn for_each_positive_sequence<'a>(&'a self, visit: &mut impl FnMut(&'a Sequence)) {
        match self {
            Plan::Sequence(s) | Plan::SloppyPhrase { sequence: s, .. } => visit(s),
            Plan::Near { left, right, .. } => left.iter().chain(right).for_each(&mut *visit),
            Plan::Keyword { .. } | Plan::Missing(_) => {}
            Plan::And { must, .. } => must.iter().for_each(|p| p.for_each_positive_sequence(visit)),
            Plan::Or(any) => any.iter().for_each(|p| p.for_each_positive_sequence(visit)),
        }
    }
}

/// Returns the text of a text field of a mention, if it has one.
///
/// Both the verifier and the index read field values through this function and
/// [`keyword_values`], so they cannot disagree about what a field holds.
pub fn text_value(mention: &cull_model::Mention, field: Field) -> Option<&str> {
    match field {
        Field::Title => mention.title.as_deref(),
        Field::Text => Some(mention.text.as_str()),
        Field::Author => mention.author.as_deref(),
        Field::Url => mention.url.as_deref(),
        Field::Site | Field::Lang | Field::Channel | Field::Source => None,
    }
}

/// Returns the terms a keyword field of a mention holds (none when it has no value).
pub fn keyword_values(mention: &cull_model::Mention, field: Field) -> Vec<String> {
    match field {
        Field::Site => mention.host().map(|host| site_terms(&host)).unwrap_or_default(),
        Field::Lang => mention.lang.iter().map(|v| keyword_value(v)).collect(),
        Field::Channel => mention.channel.iter().map(|c| c.as_str().to_string()).collect(),
        Field::Source => mention.source.iter().map(|v| keyword_value(v)).collect(),
        Field::Title | Field::Text | Field::Author | Field::Url => Vec::new(),
    }
}

/// Returns a keyword as it is indexed and compared: trimmed and lowercased.
pub fn keyword_value(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Returns the host and every suffix of it that starts at a label boundary, so that
/// `site:example.com` is a plain term lookup for a mention on `www.example.com`.
pub fn site_terms(host: &str) -> Vec<String> {
    let host = keyword_value(host);
    let host = host.trim_end_matches('.');
    let mut terms = vec![host.to_string()];
    terms.extend(host.match_indices('.').map(|(i, _)| host[i + 1..].to_string()).filter(|s| !s.is_empty()));
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_terms_are_label_suffixes() {
        assert_eq!(site_terms("WWW.Example.com."), vec!["www.example.com", "example.com", "com"]);
    }
}

//! Clients: the boundary between the brands one deployment watches for different
//! customers of an outsourcing contact center.
//!
//! A client name appears on sources, rules, queues, mentions, verdicts, tickets,
//! index documents and API tokens. It is checked by one function here, so that the
//! name a rule directory, a token and a topic use cannot differ in what they accept:
//! names become directory names (`rules/<client>/`) and parts of Kafka topic names
//! (`cull.tickets.<client>.<queue>`), so they are lowercase ASCII letters, digits, `-`
//! and `_`, starting with a letter or digit, at most [`MAX_CLIENT_CHARS`] long.
//!
//! Data without a client belongs to the contact center itself (the house): global
//! rules, which every mention is matched against, and mentions from sources with no
//! client, which only staff see.

use std::fmt;

/// The longest client name: it is part of a topic name, which Kafka caps at 249.
pub const MAX_CLIENT_CHARS: usize = 48;

/// The token client, and the scope, of the contact center's own staff: every client.
pub const ALL_CLIENTS: &str = "*";

/// Returns why `name` cannot be a client name, or `None` when it can.
pub fn client_name_problem(name: &str) -> Option<String> {
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest =
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() || name.chars().count() > MAX_CLIENT_CHARS || !valid_start || !valid_rest {
        Some(format!(
            "`{}` is not a client name: use 1 to {MAX_CLIENT_CHARS} of a-z 0-9 - _, starting with a letter or a digit",
            crate::escape::escape_controls(name)
        ))
    } else {
        None
    }
}

/// Checks the client an input names against the client of the source it came
/// through: naming none, or the source's own, is fine; naming another is refused.
pub fn check_claim(claimed: Option<&str>, owner: Option<&str>) -> Result<(), crate::ModelError> {
    match claimed {
        Some(claimed) if Some(claimed) != owner => Err(crate::ModelError::ForeignClient {
            claimed: crate::escape::escape_controls(claimed).into_owned(),
            owner: owner.map(str::to_string),
        }),
        _ => Ok(()),
    }
}

/// Whose data a reader may see: what every read of mentions, verdicts, tickets and
/// rules is limited to.
///
/// It is a parameter of the index's searcher and of the rule set's views, not a
/// filter the HTTP layer adds, so that every way in (the API, the console, `cull
/// search`, backtests) is limited the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The contact center's staff: every client's data and the house's.
    All,
    /// One client: its own data only (not the house's mentions, not other clients').
    Client(String),
}

impl Scope {
    /// Returns the scope a token or a flag names: [`ALL_CLIENTS`] or a client name.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text == ALL_CLIENTS {
            return Ok(Scope::All);
        }
        match client_name_problem(text) {
            None => Ok(Scope::Client(text.to_string())),
            Some(problem) => Err(format!("{problem}, or `{ALL_CLIENTS}` for every client")),
        }
    }

    /// Returns whether data of `client` (`None`: the house's) is visible in this
    /// scope.
    pub fn admits(&self, client: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Client(own) => client == Some(own.as_str()),
        }
    }

    /// Returns whether a rule of `client` (`None`: a global rule) is visible in this
    /// scope: a client sees its own rules and the global ones, which match its
    /// mentions too.
    pub fn admits_rule(&self, client: Option<&str>) -> bool {
        client.is_none() || self.admits(client)
    }

    /// Returns the one client of this scope, `None` for [`Scope::All`].
    pub fn client(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Client(own) => Some(own),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str(ALL_CLIENTS),
            Scope::Client(own) => f.write_str(own),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_what_a_directory_and_a_topic_name_can_hold() {
        for good in ["acme", "globex-eu", "client_7", "7eleven"] {
            assert_eq!(client_name_problem(good), None, "{good}");
        }
        for bad in ["", "Acme", "-acme", "ac me", "acme.eu", "acme/x", "../x", "*", "é", &"a".repeat(49)] {
            assert!(client_name_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_input_may_name_its_sources_client_or_none() {
        assert!(check_claim(None, Some("acme")).is_ok());
        assert!(check_claim(Some("acme"), Some("acme")).is_ok());
        assert!(check_claim(None, None).is_ok());
        let error = check_claim(Some("globex"), Some("acme")).unwrap_err().to_string();
        assert_eq!(error, "field `client` says \"globex\", but this source belongs to client \"acme\"");
        let error = check_claim(Some("acme"), None).unwrap_err().to_string();
        assert_eq!(error, "field `client` says \"acme\", but this source belongs to no client");
    }

    #[test]
    fn a_client_scope_admits_its_own_data_and_global_rules_only() {
        let acme = Scope::parse("acme").unwrap();
        assert!(acme.admits(Some("acme")));
        assert!(!acme.admits(Some("globex")));
        assert!(!acme.admits(None), "the house's mentions are staff only");
        assert!(acme.admits_rule(None), "global rules match every client's mentions");
        assert!(!acme.admits_rule(Some("globex")));
        let staff = Scope::parse("*").unwrap();
        assert!(staff.admits(None) && staff.admits(Some("globex")));
        assert_eq!(staff.to_string(), "*");
        assert!(Scope::parse("Acme").unwrap_err().contains("or `*` for every client"));
    }
}

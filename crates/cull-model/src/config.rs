//! What every component's configuration check returns.
//!
//! Each component crate owns its part of the pipeline file (its serde types and their
//! defaults) and checks the values with a `validate()` that does no I/O. The checks
//! return [`Invalid`] settings named by their key within the component's section, and
//! the binary, which knows where the section sits in the file, prefixes them
//! ([`Invalid::within`]) before it reports every problem at once. The type lives here
//! because this is the one crate every component depends on.

/// A setting whose value does not make sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key, such as `batch_size` or `embedded.capacity`.
    pub key: String,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl Invalid {
    /// Returns the problem of `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { key: key.into(), message: message.into() }
    }

    /// Returns the problem with its key under `section` (`matcher` + `batch_size` is
    /// `matcher.batch_size`; a key starting with `[` is an index: `source` + `[2].url`
    /// is `source[2].url`).
    pub fn within(self, section: &str) -> Invalid {
        let key = if section.is_empty() {
            self.key
        } else if self.key.starts_with('[') {
            format!("{section}{}", self.key)
        } else {
            format!("{section}.{}", self.key)
        };
        Invalid { key, ..self }
    }
}

/// Collects problems: `check(ok, key, message)` records one when `ok` is false.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<Invalid>,
}

impl Checks {
    /// Records a problem with `key` unless `ok`; the message is built only then.
    pub fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(Invalid::new(key, message()));
        }
    }

    /// Records that `value` of `key` must be at least 1.
    pub fn positive(&mut self, key: &str, value: u64) {
        self.check(value > 0, key, || "must be at least 1".to_string());
    }

    /// Adds the problems of a part of this section, named `section`.
    pub fn nested(&mut self, section: &str, problems: Vec<Invalid>) {
        self.problems.extend(problems.into_iter().map(|p| p.within(section)));
    }

    /// Returns every problem recorded.
    pub fn finish(self) -> Vec<Invalid> {
        self.problems
    }
}

/// Returns whether `name` is short and plain enough to be a metrics label value, a
/// consumer group or a file name: 1 to 64 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn is_label(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_their_section() {
        assert_eq!(Invalid::new("batch_size", "x").within("matcher").key, "matcher.batch_size");
        assert_eq!(Invalid::new("[2].url", "x").within("source").key, "source[2].url");
        assert_eq!(Invalid::new("a", "x").within("").key, "a");
        let mut checks = Checks::default();
        checks.positive("n", 0);
        checks.positive("m", 1);
        checks.nested("inner", vec![Invalid::new("k", "bad")]);
        let keys: Vec<String> = checks.finish().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["n", "inner.k"]);
    }

    #[test]
    fn labels_are_plain() {
        assert!(is_label("cull-sink-tickets.v2_x"));
        for bad in ["", ".", "..", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!is_label(bad), "{bad:?}");
        }
    }
}

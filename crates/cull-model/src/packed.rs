//! Strings packed one after another in one allocation.

/// Strings stored one after another in one string and found by their index.
///
/// The matcher and the rule loader keep a million short strings at once (rule ids and
/// versions, literals, id claims): one allocation and a vector of ends, rather than a
/// million allocations scattered in memory, keeps them small and reads them from one
/// place.
#[derive(Debug, Default, Clone)]
pub struct PackedStrings {
    text: String,
    /// `ends[i]` ends string `i` in `text`; it starts where string `i - 1` ends.
    ends: Vec<usize>,
}

impl PackedStrings {
    /// Adds `string` and returns its index.
    pub fn push(&mut self, string: &str) -> usize {
        self.text.push_str(string);
        self.ends.push(self.text.len());
        self.ends.len() - 1
    }

    /// Returns string `index`; panics when there is no such string.
    pub fn get(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[index]]
    }

    /// Returns the number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Returns true when there is no string.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Makes room for `strings` more strings.
    pub fn reserve(&mut self, strings: usize) {
        self.ends.reserve(strings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_by_index_empty_ones_too() {
        let mut packed = PackedStrings::default();
        let given = ["slack", "", "Café’s", "r1"];
        let indexes: Vec<usize> = given.iter().map(|s| packed.push(s)).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
        assert_eq!((0..packed.len()).map(|i| packed.get(i)).collect::<Vec<_>>(), given);
        assert!(!packed.is_empty() && PackedStrings::default().is_empty());
    }
}

//! The rule-pack loader: any file loads or is refused with located errors, and what
//! loads makes a rule set.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let loaded = cull_rules::load_files([(Path::new("fuzz.toml"), data)]);
    for error in &loaded.errors {
        let _ = error.to_string();
    }
    if loaded.errors.is_empty() {
        let _ = cull_match::RuleSet::new(loaded.rules);
    }
});

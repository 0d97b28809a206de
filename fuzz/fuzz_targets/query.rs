//! The query parser and compiler: any text parses or fails with a located error, and
//! what compiles becomes a Tantivy query.
#![no_main]

use cull_rules::query::{compile, parse};
use cull_rules::tantivy_query::MentionSchema;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(node) => {
            if let Ok(plan) = compile(&node) {
                let _ = MentionSchema::new().query(&plan);
            }
        }
        Err(error) => {
            assert!(
                error.span.start <= error.span.end && error.span.end <= text.len(),
                "{error:?} in {text:?}"
            );
        }
    }
});

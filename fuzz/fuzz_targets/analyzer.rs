//! The analyzer: any text is cut into tokens whose byte ranges are in order, within
//! the text and on character boundaries, in every form and mode.
#![no_main]

use cull_model::analyzer::{analyze, Form, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for form in [Form::Folded, Form::Exact] {
        for mode in [Mode::Index, Mode::Query] {
            let mut last_position = 0;
            for token in analyze(text, form, mode) {
                assert!(token.start <= token.end && token.end <= text.len(), "{token:?} in {text:?}");
                assert!(
                    text.is_char_boundary(token.start) && text.is_char_boundary(token.end),
                    "{token:?} in {text:?}"
                );
                assert!(token.position >= last_position, "positions go forward: {token:?} in {text:?}");
                last_position = token.position;
            }
        }
    }
});

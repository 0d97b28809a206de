//! HTML to text: any markup becomes text without a panic, and text with no markup in
//! it keeps its words.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|html: &str| {
    let text = cull_ingest::html_to_text(html);
    if !html.contains(['<', '&', '\0', '\r']) {
        assert!(text.split_whitespace().eq(html.split_whitespace()), "{text:?} from {html:?}");
    }
});

//! HTML to text: any markup becomes text without a panic, and text with no markup in
//! it keeps its words (without the control characters and byte-order marks that
//! ingest removes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|html: &str| {
    let text = cull_ingest::html_to_text(html);
    if !html.contains(['<', '&', '\0', '\r']) {
        let visible: String =
            html.chars().filter(|c| c.is_whitespace() || (!c.is_control() && *c != '\u{FEFF}')).collect();
        assert!(text.split_whitespace().eq(visible.split_whitespace()), "{text:?} from {html:?}");
    }
});

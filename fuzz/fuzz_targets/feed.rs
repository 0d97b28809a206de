//! Feed normalization: any document parses into drafts or fails with an error, and
//! every draft normalizes into a mention that cull can read back.
#![no_main]

use cull_model::{Channel, Mention};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = cull_ingest::feed::parse_feed(data, "fuzz", Channel::News, "https://example.com/feed")
    else {
        return;
    };
    let now = time::OffsetDateTime::UNIX_EPOCH;
    for (_, draft) in entries {
        let mention = cull_ingest::normalize(draft, now);
        let bytes = serde_json::to_vec(&mention).expect("a mention serializes");
        Mention::from_json_limited(&bytes, usize::MAX).expect("a normalized mention reads back");
    }
});

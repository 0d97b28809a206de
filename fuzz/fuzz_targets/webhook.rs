//! Webhook bodies, in the mention shape and through a field mapping: any body becomes
//! drafts or is refused, and every draft normalizes into a mention.
#![no_main]

use std::collections::BTreeMap;

use cull_ingest::webhook::{parse_request_body, FieldMapping, WebhookConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plain = WebhookConfig::new("hook");
    let pointers = BTreeMap::from([
        ("text".to_string(), "/data/body".to_string()),
        ("author".to_string(), "/data/user/name".to_string()),
        ("channel".to_string(), "/data/network".to_string()),
        ("meta.followers".to_string(), "/data/user/followers".to_string()),
    ]);
    let mapped = WebhookConfig {
        mapping: Some(FieldMapping::new(pointers).expect("a valid mapping")),
        ..WebhookConfig::new("mapped")
    };
    for config in [plain, mapped] {
        if let Ok(drafts) = parse_request_body(&config, data) {
            for draft in drafts {
                let mention = cull_ingest::normalize(draft, time::OffsetDateTime::UNIX_EPOCH);
                assert!(!mention.id.is_empty());
            }
        }
    }
});

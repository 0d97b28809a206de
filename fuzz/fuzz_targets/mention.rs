//! Mention decoding: any bytes decode or are refused with an error, and a decoded
//! mention survives a round trip.
#![no_main]

use cull_model::Mention;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mention) = Mention::from_json(data) {
        let bytes = serde_json::to_vec(&mention).expect("a mention serializes");
        assert_eq!(Mention::from_json(&bytes).expect("what cull writes, it reads"), mention);
    }
});

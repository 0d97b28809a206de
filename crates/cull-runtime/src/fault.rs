//! Fault injection, for the tests that prove a panic is isolated and that a failing
//! stage stops the process cleanly (feature `failpoints`, off in a normal build, where
//! these functions are empty).
//!
//! With the feature on, the `FAILPOINTS` environment variable of the `fail` crate
//! configures them (`cull` calls `fail::FailScenario::setup` at start):
//!
//! * `stage::record=return(<stage>:<key>)`: the stage panics while processing the
//!   record whose key is `<key>` (a mention id), as a bug on one poison record would;
//! * `stage::flush=return(<stage>)`: the stage panics while flushing its state, a
//!   failure no single record explains;
//! * `stage::restore=sleep(<ms>)`: a stage with a changelog takes that long more to
//!   read it back at start, a slow start the readiness probe must report.

use cull_bus::Record;

/// Panics when `FAILPOINTS` asks `stage` to panic on `record`.
#[cfg(feature = "failpoints")]
pub(crate) fn record(stage: &str, record: &Record) {
    fail::fail_point!("stage::record", |target: Option<String>| {
        let target = target.unwrap_or_default();
        if let Some((name, key)) = target.split_once(':') {
            if name == stage && record.key.as_deref() == Some(key.as_bytes()) {
                panic!("injected fault: the {stage} stage panics on record {key}");
            }
        }
    });
}

/// Does nothing: fault injection is compiled out.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn record(_stage: &str, _record: &Record) {}

/// Panics when `FAILPOINTS` asks `stage` to panic while flushing.
#[cfg(feature = "failpoints")]
pub(crate) fn flush(stage: &str) {
    fail::fail_point!("stage::flush", |target: Option<String>| {
        if target.as_deref() == Some(stage) {
            panic!("injected fault: the {stage} stage panics while flushing");
        }
    });
}

/// Does nothing: fault injection is compiled out.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn flush(_stage: &str) {}

/// Waits as long as `FAILPOINTS` asks before a stage reads its changelog back (on a
/// blocking thread: the failpoint's sleep blocks).
#[cfg(feature = "failpoints")]
pub(crate) async fn restore() {
    let _ = tokio::task::spawn_blocking(|| fail::fail_point!("stage::restore")).await;
}

/// Does nothing: fault injection is compiled out.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) async fn restore() {}

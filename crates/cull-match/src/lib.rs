//! The compiled rule set of cull and the matching of mentions against it.
#![deny(missing_docs)]

pub mod verify;

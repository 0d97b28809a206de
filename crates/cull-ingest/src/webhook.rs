//! webhook (in progress)

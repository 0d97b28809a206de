//! Native verification of plans.

//! Benchmark: parse and validate a 5,000-host inventory.
fn main() {}

//! host-shim: placeholder.
fn main() {}

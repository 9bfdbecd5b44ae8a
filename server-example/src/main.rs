//! The Tidewire reference server.
fn main() {}

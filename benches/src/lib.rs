//! Benchmark support for Tidewire (criterion benches live in `benches/`).

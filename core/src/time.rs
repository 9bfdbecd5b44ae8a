//! The clock of the async shell.
//!
//! The pure state modules take `now` as a [`std::time::Instant`]; the shell
//! reads it here, from tokio's clock, so that tests which pause and advance
//! tokio's time (`#[tokio::test(start_paused = true)]`) drive rate limits,
//! recovery windows, leases and peer expiry without waiting on the wall
//! clock. Outside a paused runtime it is the system's monotonic clock.

/// Now, as the pure modules take it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

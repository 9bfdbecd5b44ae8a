//! Helpers shared by the client's integration tests.

#![allow(dead_code)]

use std::time::Duration;

use tidewire::client::{Socket, SocketState};

/// The longest a test waits for one step.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// Waits until `socket` is connected.
pub(crate) async fn connected(socket: &Socket) {
    let mut rx = socket.watch_state();
    tokio::time::timeout(STEP, rx.wait_for(|s| matches!(s, SocketState::Connected { .. })))
        .await
        .expect("connected in time")
        .unwrap();
}

/// The socket's first state past `Connecting`.
pub(crate) async fn settled(socket: &Socket) -> SocketState {
    let mut rx = socket.watch_state();
    tokio::time::timeout(
        STEP,
        rx.wait_for(|s| matches!(s, SocketState::Connected { .. } | SocketState::Disconnected { .. })),
    )
    .await
    .expect("settled in time")
    .unwrap()
    .clone()
}

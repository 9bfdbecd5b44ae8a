//! Encoded packets as tungstenite messages, for the server transport and
//! the client alike.

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::protocol::engine::Encoded;

/// `packet` as a WebSocket message. Text is already valid UTF-8: it goes
/// out as a text frame without being validated again for every recipient.
pub(crate) fn to_message(packet: Encoded) -> Message {
    match packet {
        Encoded::Text(s) => Message::Frame(Frame::message(s.into_bytes(), OpCode::Data(Data::Text), true)),
        Encoded::Binary(b) => Message::Binary(b),
    }
}

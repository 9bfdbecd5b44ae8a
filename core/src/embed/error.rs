//! The one table of error codes every binding uses.
//!
//! Each core error a binding can meet becomes an [`EmbedError`], whose
//! [`code`](EmbedError::code) is an [`ErrorCode`] with a stable string
//! ([`ErrorCode::as_str`], e.g. `ERR_TOO_MANY_ROOMS`). Node throws an
//! `Error` whose `code` is that string; Python raises the exception class
//! of the code (a subclass of `TidewireError`) whose `.code` is the same
//! string. A binding maps codes to its own error types and nothing else.

use std::fmt;

use crate::hub::ClusterError;
use crate::hub::{AckError, EmitError, TooManyRooms};

/// What kind of failure an [`EmbedError`] is, with a stable string code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A bad argument or option from the host language.
    InvalidArgument,
    /// A socket is already in as many rooms as allowed.
    TooManyRooms,
    /// The server was closed.
    ServerClosed,
    /// The listener could not be bound.
    Listen,
    /// The socket cannot take more (closed, or its queue is full).
    Send,
    /// The client did not answer an acknowledgement in time.
    AckTimeout,
    /// The socket disconnected before answering.
    Disconnected,
    /// The acknowledgement was already answered.
    AckAlreadySent,
    /// The cluster bus cannot answer.
    Cluster,
}

impl ErrorCode {
    /// Every code, in the order bindings declare their error types.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidArgument,
        ErrorCode::TooManyRooms,
        ErrorCode::ServerClosed,
        ErrorCode::Listen,
        ErrorCode::Send,
        ErrorCode::AckTimeout,
        ErrorCode::Disconnected,
        ErrorCode::AckAlreadySent,
        ErrorCode::Cluster,
    ];

    /// The stable string (Node's `err.code`, Python's `exc.code`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "ERR_INVALID_ARG",
            ErrorCode::TooManyRooms => "ERR_TOO_MANY_ROOMS",
            ErrorCode::ServerClosed => "ERR_SERVER_CLOSED",
            ErrorCode::Listen => "ERR_LISTEN",
            ErrorCode::Send => "ERR_SEND",
            ErrorCode::AckTimeout => "ERR_ACK_TIMEOUT",
            ErrorCode::Disconnected => "ERR_DISCONNECTED",
            ErrorCode::AckAlreadySent => "ERR_ACK_SENT",
            ErrorCode::Cluster => "ERR_CLUSTER",
        }
    }

    /// The code whose string is `code`.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong, with a stable [`code`](EmbedError::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// A bad argument from the host language.
    #[error("{0}")]
    InvalidArgument(String),
    /// A socket is in too many rooms.
    #[error(transparent)]
    TooManyRooms(#[from] TooManyRooms),
    /// The server was closed.
    #[error("the server is closed")]
    Closed,
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An emit or an ack answer did not go out.
    #[error("{0}")]
    Send(String),
    /// The client did not answer in time.
    #[error("the client did not answer in time")]
    AckTimeout,
    /// The socket disconnected before answering.
    #[error("the socket disconnected")]
    Disconnected,
    /// The acknowledgement was already answered.
    #[error("this acknowledgement was already sent")]
    AckAlreadySent,
    /// The cluster bus cannot answer.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl EmbedError {
    /// The kind, from the one table of codes.
    pub fn code(&self) -> ErrorCode {
        match self {
            EmbedError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            EmbedError::TooManyRooms(_) => ErrorCode::TooManyRooms,
            EmbedError::Closed => ErrorCode::ServerClosed,
            EmbedError::Listen { .. } => ErrorCode::Listen,
            EmbedError::Send(_) => ErrorCode::Send,
            EmbedError::AckTimeout => ErrorCode::AckTimeout,
            EmbedError::Disconnected => ErrorCode::Disconnected,
            EmbedError::AckAlreadySent => ErrorCode::AckAlreadySent,
            EmbedError::Cluster(_) => ErrorCode::Cluster,
        }
    }
}

impl From<EmitError> for EmbedError {
    fn from(e: EmitError) -> EmbedError {
        EmbedError::Send(e.to_string())
    }
}

impl From<AckError> for EmbedError {
    fn from(e: AckError) -> EmbedError {
        match e {
            AckError::Timeout => EmbedError::AckTimeout,
            AckError::Disconnected => EmbedError::Disconnected,
            other => EmbedError::Send(other.to_string()),
        }
    }
}

/// An [`EmbedError::InvalidArgument`] saying `message`.
pub(crate) fn invalid(message: impl Into<String>) -> EmbedError {
    EmbedError::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_table_has_one_stable_string_per_code() {
        let strings: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(strings.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!(code.as_str().starts_with("ERR_"), "{code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("ERR_NOPE"), None);
    }

    #[test]
    fn core_errors_map_to_their_codes() {
        let full = EmbedError::from(TooManyRooms { max: 2 });
        assert_eq!(full.code().as_str(), "ERR_TOO_MANY_ROOMS");
        assert_eq!(EmbedError::from(AckError::Timeout).code().as_str(), "ERR_ACK_TIMEOUT");
        assert_eq!(EmbedError::from(AckError::Disconnected).code().as_str(), "ERR_DISCONNECTED");
        assert_eq!(EmbedError::from(AckError::TooManyPending).code().as_str(), "ERR_SEND");
        assert_eq!(EmbedError::AckAlreadySent.code().as_str(), "ERR_ACK_SENT");
        assert_eq!(EmbedError::Closed.code().as_str(), "ERR_SERVER_CLOSED");
        assert_eq!(invalid("x").code().as_str(), "ERR_INVALID_ARG");
    }
}

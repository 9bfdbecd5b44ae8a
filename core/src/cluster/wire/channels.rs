//! The channel names of `@socket.io/redis-adapter` 8.x, and what a channel name designates. Those of the classic
//! protocol ([`classic`](super::classic)) all come from here; the [`sharded`](super::sharded) protocol names its
//! namespace and room channels alike.
//!
//! With prefix `socket.io` (the adapter's `key`) and namespace `/chat`:
//!
//! | channel | carries |
//! |---|---|
//! | `socket.io#/chat#` | broadcasts to every socket of the namespace, or to several rooms |
//! | `socket.io#/chat#<room>#` | broadcasts to exactly one room |
//! | `socket.io-request#/chat#` | requests between nodes; its subscriber count is the number of nodes |
//! | `socket.io-response#/chat#` | answers |
//! | `socket.io-response#/chat#<uid>#` | answers to node `uid` (`publishOnSpecificResponseChannel`) |

/// The key prefix of the official adapter when its `key` option is not set.
pub const DEFAULT_PREFIX: &str = "socket.io";

/// The namespace-wide broadcast channel, `<prefix>#<nsp>#`.
pub fn broadcast_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The broadcast channel of one room, `<prefix>#<nsp>#<room>#`, used when a broadcast names exactly one room.
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    format!("{prefix}#{nsp}#{room}#")
}

/// The `PSUBSCRIBE` pattern that receives every broadcast of a namespace, `<prefix>#<nsp>#*`. Like the official
/// adapter it does not escape glob characters (`*`, `?`, `[`) in the namespace name.
pub fn broadcast_pattern(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#*")
}

/// The request channel of a namespace, `<prefix>-request#<nsp>#`. Its subscriber count (`PUBSUB NUMSUB`) is the
/// number of servers the official adapter waits for, so every node must subscribe and answer.
pub fn request_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-request#{nsp}#")
}

/// The response channel of a namespace, `<prefix>-response#<nsp>#`, or with `uid` the requesting node's own
/// `<prefix>-response#<nsp>#<uid>#` (used by nodes that run with `publishOnSpecificResponseChannel`). A node
/// subscribes to both.
pub fn response_channel(prefix: &str, nsp: &str, uid: Option<&str>) -> String {
    match uid {
        Some(uid) => format!("{prefix}-response#{nsp}#{uid}#"),
        None => format!("{prefix}-response#{nsp}#"),
    }
}

/// What a channel name designates (see [`parse_channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel<'a> {
    /// A broadcast channel: namespace-wide, or of one room.
    Broadcast {
        /// The namespace.
        nsp: &'a str,
        /// The room, for a single-room channel.
        room: Option<&'a str>,
    },
    /// The request channel of a namespace.
    Request {
        /// The namespace.
        nsp: &'a str,
    },
    /// A response channel: namespace-wide, or addressed to one node.
    Response {
        /// The namespace.
        nsp: &'a str,
        /// The uid of the node it is addressed to.
        uid: Option<&'a str>,
    },
}

/// Tells what `channel` is, for key prefix `prefix`, or `None` when it is none of this adapter's channels.
///
/// Without knowing the namespaces, the namespace is taken to run up to the first `#` after the prefix (namespace
/// names do not normally contain `#`; use [`broadcast_room`] when the namespace is known, as the official adapter
/// does). The room is the rest of the channel minus its last character, exactly as the official adapter's
/// `onmessage` extracts it (`channel.slice(this.channel.length, -1)`), so a room name may contain `#`; an empty rest
/// or a rest of a single character means the namespace-wide channel.
pub fn parse_channel<'a>(prefix: &str, channel: &'a str) -> Option<Channel<'a>> {
    if let Some(rest) = channel.strip_prefix(prefix) {
        if let Some(rest) = rest.strip_prefix("-request#") {
            let nsp = rest.strip_suffix('#')?;
            return Some(Channel::Request { nsp });
        }
        if let Some(rest) = rest.strip_prefix("-response#") {
            let inner = rest.strip_suffix('#')?;
            return Some(match inner.split_once('#') {
                Some((nsp, uid)) => Channel::Response { nsp, uid: Some(uid) },
                None => Channel::Response { nsp: inner, uid: None },
            });
        }
        if let Some(rest) = rest.strip_prefix('#') {
            let (nsp, tail) = rest.split_once('#')?;
            return Some(Channel::Broadcast { nsp, room: room_of_tail(tail) });
        }
    }
    None
}

/// The room a broadcast channel of namespace `nsp` names, with the official adapter's rule: `None` when `channel`
/// is not one of this namespace's broadcast channels, `Some(None)` for the namespace-wide channel, `Some(Some(room))`
/// for a room channel (the room may contain `#`).
pub fn broadcast_room<'a>(prefix: &str, nsp: &str, channel: &'a str) -> Option<Option<&'a str>> {
    let tail = channel.strip_prefix(prefix)?.strip_prefix('#')?.strip_prefix(nsp)?.strip_prefix('#')?;
    Some(room_of_tail(tail))
}

/// `tail.slice(0, -1)`, with an empty result meaning "no room" (the official adapter's `room !== ""` test).
fn room_of_tail(tail: &str) -> Option<&str> {
    let mut chars = tail.chars();
    chars.next_back();
    let room = chars.as_str();
    (!room.is_empty()).then_some(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert_eq!(broadcast_channel(DEFAULT_PREFIX, "/chat"), "socket.io#/chat#");
        assert_eq!(room_channel(DEFAULT_PREFIX, "/", "a#b"), "socket.io#/#a#b#");
        assert_eq!(broadcast_pattern(DEFAULT_PREFIX, "/"), "socket.io#/#*");
        assert_eq!(request_channel(DEFAULT_PREFIX, "/chat"), "socket.io-request#/chat#");
        assert_eq!(response_channel(DEFAULT_PREFIX, "/", None), "socket.io-response#/#");
        assert_eq!(response_channel(DEFAULT_PREFIX, "/", Some("u1")), "socket.io-response#/#u1#");

        let p = DEFAULT_PREFIX;
        assert_eq!(parse_channel(p, "socket.io#/chat#"), Some(Channel::Broadcast { nsp: "/chat", room: None }));
        assert_eq!(parse_channel(p, "socket.io#/#a#b#"), Some(Channel::Broadcast { nsp: "/", room: Some("a#b") }));
        assert_eq!(parse_channel(p, "socket.io#/#é#"), Some(Channel::Broadcast { nsp: "/", room: Some("é") }));
        // One character after the namespace is no room, as in the adapter's `slice(len, -1)`.
        assert_eq!(parse_channel(p, "socket.io#/#x"), Some(Channel::Broadcast { nsp: "/", room: None }));
        assert_eq!(parse_channel(p, "socket.io-request#/chat#"), Some(Channel::Request { nsp: "/chat" }));
        assert_eq!(parse_channel(p, "socket.io-response#/#"), Some(Channel::Response { nsp: "/", uid: None }));
        assert_eq!(
            parse_channel(p, "socket.io-response#/chat#Ab-_9z#"),
            Some(Channel::Response { nsp: "/chat", uid: Some("Ab-_9z") })
        );
        for other in [
            "socket.io",
            "socket.io#/",
            "other#/#",
            "socket.io-request#/",
            "socket.iox#/#",
            "",
            "socket.io-participant#/#",
        ] {
            assert_eq!(parse_channel(p, other), None, "{other}");
        }
        assert_eq!(parse_channel("app", "app#/#r#"), Some(Channel::Broadcast { nsp: "/", room: Some("r") }));

        assert_eq!(broadcast_room(p, "/", "socket.io#/#"), Some(None));
        assert_eq!(broadcast_room(p, "/", "socket.io#/#room#1#"), Some(Some("room#1")));
        assert_eq!(broadcast_room(p, "/a#b", "socket.io#/a#b#r#"), Some(Some("r")));
        assert_eq!(broadcast_room(p, "/", "socket.io#/chat#"), None);
    }
}

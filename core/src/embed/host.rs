//! Engine.IO sessions carried by the host language's own HTTP server (an
//! ASGI server, Node's `http.Server`), as plain values: what a binding
//! reads from its server goes in as an [`HttpRequest`], what to answer
//! comes out as an [`HttpAnswer`], and WebSocket frames go through
//! [`transport::host::WebSocket`](crate::transport::host::WebSocket).
//!
//! The engine serving these sessions is the server's
//! [`host_engine`](super::Embedded::host_engine): the same hub as the
//! built-in listener, so sockets of both meet in the same rooms.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::error::{EmbedError, invalid};
use crate::engine::Engine;
use crate::protocol::engine::Encoded;
use crate::transport::host::{self, RequestBody, WebSocketAccept};

/// A request as the host's server parsed it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`, `OPTIONS`, ...
    pub method: String,
    /// The path and query (`/socket.io/?EIO=4&transport=polling`).
    pub target: String,
    /// The headers in the order received (names in any case).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client's address (`ip:port`, `[ip6]:port` or a bare IP); an
    /// unknown address (a Unix socket) counts as `0.0.0.0:0`.
    pub remote: Option<String>,
    /// Whether the request came over TLS.
    pub secure: bool,
}

/// The answer to send: status, headers (lower-case names) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The complete body.
    pub body: Bytes,
}

impl HttpAnswer {
    fn of(response: http::Response<Bytes>) -> HttpAnswer {
        let (parts, body) = response.into_parts();
        let headers = parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
        HttpAnswer { status: parts.status.as_u16(), headers, body }
    }
}

/// The client's address: `ip:port`, `[ip6]:port` or a bare IP.
fn remote_addr(remote: Option<&str>) -> SocketAddr {
    let unknown = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let Some(text) = remote else { return unknown };
    text.parse::<SocketAddr>()
        .or_else(|_| text.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .unwrap_or(unknown)
}

/// The URI to build a request with from its target (path and query): an
/// absolute `https://` URI is how the host transport learns of TLS.
pub fn request_uri(target: &str, secure: bool) -> String {
    match secure {
        true => format!("https://localhost{target}"),
        false => target.to_owned(),
    }
}

impl HttpRequest {
    fn build<B>(&self, body: B) -> Result<(http::Request<B>, SocketAddr), EmbedError> {
        if !self.target.starts_with('/') {
            return Err(invalid(format!("the request target {:?} must start with '/'", self.target)));
        }
        let mut request =
            http::Request::builder().method(self.method.as_str()).uri(request_uri(&self.target, self.secure));
        for (name, value) in &self.headers {
            request = request.header(name.as_slice(), value.as_slice());
        }
        let request = request.body(body).map_err(|e| invalid(format!("bad request: {e}")))?;
        Ok((request, remote_addr(self.remote.as_deref())))
    }
}

/// Answers a long-polling request (see [`host::handle`]): a pending `GET`
/// completes when there is something to send; drop the future when the
/// client goes away.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for a method, target or header the
/// `http` crate refuses.
pub async fn http(engine: &Engine, request: &HttpRequest, body: Bytes) -> Result<HttpAnswer, EmbedError> {
    let (request, remote) = request.build(RequestBody::from(body))?;
    Ok(HttpAnswer::of(host::handle(engine, request, remote).await))
}

/// Decides a WebSocket request before the host accepts it (see
/// [`host::accept_websocket`]).
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for a request the `http` crate
/// refuses.
pub fn websocket(engine: &Engine, request: &HttpRequest) -> Result<Result<WebSocketAccept, HttpAnswer>, EmbedError> {
    let (request, remote) = request.build(())?;
    Ok(host::accept_websocket(engine, &request, remote).map_err(HttpAnswer::of))
}

/// `packets` as the WebSocket frames a server sends (unmasked, one final
/// frame each: text packets as text frames, binary ones as binary), back to
/// back in one buffer: for a host that writes a session's WebSocket
/// traffic to its socket itself, one write per batch instead of one per
/// frame, and no per-frame work in its language.
///
/// # Examples
/// ```
/// use tidewire::embed::host::websocket_frames;
/// use tidewire::protocol::engine::Encoded;
///
/// let wire = websocket_frames([Encoded::Text("4hi".into()), Encoded::Binary(vec![7].into())]);
/// assert_eq!(wire, [0x81, 3, b'4', b'h', b'i', 0x82, 1, 7]);
/// ```
pub fn websocket_frames(packets: impl IntoIterator<Item = Encoded>) -> Vec<u8> {
    let frames: Vec<Frame> = packets
        .into_iter()
        .map(|p| match p {
            Encoded::Text(text) => Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true),
            Encoded::Binary(data) => Frame::message(data, OpCode::Data(Data::Binary), true),
        })
        .collect();
    let mut out = Vec::with_capacity(frames.iter().map(Frame::len).sum());
    for frame in frames {
        // Writing to a Vec cannot fail.
        let _ = frame.format(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::hub::Hub;

    fn get(target: &str) -> HttpRequest {
        HttpRequest { method: "GET".to_owned(), target: target.to_owned(), ..HttpRequest::default() }
    }

    #[test]
    fn frames_of_every_length_class() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let wire = websocket_frames([Encoded::Binary(vec![1; len].into())]);
            let header: &[u8] = match len {
                0..=125 => &[0x82, len as u8],
                126..=65_535 => &[0x82, 126, (len >> 8) as u8, len as u8],
                _ => &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0],
            };
            assert_eq!(&wire[..header.len()], header, "{len}");
            assert_eq!(wire.len(), header.len() + len);
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(remote_addr(Some("10.0.0.1:5")), "10.0.0.1:5".parse().unwrap());
        assert_eq!(remote_addr(Some("[::1]:7")), "[::1]:7".parse().unwrap());
        assert_eq!(remote_addr(Some("::1")), "[::1]:0".parse().unwrap());
        assert_eq!(remote_addr(None), "0.0.0.0:0".parse().unwrap());
        assert_eq!(remote_addr(Some("unix socket")), "0.0.0.0:0".parse().unwrap());
    }

    #[tokio::test]
    async fn a_polling_handshake_and_a_refused_websocket() {
        let hub = Hub::default();
        hub.of("/");
        let engine = hub.engine(EngineConfig::default());
        let mut open = get("/socket.io/?EIO=4&transport=polling");
        open.headers.push((b"Origin".to_vec(), b"http://a".to_vec()));
        open.remote = Some("127.0.0.1:4000".to_owned());
        let answer = http(&engine, &open, Bytes::new()).await.unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.body.starts_with(b"0{\"sid\":"));
        assert!(answer.headers.iter().any(|(n, _)| n == "content-type"));

        let refused = websocket(&engine, &get("/socket.io/?EIO=4&transport=websocket&sid=nope")).unwrap();
        let answer = refused.unwrap_err();
        assert_eq!(
            (answer.status, answer.body.as_ref()),
            (400, br#"{"code":1,"message":"Session ID unknown"}"#.as_ref())
        );
        assert!(websocket(&engine, &get("no-slash")).is_err());
        let bad_method = HttpRequest { method: "G ET".to_owned(), ..get("/socket.io/") };
        assert_eq!(http(&engine, &bad_method, Bytes::new()).await.unwrap_err().code().as_str(), "ERR_INVALID_ARG");
    }
}

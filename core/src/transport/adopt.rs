//! A host hands a WebSocket connection over: after its HTTP parser has
//! read an upgrade request and the engine accepted it
//! ([`host::accept_websocket`](super::host::accept_websocket)), the host
//! gives the connection itself (in Node: its file descriptor, duplicated)
//! with the bytes it read past the request. The core answers the upgrade
//! (`101` with `Sec-WebSocket-Accept` and the host's own response headers)
//! and owns the socket from then on, running the same WebSocket session
//! code as its own listener ([`super::ws`]): frames never pass through
//! the host again.

use http::header::{self, HeaderMap};
use http::{Method, Request};
use tokio::io::AsyncWriteExt as _;

use super::host::WebSocketAccept;
use super::lean_io::LeanIo;
use super::websocket::{self, Target};
use super::ws::{self, Io};
use crate::engine::CloseReason;

/// A step of the upgrade of a polling session on a connection the host
/// handed over (see [`WebSocketAccept::adopt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeStep {
    /// `2probe` was answered: engine.io's `upgrading`.
    Started,
    /// The client sent `5`: the session now runs on this WebSocket
    /// (engine.io's `upgrade`).
    Done,
}

/// Told each [`UpgradeStep`] of an adopted connection's upgrade, on the
/// connection's task.
pub type UpgradeWatch = Box<dyn Fn(UpgradeStep) + Send + Sync>;

/// The `Sec-WebSocket-Accept` of `request` when it is a WebSocket handshake
/// the core can answer itself: a `GET` with `Upgrade: websocket`, a valid
/// key and version 13 (the checks of npm `ws`, which answers the others).
pub(super) fn accept_key<B>(request: &Request<B>) -> Option<String> {
    let headers = request.headers();
    let upgrade = headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if request.method() != Method::GET || !upgrade {
        return None;
    }
    ws::accept_key(headers)
}

/// The `101` answering a handshake whose key gives `accept`, with the
/// host's own `headers` after the handshake's (as npm `ws` writes it).
fn switching_protocols(accept: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

impl WebSocketAccept {
    /// Whether [`adopt`](Self::adopt) can answer this handshake (a `GET`
    /// with `Upgrade: websocket`, a valid `Sec-WebSocket-Key`, version 13).
    /// When it cannot, the host completes the handshake itself (and
    /// refuses it) as before.
    pub fn can_adopt(&self) -> bool {
        self.accept_key.is_some()
    }

    /// Takes the connection over from the host: answers the upgrade with
    /// `101` (`Sec-WebSocket-Accept`, then `headers`, the host's own
    /// response headers: cookies, CORS), then runs the session on it with
    /// the core's WebSocket code until either side closes, and drops `io`
    /// (closing it). `head` is what the host read past the request. A new
    /// session opens now, on the calling thread (its handler's `on_open`
    /// runs before this returns); the upgrade of a polling session runs the
    /// probe dance and tells `watch` its steps.
    ///
    /// # Errors
    /// `self` back, with `io` dropped, when the handshake is not one the
    /// core answers (see [`can_adopt`](Self::can_adopt)).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    ///
    /// # Examples
    /// ```
    /// use tidewire::engine::EngineConfig;
    /// use tidewire::hub::Hub;
    /// use tidewire::transport::host;
    /// use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = Hub::default();
    /// hub.of("/");
    /// let engine = hub.engine(EngineConfig::default());
    /// let req = http::Request::get("/socket.io/?EIO=4&transport=websocket")
    ///     .header("upgrade", "websocket")
    ///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .unwrap();
    /// let accept = host::accept_websocket(&engine, &req, "127.0.0.1:50000".parse().unwrap()).unwrap();
    /// // The host's connection; here one end of an in-memory pipe.
    /// let (connection, mut client) = tokio::io::duplex(4096);
    /// accept.adopt(connection, &[], &http::HeaderMap::new(), None).unwrap();
    /// let mut answer = vec![0; 4096];
    /// let n = client.read(&mut answer).await.unwrap();
    /// let answer = String::from_utf8_lossy(&answer[..n]);
    /// assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    /// assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    /// # client.shutdown().await.unwrap();
    /// # });
    /// ```
    #[allow(clippy::result_large_err, reason = "the error gives the accepted request back to the host")]
    pub fn adopt<S>(
        self,
        io: S,
        head: &[u8],
        headers: &HeaderMap,
        watch: Option<UpgradeWatch>,
    ) -> Result<(), WebSocketAccept>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Some(accept) = &self.accept_key else { return Err(self) };
        let response = switching_protocols(accept, headers);
        let WebSocketAccept { engine, target, .. } = self;
        // A new session opens here, on the host's thread, as `start` does.
        let target = match target {
            Target::New(info) => {
                let (info, admitted) = *info;
                Target::Opened(Box::new(websocket::open(&engine, &info, admitted)))
            }
            target => target,
        };
        let io = LeanIo::new(io, head);
        tokio::spawn(answer_then_serve(engine, target, io, response, watch));
        Ok(())
    }
}

async fn answer_then_serve<S: Io>(
    engine: crate::engine::Engine,
    target: Target,
    mut io: LeanIo<S>,
    response: Vec<u8>,
    watch: Option<UpgradeWatch>,
) {
    let written = async {
        io.write_all(&response).await?;
        io.flush().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "adopted websocket: the 101 could not be written");
        if let Target::Opened(opened) = &target {
            opened.0.close(CloseReason::TransportClose);
        }
        return;
    }
    drop(response);
    ws::serve(engine, target, io, None, watch).await;
}

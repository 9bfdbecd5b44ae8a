//! One Engine.IO transport connection, WebSocket or long-polling, behind
//! the same two channels: decoded Engine.IO packets in, batches of encoded
//! packets out. The codecs are the core's (`protocol::engine`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::options::TransportKind;
use super::proxy::Route;
use super::url::Endpoint;
use crate::protocol::engine::{self, Encoded, Packet};
use crate::ws_message::to_message;

/// Most packets one polling payload may hold.
const MAX_PACKETS: usize = 4096;

/// The bytes `packet` takes in a long-polling body (binary as `b` +
/// base64), without the separator.
pub(crate) fn polling_len(packet: &Encoded) -> usize {
    match packet {
        Encoded::Text(t) => t.len(),
        Encoded::Binary(b) => 1 + b.len().div_ceil(3) * 4,
    }
}

/// Splits `packets`, in order, into polling bodies of at most `max` bytes
/// (separators included; `max` 0: one body), as engine.io-client does. A
/// packet larger than `max` alone makes a body of its own (the sockets
/// keep such packets back; see `SocketInner::drain`).
pub(crate) fn bodies(packets: Vec<Encoded>, max: usize) -> Vec<Vec<Encoded>> {
    let mut out: Vec<Vec<Encoded>> = Vec::new();
    let mut size = 0;
    for p in packets {
        let len = polling_len(&p);
        match out.last_mut() {
            Some(body) if max == 0 || size + 1 + len <= max => {
                size += 1 + len;
                body.push(p);
            }
            _ => {
                size = len;
                out.push(vec![p]);
            }
        }
    }
    out
}

/// What every transport connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) headers: http::HeaderMap,
    pub(crate) max_payload: usize,
    pub(crate) route: Route,
}

/// A packet from the server, or why the transport ended.
pub(crate) type Inbound = Result<Packet, String>;

/// An open transport. Dropping it stops its tasks.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) kind: TransportKind,
    pub(crate) rx: mpsc::Receiver<Inbound>,
    tx: Option<mpsc::UnboundedSender<Vec<Encoded>>>,
    tasks: Vec<JoinHandle<()>>,
    paused: Arc<AtomicBool>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Link {
    /// Queues packets; false when the transport has ended.
    pub(crate) fn send(&self, frames: Vec<Encoded>) -> bool {
        !frames.is_empty() && self.tx.as_ref().is_some_and(|tx| tx.send(frames).is_ok())
    }

    /// Ends the transport after writing what is queued (and `last`).
    pub(crate) async fn close(mut self, last: Option<Encoded>) {
        if let Some(p) = last {
            self.send(vec![p]);
        }
        self.tx = None;
        // The writer is the last task (the only one on a WebSocket).
        if let Some(w) = self.tasks.pop() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), w).await;
        }
    }

    /// Stops a polling transport for an upgrade: no new GET is started,
    /// what is queued is POSTed, and the packets of the GET in flight are
    /// handed to `each` until it returns.
    pub(crate) async fn pause(mut self, mut each: impl FnMut(Packet)) -> Result<(), String> {
        self.paused.store(true, Ordering::SeqCst);
        self.tx = None;
        while let Some(p) = self.rx.recv().await {
            each(p?);
        }
        // The writer (the last task) flushes and ends.
        if let Some(w) = self.tasks.pop() {
            let _ = w.await;
        }
        Ok(())
    }
}

fn request(dial: &Dial, method: http::Method, target: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = target.parse().unwrap_or_default();
    let headers = req.headers_mut();
    headers.extend(dial.headers.clone());
    if let Ok(host) = http::HeaderValue::try_from(dial.endpoint.authority.as_str()) {
        headers.insert(http::header::HOST, host);
    }
    req
}

/// A TCP connection to the server (through the proxy, if any), wrapped in
/// TLS for `https`/`wss`.
async fn stream(dial: &Dial) -> Result<MaybeTlsStream<tokio::net::TcpStream>, String> {
    let scheme = if dial.endpoint.secure { "https" } else { "http" };
    let tcp = dial.route.connect(scheme, &dial.endpoint.authority).await?;
    let _ = tcp.set_nodelay(true);
    match &dial.tls {
        None => Ok(MaybeTlsStream::Plain(tcp)),
        Some(config) => {
            let name =
                rustls::pki_types::ServerName::try_from(dial.endpoint.host.clone()).map_err(|e| e.to_string())?;
            let tls =
                tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
            Ok(MaybeTlsStream::Rustls(tls))
        }
    }
}

/// One HTTP/1.1 connection for polling requests, made again when it closes.
struct Http {
    dial: Dial,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Http {
    async fn send(&mut self, method: http::Method, target: &str, body: Bytes) -> Result<Bytes, String> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let io = TokioIo::new(stream(&self.dial).await?);
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let res = sender.send_request(request(&self.dial, method, target, body)).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body = Limited::new(res.into_body(), self.dial.max_payload)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
        }
        self.conn = Some(sender);
        Ok(body)
    }
}

/// The handshake in an OPEN packet.
fn handshake(packet: Option<Packet>) -> Result<engine::Handshake, String> {
    match packet {
        Some(Packet::Open(json)) => {
            let h: engine::Handshake =
                serde_json::from_str(&json).map_err(|e| format!("invalid Engine.IO handshake: {e}"))?;
            if h.sid.is_empty() || h.ping_interval == 0 {
                return Err("invalid Engine.IO handshake: no sid or ping interval".into());
            }
            Ok(h)
        }
        Some(other) => Err(format!("expected the Engine.IO handshake, got {other:?}")),
        None => Err("the server closed before the Engine.IO handshake".into()),
    }
}

/// A transport opened with its handshake, and packets that came with it.
pub(crate) struct Opened {
    pub(crate) link: Link,
    pub(crate) handshake: engine::Handshake,
}

/// Opens a new session over `kind`.
pub(crate) async fn open(dial: &Dial, kind: TransportKind) -> Result<Opened, String> {
    match kind {
        TransportKind::WebSocket => {
            let mut ws = websocket(dial, None).await?;
            let first = next_packet(&mut ws).await?;
            let handshake = handshake(first)?;
            Ok(Opened { link: websocket_link(ws), handshake })
        }
        TransportKind::Polling => {
            let mut http = Http { dial: dial.clone(), conn: None };
            let body = http.send(http::Method::GET, &dial.endpoint.target(kind, None), Bytes::new()).await?;
            let mut packets = engine::decode_payload(body, MAX_PACKETS).map_err(|e| e.to_string())?.into_iter();
            let handshake = handshake(packets.next())?;
            let max = usize::try_from(handshake.max_payload).unwrap_or(usize::MAX);
            let link = polling_link(dial, http, &handshake.sid, packets.collect(), max);
            Ok(Opened { link, handshake })
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn websocket(dial: &Dial, sid: Option<&str>) -> Result<Ws, String> {
    let mut req = dial.endpoint.websocket_url(sid).into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().extend(dial.headers.clone());
    let config =
        WebSocketConfig::default().max_message_size(Some(dial.max_payload)).max_frame_size(Some(dial.max_payload));
    let stream = stream(dial).await?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    Ok(ws)
}

/// The next Engine.IO packet of a WebSocket (`None` when it closed).
async fn next_packet(ws: &mut Ws) -> Result<Option<Packet>, String> {
    loop {
        return match ws.next().await {
            None | Some(Ok(Message::Close(_))) => Ok(None),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(Message::Text(t))) => {
                Packet::decode_text(ByteString::from(t.as_str())).map(Some).map_err(|e| format!("Engine.IO: {e}"))
            }
            Some(Ok(Message::Binary(b))) => Ok(Some(Packet::decode_binary(b))),
            Some(Ok(_)) => continue,
        };
    }
}

fn websocket_link(mut ws: Ws) -> Link {
    let (in_tx, rx) = mpsc::channel(256);
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<Encoded>>();
    let task = tokio::spawn(async move {
        let end = loop {
            tokio::select! {
                batch = out.recv() => match batch {
                    Some(batch) => {
                        let mut failed = false;
                        for e in batch {
                            failed |= ws.feed(to_message(e)).await.is_err();
                        }
                        if failed || ws.flush().await.is_err() {
                            break Err("transport error".to_owned());
                        }
                    }
                    None => {
                        let _ = ws.close(None).await;
                        return;
                    }
                },
                p = next_packet(&mut ws) => match p {
                    Ok(Some(p)) => if in_tx.send(Ok(p)).await.is_err() { return },
                    Ok(None) => break Err("transport close".to_owned()),
                    Err(e) => break Err(format!("transport error: {e}")),
                },
            }
        };
        let _ = in_tx.send(end).await;
    });
    Link { kind: TransportKind::WebSocket, rx, tx: Some(tx), tasks: vec![task], paused: Arc::default() }
}

/// `max`: the server's `maxPayload`, the largest POST body it takes.
fn polling_link(dial: &Dial, mut http: Http, sid: &str, first: Vec<Packet>, max: usize) -> Link {
    let (in_tx, rx) = mpsc::channel(256);
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<Encoded>>();
    let paused = Arc::new(AtomicBool::new(false));
    let target = dial.endpoint.target(TransportKind::Polling, Some(sid));
    let reader = {
        let (in_tx, paused, target) = (in_tx.clone(), paused.clone(), target.clone());
        tokio::spawn(async move {
            for p in first {
                if in_tx.send(Ok(p)).await.is_err() {
                    return;
                }
            }
            while !paused.load(Ordering::SeqCst) {
                let packets = match http.send(http::Method::GET, &target, Bytes::new()).await {
                    Ok(body) => engine::decode_payload(body, MAX_PACKETS).map_err(|e| format!("Engine.IO: {e}")),
                    Err(e) => Err(format!("transport error: {e}")),
                };
                match packets {
                    Ok(packets) => {
                        for p in packets {
                            let close = p == Packet::Close;
                            if in_tx.send(Ok(p)).await.is_err() || close {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = in_tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        })
    };
    let writer = {
        let mut http = Http { dial: dial.clone(), conn: None };
        tokio::spawn(async move {
            while let Some(mut batch) = out.recv().await {
                while let Ok(more) = out.try_recv() {
                    batch.extend(more);
                }
                for body in bodies(batch, max) {
                    let body = engine::encode_payload(&body);
                    if let Err(e) = http.send(http::Method::POST, &target, body).await {
                        let _ = in_tx.send(Err(format!("transport error: {e}"))).await;
                        return;
                    }
                }
            }
        })
    };
    Link { kind: TransportKind::Polling, rx, tx: Some(tx), tasks: vec![reader, writer], paused }
}

/// Probes a WebSocket for session `sid` (`2probe` answered by `3probe`);
/// the caller then pauses polling and sends `5` over it.
pub(crate) async fn probe(dial: &Dial, sid: &str) -> Result<Link, String> {
    let mut ws = websocket(dial, Some(sid)).await?;
    ws.send(to_message(Packet::Ping("probe".into()).encode())).await.map_err(|e| e.to_string())?;
    match next_packet(&mut ws).await? {
        Some(Packet::Pong(data)) if &*data == "probe" => Ok(websocket_link(ws)),
        other => Err(format!("unexpected probe answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Encoded {
        Encoded::Text("4".repeat(n).into())
    }

    #[test]
    fn bodies_stay_under_max_payload_in_order() {
        let sizes = |b: &[Vec<Encoded>]| -> Vec<usize> { b.iter().map(|b| engine::encode_payload(b).len()).collect() };
        // 10 + 1 + 10 + 1 + 10 = 32 > 30: the third starts a new body.
        let b = bodies(vec![text(10), text(10), text(10)], 30);
        assert_eq!(sizes(&b), [21, 10]);
        assert_eq!(sizes(&bodies(vec![text(10), text(10), text(10)], 32)), [32]);
        // Too large alone: a body of its own, neighbours untouched.
        assert_eq!(sizes(&bodies(vec![text(5), text(50), text(5)], 30)), [5, 50, 5]);
        // Binary counts as base64: 3 bytes are `b` + 4.
        let bin = Encoded::Binary(Bytes::from_static(b"abc"));
        assert_eq!(polling_len(&bin), 5);
        assert_eq!(sizes(&bodies(vec![bin.clone(), bin.clone()], 11)), [11]);
        assert_eq!(sizes(&bodies(vec![bin.clone(), bin], 10)), [5, 5]);
        assert_eq!(bodies(vec![text(10); 100], 0).len(), 1);
        let all: Vec<Encoded> = bodies((1..50).map(text).collect(), 120).into_iter().flatten().collect();
        assert_eq!(all, (1..50).map(text).collect::<Vec<_>>());
    }
}

//! A minimal Socket.IO v5 client over WebSocket, just enough for load:
//! connect to the main namespace, answer pings, send text packets and
//! classify what arrives. Frames go through tokio-tungstenite.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) type Ws = WebSocketStream<TcpStream>;
pub(crate) type Error = Box<dyn std::error::Error>;

/// Where the server is: its address and Socket.IO WebSocket URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    url: String,
}

impl Target {
    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port` (or `ws://`); the Socket.IO path is `/socket.io/`.
    pub(crate) fn parse(base: &str) -> Result<Target, Error> {
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("ws://"))
            .ok_or_else(|| format!("{base}: expected http://host:port"))?;
        let hostport = rest.trim_end_matches('/');
        let addr = hostport.to_socket_addrs()?.next().ok_or_else(|| format!("{hostport}: no address"))?;
        Ok(Target { addr, url: format!("ws://{hostport}/socket.io/?EIO=4&transport=websocket") })
    }
}

/// Spreads loopback connections over 127.1.0.0/12 so that many thousands
/// of them, run after run, never run out of ephemeral ports (and look like
/// distinct clients to per-IP limits).
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

fn source_for(addr: SocketAddr) -> Option<SocketAddr> {
    match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => {
            Some(loopback_source(Ipv4Addr::new(127, 1, 0, 0), NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % (1 << 20)))
        }
        _ => None,
    }
}

/// The `n`th loopback address from `base` (any port).
pub(crate) fn loopback_source(base: Ipv4Addr, n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(u32::from(base).wrapping_add(n)), 0))
}

/// A TCP connection to `target` from `source` (on loopback: the next of
/// 127.1.0.0/12 when `None`).
pub(crate) async fn tcp(target: &Target, source: Option<SocketAddr>) -> Result<TcpStream, Error> {
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source.or_else(|| source_for(target.addr)) {
        socket.bind(source)?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket and reads the Engine.IO open packet (no namespace yet).
pub(crate) async fn open_engine(target: &Target, source: Option<SocketAddr>) -> Result<Ws, Error> {
    engine_over(target, tcp(target, source).await?).await
}

/// [`open_engine`] over a connection already made.
pub(crate) async fn engine_over(target: &Target, stream: TcpStream) -> Result<Ws, Error> {
    // Small buffers: the load generator holds tens of thousands of these.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config)).await?;
    match next_text(&mut ws).await? {
        t if t.starts_with('0') => Ok(ws),
        t => Err(format!("expected an Engine.IO open packet, got {t:?}").into()),
    }
}

/// Opens a WebSocket, then the Engine.IO session, then the main namespace.
pub(crate) async fn connect(target: &Target) -> Result<Ws, Error> {
    Ok(connect_with(target, None).await?.0)
}

/// [`connect`], trying again as socket.io-client does when the server
/// refuses the handshake for now (`503`: busy or at capacity; `429`: too
/// eager): after its reconnection delay (1 s doubling to 5 s, ±50 %), at
/// most `tries` times in all.
pub(crate) async fn connect_retrying(target: &Target, tries: u32) -> Result<Ws, Error> {
    let mut attempt = 0;
    loop {
        match connect(target).await {
            Err(e) if attempt + 1 < tries && is_refusal(&e) => {
                tokio::time::sleep(reconnection_delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether `e` is the server refusing a handshake for now (`503`, `429`).
pub(crate) fn is_refusal(e: &Error) -> bool {
    matches!(
        e.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Http(res)) if res.status() == 503 || res.status() == 429
    )
}

/// socket.io-client's delay before reconnection attempt `n` (from 0):
/// `reconnectionDelay` 1 s doubling up to `reconnectionDelayMax` 5 s, with
/// its `randomizationFactor` of 0.5.
pub(crate) fn reconnection_delay(n: u32) -> Duration {
    use rand::Rng as _;
    let base = (1000u64 << n.min(3)).min(5000) as f64;
    let jitter = rand::rng().random_range(-0.5..0.5);
    Duration::from_millis((base * (1.0 + jitter)) as u64)
}

/// [`connect`] with `auth` (a JSON object) in the CONNECT packet; also
/// returns the CONNECT reply's JSON (`{"sid":..}`, with `pid` when the
/// server keeps sessions for recovery).
pub(crate) async fn connect_with(target: &Target, auth: Option<&str>) -> Result<(Ws, serde_json::Value), Error> {
    join_namespace(open_engine(target, None).await?, auth).await
}

/// Sends the CONNECT of the main namespace with `auth` on an open session
/// and reads its reply.
pub(crate) async fn join_namespace(mut ws: Ws, auth: Option<&str>) -> Result<(Ws, serde_json::Value), Error> {
    ws.send(Message::text(format!("40{}", auth.unwrap_or_default()))).await?;
    loop {
        let t = next_text(&mut ws).await?;
        match classify(&t) {
            Inbound::Ping => ws.send(Message::text("3")).await?,
            _ if t.starts_with("40") => {
                let reply = serde_json::from_str(&t[2..]).unwrap_or_default();
                return Ok((ws, reply));
            }
            _ if t.starts_with("44") => return Err(format!("namespace refused: {t}").into()),
            _ => {}
        }
    }
}

pub(crate) async fn next_text(ws: &mut Ws) -> Result<String, Error> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err("connection closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Sends `42<id>[<args>]` and reads until its ack, answering pings and
/// skipping anything else: the ack's JSON array.
pub(crate) async fn request(ws: &mut Ws, id: u64, args: &str) -> Result<String, Error> {
    ws.send(Message::text(format!("42{id}[{args}]"))).await?;
    loop {
        let t = next_text(ws).await?;
        match classify(&t) {
            Inbound::Ping => ws.send(Message::text("3")).await?,
            Inbound::Ack(got, json) if got == id => return Ok(json.to_owned()),
            _ => {}
        }
    }
}

/// What a text frame holds, for the few packets the scenarios care about.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// Engine.IO ping: answer `3`.
    Ping,
    /// An event on the main namespace without ack id: the JSON array.
    Event(&'a str),
    /// An ack on the main namespace: its id and the JSON array.
    Ack(u64, &'a str),
    /// Anything else.
    Other,
}

pub(crate) fn classify(text: &str) -> Inbound<'_> {
    if text == "2" {
        return Inbound::Ping;
    }
    if let Some(rest) = text.strip_prefix("42") {
        if rest.starts_with('[') {
            return Inbound::Event(rest);
        }
    } else if let Some(rest) = text.strip_prefix("43") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let (Ok(id), Some(json)) = (rest[..digits].parse(), rest.get(digits..)) {
            return Inbound::Ack(id, json);
        }
    }
    Inbound::Other
}

/// The text of a message, if it is one.
pub(crate) fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_packets() {
        assert_eq!(classify("2"), Inbound::Ping);
        assert_eq!(classify("3"), Inbound::Other);
        assert_eq!(classify(r#"42["fanout",[1,2,3]]"#), Inbound::Event(r#"["fanout",[1,2,3]]"#));
        assert_eq!(classify(r#"4317["x"]"#), Inbound::Ack(17, r#"["x"]"#));
        assert_eq!(classify("43"), Inbound::Other);
        assert_eq!(classify(r#"42/chat,["x"]"#), Inbound::Other);
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:3000/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.url, "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
        assert!(Target::parse("127.0.0.1:3000").is_err());
    }

    #[test]
    fn loopback_sources_rotate() {
        let a = source_for("127.0.0.1:1".parse().unwrap()).unwrap();
        let b = source_for("127.0.0.1:1".parse().unwrap()).unwrap();
        assert_ne!(a.ip(), b.ip());
        assert!(a.ip().is_loopback() && b.ip().is_loopback());
        assert_eq!(source_for("10.0.0.1:1".parse().unwrap()), None);
    }
}

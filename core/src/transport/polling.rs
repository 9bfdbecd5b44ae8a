//! HTTP long-polling: handshake, `GET` (server to client) and `POST`
//! (client to server), over any body that yields chunks: hyper's for the
//! listener, [`super::host::RequestBody`] for a host's server.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::routing::{Answer, HttpError, TEXT, open_packet, plain};
use crate::engine::{Admitted, CloseReason, Engine, RequestInfo, Session, TransportKind};
use crate::protocol::engine::{Packet, decode_payload, encode_payload};

/// Most packets accepted in one POST body.
const MAX_PACKETS_PER_POST: usize = 16_384;

/// A request body read chunk by chunk.
pub(crate) trait Chunks: Send {
    /// The next chunk; `None` at the end; `Err` when the body broke off.
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, ()>>> + Send;
}

impl Chunks for Incoming {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ()>> {
        loop {
            match self.frame().await? {
                // Trailers carry no payload.
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue,
                },
                Err(_) => return Some(Err(())),
            }
        }
    }
}

/// Opens a long-polling session for an admitted handshake and answers
/// with its OPEN packet.
pub(crate) fn handshake(engine: &Engine, info: &RequestInfo, admitted: Admitted) -> Answer {
    let session = engine.open_admitted(info, TransportKind::Polling, admitted);
    plain(StatusCode::OK, encode_payload(&[open_packet(engine, &session, TransportKind::Polling)]), TEXT)
}

/// Answers a long-polling request of `session`: a `GET` waits for packets,
/// a `POST` hands its packets to the session.
pub(crate) async fn serve<B: Chunks>(
    engine: &Engine,
    session: Session,
    method: &Method,
    headers: &HeaderMap,
    body: B,
) -> Answer {
    match *method {
        Method::GET => poll(session).await,
        Method::POST => post(engine, session, headers, body).await,
        _ => HttpError::BadRequest.answer(),
    }
}

/// Releases the session's GET slot even if the client goes away mid-poll.
struct GetGuard<'a>(&'a Session);

impl Drop for GetGuard<'_> {
    fn drop(&mut self) {
        self.0.end_get();
    }
}

pub(crate) async fn poll(session: Session) -> Answer {
    if !session.begin_get() {
        session.close(CloseReason::TransportError);
        return HttpError::BadRequest.answer();
    }
    let _guard = GetGuard(&session);
    // Whether this GET waited: a close decided while it was pending is
    // answered with the close packet; one decided before it came, with a
    // noop then the close (engine.io's polling transport, whose pending
    // close is appended to an empty send).
    let mut waited = false;
    let close = |waited: bool| {
        if waited { vec![Packet::Close.encode()] } else { vec![Packet::Noop.encode(), Packet::Close.encode()] }
    };
    let packets = loop {
        let mut packets = session.drain();
        if session.is_closed() {
            // Closed by the client's own close packet: engine.io answers
            // the pending GET with a noop; closed by the server: a close.
            let by_client = session.close_reason() == Some(CloseReason::TransportClose);
            if by_client {
                packets.push(Packet::Noop.encode());
            } else if packets.is_empty() {
                packets = close(waited);
            } else {
                packets.push(Packet::Close.encode());
            }
            break packets;
        }
        if !packets.is_empty() {
            // When draining, the close packet goes in the next response:
            // socket.io-client handles a close packet before the packets
            // that came with it.
            break packets;
        }
        if session.finish_if_drained() {
            break close(waited);
        }
        if session.is_upgrading() {
            break vec![Packet::Noop.encode()];
        }
        tokio::select! {
            () = session.wait_writable() => {}
            () = session.closed() => {}
        }
        waited = true;
    };
    plain(StatusCode::OK, encode_payload(&packets), TEXT)
}

/// Most bytes of an oversized body read and discarded before its `413`.
const DISCARD_BYTES: usize = 8 << 20;

/// Longest time spent discarding an oversized body before its `413`.
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// The `413` for a body over `max_payload`. The rest of the body is read
/// and discarded first (bounded in bytes and time): a server that answers
/// and closes while the client still sends makes the kernel reset the
/// connection, and the reset discards the answer before the client reads it.
async fn too_large<B: Chunks>(body: &mut B) -> Answer {
    let discard = async {
        let mut read = 0;
        while let Some(Ok(chunk)) = body.next_chunk().await {
            read += chunk.len();
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, discard).await;
    plain(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new(), TEXT)
}

/// Why a body was not collected.
enum BodyError {
    /// More than `max_payload` bytes.
    TooLarge,
    /// The body broke off.
    Broken,
}

/// The whole body, at most `max` bytes.
async fn collect<B: Chunks>(body: &mut B, max: usize) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0;
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(|()| BodyError::Broken)?;
        len += chunk.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        // A body in one chunk is kept as it came, without a copy.
        match &first {
            None if rest.is_empty() => first = Some(chunk),
            _ => {
                if let Some(first) = first.take() {
                    rest.extend_from_slice(&first);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

async fn post<B: Chunks>(engine: &Engine, session: Session, headers: &HeaderMap, mut body: B) -> Answer {
    let binary_body =
        headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    if binary_body {
        return HttpError::BadRequest.answer();
    }
    if !session.begin_post() {
        session.close(CloseReason::TransportError);
        return HttpError::BadRequest.answer();
    }
    let _guard = PostGuard(&session);
    let max = engine.config().max_payload;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        session.close(CloseReason::TransportError);
        return too_large(&mut body).await;
    }
    // A body that never completes holds its bytes: it may take as long as
    // the session may stay silent (past that the session is dead anyway,
    // its pongs being stuck behind this POST), and no longer than the
    // session itself.
    let config = engine.config();
    let deadline = config.ping_interval + config.ping_timeout;
    let collected = tokio::select! {
        r = tokio::time::timeout(deadline, collect(&mut body, max)) => r,
        () = session.closed() => return HttpError::BadRequest.answer(),
    };
    let body = match collected {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            session.close(CloseReason::TransportError);
            return too_large(&mut body).await;
        }
        Ok(Err(BodyError::Broken)) => {
            session.close(CloseReason::TransportError);
            return HttpError::BadRequest.answer();
        }
        Err(_) => {
            tracing::debug!(sid = session.sid(), "polling body not received in time");
            session.close(CloseReason::TransportError);
            return HttpError::BadRequest.answer();
        }
    };
    deliver(&session, body)
}

/// Hands the packets of a complete `POST` body to the session.
fn deliver(session: &Session, body: Bytes) -> Answer {
    match decode_payload(body, MAX_PACKETS_PER_POST) {
        Ok(packets) => {
            for packet in packets {
                session.receive(packet);
            }
            plain(StatusCode::OK, Bytes::from_static(b"ok"), "text/html")
        }
        Err(_) => {
            session.close(CloseReason::ParseError);
            HttpError::BadRequest.answer()
        }
    }
}

/// A `POST` body another node collected for `session` (at most its
/// `max_payload`): the checks of [`post`] that need the session, then the
/// packets.
pub(crate) fn post_forwarded(engine: &Engine, session: &Session, body: Bytes) -> Answer {
    if !session.begin_post() {
        session.close(CloseReason::TransportError);
        return HttpError::BadRequest.answer();
    }
    let _guard = PostGuard(session);
    if body.len() > engine.config().max_payload {
        session.close(CloseReason::TransportError);
        return plain(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new(), TEXT);
    }
    deliver(session, body)
}

/// What became of a `POST` body read for another node's session.
pub(crate) enum Collected {
    /// The whole body, within `max_payload`.
    Body(Bytes),
    /// Refused here with this answer; the owner closes the session.
    Refused(Answer),
}

/// Reads a `POST` body for a session another node owns, with the checks
/// and bounds of a local one: `400` for a binary body type (the session
/// stays), `413` past `max_payload` and `400` for a broken or late body
/// (the session is closed by its owner).
pub(crate) async fn collect_forwarded<B: Chunks>(
    engine: &Engine,
    headers: &HeaderMap,
    mut body: B,
) -> Option<Collected> {
    let binary_body =
        headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    if binary_body {
        return None;
    }
    let config = engine.config();
    let max = config.max_payload;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Some(Collected::Refused(too_large(&mut body).await));
    }
    let deadline = config.ping_interval + config.ping_timeout;
    Some(match tokio::time::timeout(deadline, collect(&mut body, max)).await {
        Ok(Ok(body)) => Collected::Body(body),
        Ok(Err(BodyError::TooLarge)) => Collected::Refused(too_large(&mut body).await),
        Ok(Err(BodyError::Broken)) | Err(_) => Collected::Refused(HttpError::BadRequest.answer()),
    })
}

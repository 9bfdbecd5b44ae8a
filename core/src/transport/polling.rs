//! HTTP long-polling: handshake, `GET` (server to client) and `POST`
//! (client to server).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{Body, HttpError, plain};
use crate::engine::{Admitted, CloseReason, Engine, RequestInfo, Session, TransportKind};
use crate::protocol::engine::{Handshake, Packet, decode_payload, encode_payload};

const TEXT: &str = "text/plain; charset=UTF-8";

/// Most packets accepted in one POST body.
const MAX_PACKETS_PER_POST: usize = 16_384;

pub(super) fn handshake(engine: &Engine, info: &RequestInfo, admitted: Admitted) -> Response<Body> {
    let session = engine.open_admitted(info, TransportKind::Polling, admitted);
    let config = engine.config();
    let open = Handshake {
        sid: session.sid().to_owned(),
        upgrades: if config.allow_websocket { vec!["websocket".to_owned()] } else { vec![] },
        ping_interval: config.ping_interval.as_millis() as u64,
        ping_timeout: config.ping_timeout.as_millis() as u64,
        max_payload: config.max_payload as u64,
    };
    plain(StatusCode::OK, encode_payload(&[open.to_packet().encode()]), TEXT)
}

pub(super) async fn serve(engine: &Engine, session: Session, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        Method::GET => poll(session).await,
        Method::POST => post(engine, session, req).await,
        _ => HttpError::BadRequest.response(),
    }
}

/// Releases the session's GET slot even if the client goes away mid-poll.
struct GetGuard<'a>(&'a Session);

impl Drop for GetGuard<'_> {
    fn drop(&mut self) {
        self.0.end_get();
    }
}

async fn poll(session: Session) -> Response<Body> {
    if !session.begin_get() {
        session.close(CloseReason::TransportError);
        return HttpError::BadRequest.response();
    }
    let _guard = GetGuard(&session);
    let packets = loop {
        let mut packets = session.drain();
        if session.is_closed() {
            // Closed by the client's own close packet: engine.io answers
            // the pending GET with a noop; closed by the server: a close.
            let by_client = session.close_reason() == Some(CloseReason::TransportClose);
            packets.push(if by_client { Packet::Noop } else { Packet::Close }.encode());
            break packets;
        }
        if !packets.is_empty() {
            // When draining, the close packet goes in the next response:
            // socket.io-client handles a close packet before the packets
            // that came with it.
            break packets;
        }
        if session.finish_if_drained() {
            break vec![Packet::Close.encode()];
        }
        if session.is_upgrading() {
            break vec![Packet::Noop.encode()];
        }
        tokio::select! {
            () = session.wait_writable() => {}
            () = session.closed() => {}
        }
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
async fn too_large(mut body: Incoming) -> Response<Body> {
    let discard = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, discard).await;
    plain(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new(), TEXT)
}

struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

async fn post(engine: &Engine, session: Session, req: Request<Incoming>) -> Response<Body> {
    let binary_body =
        req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    if binary_body {
        return HttpError::BadRequest.response();
    }
    if !session.begin_post() {
        session.close(CloseReason::TransportError);
        return HttpError::BadRequest.response();
    }
    let _guard = PostGuard(&session);
    let max = engine.config().max_payload;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > max as u64) {
        session.close(CloseReason::TransportError);
        return too_large(body).await;
    }
    // A body that never completes holds its bytes: it may take as long as
    // the session may stay silent (past that the session is dead anyway,
    // its pongs being stuck behind this POST), and no longer than the
    // session itself.
    let config = engine.config();
    let deadline = config.ping_interval + config.ping_timeout;
    let collected = tokio::select! {
        r = tokio::time::timeout(deadline, Limited::new(&mut body, max).collect()) => r,
        () = session.closed() => return HttpError::BadRequest.response(),
    };
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            session.close(CloseReason::TransportError);
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return too_large(body).await;
            }
            return HttpError::BadRequest.response();
        }
        Err(_) => {
            tracing::debug!(sid = session.sid(), "polling body not received in time");
            session.close(CloseReason::TransportError);
            return HttpError::BadRequest.response();
        }
    };
    match decode_payload(body, MAX_PACKETS_PER_POST) {
        Ok(packets) => {
            for packet in packets {
                session.receive(packet);
            }
            plain(StatusCode::OK, Bytes::from_static(b"ok"), "text/html")
        }
        Err(_) => {
            session.close(CloseReason::ParseError);
            HttpError::BadRequest.response()
        }
    }
}

//! HTTP long-polling: handshake, `GET` (server to client) and `POST`
//! (client to server).

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
            packets.push(Packet::Close.encode());
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
    if declared.is_some_and(|n| n > max as u64) {
        session.close(CloseReason::TransportError);
        return plain(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new(), TEXT);
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            session.close(CloseReason::TransportError);
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new(), TEXT);
            }
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

//! Requests for sessions another node owns (see `engine::forward`): the
//! node a load balancer picked passes them on, and the owner answers them
//! here from the session's state, with the code of a local request.
//!
//! * Long-polling `GET` and `POST`: the receiving node reads the body with
//!   the local bounds (`max_payload`, the body deadline, the same `400` and
//!   `413`), the owner runs the same poll and post; its answer (status,
//!   content type, body) is sent back as it is.
//! * A WebSocket upgrade: the receiving node answers the `101` and relays
//!   the socket (`super::relay`): the probe dance and the switch are done
//!   on the owner's session, the owner's outbound packets are pulled one
//!   batch at a time (the next pull only once a batch is written: a slow
//!   client holds back its own session's queue, bounded as usual), and
//!   what the client sends is pushed in order, one batch at a time.
//! * No answer (the owner is gone, or too slow): `400 Session ID unknown`,
//!   so the client starts over with a new handshake (and resumes its
//!   session when connection-state recovery is on).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::polling::{self, Chunks, Collected};
use super::routing::{Answer, HttpError, TEXT, plain};
use super::websocket;
use crate::engine::forward::{Forward, Op, Reply};
use crate::engine::{CloseReason, Engine, Session, TransportKind};
use crate::protocol::engine::Encoded;

/// Status of a pull that found the session closed (its last frames in the
/// body).
pub(crate) const CLOSED: u16 = 410;

/// Status of a pull that found nothing to send in time.
pub(crate) const NOTHING: u16 = 204;

/// How long past the upgrade timeout an owner waits for the relay's word on
/// a probe (its `Upgrade` or `AbortUpgrade` travels over the bus).
const PROBE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

impl Reply {
    /// The reply of the owner, as an HTTP answer.
    pub(crate) fn of(answer: Answer) -> Reply {
        let content_type =
            answer.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Reply { status: answer.status().as_u16(), content_type, body: answer.into_body() }
    }

    /// The answer to give the client.
    pub(crate) fn into_answer(self) -> Answer {
        let mut res = http::Response::new(self.body);
        *res.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        if let Ok(v) = HeaderValue::from_str(&self.content_type)
            && !self.content_type.is_empty()
        {
            res.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        res
    }
}

/// Passes a long-polling request for `sid` on to `owner` and answers with
/// the owner's answer.
pub(crate) async fn poll<B: Chunks>(
    engine: &Engine,
    forward: &Arc<dyn Forward>,
    owner: &str,
    sid: &str,
    method: &Method,
    headers: &HeaderMap,
    body: B,
) -> Answer {
    let reply = match *method {
        Method::GET => forward.send(owner, sid, Op::Get(engine.config().ping_interval)).await,
        Method::POST => match polling::collect_forwarded(engine, headers, body).await {
            None => return HttpError::BadRequest.answer(),
            Some(Collected::Refused(answer)) => {
                // The owner closes the session, as a local refusal does.
                tokio::spawn(forward.send(owner, sid, Op::Abort));
                return answer;
            }
            Some(Collected::Body(body)) => forward.send(owner, sid, Op::Post(body)).await,
        },
        _ => return HttpError::BadRequest.answer(),
    };
    reply.map_or_else(|| HttpError::UnknownSid.answer(), Reply::into_answer)
}

/// `400 Session ID unknown`.
pub(crate) fn unknown() -> Answer {
    HttpError::UnknownSid.answer()
}

fn ok() -> Answer {
    plain(StatusCode::OK, Bytes::new(), TEXT)
}

/// Answers `op` for session `sid` of this node, as the local transports
/// would.
pub(crate) async fn serve(engine: &Engine, sid: &str, op: Op) -> Answer {
    let Some(session) = engine.session(sid) else {
        if matches!(op, Op::Get(_)) && engine.take_client_close(sid) {
            return plain(StatusCode::OK, Bytes::from_static(b"6"), TEXT);
        }
        return HttpError::UnknownSid.answer();
    };
    let polling = session.transport() == TransportKind::Polling;
    match op {
        Op::Get(_) | Op::Post(_) if !polling => HttpError::BadRequest.answer(),
        Op::Get(wait) => match tokio::time::timeout(wait, polling::poll(session)).await {
            Ok(answer) => answer,
            // Held long enough: an empty answer the client polls again after.
            Err(_) => plain(StatusCode::OK, Bytes::from_static(b"6"), TEXT),
        },
        Op::Post(body) => polling::post_forwarded(engine, &session, body),
        Op::Abort => {
            session.close(CloseReason::TransportError);
            ok()
        }
        Op::Probe => match websocket::Target::upgrade(session) {
            websocket::Target::Upgrade(session) if session.begin_upgrade() => {
                // The relay ends its probe within the upgrade timeout; one
                // that went away meanwhile (its node stopped) would leave
                // the session upgrading for good.
                let serial = session.upgrade_serial();
                let limit = engine.config().upgrade_timeout + PROBE_MARGIN;
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    if session.abort_upgrade_if(serial) {
                        tracing::debug!(sid = session.sid(), "relayed upgrade abandoned: no word from the relay");
                    }
                });
                ok()
            }
            _ => HttpError::BadRequest.answer(),
        },
        Op::Upgrade if session.is_upgrading() => {
            session.finish_upgrade();
            ok()
        }
        Op::AbortUpgrade if session.is_upgrading() => {
            session.abort_upgrade();
            ok()
        }
        Op::Upgrade | Op::AbortUpgrade | Op::Pull(_) | Op::Push(_) if polling => HttpError::BadRequest.answer(),
        Op::Upgrade | Op::AbortUpgrade => HttpError::BadRequest.answer(),
        Op::Pull(wait) => pull(&session, wait).await,
        Op::Push(frames) => {
            let Some(frames) = decode_frames(frames) else {
                session.close(CloseReason::ParseError);
                return HttpError::BadRequest.answer();
            };
            for frame in frames {
                match frame {
                    Encoded::Text(t) => websocket::receive_text(&session, t.into_bytes()),
                    Encoded::Binary(b) => websocket::receive_binary(&session, b),
                }
            }
            ok()
        }
        Op::Close(protocol_error) => {
            session.close(if protocol_error { CloseReason::TransportError } else { CloseReason::TransportClose });
            ok()
        }
    }
}

/// The next batch of an upgraded session, one pull at a time.
async fn pull(session: &Session, wait: std::time::Duration) -> Answer {
    if !session.begin_get() {
        // Two relays for one session: the second is refused.
        return HttpError::BadRequest.answer();
    }
    struct Slot<'a>(&'a Session);
    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            self.0.end_get();
        }
    }
    let _slot = Slot(session);
    match tokio::time::timeout(wait, websocket::next_batch(session)).await {
        Ok(Some(batch)) => plain(StatusCode::OK, encode_frames(&batch), TEXT),
        Ok(None) => {
            let rest = websocket::last_frames(session, false);
            plain(StatusCode::from_u16(CLOSED).unwrap_or(StatusCode::GONE), encode_frames(&rest), TEXT)
        }
        Err(_) => plain(StatusCode::NO_CONTENT, Bytes::new(), TEXT),
    }
}

/// Frames as they travel between a relay and the owner: for each, `t` or
/// `b`, its length (4 bytes, big-endian), its bytes. Unlike a polling
/// payload it keeps every WebSocket message as it was (a text message may
/// hold a record separator).
pub(crate) fn encode_frames(frames: &[Encoded]) -> Bytes {
    let mut out = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 5).sum());
    for f in frames {
        let (kind, bytes): (u8, &[u8]) = match f {
            Encoded::Text(t) => (b't', t.as_bytes()),
            Encoded::Binary(b) => (b'b', b),
        };
        out.put_u8(kind);
        out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        out.put_slice(bytes);
    }
    out.freeze()
}

/// The frames of [`encode_frames`]; `None` when malformed.
pub(crate) fn decode_frames(mut data: Bytes) -> Option<Vec<Encoded>> {
    let mut frames = Vec::new();
    while data.has_remaining() {
        if data.remaining() < 5 {
            return None;
        }
        let kind = data.get_u8();
        let len = data.get_u32() as usize;
        if data.remaining() < len {
            return None;
        }
        let bytes = data.split_to(len);
        frames.push(match kind {
            b't' => Encoded::Text(bytestring::ByteString::try_from(bytes).ok()?),
            b'b' => Encoded::Binary(bytes),
            _ => return None,
        });
    }
    Some(frames)
}

/// A pong packet, for tests of the relay's encoding.
#[cfg(test)]
fn pong() -> Encoded {
    crate::protocol::engine::Packet::Pong("probe".into()).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, RequestInfo, Silent};

    fn request() -> RequestInfo {
        RequestInfo {
            headers: HeaderMap::new(),
            query: Vec::new(),
            uri: http::Uri::from_static("/socket.io/?EIO=4&transport=polling"),
            remote_addr: ([127, 0, 0, 1], 4000).into(),
            time: std::time::SystemTime::now(),
            secure: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_relay_goes_away_is_abandoned_after_the_upgrade_timeout() {
        let config = EngineConfig::default();
        let timeout = config.upgrade_timeout;
        let engine = Engine::new(config, Arc::new(Silent));
        let session = engine.open_session(&request(), TransportKind::Polling);
        let sid = session.sid().to_owned();
        assert_eq!(serve(&engine, &sid, Op::Probe).await.status(), 200);
        assert!(session.is_upgrading());
        // The relay's node stops before its `Upgrade` or `AbortUpgrade`.
        tokio::time::sleep(timeout).await;
        assert!(session.is_upgrading(), "the relay still has its upgrade timeout");
        tokio::time::sleep(PROBE_MARGIN + std::time::Duration::from_millis(10)).await;
        assert!(!session.is_upgrading(), "abandoned: polling goes on and a later probe may start");
        // A probe the relay abandons itself, then another one: the first
        // one's watchdog leaves the second alone.
        assert_eq!(serve(&engine, &sid, Op::Probe).await.status(), 200);
        assert_eq!(serve(&engine, &sid, Op::AbortUpgrade).await.status(), 200);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(serve(&engine, &sid, Op::Probe).await.status(), 200);
        let second = session.upgrade_serial();
        tokio::time::sleep(timeout + PROBE_MARGIN - std::time::Duration::from_millis(500)).await;
        assert!(session.is_upgrading(), "the first watchdog fired, the second probe goes on");
        assert_eq!(serve(&engine, &sid, Op::Upgrade).await.status(), 200);
        assert_eq!(session.transport(), TransportKind::WebSocket);
        assert!(!session.abort_upgrade_if(second), "done: nothing to abandon");
    }

    #[test]
    fn frames_keep_every_message_as_it_was() {
        let frames = vec![pong(), Encoded::Text("4a\u{1e}b".into()), Encoded::Binary(Bytes::from_static(&[0, 1, 2]))];
        assert_eq!(decode_frames(encode_frames(&frames)).unwrap(), frames);
        assert_eq!(decode_frames(Bytes::new()).unwrap(), vec![]);
        assert!(decode_frames(Bytes::from_static(b"t\0\0\0\x09ab")).is_none(), "short");
        assert!(decode_frames(Bytes::from_static(b"x\0\0\0\0")).is_none(), "unknown kind");
        assert!(decode_frames(Bytes::from_static(b"t\0\0\0\x01\xff")).is_none(), "not UTF-8");
    }
}

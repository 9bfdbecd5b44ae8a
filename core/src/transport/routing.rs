//! What an Engine.IO request asks for, and the answers that need no I/O:
//! the one set of decisions behind both the hyper listener
//! ([`super::handle`]) and the host transport ([`super::host`]).
//!
//! Answers are `http::Response<Bytes>`; the hyper path wraps the body,
//! the host path hands the response over as it is.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};

use super::polling::{self, Chunks};
use super::websocket::Target;
use crate::engine::forward::Owner;
use crate::engine::{Engine, HandshakeRefusal, RequestInfo, Session, TransportKind};
use crate::protocol::engine::{Encoded, Handshake};

/// A complete HTTP answer: status, headers and body.
pub(crate) type Answer = Response<Bytes>;

/// The content type of long-polling bodies.
pub(crate) const TEXT: &str = "text/plain; charset=UTF-8";

/// Engine.IO's HTTP error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    UnsupportedProtocolVersion = 5,
}

impl HttpError {
    fn message(self) -> &'static str {
        match self {
            HttpError::UnknownTransport => "Transport unknown",
            HttpError::UnknownSid => "Session ID unknown",
            HttpError::BadHandshakeMethod => "Bad handshake method",
            HttpError::BadRequest => "Bad request",
            HttpError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub(crate) fn body(self) -> String {
        format!(r#"{{"code":{},"message":"{}"}}"#, self as u8, self.message())
    }

    pub(crate) fn answer(self) -> Answer {
        plain(StatusCode::BAD_REQUEST, self.body(), "application/json")
    }
}

pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Answer {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The parts of a request that routing reads, whichever server parsed it.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) remote_addr: SocketAddr,
    /// Whether the connection is TLS (for [`RequestInfo::secure`]).
    pub(crate) secure: bool,
}

impl<'a> Head<'a> {
    pub(crate) fn of<B>(req: &'a Request<B>, remote_addr: SocketAddr, secure: bool) -> Head<'a> {
        Head { method: req.method(), uri: req.uri(), headers: req.headers(), remote_addr, secure }
    }

    /// Whether the request asks for a WebSocket (`Upgrade: websocket`).
    pub(crate) fn is_websocket_upgrade(&self) -> bool {
        self.headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// Where a request goes.
pub(crate) enum Routed {
    /// Answered at once: an error, a CORS preflight, the noop of a session
    /// its client just closed.
    Answer(Answer),
    /// A handshake that passed every check but admission.
    Handshake(TransportKind, Box<RequestInfo>),
    /// A long-polling request (`GET`, `POST`, or another method, refused
    /// by [`super::polling::serve`]) of this session.
    Polling(Session),
    /// A WebSocket upgrade of this polling session (refused by
    /// [`Target::upgrade`] when it has one already).
    Upgrade(Session),
    /// A long-polling request for a session of another node: (owner, sid).
    Forward(String, String),
    /// A WebSocket upgrade of a session of another node: (owner, sid).
    Relay(String, String),
}

/// Routes one request by its query, as engine.io does. `upgrade` tells
/// whether it asks for a WebSocket.
pub(crate) fn route(engine: &Engine, head: Head<'_>, upgrade: bool) -> Routed {
    let config = engine.config();
    if *head.method == Method::OPTIONS && !config.cors_origins.is_empty() {
        return Routed::Answer(preflight(engine, head.headers));
    }
    let query = parse_query(head.uri);
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let transport = match param("transport") {
        Some("polling") if config.allow_polling => TransportKind::Polling,
        Some("websocket") if config.allow_websocket => TransportKind::WebSocket,
        _ => return Routed::Answer(HttpError::UnknownTransport.answer()),
    };
    if let Some(origin) = head.headers.get(header::ORIGIN)
        && origin.to_str().is_err()
    {
        return Routed::Answer(HttpError::BadRequest.answer());
    }
    let eio_ok = param("EIO") == Some("4");

    if let Some(sid) = param("sid") {
        let Some(session) = engine.session(sid) else {
            if let Some(owner) = remote_owner(engine, sid) {
                return match transport {
                    TransportKind::Polling => Routed::Forward(owner, sid.to_owned()),
                    TransportKind::WebSocket if upgrade && eio_ok && config.allow_upgrades => {
                        Routed::Relay(owner, sid.to_owned())
                    }
                    TransportKind::WebSocket => Routed::Answer(HttpError::BadRequest.answer()),
                };
            }
            // The GET a client sent just before its close packet, arriving
            // after it: a noop, as engine.io answers it.
            if transport == TransportKind::Polling
                && *head.method == Method::GET
                && !upgrade
                && engine.take_client_close(sid)
            {
                return Routed::Answer(plain(StatusCode::OK, Bytes::from_static(b"6"), TEXT));
            }
            return Routed::Answer(HttpError::UnknownSid.answer());
        };
        if !upgrade && session.transport() != transport {
            return Routed::Answer(HttpError::BadRequest.answer());
        }
        return match transport {
            TransportKind::Polling => Routed::Polling(session),
            TransportKind::WebSocket if !eio_ok || !config.allow_upgrades => {
                Routed::Answer(HttpError::BadRequest.answer())
            }
            TransportKind::WebSocket => Routed::Upgrade(session),
        };
    }

    if *head.method != Method::GET {
        return Routed::Answer(HttpError::BadHandshakeMethod.answer());
    }
    if transport == TransportKind::WebSocket && !upgrade {
        return Routed::Answer(HttpError::BadRequest.answer());
    }
    if !eio_ok {
        return Routed::Answer(HttpError::UnsupportedProtocolVersion.answer());
    }
    let info = RequestInfo {
        headers: detach_headers(head.headers),
        query,
        uri: detach_uri(head.uri),
        remote_addr: head.remote_addr,
        time: SystemTime::now(),
        secure: head.secure,
    };
    Routed::Handshake(transport, Box::new(info))
}

/// The live node that owns `sid` when it is another one (a session of a
/// node that is gone is unknown, as an unknown one is).
fn remote_owner(engine: &Engine, sid: &str) -> Option<String> {
    match engine.forward()?.owner(sid) {
        Owner::Remote(owner) => Some(owner),
        Owner::Here | Owner::Gone => None,
    }
}

/// Answers one HTTP request for `engine`: routes it, serves long-polling,
/// and hands a WebSocket request to `websocket` with what it was accepted
/// for (only when `upgrades`: the server can switch this request to a
/// WebSocket); adds the CORS headers.
pub(crate) async fn answer<B: Chunks>(
    engine: &Engine,
    req: Request<B>,
    remote_addr: SocketAddr,
    secure: bool,
    upgrades: bool,
    websocket: impl FnOnce(Target, Request<B>) -> Answer,
) -> Answer {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let head = Head::of(&req, remote_addr, secure);
    let upgrade = upgrades && head.is_websocket_upgrade();
    let mut res = match route(engine, head, upgrade) {
        Routed::Answer(answer) => answer,
        Routed::Polling(session) => {
            let (parts, body) = req.into_parts();
            polling::serve(engine, session, &parts.method, &parts.headers, body).await
        }
        Routed::Upgrade(session) => websocket(Target::upgrade(session), req),
        Routed::Forward(owner, sid) => match engine.forward() {
            Some(forward) => {
                let (parts, body) = req.into_parts();
                super::forward::poll(engine, forward, &owner, &sid, &parts.method, &parts.headers, body).await
            }
            None => HttpError::UnknownSid.answer(),
        },
        // A draining node starts no relay: it would end with this node.
        Routed::Relay(..) if engine.is_draining() => refusal_answer(&HandshakeRefusal::shutting_down()),
        Routed::Relay(owner, sid) => match engine.forward() {
            Some(forward) => websocket(Target::Relay(Box::new((forward.clone(), owner, sid))), req),
            None => HttpError::UnknownSid.answer(),
        },
        Routed::Handshake(transport, info) => match engine.admit(&info) {
            Err(refusal) => refusal_answer(&refusal),
            Ok(admitted) => match transport {
                TransportKind::Polling => polling::handshake(engine, &info, admitted),
                TransportKind::WebSocket => websocket(Target::New(Box::new((*info, admitted))), req),
            },
        },
    };
    cors_headers(engine, origin.as_ref(), res.headers_mut());
    res
}

/// The OPEN packet of `session`; a polling one offers the WebSocket
/// upgrade when the engine allows it.
pub(crate) fn open_packet(engine: &Engine, session: &Session, transport: TransportKind) -> Encoded {
    let config = engine.config();
    let offers_upgrade = transport == TransportKind::Polling && config.allow_websocket && config.allow_upgrades;
    let open = Handshake {
        sid: session.sid().to_owned(),
        upgrades: if offers_upgrade { vec!["websocket".to_owned()] } else { vec![] },
        ping_interval: config.ping_interval.as_millis() as u64,
        ping_timeout: config.ping_timeout.as_millis() as u64,
        max_payload: config.max_payload as u64,
    };
    open.to_packet().encode()
}

/// The answer to a refused handshake: its status, a JSON body with `code`
/// and `message`, and `Retry-After` when known. A WebSocket client sees the
/// same response instead of the `101`.
pub(crate) fn refusal_answer(refusal: &HandshakeRefusal) -> Answer {
    let body = serde_json::json!({ "code": refusal.code, "message": refusal.message }).to_string();
    let mut res = plain(refusal.status, body, "application/json");
    if let Some(after) = refusal.retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    res
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// A copy of the headers that owns its bytes. hyper's parsed headers are
/// views into the connection's 8 KiB read buffer: a session that kept them
/// would keep that whole buffer alive for its lifetime.
fn detach_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; the bytes came from a valid value.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""));
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// A copy of the URI that owns its bytes (see [`detach_headers`]).
fn detach_uri(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// How a request's `Origin` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllowedOrigin {
    /// The origin is listed: reflected, with credentials when configured.
    Listed,
    /// Only `*` matches: answered with a literal `*`, never with
    /// credentials (as npm `cors` does). Reflecting every origin with
    /// credentials would let any site make requests with the user's
    /// cookies and read the answers.
    Any,
}

fn allowed_origin(engine: &Engine, origin: &HeaderValue) -> Option<AllowedOrigin> {
    let origins = &engine.config().cors_origins;
    if origins.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
        Some(AllowedOrigin::Listed)
    } else if origins.iter().any(|o| o == "*") {
        Some(AllowedOrigin::Any)
    } else {
        None
    }
}

fn preflight(engine: &Engine, headers: &HeaderMap) -> Answer {
    let mut res = plain(StatusCode::NO_CONTENT, Bytes::new(), "text/plain");
    if let Some(origin) = headers.get(header::ORIGIN)
        && allowed_origin(engine, origin).is_some()
    {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"));
        if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        h.insert(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
    }
    res
}

/// Adds the CORS headers that answer a request from `origin` (none
/// without an `Origin`, or for an origin that is not allowed).
pub(crate) fn cors_headers(engine: &Engine, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
    let Some(origin) = origin else { return };
    match allowed_origin(engine, origin) {
        None => {}
        Some(AllowedOrigin::Any) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            if engine.config().cors_origins.iter().any(|o| o != "*") {
                // Listed origins get another answer: a shared cache must
                // keep the two apart.
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        Some(AllowedOrigin::Listed) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if engine.config().cors_credentials {
                h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

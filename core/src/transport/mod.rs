//! Engine.IO over HTTP long-polling and WebSocket, on hyper and
//! tokio-tungstenite (feature `server`).
//!
//! [`handle`] answers one HTTP request for an [`Engine`] (usable from any
//! hyper-based server), and [`Server`] is a ready-made listener that mounts
//! engines at paths, e.g. Socket.IO at `/socket.io/` and a raw Engine.IO
//! application at `/engine.io/`.
//!
//! Errors are answered exactly as socket.io's engine answers them:
//!
//! | case | answer |
//! |---|---|
//! | unknown transport | `400 {"code":0,"message":"Transport unknown"}` |
//! | unknown session id | `400 {"code":1,"message":"Session ID unknown"}` |
//! | handshake not a `GET` | `400 {"code":2,"message":"Bad handshake method"}` |
//! | transport mismatch, overlapping polls, bad body type | `400 {"code":3,"message":"Bad request"}` |
//! | `EIO` other than 4 | `400 {"code":5,"message":"Unsupported protocol version"}` |
//! | polling body over `max_payload` | `413`, and the session is closed |

mod lean_io;
mod polling;
mod server;
mod ws;

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::engine::{Engine, RequestInfo};

pub use server::{DEFAULT_MAX_CONNECTIONS_PER_IP, Route, Server, ServerBuilder};

/// A small `text/plain` response, for routes such as health checks.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    plain(status, body, "text/plain; charset=utf-8")
}

/// The body type of every response.
pub type Body = Full<Bytes>;

/// The body type of incoming requests.
pub type IncomingBody = Incoming;

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

    pub(crate) fn response(self) -> Response<Body> {
        let mut res = Response::new(Full::new(Bytes::from(self.body())));
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn parse_query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers one Engine.IO request (handshake, poll, post or WebSocket
/// upgrade) for `engine`. `remote_addr` is the peer's address.
pub async fn handle(engine: &Engine, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = route(engine, req, remote_addr).await;
    cors_headers(engine, origin.as_ref(), &mut res);
    res
}

async fn route(engine: &Engine, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
    let config = engine.config();
    if req.method() == Method::OPTIONS && !config.cors_origins.is_empty() {
        return preflight(engine, &req);
    }
    let query = parse_query(req.uri());
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let upgrade = is_websocket_upgrade(&req);
    let transport = match param("transport") {
        Some("polling") if config.allow_polling => crate::engine::TransportKind::Polling,
        Some("websocket") if config.allow_websocket => crate::engine::TransportKind::WebSocket,
        _ => return HttpError::UnknownTransport.response(),
    };
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && origin.to_str().is_err()
    {
        return HttpError::BadRequest.response();
    }
    let eio_ok = param("EIO") == Some("4");

    if let Some(sid) = param("sid") {
        let Some(session) = engine.session(sid) else {
            // The GET a client sent just before its close packet, arriving
            // after it: a noop, as engine.io answers it.
            if transport == crate::engine::TransportKind::Polling
                && req.method() == Method::GET
                && !upgrade
                && engine.take_client_close(sid)
            {
                return plain(StatusCode::OK, Bytes::from_static(b"6"), "text/plain; charset=UTF-8");
            }
            return HttpError::UnknownSid.response();
        };
        let current = session.transport();
        if !upgrade && current != transport {
            return HttpError::BadRequest.response();
        }
        return match transport {
            crate::engine::TransportKind::Polling => polling::serve(engine, session, req).await,
            crate::engine::TransportKind::WebSocket => {
                if !eio_ok {
                    return HttpError::BadRequest.response();
                }
                ws::upgrade(engine, Some(session), req, None)
            }
        };
    }

    if req.method() != Method::GET {
        return HttpError::BadHandshakeMethod.response();
    }
    if transport == crate::engine::TransportKind::WebSocket && !upgrade {
        return HttpError::BadRequest.response();
    }
    if !eio_ok {
        return HttpError::UnsupportedProtocolVersion.response();
    }
    let info = RequestInfo {
        headers: detach_headers(req.headers()),
        query: query.clone(),
        uri: detach_uri(req.uri()),
        remote_addr,
        time: SystemTime::now(),
        secure: false,
    };
    let admitted = match engine.admit(&info) {
        Ok(a) => a,
        Err(refusal) => return refusal_response(&refusal),
    };
    match transport {
        crate::engine::TransportKind::Polling => polling::handshake(engine, &info, admitted),
        crate::engine::TransportKind::WebSocket => ws::upgrade(engine, None, req, Some((info, admitted))),
    }
}

/// The answer to a refused handshake: its status, a JSON body with `code`
/// and `message`, and `Retry-After` when known. A WebSocket client sees the
/// same response instead of the `101`.
fn refusal_response(refusal: &crate::engine::HandshakeRefusal) -> Response<Body> {
    let body = serde_json::json!({ "code": refusal.code, "message": refusal.message }).to_string();
    let mut res = plain(refusal.status, body, "application/json");
    if let Some(after) = refusal.retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    res
}

/// A copy of the headers that owns its bytes. hyper's parsed headers are
/// views into the connection's 8 KiB read buffer: a session that kept them
/// would keep that whole buffer alive for its lifetime.
fn detach_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; the bytes came from a valid value.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""));
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// A copy of the URI that owns its bytes (see [`detach_headers`]).
fn detach_uri(uri: &http::Uri) -> http::Uri {
    http::Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
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

fn preflight(engine: &Engine, req: &Request<Incoming>) -> Response<Body> {
    let mut res = plain(StatusCode::NO_CONTENT, Bytes::new(), "text/plain");
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && allowed_origin(engine, origin).is_some()
    {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"));
        if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        h.insert(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
    }
    res
}

pub(crate) fn cors_headers(engine: &Engine, origin: Option<&HeaderValue>, res: &mut Response<Body>) {
    let Some(origin) = origin else { return };
    let h = res.headers_mut();
    match allowed_origin(engine, origin) {
        None => {}
        Some(AllowedOrigin::Any) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
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

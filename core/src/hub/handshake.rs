//! The handshake of a socket ([`Handshake`], socket.io's
//! `socket.handshake`) and the compact name/value pairs it holds ([`Fields`]).

use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use serde_json::Value;

use crate::engine::RequestInfo;

/// Name/value pairs (request headers, query parameters), stored in two
/// allocations however many there are: a handshake lives as long as its
/// socket, and most are never read after the connect middlewares ran.
/// Serializes as an object.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// Every name and value, concatenated.
    text: Box<str>,
    /// Where each name and each value ends in `text`.
    ends: Box<[u32]>,
}

impl Fields {
    /// Collects `pairs` in order.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (N, V)>) -> Fields {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (name, value) in pairs {
            text.push_str(name.as_ref());
            ends.push(text.len() as u32);
            text.push_str(value.as_ref());
            ends.push(text.len() as u32);
        }
        Fields { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.ends.chunks_exact(2).scan(0usize, |start, e| {
            let (name_end, value_end) = (e[0] as usize, e[1] as usize);
            let pair = (&self.text[*start..name_end], &self.text[name_end..value_end]);
            *start = value_end;
            Some(pair)
        })
    }

    /// The value of the first pair named `name` (exact match; header names
    /// are lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether a pair is named `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

fn http_date<S: serde::Serializer>(time: &std::time::SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&httpdate::HttpDate::from(*time))
}

/// The handshake of a socket, as socket.io's `socket.handshake`.
#[derive(Debug, Clone, Serialize)]
pub struct Handshake {
    /// Request headers (lower-case names; repeated headers joined by `, `).
    pub headers: Fields,
    /// When the handshake arrived; serialized as an HTTP date, like
    /// socket.io's (kept as a time, not as text: every connection holds one).
    #[serde(serialize_with = "http_date")]
    pub time: std::time::SystemTime,
    /// The client's IP address: the peer's, or the one a trusted proxy
    /// reported (see [`ConnectionLimits::trusted_proxies`](crate::limits::ConnectionLimits::trusted_proxies)); serialized as
    /// text, like socket.io's. What per-IP limits count.
    pub address: std::net::IpAddr,
    /// Whether the request was cross-origin (an `Origin` header was sent).
    pub xdomain: bool,
    /// Whether the connection used TLS.
    pub secure: bool,
    /// When the handshake arrived, in milliseconds since the Unix epoch.
    pub issued: u64,
    /// The request URL (path and query).
    pub url: String,
    /// Query parameters.
    pub query: Fields,
    /// The auth payload of the CONNECT packet (`{}` when none).
    pub auth: Value,
    /// The peer's socket address.
    #[serde(skip)]
    pub remote_addr: SocketAddr,
    /// The id the socket gets on its namespace, as connect middlewares see
    /// it (socket.io's middlewares see `socket.id`); serialized as `sid`.
    /// A socket whose session is recovered keeps its old id instead. `None`
    /// outside a namespace's connect.
    #[serde(rename = "sid", skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<std::sync::Arc<str>>,
}

impl Handshake {
    pub(crate) fn new(request: &RequestInfo, client_ip: std::net::IpAddr, auth: Option<Value>) -> Handshake {
        // Repeated headers are joined, in order of first appearance.
        let mut headers: Vec<(&str, String)> = Vec::with_capacity(request.headers.keys_len());
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            match headers.iter_mut().find(|(n, _)| *n == name.as_str()) {
                Some((_, v)) => {
                    v.push_str(", ");
                    v.push_str(&value);
                }
                None => headers.push((name.as_str(), value.into_owned())),
            }
        }
        let issued = request.time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        Handshake {
            xdomain: headers.iter().any(|(n, _)| *n == "origin"),
            headers: Fields::from_pairs(headers),
            time: request.time,
            address: client_ip,
            secure: request.secure,
            issued,
            url: request.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            query: Fields::from_pairs(request.query.iter().map(|(k, v)| (k, v))),
            auth: auth.unwrap_or_else(|| Value::Object(Default::default())),
            remote_addr: request.remote_addr,
            socket_id: None,
        }
    }
}

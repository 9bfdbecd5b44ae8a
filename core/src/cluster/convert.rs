//! Conversions between the hub's values and the wire's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::cluster::wire::classic::{self, FetchedSocket, RoomOpts};
use crate::cluster::wire::notepack::{self, Data};
use crate::hub::{Fields, Handshake, Namespace, RemoteSocket, Socket};
use crate::protocol::socketio::Payload;
use crate::rooms::{Room, Target};

/// `[event, ...args]` as the cluster protocols carry it; `None` (logged)
/// when the arguments point at attachments they do not have.
pub(crate) fn event_data(event: &str, args: &Payload) -> Option<Vec<Data>> {
    notepack::event_data(event, &args.data, &args.attachments)
        .map_err(|e| tracing::debug!(error = %e, "cluster: arguments not publishable"))
        .ok()
}

/// The event name and arguments of `[event, ...args]`.
pub(super) fn event_of(data: &[Data]) -> Option<(String, Payload)> {
    let (Data::Str(event), rest) = data.split_first()? else { return None };
    let (values, attachments) = notepack::args_to_json(rest);
    Some((event.clone(), Payload { data: values, attachments }))
}

/// The first argument of an ack, as the cluster protocol carries it.
pub(crate) fn first_arg(payload: &Payload) -> Option<Data> {
    let first = payload.data.first()?;
    Data::from_json_with_attachments(first, &payload.attachments).ok()
}

/// An ack's argument from another node, as a payload.
pub(crate) fn payload_of(data: Option<Data>) -> Payload {
    match data {
        Some(d) => {
            let (values, attachments) = notepack::args_to_json(std::slice::from_ref(&d));
            Payload { data: values, attachments }
        }
        None => Payload::default(),
    }
}

pub(crate) fn target_of(rooms: &[String], except: &[String]) -> Target {
    Target {
        rooms: rooms.iter().map(|r| Room::from(r.as_str())).collect(),
        except: except.iter().map(|r| Room::from(r.as_str())).collect(),
    }
}

pub(crate) fn room_opts(target: &Target) -> RoomOpts {
    RoomOpts {
        rooms: target.rooms.iter().map(|r| r.to_string()).collect(),
        except: target.except.iter().map(|r| r.to_string()).collect(),
    }
}

pub(super) fn fields_data(fields: &Fields) -> Data {
    Data::Map(fields.iter().map(|(k, v)| (k.to_owned(), Data::Str(v.to_owned()))).collect())
}

pub(super) fn data_fields(data: &Data) -> Fields {
    let Data::Map(entries) = data else { return Fields::default() };
    Fields::from_pairs(entries.iter().map(|(k, v)| {
        let value = match v {
            Data::Str(s) => s.clone(),
            other => other.to_json().to_string(),
        };
        (k.clone(), value)
    }))
}

/// A local socket as REMOTE_FETCH answers describe it.
pub(super) fn fetched(socket: &Socket) -> FetchedSocket {
    let h = socket.handshake();
    FetchedSocket {
        id: socket.id().to_owned(),
        handshake: classic::Handshake {
            headers: fields_data(&h.headers),
            time: httpdate::fmt_http_date(h.time),
            address: Some(h.address.to_string()),
            xdomain: h.xdomain,
            secure: h.secure,
            issued: i64::try_from(h.issued).unwrap_or(i64::MAX),
            url: Some(h.url.clone()),
            query: fields_data(&h.query),
            auth: Data::from_json(&h.auth),
            extra: Vec::new(),
        },
        rooms: socket.rooms().iter().map(|r| r.to_string()).collect(),
        data: Some(Data::from_json(&socket.data())),
    }
}

/// A socket of another node, from a REMOTE_FETCH answer.
pub(crate) fn remote_socket(ns: &Namespace, s: FetchedSocket) -> RemoteSocket {
    let h = &s.handshake;
    let address: IpAddr =
        h.address.as_deref().and_then(|a| a.parse().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let issued = u64::try_from(h.issued).unwrap_or(0);
    let handshake = Handshake {
        headers: data_fields(&h.headers),
        time: UNIX_EPOCH + Duration::from_millis(issued),
        address,
        xdomain: h.xdomain,
        secure: h.secure,
        issued,
        url: h.url.clone().unwrap_or_default(),
        query: data_fields(&h.query),
        auth: h.auth.to_json(),
        remote_addr: SocketAddr::new(address, 0),
        socket_id: Some(s.id.as_str().into()),
    };
    let data = s.data.as_ref().map_or(Value::Null, Data::to_json);
    RemoteSocket::remote(ns.clone(), s.id, Arc::new(handshake), s.rooms, data)
}

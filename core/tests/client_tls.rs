//! The client over TLS, live: a TLS server on loopback (a self-signed
//! certificate made here with rcgen) in front of the core's server. The
//! client connects over `wss` and over `https` long-polling when the
//! certificate is trusted through `root_certificates`, fails clearly when
//! it is not, and pinning accepts the pinned key and refuses another.

use std::sync::Arc;

use serde_json::json;
use tidewire::client::{
    Manager, ManagerOptions, ManagerState, SocketOptions, SocketState, TransportKind, public_key_pin,
};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, Socket};
use tidewire::protocol::socketio::Payload;
use tokio::net::{TcpListener, TcpStream};

mod client_common;
use client_common::{STEP, settled};

/// A self-signed certificate for `localhost`: (DER certificate, PEM
/// certificate, DER private key).
fn certificate() -> (Vec<u8>, String, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = certified.cert.der().to_vec();
    (der, certified.cert.pem(), certified.signing_key.serialize_der())
}

/// The core's server behind a TLS terminator on loopback; its URL.
async fn tls_server(cert_der: Vec<u8>, key_der: Vec<u8>) -> (Embedded, String) {
    let e = Embedded::new(EmbedOptions::default()).unwrap();
    e.namespace("/").unwrap().on("echo", |_s: Socket, ev: Event| async move {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    let upstream = e.listen().await.unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.into()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    (e, format!("https://localhost:{port}"))
}

fn opts(transports: Vec<TransportKind>, roots: Vec<Vec<u8>>, pins: Vec<String>) -> ManagerOptions {
    ManagerOptions {
        transports,
        root_certificates: roots,
        pinned_keys: pins,
        reconnection: false,
        ..ManagerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_polling_with_a_trusted_root() {
    let (der, pem, key) = certificate();
    let (_server, url) = tls_server(der.clone(), key).await;
    let polling_then_ws = vec![TransportKind::Polling, TransportKind::WebSocket];
    // The root given as DER, and as PEM.
    for (transports, root) in [
        (vec![TransportKind::WebSocket], der.clone()),
        (vec![TransportKind::Polling], pem.clone().into_bytes()),
        (polling_then_ws, der.clone()),
    ] {
        let manager = Manager::new(&url, opts(transports.clone(), vec![root], Vec::new())).unwrap();
        let socket = manager.socket("/", SocketOptions::default());
        let state = settled(&socket).await;
        assert!(matches!(state, SocketState::Connected { .. }), "{transports:?}: {state:?}");
        let reply = socket.emit_with_ack("echo", Payload::json(vec![json!("over tls")]), Some(STEP)).await;
        assert_eq!(reply.map(|p| p.data), Ok(vec![json!("over tls")]), "{transports:?}");
        if transports.len() == 2 {
            let mut rx = manager.watch_state();
            let upgraded = ManagerState::Open { transport: TransportKind::WebSocket };
            tokio::time::timeout(STEP, rx.wait_for(|s| *s == upgraded)).await.expect("upgraded to wss").unwrap();
        }
        manager.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_clearly() {
    let (der, _pem, key) = certificate();
    let (_server, url) = tls_server(der, key).await;
    for transports in [vec![TransportKind::WebSocket], vec![TransportKind::Polling]] {
        let manager = Manager::new(&url, opts(transports.clone(), Vec::new(), Vec::new())).unwrap();
        let socket = manager.socket("/", SocketOptions::default());
        match settled(&socket).await {
            SocketState::Disconnected { reason, will_reconnect: false } => {
                assert!(reason.starts_with("connect error"), "{reason}");
                assert!(reason.contains("certificate"), "{transports:?}: {reason}");
            }
            other => panic!("{transports:?}: connected to an untrusted server: {other:?}"),
        }
    }
    // Not a certificate at all: refused when the manager is made.
    let bad = Manager::new(&url, opts(vec![TransportKind::WebSocket], vec![b"junk".to_vec()], Vec::new()));
    assert!(matches!(bad, Err(tidewire::client::ClientError::InvalidOption(_))), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinning_accepts_the_pinned_key_and_refuses_another() {
    let (der, _pem, key) = certificate();
    let (other_der, _, _) = certificate();
    let (_server, url) = tls_server(der.clone(), key).await;
    let pin = public_key_pin(&der).unwrap();
    let other_pin = public_key_pin(&other_der).unwrap();
    assert_ne!(pin, other_pin);
    for transports in [vec![TransportKind::WebSocket], vec![TransportKind::Polling]] {
        let manager =
            Manager::new(&url, opts(transports.clone(), vec![der.clone()], vec![other_pin.clone(), pin.clone()]))
                .unwrap();
        let socket = manager.socket("/", SocketOptions::default());
        let state = settled(&socket).await;
        assert!(matches!(state, SocketState::Connected { .. }), "{transports:?}: {state:?}");
        manager.close();

        let manager = Manager::new(&url, opts(transports.clone(), vec![der.clone()], vec![other_pin.clone()])).unwrap();
        let socket = manager.socket("/", SocketOptions::default());
        match settled(&socket).await {
            SocketState::Disconnected { reason, .. } => assert!(reason.contains("pin"), "{transports:?}: {reason}"),
            other => panic!("{transports:?}: a key matching no pin was accepted: {other:?}"),
        }
    }
}

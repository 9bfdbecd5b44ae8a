//! TLS as the platform does it: the OS trust store through
//! `rustls-platform-verifier` (Security.framework on Apple platforms, the
//! Android trust manager, the system's roots elsewhere), with extra roots
//! the app trusts besides (a private CA, a test server's self-signed
//! certificate) and optional public key pinning on top.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::ClientError;

/// A pin: base64 of a SHA-256 digest (32 bytes).
pub(crate) fn decode_pin(pin: &str) -> Option<[u8; 32]> {
    BASE64.decode(pin.trim()).ok()?.try_into().ok()
}

/// The pin of a certificate: base64 SHA-256 of its SubjectPublicKeyInfo.
pub fn public_key_pin(certificate_der: &[u8]) -> Option<String> {
    let der = CertificateDer::from(certificate_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let spki = cert.subject_public_key_info();
    Some(BASE64.encode(ring::digest::digest(&ring::digest::SHA256, spki.as_ref())))
}

/// The certificates of one root option: PEM (any number of
/// `CERTIFICATE` blocks) or one DER certificate.
pub(crate) fn parse_roots(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateDer::pem_slice_iter(bytes).collect::<Result<_, _>>().map_err(|e| format!("bad PEM: {e:?}"))?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err("no CERTIFICATE in the PEM".into());
    }
    for der in &certs {
        webpki::EndEntityCert::try_from(der).map_err(|e| format!("not a certificate: {e}"))?;
    }
    Ok(certs)
}

/// The platform's verifier, trusting `roots` besides the OS trust store.
fn platform_verifier(
    roots: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls_platform_verifier::Verifier, ClientError> {
    let failed = |e: rustls::Error| ClientError::Connect(format!("the platform's certificate verifier: {e}"));
    if roots.is_empty() {
        return rustls_platform_verifier::Verifier::new(provider).map_err(failed);
    }
    #[cfg(not(target_os = "android"))]
    return rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider).map_err(failed);
    #[cfg(target_os = "android")]
    Err(ClientError::InvalidOption(
        "rootCertificates: not supported on Android; trust the CA in the app's network security config".into(),
    ))
}

/// The client's TLS configuration: the platform verifier (with `roots`,
/// PEM or DER, trusted besides the OS store), with `pins` checked after it
/// when there are any.
pub(crate) fn client_config(pins: &[String], roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    for r in roots {
        extra.extend(parse_roots(r).map_err(|e| ClientError::InvalidOption(format!("rootCertificates: {e}")))?);
    }
    let platform = platform_verifier(extra, provider.clone())?;
    let verifier: Arc<dyn ServerCertVerifier> = if pins.is_empty() {
        Arc::new(platform)
    } else {
        Arc::new(Pinned { inner: Arc::new(platform), pins: pins.iter().filter_map(|p| decode_pin(p)).collect() })
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Connect(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The platform's verdict, then the pins.
#[derive(Debug)]
struct Pinned {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<[u8; 32]>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let pin = public_key_pin(end_entity).and_then(|p| decode_pin(&p));
        match pin {
            Some(pin) if self.pins.contains(&pin) => Ok(verified),
            _ => Err(rustls::Error::General("the server's public key matches no pin".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_decode_and_configs_build() {
        assert!(decode_pin(&BASE64.encode([7u8; 32])).is_some());
        assert!(decode_pin("short").is_none());
        assert!(decode_pin(&BASE64.encode([7u8; 31])).is_none());
        assert!(public_key_pin(b"not a certificate").is_none());
        assert!(client_config(&[], &[]).is_ok());
        assert!(client_config(&[BASE64.encode([1u8; 32])], &[]).is_ok());
        assert!(parse_roots(b"not a certificate").is_err());
        assert!(parse_roots(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
        assert!(matches!(client_config(&[], &[b"junk".to_vec()]), Err(ClientError::InvalidOption(_))));
    }
}

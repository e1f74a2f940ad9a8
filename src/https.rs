//! The operator's HTTPS server: the admission webhook and the `views.tenancy.dev` API on one
//! port. Client certificates are optional; one that verifies against the front proxy's CA (from
//! `kube-system/extension-apiserver-authentication`) is passed to the handlers as a [`Peer`], so
//! the read API trusts `X-Remote-*` headers only from kube-apiserver's aggregator. A client
//! certificate that does not verify ends the handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

/// The serving certificate and key (PEM).
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who connected: the common name of a client certificate that verified against the client CA
/// in force when the connection was made; `None` without one.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub common_name: Option<String>,
}

fn tls_config(
    identity: &Identity,
    client_ca: Option<&str>,
) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("front proxy CA: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("front proxy CA: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("front proxy CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate: {e}"))
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Serves `router` over TLS on `addr` until the process ends. `client_ca` holds the PEM CA that
/// client certificates are verified against (`None`: none are asked for); a change applies to
/// the connections made after it.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    identity: Identity,
    mut client_ca: watch::Receiver<Option<String>>,
) -> Result<(), String> {
    let mut acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
        &identity,
        client_ca.borrow_and_update().as_deref(),
    )?));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "HTTPS server (webhook, views) listening");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        if client_ca.has_changed().unwrap_or(false) {
            match tls_config(&identity, client_ca.borrow_and_update().as_deref()) {
                Ok(cfg) => {
                    acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
                    tracing::info!("client CA for the views API updated");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the new front proxy CA; keeping the old one")
                }
            }
        }
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let peer = Peer {
                common_name: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| common_name(c.as_ref())),
            };
            let service =
                hyper_util::service::TowerToHyperService::new(router.layer(Extension(peer)));
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_name_of_a_client_certificate() {
        let pki = crate::tls::Pki::named("front-proxy-ca").unwrap();
        let client = pki.client_cert("front-proxy-client", &[]).unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            common_name(der.as_ref()).as_deref(),
            Some("front-proxy-client")
        );
        assert_eq!(common_name(b"not a certificate"), None);
    }

    #[test]
    fn a_tls_config_with_and_without_client_certificates() {
        let pki = crate::tls::Pki::new().unwrap();
        let serving = pki.serving_cert("s", &["localhost"]).unwrap();
        let identity = Identity {
            cert_pem: serving.cert_pem,
            key_pem: serving.key_pem,
        };
        assert!(tls_config(&identity, None).is_ok());
        assert!(tls_config(&identity, Some(pki.ca_pem())).is_ok());
        // A CA bundle without a certificate verifies nobody: refused, not served open.
        assert!(tls_config(&identity, Some("garbage")).is_err());
    }
}

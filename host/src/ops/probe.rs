//! `probe`'s client: one GET over HTTP/1.1, plain or over TLS, with hyper's
//! client and rustls; the status code of the answer.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// GETs `url` (http:// or https://; with `insecure`, any certificate is
/// accepted): the status code of the answer.
pub(crate) async fn get_status(url: &str, insecure: bool) -> Result<u16> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => bail!("only http:// and https:// URLs can be probed"),
    };
    let authority = uri.authority().context("the URL names no host")?.clone();
    // An IPv6 literal comes bracketed in a URL, bare in a socket address.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if !tls {
        return get(stream, path, authority.as_str()).await;
    }
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} is not a name TLS can check"))?;
    let stream = TlsConnector::from(Arc::new(client_config(insecure)?))
        .connect(name, stream)
        .await
        .with_context(|| {
            format!("TLS with {authority} failed (for a self-signed certificate: --insecure)")
        })?;
    get(stream, path, authority.as_str()).await
}

async fn get(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    path: &str,
    authority: &str,
) -> Result<u16> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("starting HTTP/1.1")?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, authority)
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("reading the answer")?;
    Ok(response.status().as_u16())
}

/// Certificates checked against the web's roots, or, `insecure`, not at all.
fn client_config(insecure: bool) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots)
    };
    Ok(config.with_no_client_auth())
}

/// Accepts whatever certificate the server shows, checking only that the
/// handshake is signed with its key: for a host's own, self-signed one.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

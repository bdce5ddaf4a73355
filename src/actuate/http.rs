//! Outgoing HTTP for plugins, through `wasi:http`: every request passes this hook. It
//! must match a grant; the host resolves the name itself and refuses loopback, private
//! and link-local addresses unless the grant names them literally; it adds the
//! credential headers the operator configured; and it cuts the timeouts to the call's
//! budget. Redirects are never followed: a plugin sees the 3xx.
//!
//! The connection goes to the very address that was vetted (no second lookup, so a
//! name cannot change its answer in between), and TLS verifies the server's name
//! against the public web roots plus the CA files the operator listed for the
//! actuator (`tls_ca_files`), as a cluster's own CA needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::config::InjectHeader;
use super::grants::{HttpGrant, inject_matches, is_internal};

/// Why the hook refused a request, kept so the call's failure can say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub String);

pub struct HttpHooks {
    pub grants: Arc<Vec<HttpGrant>>,
    /// The TLS client configuration of this actuator (roots and CA files).
    pub tls: Arc<rustls::ClientConfig>,
    pub inject: Arc<Vec<InjectHeader>>,
    pub deadline: Instant,
    /// The last request this hook refused, and why.
    pub denied: Arc<std::sync::Mutex<Option<Denial>>>,
    /// Requests sent so far in this call, and the most allowed (`http_requests`).
    pub sent: u32,
    pub max_requests: u32,
}

type Response = http::Response<WasiBody>;
type Io = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Sent = Box<dyn Future<Output = Result<(Response, Io), HttpError>> + Send>;

impl HttpHooks {
    fn deny(&self, why: String) -> Sent {
        if let Ok(mut slot) = self.denied.lock() {
            *slot = Some(Denial(why));
        }
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Io,
    ) -> Sent {
        self.sent += 1;
        if self.sent > self.max_requests {
            return self.deny(format!(
                "more than {} HTTP requests in one call (limits.http_requests)",
                self.max_requests
            ));
        }
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host().map(str::to_string) else {
            return self.deny(format!("`{uri}` has no host"));
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let grants: Vec<HttpGrant> = self
            .grants
            .iter()
            .filter(|g| g.matches(&scheme, &host, port))
            .cloned()
            .collect();
        if grants.is_empty() {
            return self.deny(format!(
                "{scheme}://{host}:{port} is not granted to this actuator"
            ));
        }
        // Credentials: added here, after the plugin built the request.
        for inject in self.inject.iter() {
            if inject_matches(&inject.url, &scheme, &host, port, uri.path()) {
                let Ok(value) =
                    crate::input::read_text(&inject.value_from_file, crate::input::caps::SECRET)
                else {
                    return self.deny(format!(
                        "the credential file `{}` cannot be read",
                        inject.value_from_file.display()
                    ));
                };
                let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(inject.header.as_bytes()),
                    http::HeaderValue::from_str(value.trim()),
                ) else {
                    return self.deny(format!(
                        "the credential header `{}` is not a valid header",
                        inject.header
                    ));
                };
                request.headers_mut().insert(name, value);
            }
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let cut = |t: Option<Duration>| Some(t.map_or(remaining, |t| t.min(remaining)));
        let options = options.unwrap_or(RequestOptions {
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
        });
        let options = RequestOptions {
            connect_timeout: cut(options.connect_timeout),
            first_byte_timeout: cut(options.first_byte_timeout),
            between_bytes_timeout: cut(options.between_bytes_timeout),
        };
        let denied = self.denied.clone();
        let tls = (scheme == "https").then(|| self.tls.clone());
        Box::new(async move {
            // Resolve as the client will, and vet every address. (The connection resolves
            // again: a name that changes its answer in between is the one gap left.)
            let addresses: Vec<std::net::IpAddr> =
                match host.trim_start_matches('[').trim_end_matches(']').parse() {
                    Ok(ip) => vec![ip],
                    Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                        Ok(found) => found.map(|a| a.ip()).collect(),
                        Err(_) => {
                            return Err(HttpError::DnsError {
                                rcode: None,
                                info_code: None,
                            });
                        }
                    },
                };
            if let Some(ip) = addresses
                .iter()
                .find(|ip| is_internal(**ip) && !grants.iter().any(|g| g.names_literally(**ip)))
            {
                if let Ok(mut slot) = denied.lock() {
                    *slot = Some(Denial(format!(
                        "`{host}` resolves to the internal address {ip}, which no grant names literally"
                    )));
                }
                return Err(HttpError::HttpRequestDenied);
            }
            let Some(address) = addresses.first().map(|ip| SocketAddr::new(*ip, port)) else {
                return Err(HttpError::DestinationNotFound);
            };
            send(request, address, host, tls, options).await
        })
    }
}

/// The TLS configuration of one actuator: the public web roots, and the certificates
/// of each CA file (PEM).
pub fn tls_config(ca_files: &[std::path::PathBuf]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for file in ca_files {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("tls_ca_files: cannot read `{}`: {e}", file.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls_ca_files: `{}` is not PEM: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls_ca_files: `{}` holds no certificate",
                file.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_files: `{}`: {e}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connect to `address` (already vetted), speak TLS when asked, and send the request
/// over HTTP/1.1.
async fn send(
    mut request: http::Request<WasiBody>,
    address: SocketAddr,
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    options: RequestOptions,
) -> Result<(Response, Io), HttpError> {
    let connect = options.connect_timeout.unwrap_or(Duration::from_secs(30));
    let tcp = match tokio::time::timeout(connect, tokio::net::TcpStream::connect(address)).await {
        Ok(stream) => stream.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    // On the wire, the request line carries the path only (the Host header the rest).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let first_byte = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(30));
    match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            )?;
            let stream = match tokio::time::timeout(
                connect,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            {
                Ok(stream) => stream.map_err(HttpError::Tls)?,
                Err(_) => return Err(HttpError::ConnectionTimeout),
            };
            exchange(stream, request, first_byte).await
        }
        None => exchange(tcp, request, first_byte).await,
    }
}

async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<(Response, Io), HttpError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream)).await?;
    // The connection is driven on its own task until the response body is read.
    let (done, finished) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = done.send(connection.await);
    });
    let response = match tokio::time::timeout(first_byte, sender.send_request(request)).await {
        Ok(response) => response?,
        Err(_) => return Err(HttpError::ConnectionReadTimeout),
    };
    let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let io: Io = Box::new(async move {
        match finished.await {
            Ok(Err(e)) => Err(HttpError::from(e)),
            _ => Ok(()),
        }
    });
    Ok((response, io))
}

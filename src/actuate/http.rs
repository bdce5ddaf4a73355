//! Outgoing HTTP for plugins, through `wasi:http`: every request passes this hook. It
//! must match a grant; the host resolves the name itself and refuses loopback, private
//! and link-local addresses unless the grant names them literally; it adds the
//! credential headers the operator configured; and it cuts the timeouts to the call's
//! budget. Redirects are never followed: a plugin sees the 3xx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::config::InjectHeader;
use super::grants::{HttpGrant, is_internal};

/// Why the hook refused a request, kept so the call's failure can say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub String);

pub struct HttpHooks {
    pub grants: Arc<Vec<HttpGrant>>,
    pub inject: Arc<Vec<InjectHeader>>,
    pub deadline: Instant,
    /// The last request this hook refused, and why.
    pub denied: Arc<std::sync::Mutex<Option<Denial>>>,
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
        let url = format!("{scheme}://{host}:{port}{}", uri.path());
        let url_default = format!("{scheme}://{host}{}", uri.path());
        for inject in self.inject.iter() {
            if url.starts_with(inject.url.trim_end_matches('/'))
                || url_default.starts_with(inject.url.trim_end_matches('/'))
            {
                let Ok(value) = std::fs::read_to_string(&inject.value_from_file) else {
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
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Io))
        })
    }
}

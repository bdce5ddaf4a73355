//! A small blocking HTTP client over `wasi:http`, for actuator plugins. The host
//! decides where a request may go (its `allow_http` grant), adds credentials, and cuts
//! timeouts to the call's budget; a refused request comes back as
//! `Error::Denied`.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What an HTTP answer means for an actuator: the kinds of `actuation-error`, so every
/// plugin maps statuses the same way (and retries the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Success,
    /// 404.
    NotFound,
    /// 401, 403.
    Forbidden,
    /// 409: transient.
    Conflict,
    /// 429, with `Retry-After` in milliseconds when the server sent seconds: transient.
    RateLimited(Option<u64>),
    /// 5xx: transient.
    Unavailable,
    /// Any other status: the request itself is wrong.
    Invalid,
}

impl Response {
    pub fn class(&self) -> Class {
        match self.status {
            200..=299 => Class::Success,
            404 => Class::NotFound,
            401 | 403 => Class::Forbidden,
            409 => Class::Conflict,
            429 => Class::RateLimited(
                self.header("retry-after")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|s| s * 1000),
            ),
            500..=599 => Class::Unavailable,
            _ => Class::Invalid,
        }
    }
}

impl Error {
    /// Whether trying again may help: transport failures may pass; a denial or a bad
    /// URL will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transport(_) | Error::TooLarge)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host refused the request: not granted, or an internal address.
    Denied,
    /// The URL cannot be sent.
    BadUrl(String),
    /// Connecting or talking to the server failed; trying again may help.
    Transport(String),
    /// The response was larger than the plugin accepts.
    TooLarge,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied => {
                f.write_str("the host denied the request (not granted to this actuator)")
            }
            Error::BadUrl(u) => write!(f, "bad URL `{u}`"),
            Error::Transport(e) => write!(f, "transport error: {e}"),
            Error::TooLarge => f.write_str("the response is too large"),
        }
    }
}

/// The largest response body read: actuators read small JSON documents.
const MAX_BODY: usize = 4 << 20;

fn transport(code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => Error::Denied,
        other => Error::Transport(format!("{other:?}")),
    }
}

/// Send one request and read the whole response. `headers` are added as given.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    // The length is known: send it, rather than let the host chunk the body.
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let length = body.len().to_string();
        fields
            .append("content-length", length.as_bytes())
            .map_err(|e| Error::BadUrl(format!("content-length: {e:?}")))?;
    }
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| Error::BadUrl(format!("header `{name}`: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => Scheme::Other(other.to_string()),
    };
    let bad = || Error::BadUrl(url.to_string());
    request.set_method(&method).map_err(|_| bad())?;
    request.set_scheme(Some(&scheme)).map_err(|_| bad())?;
    request.set_authority(Some(authority)).map_err(|_| bad())?;
    request.set_path_with_query(Some(path)).map_err(|_| bad())?;
    let outgoing = request.body().map_err(|_| bad())?;
    let options = RequestOptions::new();
    let future = outgoing_handler::handle(request, Some(options)).map_err(transport)?;
    {
        let stream = outgoing
            .write()
            .map_err(|_| Error::Transport("cannot write the body".into()))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Error::Transport(format!("writing the body: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(transport)?;

    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(transport(code)),
            Some(Err(())) => return Err(Error::Transport("the response was already taken".into())),
            None => future.subscribe().block(),
        }
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body_handle = incoming
        .consume()
        .map_err(|_| Error::Transport("cannot read the body".into()))?;
    let mut body = Vec::new();
    {
        let stream = body_handle
            .stream()
            .map_err(|_| Error::Transport("cannot read the body".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_BODY {
                        return Err(Error::TooLarge);
                    }
                }
                Err(wasip2::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(Error::Transport(format!("reading the body: {e:?}"))),
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

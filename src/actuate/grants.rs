//! Matching what a plugin asks for against what the operator granted: HTTP
//! destinations (scheme, host, port, then the addresses a name resolves to) and
//! commands. Pure functions, so every rule is unit-tested.

use std::net::IpAddr;

/// One `allow_http` entry, parsed: `https://*.example.com`, `http://127.0.0.1:8080`,
/// `http://10.0.0.0/8:80-90`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    pub scheme: String,
    pub host: HostPattern,
    pub ports: (u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A name, matched exactly (case-insensitive).
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Suffix(String),
    /// An address or a CIDR range, named literally: such a grant may reach private,
    /// loopback or link-local addresses.
    Net(IpAddr, u8),
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

fn parse_net(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

impl HttpGrant {
    pub fn parse(text: &str) -> Result<HttpGrant, String> {
        let bad = |why: &str| format!("allow_http entry `{text}`: {why}");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("needs a scheme, e.g. https://"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let rest = rest.trim_end_matches('/');
        // `[v6]:port`, `host:port`, or a host alone. IPv6 hosts must be bracketed.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
                (host, after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let parse_port = |p: &str| p.parse::<u16>().map_err(|_| bad("bad port"));
        let ports = match port {
            None => (default_port(&scheme), default_port(&scheme)),
            Some(p) => match p.split_once('-') {
                Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
                None => (parse_port(p)?, parse_port(p)?),
            },
        };
        if ports.0 > ports.1 {
            return Err(bad("the port range is reversed"));
        }
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let host = if let Some(net) = parse_net(host) {
            HostPattern::Net(net.0, net.1)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(suffix.to_ascii_lowercase())
        } else if host.contains('*') || host.contains('/') {
            return Err(bad("`*.` may only prefix a name"));
        } else {
            HostPattern::Name(host.to_ascii_lowercase())
        };
        Ok(HttpGrant {
            scheme,
            host,
            ports,
        })
    }

    /// Whether the scheme, host and port of a request match this grant.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !self.scheme.eq_ignore_ascii_case(scheme) || port < self.ports.0 || port > self.ports.1 {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match &self.host {
            HostPattern::Name(name) => *name == host,
            HostPattern::Suffix(suffix) => host.ends_with(&format!(".{suffix}")),
            HostPattern::Net(net, bits) => host
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_net(ip, *net, *bits)),
        }
    }

    /// Whether this grant names `ip` literally (an address or range that contains it).
    pub fn names_literally(&self, ip: IpAddr) -> bool {
        matches!(self.host, HostPattern::Net(net, bits) if in_net(ip, net, bits))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Loopback, private, link-local, unspecified and similar addresses: reachable only
/// through a grant that names them literally.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || in_net(ip, IpAddr::from([100, 64, 0, 0]), 10) // carrier-grade NAT
                || in_net(ip, IpAddr::from([0, 0, 0, 0]), 8)
        }
        IpAddr::V6(v6) => {
            let mapped = v6.to_ipv4_mapped().map(IpAddr::V4);
            v6.is_loopback()
                || v6.is_unspecified()
                || in_net(ip, "fc00::".parse().unwrap_or(ip), 7) // unique local
                || in_net(ip, "fe80::".parse().unwrap_or(ip), 10) // link-local
                || mapped.is_some_and(is_internal)
        }
    }
}

/// Whether `program args...` is allowed by one of the grants: the whole argument list
/// matches the grant's patterns, one for one, or (`args_prefix`) starts with its prefix.
pub fn command_allowed(
    grants: &[super::config::AllowCommand],
    program: &str,
    args: &[String],
) -> bool {
    grants.iter().any(|g| {
        g.program == program
            && match &g.args_prefix {
                Some(prefix) => {
                    args.len() >= prefix.len() && prefix.iter().zip(args).all(|(a, b)| a == b)
                }
                None => {
                    args.len() == g.args.len()
                        && g.args.iter().zip(args).all(|(p, a)| arg_matches(p, a))
                }
            }
    })
}

/// One argument against one pattern: `{int}`, `{name}`, `{any}` or a literal.
fn arg_matches(pattern: &str, arg: &str) -> bool {
    let value = !arg.is_empty() && !arg.starts_with('-');
    match pattern {
        "{int}" => value && arg.bytes().all(|b| b.is_ascii_digit()),
        "{name}" => {
            value
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/:-".contains(&b))
        }
        "{any}" => value,
        literal => literal == arg,
    }
}

/// Whether a credential configured for `pattern` (`scheme://host[:port][/path]`) goes
/// with a request: scheme, host and port exactly (the port defaults by scheme), and
/// the path by whole segments (`/api` covers `/api` and `/api/x`, not `/api-evil`).
pub fn inject_matches(pattern: &str, scheme: &str, host: &str, port: u16, path: &str) -> bool {
    let Ok(uri) = pattern.parse::<http::Uri>() else {
        return false;
    };
    let (Some(p_scheme), Some(p_host)) = (uri.scheme_str(), uri.host()) else {
        return false;
    };
    let default_port = |s: &str| {
        if s.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        }
    };
    let p_port = uri.port_u16().unwrap_or(default_port(p_scheme));
    let prefix = uri.path().trim_end_matches('/');
    p_scheme.eq_ignore_ascii_case(scheme)
        && p_host.eq_ignore_ascii_case(host)
        && p_port == port
        && (prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuate::config::AllowCommand;

    fn grant(s: &str) -> HttpGrant {
        HttpGrant::parse(s).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn grants_match_scheme_host_and_port() {
        let kube = grant("https://kube.internal:6443");
        assert!(kube.matches("https", "kube.internal", 6443));
        assert!(kube.matches("https", "KUBE.internal", 6443));
        assert!(!kube.matches("http", "kube.internal", 6443));
        assert!(!kube.matches("https", "kube.internal", 443));
        assert!(!kube.matches("https", "evil.kube.internal", 6443));

        let wild = grant("https://*.example.com");
        assert!(wild.matches("https", "api.example.com", 443));
        assert!(!wild.matches("https", "example.com", 443));
        assert!(!wild.matches("https", "api.example.com.evil", 443));

        let range = grant("http://127.0.0.1:8000-8099");
        assert!(range.matches("http", "127.0.0.1", 8080));
        assert!(!range.matches("http", "127.0.0.1", 8100));
        assert!(range.names_literally("127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));

        let net = grant("http://10.0.0.0/8");
        assert!(net.matches("http", "10.1.2.3", 80));
        assert!(!net.matches("http", "11.1.2.3", 80));
        assert!(HttpGrant::parse("ftp://x").is_err());
        assert!(HttpGrant::parse("https://a*b.com").is_err());
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(
                is_internal(ip.parse().unwrap_or(IpAddr::from([1, 1, 1, 1]))),
                "{ip} is internal"
            );
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(
                !is_internal(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{ip} is public"
            );
        }
    }

    #[test]
    fn credentials_go_only_to_their_own_origin_and_path() {
        let m = |pattern: &str, url: &str| {
            let uri: http::Uri = url.parse().unwrap_or_default();
            let scheme = uri.scheme_str().unwrap_or("");
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            inject_matches(pattern, scheme, uri.host().unwrap_or(""), port, uri.path())
        };
        assert!(m("http://127.0.0.1:1808", "http://127.0.0.1:1808/x"));
        assert!(!m("http://127.0.0.1:1808", "http://127.0.0.1:18080/"));
        assert!(m("https://kube/api", "https://kube/api"));
        assert!(m("https://kube/api/", "https://kube/api/v1/x"));
        assert!(!m("https://kube/api", "https://kube/api-evil"));
        assert!(!m(
            "https://api.example.com",
            "https://api.example.com.other.example.com/"
        ));
        assert!(m("https://api.example.com", "https://API.example.com:443/"));
        assert!(!m("https://api.example.com", "http://api.example.com/"));
        assert!(!m(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!m("not a url", "https://api.example.com/"));
    }

    #[test]
    fn commands_match_their_whole_argument_list() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let grants = vec![AllowCommand {
            program: "/usr/local/bin/workers".into(),
            args: args(&["scale", "{name}", "{int}"]),
            args_prefix: None,
        }];
        let ok = |a: &[&str]| command_allowed(&grants, "/usr/local/bin/workers", &args(a));
        assert!(ok(&["scale", "shop/web", "4"]));
        assert!(!ok(&["scale", "shop/web", "4", "--force"]));
        assert!(!ok(&["scale", "-exec", "4"]));
        assert!(!ok(&["scale", "web", "4; rm"]));
        assert!(!ok(&["scale", "web"]));
        // No pattern at all: the program alone.
        let bare = vec![AllowCommand {
            program: "/usr/bin/find".into(),
            ..AllowCommand::default()
        }];
        assert!(command_allowed(&bare, "/usr/bin/find", &[]));
        assert!(!command_allowed(
            &bare,
            "/usr/bin/find",
            &args(&[".", "-exec", "sh"])
        ));
    }

    #[test]
    fn commands_match_program_and_argument_prefix() {
        let grants = vec![AllowCommand {
            program: "/usr/bin/docker".into(),
            args: vec![],
            args_prefix: Some(vec!["compose".into(), "-f".into()]),
        }];
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(command_allowed(
            &grants,
            "/usr/bin/docker",
            &args(&["compose", "-f", "x.yml", "up"])
        ));
        assert!(!command_allowed(
            &grants,
            "/usr/bin/docker",
            &args(&["run", "-f"])
        ));
        assert!(!command_allowed(
            &grants,
            "/usr/bin/docker",
            &args(&["compose"])
        ));
        assert!(!command_allowed(
            &grants,
            "docker",
            &args(&["compose", "-f"])
        ));
    }
}

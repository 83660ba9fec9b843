//! Host and Origin admission checks for the HTTP listener (SPEC §2.1), as pure functions.
//!
//! A localhost server is reachable from every web page the user visits. The Host check stops DNS
//! rebinding (a hostile name resolving to 127.0.0.1); the Origin check lets native clients (no
//! `Origin`), the built-in console (same origin) and configured app origins in, and nobody else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a request was refused, with the plain-text body to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a Host header that is not `host[:port]`.
    BadHost,
    /// 403 `forbidden host`
    ForbiddenHost,
    /// 403 `forbidden origin`
    ForbiddenOrigin,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Self::BadHost => 400,
            Self::ForbiddenHost | Self::ForbiddenOrigin => 403,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Self::BadHost => "bad host header",
            Self::ForbiddenHost => "forbidden host",
            Self::ForbiddenOrigin => "forbidden origin",
        }
    }
}

/// The Host/Origin policy of one listener.
#[derive(Clone, Debug)]
pub struct HostOriginPolicy {
    bound: SocketAddr,
    allowed_hosts: Vec<(String, Option<u16>)>,
    allowed_origins: Vec<String>,
}

impl HostOriginPolicy {
    /// `bound` is the address actually listened on (port resolved).
    pub fn new(bound: SocketAddr, allowed_hosts: &[String], allowed_origins: &[String]) -> Self {
        let allowed_hosts = allowed_hosts
            .iter()
            .filter_map(|entry| {
                let (host, port) = split_host_port(entry.trim())?;
                Some((host.to_ascii_lowercase(), port))
            })
            .collect();
        Self {
            bound,
            allowed_hosts,
            allowed_origins: allowed_origins.to_vec(),
        }
    }

    /// Checks `Host` then `Origin`; both are raw header values (`None` when absent).
    pub fn admit(&self, host: Option<&[u8]>, origin: Option<&[u8]>) -> Result<(), Refusal> {
        let host = self.check_host(host)?;
        self.check_origin(origin, &host)
    }

    /// Returns the accepted Host value (lowercased) on success.
    pub fn check_host(&self, host: Option<&[u8]>) -> Result<String, Refusal> {
        let raw = host.ok_or(Refusal::ForbiddenHost)?;
        let raw = std::str::from_utf8(raw)
            .map_err(|_| Refusal::BadHost)?
            .trim();
        let (name, port) = split_host_port(raw).ok_or(Refusal::BadHost)?;
        let name = name.to_ascii_lowercase();
        let port_or_80 = port.unwrap_or(80);
        let listening = self.bound.port();

        let loopback_name =
            name == "localhost" || parse_host_ip(&name).is_some_and(|ip| ip.is_loopback());
        let bound_ip = !self.bound.ip().is_unspecified()
            && !self.bound.ip().is_loopback()
            && parse_host_ip(&name) == Some(self.bound.ip());
        let listed = self.allowed_hosts.iter().any(|(allowed, allowed_port)| {
            *allowed == name && allowed_port.unwrap_or(listening) == port_or_80
        });
        if ((loopback_name || bound_ip) && port_or_80 == listening) || listed {
            Ok(raw.to_ascii_lowercase())
        } else {
            Err(Refusal::ForbiddenHost)
        }
    }

    /// Absent passes; otherwise exact match with an allowed origin or `http://<accepted host>`.
    pub fn check_origin(&self, origin: Option<&[u8]>, accepted_host: &str) -> Result<(), Refusal> {
        let Some(raw) = origin else {
            return Ok(());
        };
        let origin = std::str::from_utf8(raw).map_err(|_| Refusal::ForbiddenOrigin)?;
        if origin == "null" {
            return Err(Refusal::ForbiddenOrigin);
        }
        if self.allowed_origins.iter().any(|allowed| allowed == origin) {
            return Ok(());
        }
        match origin.strip_prefix("http://") {
            Some(rest) if rest.eq_ignore_ascii_case(accepted_host) => Ok(()),
            _ => Err(Refusal::ForbiddenOrigin),
        }
    }
}

/// A connectable `host:port` for an address: unspecified addresses become loopback.
pub fn display_host(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// Splits `name[:port]`, `[v6][:port]`; `None` when malformed.
pub fn split_host_port(raw: &str) -> Option<(&str, Option<u16>)> {
    if raw.is_empty() {
        return None;
    }
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let name = &raw[..=end];
        match &raw[end + 1..] {
            "" => (name, None),
            rest => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match raw.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (raw, None),
        }
    };
    if name.is_empty()
        || name.contains(['/', '@', ' ', '\\', '?', '#'])
        || (!name.starts_with('[') && name.contains(':'))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

fn parse_host_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bound: &str) -> HostOriginPolicy {
        HostOriginPolicy::new(
            bound.parse().unwrap(),
            &["My.Example".to_owned(), "other.example:9000".to_owned()],
            &["app://myapp".to_owned()],
        )
    }

    #[test]
    fn loopback_hosts_with_the_listening_port() {
        let p = policy("127.0.0.1:4500");
        for host in [
            "127.0.0.1:4500",
            "localhost:4500",
            "LOCALHOST:4500",
            "[::1]:4500",
            "127.1.2.3:4500",
        ] {
            assert!(p.check_host(Some(host.as_bytes())).is_ok(), "{host}");
        }
        for host in [
            "127.0.0.1:4501",
            "localhost",
            "evil.example:4500",
            "10.0.0.1:4500",
        ] {
            assert_eq!(
                p.check_host(Some(host.as_bytes())),
                Err(Refusal::ForbiddenHost),
                "{host}"
            );
        }
        assert_eq!(p.check_host(None), Err(Refusal::ForbiddenHost));
    }

    #[test]
    fn allowed_hosts_and_bound_ip() {
        let p = policy("192.168.1.5:4500");
        assert!(p.check_host(Some(b"my.example:4500")).is_ok());
        assert!(p.check_host(Some(b"my.example:4501")).is_err());
        assert!(p.check_host(Some(b"other.example:9000")).is_ok());
        assert!(p.check_host(Some(b"192.168.1.5:4500")).is_ok());
        let wildcard = policy("0.0.0.0:4500");
        assert!(wildcard.check_host(Some(b"0.0.0.0:4500")).is_err());
        assert!(wildcard.check_host(Some(b"127.0.0.1:4500")).is_ok());
        let port80 = policy("127.0.0.1:80");
        assert!(port80.check_host(Some(b"localhost")).is_ok());
    }

    #[test]
    fn malformed_hosts_never_panic() {
        let p = policy("127.0.0.1:4500");
        for host in [
            "", ":", "[::1", "[::1]x", "a:b", "a:99999", "a b:1", "::1:4500", "\u{fffd}",
        ] {
            assert!(p.check_host(Some(host.as_bytes())).is_err(), "{host:?}");
        }
        assert_eq!(p.check_host(Some(&[0xff, 0xfe])), Err(Refusal::BadHost));
    }

    #[test]
    fn origins() {
        let p = policy("127.0.0.1:4500");
        let host = "127.0.0.1:4500";
        assert!(p.check_origin(None, host).is_ok());
        assert!(p.check_origin(Some(b"http://127.0.0.1:4500"), host).is_ok());
        assert!(p.check_origin(Some(b"app://myapp"), host).is_ok());
        for origin in [
            "https://evil.example",
            "null",
            "http://localhost:4500",
            "https://127.0.0.1:4500",
            "app://myapp/",
        ] {
            assert_eq!(
                p.check_origin(Some(origin.as_bytes()), host),
                Err(Refusal::ForbiddenOrigin),
                "{origin}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(host in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                                         origin in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let p = policy("127.0.0.1:4500");
            let _ = p.admit(Some(&host), Some(&origin));
            let _ = p.admit(Some(&host), None);
        }

        #[test]
        fn loopback_hosts_with_the_right_port_always_pass(a in 0u8..=255, b in 0u8..=255, c in 0u8..=255) {
            let p = policy("127.0.0.1:4500");
            let host = format!("127.{a}.{b}.{c}:4500");
            proptest::prop_assert!(p.check_host(Some(host.as_bytes())).is_ok());
        }
    }
}

//! The hosts and origins this server is for, and the layer that refuses requests for any other
//! (DNS rebinding) and writes sent by another site's pages.
//!
//! A page of another site can make a browser send requests here: once its name resolves to
//! this machine (DNS rebinding), with a `Host` of that name; and at any time as a cross-origin
//! form or `fetch` whose answer it cannot read but whose effect happens. So the server answers
//! only requests whose `Host` is one of its own (421 `misdirected_request`: loopback names, the
//! address it listens on when that is one address, the host of `--public-url`), and refuses a
//! POST, PUT, PATCH or DELETE that names another `Origin` or says `Sec-Fetch-Site: cross-site`
//! (403 `cross_origin_refused`). Clients that send no `Origin`, as curl and scripts do, write
//! as before: they are no page of another site.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keypool::error::{Error, ErrorCode};

/// The names and origins the server answers for.
#[derive(Debug)]
pub struct Origins {
    /// Host names, lowercase (IPv6 addresses in brackets), with the port each is reached on.
    hosts: Vec<(String, u16)>,
    /// Origins as browsers send them: `scheme://host[:port]`, the port only if not the default.
    origins: Vec<String>,
}

impl Origins {
    /// Loopback names on the bound port, the bound address if it is one address (not a
    /// wildcard), and the public URL's host.
    pub fn new(bound: SocketAddr, public_url: Option<&reqwest::Url>) -> Self {
        let port = bound.port();
        let mut hosts = Vec::new();
        for name in ["localhost", "127.0.0.1", "[::1]"] {
            push_new(&mut hosts, (name.to_string(), port));
        }
        if !bound.ip().is_unspecified() {
            // `SocketAddr` prints an IPv6 address in brackets, as a Host header has it.
            let printed = bound.to_string();
            let name = printed.rsplit_once(':').map_or(&*printed, |(host, _)| host);
            push_new(&mut hosts, (name.to_string(), port));
        }
        let mut origins: Vec<String> = hosts
            .iter()
            .map(|(name, port)| format!("http://{name}:{port}"))
            .collect();
        if let Some(url) = public_url {
            if let (Some(name), Some(port)) = (url.host_str(), url.port_or_known_default()) {
                push_new(&mut hosts, (name.to_ascii_lowercase(), port));
            }
            push_new(&mut origins, url.origin().ascii_serialization());
        }
        Self { hosts, origins }
    }

    /// Whether `authority` (`host` or `host:port`, as a Host header has it) is one of ours.
    fn is_own_host(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        let (name, port) = match authority.rfind(':') {
            // A colon inside brackets belongs to an IPv6 address, not to a port.
            Some(at) if !authority[at..].contains(']') => {
                match authority[at + 1..].parse::<u16>() {
                    Ok(port) => (&authority[..at], Some(port)),
                    Err(_) => return false,
                }
            }
            _ => (authority.as_str(), None),
        };
        self.hosts
            .iter()
            .any(|(own, own_port)| own == name && port.is_none_or(|p| p == *own_port))
    }

    /// Whether every Host the request names (its header, and the request target's authority
    /// when it has one) is ours; a request that names none is not.
    fn is_for_us(&self, request: &Request) -> bool {
        let mut named = false;
        for value in request.headers().get_all(header::HOST) {
            named = true;
            if !value.to_str().is_ok_and(|v| self.is_own_host(v)) {
                return false;
            }
        }
        if let Some(authority) = request.uri().authority() {
            named = true;
            if !self.is_own_host(authority.as_str()) {
                return false;
            }
        }
        named
    }

    /// Whether a page of another site sent these headers: an `Origin` not ours, or a browser
    /// saying so in `Sec-Fetch-Site`.
    fn is_cross_site(&self, headers: &HeaderMap) -> bool {
        let foreign_origin = headers.get_all(header::ORIGIN).iter().any(|value| {
            !value
                .to_str()
                .is_ok_and(|v| self.origins.contains(&v.trim().to_ascii_lowercase()))
        });
        foreign_origin
            || headers
                .get_all("sec-fetch-site")
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    }

    /// The hosts, for messages: `localhost:8080, 127.0.0.1:8080, …`.
    fn host_list(&self) -> String {
        self.hosts
            .iter()
            .map(|(name, port)| format!("{name}:{port}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The layer's function: `axum::middleware::from_fn_with_state(origins, guard)`, around every
/// route.
pub async fn guard(State(origins): State<Arc<Origins>>, request: Request, next: Next) -> Response {
    if !origins.is_for_us(&request) {
        let message = format!(
            "this server answers only for {}; start it with --public-url to serve it under \
             another name",
            origins.host_list()
        );
        return Error::refused(ErrorCode::MisdirectedRequest, message).into_response();
    }
    let writes = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if writes && origins.is_cross_site(request.headers()) {
        let message = "this request comes from another site's page; this server takes changes \
                       only from its own pages and from clients that send no Origin";
        return Error::refused(ErrorCode::CrossOriginRefused, message).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::Origins;
    use axum::http::{HeaderMap, HeaderValue};

    fn origins(bound: &str, public: Option<&str>) -> Origins {
        let public = public.map(|u| reqwest::Url::parse(u).unwrap());
        Origins::new(bound.parse().unwrap(), public.as_ref())
    }

    #[test]
    fn loopback_names_on_the_bound_port_and_the_public_host_are_ours() {
        let own = origins("0.0.0.0:8080", Some("https://Keys.Example.org"));
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "keys.example.org",
            "keys.example.org:443",
        ] {
            assert!(own.is_own_host(host), "{host}");
        }
        for host in [
            "localhost:8081",
            "evil.example",
            "evil.example:8080",
            "0.0.0.0:8080",
            "keys.example.org:8080",
            "localhost.",
            "localhost:",
            "localhost:http",
            "[::1]:x",
            "",
        ] {
            assert!(!own.is_own_host(host), "{host}");
        }
        // A listening address of its own is a name of the server too.
        let lan = origins("192.168.1.5:9000", None);
        assert!(lan.is_own_host("192.168.1.5:9000"));
        let v6 = origins("[fd00::5]:9000", None);
        assert!(v6.is_own_host("[fd00::5]:9000"));
        assert!(!v6.is_own_host("fd00::5"));
    }

    #[test]
    fn only_other_origins_and_cross_site_fetches_are_cross_site() {
        let own = origins("127.0.0.1:8080", Some("https://keys.example.org:443"));
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, HeaderValue::from_static(value));
            }
            h
        };
        for ours in [
            &[][..],
            &[("origin", "http://127.0.0.1:8080")],
            &[("origin", "http://localhost:8080")],
            &[("origin", "https://keys.example.org")],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
        ] {
            assert!(!own.is_cross_site(&headers(ours)), "{ours:?}");
        }
        for theirs in [
            &[("origin", "http://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "http://localhost:3000")],
            &[("origin", "https://127.0.0.1:8080")],
            &[("origin", "http://keys.example.org")],
            &[("sec-fetch-site", "cross-site")],
            &[
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(own.is_cross_site(&headers(theirs)), "{theirs:?}");
        }
    }
}

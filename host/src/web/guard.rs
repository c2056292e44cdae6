//! Refuses requests that did not come from the operator's own view of
//! this appliance: a `Host` header naming some other host (DNS
//! rebinding), or an `Origin`/`Sec-Fetch-Site` showing that another web
//! page made the browser send it (cross-site request forgery: a
//! `text/plain` POST from any page the operator opens). Also sets the
//! headers that keep the panel out of frames and its types unsniffed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The names this appliance answers to.
#[derive(Debug)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// `localhost`, this machine's host name (and `.local`), and `extra`.
    pub fn new(extra: &[String]) -> Hosts {
        let mut names: Vec<String> = vec!["localhost".into()];
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() {
                names.push(format!("{h}.local"));
                names.push(h);
            }
        }
        names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
        Hosts { names }
    }

    /// Whether `host` (a `Host` header's value, port included or not) is
    /// this appliance: an IP address literal, or one of its names.
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.names.contains(&name)
    }
}

/// `host:port` → `host`; `[v6]:port` → `v6`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The `host[:port]` part of an origin such as `http://10.0.0.5:8080`.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

fn refuse(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Why a request is refused, if it is.
pub fn verdict(hosts: &Hosts, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !hosts.allows(host) {
        return Err((
            StatusCode::MISDIRECTED_REQUEST,
            "this appliance does not answer to that host name (add it to web.names)",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(origin_authority)
            .is_some_and(|a| a.eq_ignore_ascii_case(host));
        if !same {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused: use the panel itself or an API client",
            ));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err((StatusCode::FORBIDDEN, "cross-site requests are refused"));
    }
    Ok(())
}

/// The middleware.
pub async fn check(State(hosts): State<Arc<Hosts>>, req: Request, next: Next) -> Response {
    if let Err((code, message)) = verdict(&hosts, req.headers()) {
        return refuse(code, message);
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_and_origin_rules() {
        let hosts = Hosts::new(&["miner-7.lan".into()]);
        for ok in [
            &[("host", "127.0.0.1:8080")][..],
            &[("host", "[::1]:8080")],
            &[("host", "192.168.1.20")],
            &[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:8080"),
            ],
            &[("host", "MINER-7.lan")],
            &[("host", "10.0.0.5:8080"), ("sec-fetch-site", "same-origin")],
        ] {
            assert!(verdict(&hosts, &headers(ok)).is_ok(), "{ok:?}");
        }
        for (bad, code) in [
            (
                &[("host", "evil.example")][..],
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (&[][..], StatusCode::MISDIRECTED_REQUEST),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                &[("host", "127.0.0.1:8080"), ("origin", "null")],
                StatusCode::FORBIDDEN,
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:9999"),
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
                StatusCode::FORBIDDEN,
            ),
        ] {
            assert_eq!(
                verdict(&hosts, &headers(bad)).unwrap_err().0,
                code,
                "{bad:?}"
            );
        }
    }
}

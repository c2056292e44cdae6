//! Signal sources owned by the host: each runs as a tokio task and writes
//! into the [`SignalHub`](super::signal::SignalHub). Plugins never reach
//! the network or disk; they only see the values.
//!
//! - [`http`]: HTTP(S) JSON polling (only allow-listed URLs);
//! - [`mqtt`]: MQTT subscriptions;
//! - [`file`]: a local file, re-read when it changes.

pub mod file;
pub mod http;
pub mod mqtt;

/// Errors of the signal sources.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The payload is not a number, or not JSON when a pointer is given.
    #[error("cannot parse payload: {0}")]
    Parse(String),
    /// The JSON pointer matches nothing.
    #[error("JSON pointer {0:?} matches nothing")]
    NoSuchPointer(String),
    /// The pointer matches a value that is not a number.
    #[error("value at {pointer:?} is not a number: {found}")]
    NotANumber {
        /// The pointer.
        pointer: String,
        /// What was found (truncated).
        found: String,
    },
    /// A URL neither declared by the policy's manifest and allowed by the operator.
    #[error(
        "URL {0:?} is not allowed (it must be declared by the plugin and allowed by the operator)"
    )]
    NotAllowed(String),
    /// A URL that is not http(s).
    #[error("URL {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// The transfer failed.
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The source's configuration is unusable.
    #[error("invalid source configuration: {0}")]
    Config(String),
}

/// Largest payload any source accepts, bytes.
pub const MAX_PAYLOAD: usize = 256 << 10;

/// Extracts a number from a payload: with a JSON `pointer`, the number (or
/// numeric string, or boolean as 1/0) it points at; without, the whole
/// payload as a number (`true`/`false`/`on`/`off` as 1/0).
pub fn parse_payload(bytes: &[u8], pointer: Option<&str>) -> Result<f64, SourceError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(SourceError::Parse(format!(
            "payload of {} bytes (at most {MAX_PAYLOAD})",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| SourceError::Parse(e.to_string()))?;
    match pointer {
        None => parse_scalar(text.trim())
            .ok_or_else(|| SourceError::Parse(format!("not a number: {:?}", shorten(text.trim())))),
        Some(ptr) => {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| SourceError::Parse(e.to_string()))?;
            let found = json
                .pointer(ptr)
                .ok_or_else(|| SourceError::NoSuchPointer(ptr.into()))?;
            let number = match found {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
                serde_json::Value::String(s) => parse_scalar(s.trim()),
                _ => None,
            };
            number.ok_or_else(|| SourceError::NotANumber {
                pointer: ptr.into(),
                found: shorten(&found.to_string()),
            })
        }
    }
}

fn parse_scalar(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" => Some(1.0),
        "false" | "off" => Some(0.0),
        _ => s.parse::<f64>().ok(),
    }
}

fn shorten(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

/// The URLs an HTTP source may fetch: a URL must match an entry the
/// plugin's manifest declares AND an entry the operator allows. An entry
/// matches a URL equal to it, or one that continues it after a `/`, `?` or
/// `#` boundary (so `https://a.example/api` allows `https://a.example/api/x`
/// but not `https://a.example/api-evil`).
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    declared: Vec<String>,
    allowed: Vec<String>,
}

impl AllowList {
    /// From the manifest's declared URLs and the operator's allowed URLs.
    pub fn new(declared: Vec<String>, allowed: Vec<String>) -> Self {
        AllowList { declared, allowed }
    }

    /// Refuses `url` unless both lists allow it.
    pub fn check(&self, url: &str) -> Result<(), SourceError> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(SourceError::BadUrl(url.into()));
        }
        let ok = |list: &[String]| list.iter().any(|p| prefix_matches(p, url));
        if ok(&self.declared) && ok(&self.allowed) {
            Ok(())
        } else {
            Err(SourceError::NotAllowed(url.into()))
        }
    }
}

fn prefix_matches(prefix: &str, url: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    match url.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => prefix.ends_with(['/', '?', '#']) || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

/// A source may only feed a signal the operator defined (with its TTL and
/// bounds); anything else is a configuration error at start.
fn require_defined(hub: &super::signal::SignalHub, signal: &str) -> Result<(), SourceError> {
    if hub.is_defined(signal) {
        Ok(())
    } else {
        Err(SourceError::Config(format!(
            "signal {signal:?} is not defined"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b" 1.25\n", None), Ok(1.25));
        assert_eq!(parse_payload(b"ON", None), Ok(1.0));
        assert!(parse_payload(b"NaN", None).unwrap().is_nan());
        assert!(parse_payload(b"abc", None).is_err());
        assert!(parse_payload(&[0xff, 0xfe], None).is_err());
        let j = br#"{"grid":{"export_w":-400,"flag":true,"s":"2.5","o":{}}}"#;
        assert_eq!(parse_payload(j, Some("/grid/export_w")), Ok(-400.0));
        assert_eq!(parse_payload(j, Some("/grid/flag")), Ok(1.0));
        assert_eq!(parse_payload(j, Some("/grid/s")), Ok(2.5));
        assert!(matches!(
            parse_payload(j, Some("/grid/o")),
            Err(SourceError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_payload(j, Some("/x")),
            Err(SourceError::NoSuchPointer(_))
        ));
        assert!(parse_payload(b"{", Some("/x")).is_err());
        assert!(parse_payload(&vec![b'1'; MAX_PAYLOAD + 1], None).is_err());
    }

    #[test]
    fn allow_list_needs_both_and_respects_boundaries() {
        let a = AllowList::new(
            vec![
                "https://api.example/prices".into(),
                "http://127.0.0.1:8080/".into(),
            ],
            vec!["https://api.example/prices".into()],
        );
        assert!(a.check("https://api.example/prices").is_ok());
        assert!(a.check("https://api.example/prices?zone=DE").is_ok());
        assert!(a.check("https://api.example/prices/today").is_ok());
        assert!(a.check("https://api.example/prices-evil").is_err());
        assert!(a.check("https://api.example/pricesx").is_err());
        assert!(
            a.check("http://127.0.0.1:8080/feed").is_err(),
            "not operator-allowed"
        );
        assert!(matches!(
            a.check("file:///etc/passwd"),
            Err(SourceError::BadUrl(_))
        ));
        assert!(
            AllowList::default()
                .check("https://api.example/prices")
                .is_err()
        );
    }
}

//! Stratum V1 flavoured JSON-RPC: parsing of received lines, encoding of
//! requests and replies, and normalisation of the error formats pools use.
//!
//! Everything is encoded with serde_json, never by string concatenation, so
//! untrusted text (job ids, user names, pool messages) cannot break framing.

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// Why a line is not an acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonRpcError {
    /// The line is not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// An object with neither `method` nor `id`.
    #[error("message has neither a method nor an id")]
    NotJsonRpc,
    /// `method` is present but not a string.
    #[error("method is not a string")]
    BadMethod,
    /// `params` is neither an array nor null.
    #[error("params of {0} is not an array")]
    BadParams(String),
    /// serde_json could not encode an outgoing message.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// One received message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (non-null `id`) or a notification (`id` null or absent).
    Request {
        /// The id to quote in a reply; `Value::Null` for notifications.
        id: Value,
        /// Method name, e.g. `mining.notify`.
        method: String,
        /// Positional parameters (empty when absent or null).
        params: Vec<Value>,
    },
    /// A reply to one of our requests.
    Response {
        /// The id of the request being answered.
        id: Value,
        /// `result` (null when absent).
        result: Value,
        /// `error` (null when absent).
        error: Value,
    },
}

/// Parse one line (already framed, without terminator).
pub fn parse_line(line: &str) -> Result<Message, JsonRpcError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| JsonRpcError::InvalidJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(JsonRpcError::NotAnObject);
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = match obj.remove("params") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(p)) => p,
                Some(_) => return Err(JsonRpcError::BadParams(method)),
            };
            Ok(Message::Request { id, method, params })
        }
        Some(Value::Null) | None => {
            let has_reply = obj.contains_key("result") || obj.contains_key("error");
            if !has_reply {
                return Err(JsonRpcError::NotJsonRpc);
            }
            Ok(Message::Response {
                id,
                result: obj.remove("result").unwrap_or(Value::Null),
                error: obj.remove("error").unwrap_or(Value::Null),
            })
        }
        Some(_) => Err(JsonRpcError::BadMethod),
    }
}

/// Outgoing request; field order matches the usual Stratum layout.
#[derive(Serialize)]
struct OutRequest<'a> {
    id: u64,
    method: &'a str,
    params: &'a Value,
}

/// Outgoing reply to a pool request.
#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a Value,
    result: &'a Value,
    error: &'a Value,
}

fn to_line<T: Serialize>(msg: &T) -> Result<Vec<u8>, JsonRpcError> {
    let mut out = serde_json::to_vec(msg).map_err(|e| JsonRpcError::Encode(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Encode a request as one newline-terminated line.
pub fn encode_request(id: u64, method: &str, params: &Value) -> Result<Vec<u8>, JsonRpcError> {
    to_line(&OutRequest { id, method, params })
}

/// Encode a reply to a pool request as one newline-terminated line.
pub fn encode_response(id: &Value, result: &Value, error: &Value) -> Result<Vec<u8>, JsonRpcError> {
    to_line(&OutResponse { id, result, error })
}

/// Human-readable text of a JSON-RPC `error`, `None` when there is none.
///
/// Pools use `[code, "message", data]`, `{"code": .., "message": ..}` or a
/// bare string; anything else is shown as compact JSON. Besides `null`, a
/// few pools write "no error" as `false`, `[]` or `{}`; those count as none.
pub fn error_text(error: &Value) -> Option<String> {
    match error {
        Value::Null | Value::Bool(false) => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Object(obj) if obj.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let code = items.first().filter(|v| !v.is_null());
            let msg = items.get(1).filter(|v| !v.is_null());
            Some(join_code_message(code, msg, error))
        }
        Value::Object(obj) => {
            let code = obj.get("code").filter(|v| !v.is_null());
            let msg = obj.get("message").filter(|v| !v.is_null());
            Some(join_code_message(code, msg, error))
        }
        other => Some(other.to_string()),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join_code_message(code: Option<&Value>, msg: Option<&Value>, whole: &Value) -> String {
    match (code, msg) {
        (Some(c), Some(m)) => format!("{}: {}", plain(c), plain(m)),
        (None, Some(m)) => plain(m),
        (Some(c), None) => format!("error {}", plain(c)),
        (None, None) => whole.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_requests_and_responses() {
        assert_eq!(
            parse_line(r#"{"id":null,"method":"mining.set_difficulty","params":[2]}"#).unwrap(),
            Message::Request {
                id: Value::Null,
                method: "mining.set_difficulty".into(),
                params: vec![json!(2)]
            }
        );
        assert_eq!(
            parse_line(r#"{"id":3,"result":true}"#).unwrap(),
            Message::Response {
                id: json!(3),
                result: json!(true),
                error: Value::Null
            }
        );
        assert!(matches!(
            parse_line(r#"{"method":"x"}"#).unwrap(),
            Message::Request { params, .. } if params.is_empty()
        ));
    }

    #[test]
    fn rejects_non_json_rpc() {
        assert!(matches!(parse_line("{"), Err(JsonRpcError::InvalidJson(_))));
        assert_eq!(parse_line("[1,2]"), Err(JsonRpcError::NotAnObject));
        assert_eq!(parse_line(r#"{"foo":1}"#), Err(JsonRpcError::NotJsonRpc));
        assert_eq!(parse_line(r#"{"id":1}"#), Err(JsonRpcError::NotJsonRpc));
        assert_eq!(
            parse_line(r#"{"id":1,"method":5}"#),
            Err(JsonRpcError::BadMethod)
        );
        assert!(matches!(
            parse_line(r#"{"id":1,"method":"a","params":{}}"#),
            Err(JsonRpcError::BadParams(_))
        ));
        // Deep nesting is refused by serde_json's recursion limit, not a crash.
        let deep = "[".repeat(100_000);
        assert!(parse_line(&deep).is_err());
    }

    #[test]
    fn error_formats() {
        for none in [json!(null), json!(false), json!([]), json!({})] {
            assert_eq!(error_text(&none), None);
        }
        assert_eq!(
            error_text(&json!([23, "Low difficulty share", null])).unwrap(),
            "23: Low difficulty share"
        );
        assert_eq!(
            error_text(&json!({"code": 21, "message": "Job not found"})).unwrap(),
            "21: Job not found"
        );
        assert_eq!(error_text(&json!({"message": "stale"})).unwrap(), "stale");
        assert_eq!(error_text(&json!("duplicate")).unwrap(), "duplicate");
        assert_eq!(error_text(&json!(42)).unwrap(), "42");
        assert_eq!(error_text(&json!([22])).unwrap(), "error 22");
    }

    #[test]
    fn encodes_with_newline_and_escaping() {
        let line = encode_request(7, "mining.authorize", &json!(["a\"\n", "p"])).unwrap();
        assert_eq!(
            line,
            b"{\"id\":7,\"method\":\"mining.authorize\",\"params\":[\"a\\\"\\n\",\"p\"]}\n"
        );
        let reply = encode_response(&json!("x"), &json!("ua"), &Value::Null).unwrap();
        assert_eq!(reply, b"{\"id\":\"x\",\"result\":\"ua\",\"error\":null}\n");
    }
}

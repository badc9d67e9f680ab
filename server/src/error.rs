//! Errors as OpenAI's API writes them: `{"error": {"message", "type", "param", "code"}}` with
//! the matching HTTP status; and [`ApiJson`], a JSON body extractor whose every rejection
//! (unreadable body, too large, malformed JSON, a field of the wrong type) is such an error,
//! so axum's plain-text rejections never reach a client.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::engine::EngineError;

/// An error response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, for 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request cannot be served as written.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 about one field.
    pub fn invalid_param(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            code: Some(code),
            ..Self::invalid(message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: Some("not_found"),
            ..Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                message,
            )
        }
    }

    pub fn busy(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            code: Some("server_busy"),
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn status_with(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        Self::new(status, kind, message)
    }

    /// The error object, as the body carries it (and SSE error events).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.json())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Busy { .. } => ApiError::busy(e.to_string(), 1),
            EngineError::Invalid(m) => ApiError::invalid(api_names(&m)),
            EngineError::Failed(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// The runtime names its options as `dia-run`'s flags; the API calls them by their fields.
fn api_names(message: &str) -> String {
    let mut m = message.to_string();
    for (flag, field) in [
        ("--max-tokens", "max_tokens"),
        ("--cfg-filter-top-k", "cfg_filter_top_k"),
        ("--cfg-scale", "cfg_scale"),
        ("--temperature", "temperature"),
        ("--top-p", "top_p"),
    ] {
        m = m.replace(flag, &format!("`{field}`"));
    }
    m.replace(" (export with a larger --max-frames for longer audio)", "")
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the request body is larger than this endpoint takes ({})",
                r.body_text()
            ))
        } else {
            ApiError::status_with(
                r.status(),
                format!("could not read the request body: {}", r.body_text()),
            )
        }
    }
}

/// A JSON body of type `T`, read whatever its `Content-Type` (clients of curl's `-d` send
/// form encoding), with errors naming the field at fault.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, the error naming the field at fault and what is wrong with it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Syntax => {
                "the request body is not valid JSON"
            }
            serde_json::error::Category::Eof => "the request body is not complete JSON",
            serde_json::error::Category::Data => "a field of the request is wrong",
        };
        let param = (path != "." && !path.is_empty()).then_some(path);
        let message = match &param {
            Some(p) => format!("{what}: `{p}`: {inner}"),
            None => format!("{what}: {inner}"),
        };
        ApiError {
            param,
            code: Some("invalid_json"),
            ..ApiError::invalid(message)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        input: String,
        temperature: Option<f32>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Req>(br#"{"input": "hi", "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"input": "hi""#).unwrap_err();
        assert!(e.message.contains("not complete JSON"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"input": NaN}"#).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"input": "hi", "colour": 1}"#).unwrap_err();
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let e = parse_json::<Req>(b"{\"input\": \"\xff\"}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse_json::<Req>(br#"{"input": "hi"}"#).is_ok());
    }

    #[test]
    fn error_body_has_openai_shape() {
        let e = ApiError::invalid_param("voice", "unknown_voice", "no such voice");
        let v = e.json();
        assert_eq!(v["error"]["message"], "no such voice");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "voice");
        assert_eq!(v["error"]["code"], "unknown_voice");
        let r = ApiError::busy("busy", 2).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}

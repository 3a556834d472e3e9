//! The request router of the management API: RabbitMQ's paths under `/api/`, each segment
//! percent-decoded (`%2F` is the vhost `/`), and RabbitMQ's error bodies
//! (`{"error": ..., "reason": ...}`).

use serde_json::{json, Value};

use super::auth::{authenticate, Caller};
use super::http::{Request, Response};
use super::{accounts, bindings, connections, definitions, exchanges, limits, overview, policies, queues, Context};
use crate::broker::error::{AmqpError, ACCESS_REFUSED, NOT_FOUND};
use crate::broker::policy::PolicyKind;

/// What RabbitMQ's management realm is called in `WWW-Authenticate`.
pub const REALM: &str = "Basic realm=\"RabbitMQ Management\"";

/// The status of a refusal by tag or permission. RabbitMQ 3.10 answers 401 (with
/// `"error": "not_authorised"` and no `WWW-Authenticate`), and `rabbitmqadmin` 3.x prints
/// "Access refused" for it but fails with a traceback on a 403; RabbitMQ plans 403 for 4.0.
pub const NOT_AUTHORISED_STATUS: u16 = 401;

/// A refusal: the HTTP status and RabbitMQ's body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    /// A sentence, or RabbitMQ's `[kind, value]` for a value of the wrong type.
    pub reason: Value,
}

impl ApiError {
    pub fn new(status: u16, error: &str, reason: impl Into<String>) -> ApiError {
        ApiError { status, error: error.to_string(), reason: Value::String(reason.into()) }
    }

    /// 400 with a JSON reason (`["not_boolean", "maybe"]`).
    pub fn bad_value(reason: Value) -> ApiError {
        ApiError { status: 400, error: "bad_request".into(), reason }
    }

    /// RabbitMQ's answer for an object that does not exist.
    pub fn not_found() -> ApiError {
        ApiError::new(404, "Object Not Found", "Not Found")
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", reason)
    }

    /// A user whose tags or permissions do not allow the request.
    pub fn not_authorised(reason: impl Into<String>) -> ApiError {
        ApiError::new(NOT_AUTHORISED_STATUS, "not_authorised", reason)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "method_not_allowed", "Method Not Allowed")
    }

    /// An AMQP refusal as RabbitMQ's management answers a declare or delete: 404 for
    /// NOT_FOUND, not authorised for ACCESS_REFUSED, else 400; the reason is the reply text
    /// without its `CODE_NAME - ` head.
    pub fn from_amqp(error: AmqpError) -> ApiError {
        let text = error.reply_text.split_once(" - ").map_or(error.reply_text.as_str(), |(_, detail)| detail);
        match error.reply_code {
            NOT_FOUND => ApiError::new(404, "not_found", text),
            ACCESS_REFUSED => ApiError::not_authorised(text),
            _ => ApiError::bad_request(text),
        }
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn error_response(status: u16, error: &str, reason: impl Into<Value>) -> Response {
    let reason: Value = reason.into();
    let body = json!({"error": error, "reason": reason}).to_string();
    Response::new(status, "application/json", body)
}

pub fn json_response(value: &Value) -> Response {
    Response::new(200, "application/json", value.to_string())
}

/// 201 for something new, 204 for a change of something that was there (RabbitMQ's codes).
pub fn created(new: bool) -> Response {
    Response::empty(if new { 201 } else { 204 })
}

/// Decodes `%XX` escapes (and leaves a malformed one as it is); `+` stays a plus in paths.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|byte| (*byte as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request after authentication, as the resource handlers take it.
pub struct Call<'a> {
    pub context: &'a Context,
    pub request: &'a Request,
    pub caller: Caller,
    /// The path segments after `/api/`, decoded.
    pub segments: Vec<String>,
}

impl Call<'_> {
    pub fn method(&self) -> &str {
        &self.request.method
    }

    /// The request body as JSON (an empty body is an empty object).
    pub fn json_body(&self) -> Result<Value, ApiError> {
        if self.request.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        // RabbitMQ's reason for a body that is not JSON.
        serde_json::from_slice(&self.request.body).map_err(|_| ApiError::bad_request("not_json"))
    }

    /// A query parameter, decoded (`+` is a space there).
    pub fn query(&self, name: &str) -> Option<String> {
        self.request.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(&value.replace('+', " ")))
        })
    }
}

pub fn handle(context: &Context, request: Request) -> Response {
    let path = request.path.clone();
    let Some(rest) = path.strip_prefix("/api/").or_else(|| (path == "/api").then_some("")) else {
        return super::ui::serve(&request);
    };
    let segments: Vec<String> = rest.split('/').filter(|segment| !segment.is_empty()).map(percent_decode).collect();
    let caller = match authenticate(context, &request) {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let call = Call { context, request: &request, caller, segments };
    match route(&call) {
        Ok(response) => response,
        Err(error) => error_response(error.status, &error.error, error.reason),
    }
}

fn route(call: &Call) -> ApiResult {
    let Some(first) = call.segments.first() else { return Err(ApiError::not_found()) };
    match first.as_str() {
        "overview" => overview::overview(call),
        "whoami" => overview::whoami(call),
        "nodes" => overview::nodes(call),
        "health" => overview::health(call),
        "aliveness-test" => overview::aliveness(call),
        "cluster-name" => overview::cluster_name(call),
        "extensions" => overview::extensions(call),
        "vhosts" => accounts::vhosts(call),
        "users" => accounts::users(call),
        "permissions" => accounts::permissions(call),
        "definitions" => definitions::definitions(call),
        "queues" => queues::queues(call),
        "exchanges" => exchanges::exchanges(call),
        "bindings" => bindings::bindings(call),
        "connections" => connections::connections(call),
        "channels" => connections::channels(call),
        "consumers" => connections::consumers(call),
        "policies" => policies::policies(call, PolicyKind::Policy),
        "operator-policies" => policies::policies(call, PolicyKind::Operator),
        "vhost-limits" => limits::vhost_limits(call),
        "user-limits" => limits::user_limits(call),
        _ => Err(ApiError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_a_malformed_one_stays() {
        assert_eq!(percent_decode("%2F"), "/");
        assert_eq!(percent_decode("a%2fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn amqp_refusals_map_as_rabbitmqs_management_maps_them() {
        let missing = ApiError::from_amqp(AmqpError::not_found("queue", "q", "/"));
        assert_eq!((missing.status, missing.reason), (404, json!("no queue 'q' in vhost '/'")));
        let inequivalent = ApiError::from_amqp(AmqpError::new(406, "inequivalent arg 'durable'"));
        assert_eq!((inequivalent.status, inequivalent.reason), (400, json!("inequivalent arg 'durable'")));
        assert_eq!(ApiError::from_amqp(AmqpError::new(403, "no")).status, NOT_AUTHORISED_STATUS);
    }
}

//! `/api/definitions[/{vhost}]`: export (GET) and import (POST) of RabbitMQ definitions, with
//! the same reader, checks and all-or-nothing import as `spatemq ctl import_definitions`.

use serde_json::Value;

use super::api::{ApiError, ApiResult, Call};
use super::http::Response;
use crate::broker::control::{ControlReply, ControlRequest};
use crate::broker::{definitions_file, definitions_import};

/// The sections a single vhost's export leaves out (they are not per vhost).
const BROKER_WIDE: &[&str] = &["users", "vhosts", "permissions", "topic_permissions", "global_parameters"];

pub fn definitions(call: &Call) -> ApiResult {
    call.caller.require_admin()?;
    let vhost = match call.segments.as_slice() {
        [_] => None,
        [_, vhost] => {
            if call.caller.snapshot.vhost(vhost).is_none() {
                return Err(ApiError::not_found());
            }
            Some(vhost.as_str())
        }
        _ => return Err(ApiError::not_found()),
    };
    match call.method() {
        "GET" => export(call, vhost),
        "POST" => import(call, vhost),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn export(call: &Call, vhost: Option<&str>) -> ApiResult {
    let mut file = definitions_import::export(&call.caller.snapshot);
    let Some(vhost) = vhost else {
        return Ok(Response::new(200, "application/json", definitions_file::to_json(&file)));
    };
    file.queues.retain(|queue| queue.vhost == vhost);
    file.exchanges.retain(|exchange| exchange.vhost == vhost);
    file.bindings.retain(|binding| binding.vhost == vhost);
    file.policies.retain(|policy| policy.vhost == vhost);
    file.parameters.retain(|parameter| parameter.vhost == vhost);
    let mut document: Value = serde_json::from_str(&definitions_file::to_json(&file))
        .map_err(|error| ApiError::new(500, "internal_server_error", error.to_string()))?;
    if let Value::Object(sections) = &mut document {
        for section in BROKER_WIDE {
            sections.remove(*section);
        }
        for items in sections.values_mut() {
            if let Value::Array(items) = items {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.remove("vhost");
                }
            }
        }
    }
    Ok(Response::new(200, "application/json", document.to_string()))
}

fn import(call: &Call, vhost: Option<&str>) -> ApiResult {
    let body = &call.request.body;
    let parsed = match vhost {
        Some(vhost) => definitions_file::parse_for_vhost(body, vhost),
        None => definitions_file::parse(body),
    };
    let parsed = parsed
        .and_then(|parsed| definitions_file::validate(&parsed.definitions).map(|()| parsed))
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    match call.context.broker.ask(0, ControlRequest::Import(Box::new(parsed.definitions)))? {
        ControlReply::Imported { warnings } => {
            for warning in parsed.warnings.iter().chain(&warnings) {
                crate::warn!("definitions import over HTTP: {warning}");
            }
            Ok(Response::empty(204))
        }
        other => Err(ApiError::new(500, "internal_server_error", format!("unexpected answer: {other:?}"))),
    }
}

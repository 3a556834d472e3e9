//! HTTP basic authentication against the broker's users, and what their tags allow, as
//! RabbitMQ's management plugin decides it.
//!
//! The password is checked as the AMQP login checks it (the stored RabbitMQ hash), and a
//! loopback-only user (`guest`) is refused from elsewhere. A user needs one of the management
//! tags to use the API at all; `administrator` may do everything, `monitoring` may see every
//! vhost and connection, `policymaker` and `management` see the vhosts they have permissions in.

use std::sync::Arc;

use base64::Engine;

use super::api::{error_response, ApiError, NOT_AUTHORISED_STATUS, REALM};
use super::http::{Request, Response};
use super::Context;
use crate::broker::snapshot::Snapshot;
use crate::broker::users::{User, LOOPBACK_USERS};

/// The tags that let a user in (RabbitMQ's `is_mgmt_user`).
const MANAGEMENT_TAGS: &[&str] = &["management", "policymaker", "monitoring", "administrator"];

pub struct Caller {
    pub user: Arc<User>,
    /// The definitions the request was authenticated against.
    pub snapshot: Arc<Snapshot>,
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.user.name
    }

    pub fn is_admin(&self) -> bool {
        self.user.has_tag("administrator")
    }

    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.user.has_tag("monitoring")
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(ApiError::not_authorised("Not administrator user"))
    }

    pub fn require_monitor(&self) -> Result<(), ApiError> {
        if self.is_monitor() {
            return Ok(());
        }
        Err(ApiError::not_authorised("Not monitor user"))
    }

    /// The vhost exists (404 otherwise) and the caller may use it: an administrator, or a user
    /// with permissions there.
    pub fn require_vhost(&self, vhost: &str) -> Result<(), ApiError> {
        if self.snapshot.vhost(vhost).is_none() {
            return Err(ApiError::not_found());
        }
        if self.is_admin() || self.user.permissions.contains_key(vhost) {
            return Ok(());
        }
        Err(ApiError::not_authorised("User not authorised to access virtual host"))
    }

    /// Listings show a vhost's objects to administrators and monitors, and to users with
    /// permissions there.
    pub fn sees_vhost(&self, vhost: &str) -> bool {
        self.is_monitor() || self.user.permissions.contains_key(vhost)
    }

    /// Connections and channels: monitors see all, others their own.
    pub fn sees_user(&self, user: &str) -> bool {
        self.is_monitor() || self.user.name == user
    }
}

/// The caller, or the response that refuses the request: 401 with `WWW-Authenticate` for
/// missing or wrong credentials (without it for the web UI's calls), `NOT_AUTHORISED_STATUS`
/// for a user without a management tag or a loopback-only user from elsewhere.
pub fn authenticate(context: &Context, request: &Request) -> Result<Caller, Response> {
    // The web UI's own calls (marked `X-Requested-With`) get no `WWW-Authenticate`: with it,
    // the browser would open its own login dialog over the UI's login form.
    let from_script = request.header("x-requested-with").is_some();
    let login_failed = || {
        let refusal = error_response(401, "not_authorized", "Login failed");
        if from_script {
            return refusal;
        }
        refusal.with_header("www-authenticate", REALM)
    };
    let Some((name, password)) = request.header("authorization").and_then(basic_credentials) else {
        return Err(login_failed());
    };
    let snapshot = match context.broker.snapshot() {
        Ok(snapshot) => snapshot,
        Err(error) => return Err(error_response(error.status, &error.error, error.reason)),
    };
    let Some(user) = snapshot.user(&name).filter(|user| user.password.verify(password.as_bytes())).cloned() else {
        crate::warn!("HTTP access denied: user '{}' - invalid credentials", shown(&name));
        return Err(login_failed());
    };
    let refuse = |reason: &str| {
        crate::warn!("HTTP access denied: user '{}' - {reason}", shown(&name));
        error_response(NOT_AUTHORISED_STATUS, "not_authorised", reason)
    };
    if LOOPBACK_USERS.contains(&name.as_str()) && !request.peer.ip().is_loopback() && !is_mapped_loopback(request) {
        return Err(refuse("User can only log in via localhost"));
    }
    if !MANAGEMENT_TAGS.iter().any(|tag| user.has_tag(tag)) {
        return Err(refuse("Not management user"));
    }
    Ok(Caller { user, snapshot })
}

/// `::ffff:127.0.0.1` is loopback too.
fn is_mapped_loopback(request: &Request) -> bool {
    match request.peer.ip() {
        std::net::IpAddr::V6(address) => address.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A user name as logged: at most 128 characters.
fn shown(name: &str) -> String {
    name.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::basic_credentials;

    #[test]
    fn basic_credentials_decode_and_anything_else_is_none() {
        assert_eq!(basic_credentials("Basic Z3Vlc3Q6Z3Vlc3Q="), Some(("guest".into(), "guest".into())));
        assert_eq!(basic_credentials("basic YTpiOmM="), Some(("a".into(), "b:c".into())));
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Basic Z3Vlc3Q="), None, "no colon");
    }
}

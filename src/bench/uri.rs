//! The `--uri` flag: `amqp://user:password@host:port/vhost`, as RabbitMQ's URI spec writes it.
//!
//! Owns splitting the URI into its parts and percent-decoding them (`%2f` is how the default
//! vhost `/` is written in a path). It does no name resolution and opens no socket; TLS
//! (`amqps://`) is refused with a clear error because the load generator speaks plain TCP.

use std::fmt;

pub const DEFAULT_PORT: u16 = 5672;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    Scheme(String),
    BadPort(String),
    BadEscape(String),
    EmptyHost,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Scheme(uri) => {
                write!(f, "{uri:?} is not an amqp:// URI (amqps is not supported by the load generator)")
            }
            UriError::BadPort(port) => write!(f, "bad port {port:?} (expected 1-65535)"),
            UriError::BadEscape(part) => write!(f, "bad percent-escape in {part:?}"),
            UriError::EmptyHost => f.write_str("the URI names no host"),
        }
    }
}

impl std::error::Error for UriError {}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let rest = text.strip_prefix("amqp://").ok_or_else(|| UriError::Scheme(text.to_string()))?;
        // The query (`?heartbeat=...`) is accepted and ignored, as many clients do.
        let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            Some(credentials) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                (percent_decode(user)?, percent_decode(password)?)
            }
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = split_host_port(host_port)?;
        // An absent path means the default vhost; an empty one (`host/`) too, as in most
        // clients, since an empty vhost name is never what a user means.
        let vhost = match percent_decode(path)? {
            decoded if decoded.is_empty() => "/".to_string(),
            decoded => decoded,
        };
        Ok(Uri { host, port, user, password, vhost })
    }

    /// `host:port` for connecting, with IPv6 literals bracketed.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(host_port: &str) -> Result<(String, u16), UriError> {
    let (host, port_text) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UriError::BadPort(host_port.to_string()))?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port_text {
        None | Some("") => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(UriError::BadPort(text.to_string())),
        },
    };
    let host = percent_decode(host)?;
    if host.is_empty() {
        return Err(UriError::EmptyHost);
    }
    Ok((host, port))
}

fn percent_decode(part: &str) -> Result<String, UriError> {
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte != b'%' {
            decoded.push(byte);
            index += 1;
            continue;
        }
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            .ok_or_else(|| UriError::BadEscape(part.to_string()))?;
        decoded.push(hex);
        index += 3;
    }
    String::from_utf8(decoded).map_err(|_| UriError::BadEscape(part.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        Uri::parse(text).expect("valid URI")
    }

    #[test]
    fn default_uri_is_guest_on_localhost() {
        let parsed = uri("amqp://guest:guest@localhost");
        assert_eq!(
            parsed,
            Uri {
                host: "localhost".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
            }
        );
        assert_eq!(parsed.address(), "localhost:5672");
    }

    #[test]
    fn every_part_is_read_and_decoded() {
        let parsed = uri("amqp://us%40er:p%3Ass@10.0.0.1:5691/my%2fvhost");
        assert_eq!(parsed.user, "us@er");
        assert_eq!(parsed.password, "p:ss");
        assert_eq!(parsed.host, "10.0.0.1");
        assert_eq!(parsed.port, 5691);
        assert_eq!(parsed.vhost, "my/vhost");
        assert_eq!(uri("amqp://h/%2f").vhost, "/");
        assert_eq!(uri("amqp://h/").vhost, "/");
        assert_eq!(uri("amqp://h:1/v?heartbeat=5").vhost, "v");
        assert_eq!(uri("amqp://h").user, "guest");
    }

    #[test]
    fn ipv6_literal_keeps_its_brackets_for_connecting() {
        let parsed = uri("amqp://[::1]:5673");
        assert_eq!((parsed.host.as_str(), parsed.port), ("::1", 5673));
        assert_eq!(parsed.address(), "[::1]:5673");
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        assert!(matches!(Uri::parse("amqps://h"), Err(UriError::Scheme(_))));
        assert!(matches!(Uri::parse("http://h"), Err(UriError::Scheme(_))));
        assert_eq!(Uri::parse("amqp://h:99999"), Err(UriError::BadPort("99999".into())));
        assert_eq!(Uri::parse("amqp://h:0"), Err(UriError::BadPort("0".into())));
        assert_eq!(Uri::parse("amqp://h/%zz"), Err(UriError::BadEscape("%zz".into())));
        assert_eq!(Uri::parse("amqp://u:p@:5672"), Err(UriError::EmptyHost));
    }
}

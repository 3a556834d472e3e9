//! The `--uri` flag: `amqp://user:password@host:port/vhost`, as RabbitMQ's URI spec writes it,
//! and `amqps://` with the spec's TLS query parameters (`cacertfile`, `certfile`, `keyfile`,
//! `verify`, `server_name_indication`).
//!
//! Owns splitting the URI into its parts and percent-decoding them (`%2f` is how the default
//! vhost `/` is written in a path). It does no name resolution, opens no socket and reads no
//! file: the TLS parameters are kept as written, for `bench::tls` to use at connect time.

use std::fmt;

pub const DEFAULT_PORT: u16 = 5672;
pub const DEFAULT_TLS_PORT: u16 = 5671;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// `amqps://`: how to set up TLS; None for `amqp://`.
    pub tls: Option<TlsOptions>,
}

/// The TLS query parameters of an `amqps://` URI, as written (paths are read at connect time).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// CA certificates (PEM) the broker's certificate must chain to; without it, the system's
    /// CA bundle.
    pub ca_cert_file: Option<String>,
    /// A client certificate (PEM) and its key, for brokers that ask for one.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// `verify=verify_none`: accept any broker certificate. For self-signed test setups only,
    /// and only when asked for by name.
    pub verify_none: bool,
    /// The name the certificate is checked against (and sent as SNI); the host by default.
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    Scheme(String),
    BadPort(String),
    BadEscape(String),
    EmptyHost,
    BadQuery { parameter: String, value: String, why: &'static str },
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Scheme(uri) => write!(f, "{uri:?} is not an amqp:// or amqps:// URI"),
            UriError::BadQuery { parameter, value, why } => write!(f, "bad {parameter}={value:?}: {why}"),
            UriError::BadPort(port) => write!(f, "bad port {port:?} (expected 1-65535)"),
            UriError::BadEscape(part) => write!(f, "bad percent-escape in {part:?}"),
            UriError::EmptyHost => f.write_str("the URI names no host"),
        }
    }
}

impl std::error::Error for UriError {}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let (rest, tls) = match (text.strip_prefix("amqp://"), text.strip_prefix("amqps://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(UriError::Scheme(text.to_string())),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
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
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let (host, port) = split_host_port(host_port, default_port)?;
        // An absent path means the default vhost; an empty one (`host/`) too, as in most
        // clients, since an empty vhost name is never what a user means.
        let vhost = match percent_decode(path)? {
            decoded if decoded.is_empty() => "/".to_string(),
            decoded => decoded,
        };
        // Other parameters (`heartbeat`, ...) are accepted and ignored, as many clients do.
        let tls = if tls { Some(tls_options(query)?) } else { None };
        Ok(Uri { host, port, user, password, vhost, tls })
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

fn tls_options(query: &str) -> Result<TlsOptions, UriError> {
    let mut options = TlsOptions::default();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match name {
            "cacertfile" => options.ca_cert_file = Some(value),
            "certfile" => options.cert_file = Some(value),
            "keyfile" => options.key_file = Some(value),
            "server_name_indication" => options.server_name = Some(value),
            "verify" => {
                options.verify_none = match value.as_str() {
                    "verify_peer" => false,
                    "verify_none" => true,
                    _ => {
                        let why = "expected verify_peer or verify_none";
                        return Err(UriError::BadQuery { parameter: name.into(), value, why });
                    }
                }
            }
            _ => {}
        }
    }
    if options.cert_file.is_some() != options.key_file.is_some() {
        let (parameter, value) = match &options.cert_file {
            Some(file) => ("certfile", file.clone()),
            None => ("keyfile", options.key_file.clone().unwrap_or_default()),
        };
        return Err(UriError::BadQuery { parameter: parameter.into(), value, why: "certfile and keyfile go together" });
    }
    Ok(options)
}

fn split_host_port(host_port: &str, default_port: u16) -> Result<(String, u16), UriError> {
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
        None | Some("") => default_port,
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
                tls: None,
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
        assert!(matches!(Uri::parse("http://h"), Err(UriError::Scheme(_))));
        assert_eq!(Uri::parse("amqp://h:99999"), Err(UriError::BadPort("99999".into())));
        assert_eq!(Uri::parse("amqp://h:0"), Err(UriError::BadPort("0".into())));
        assert_eq!(Uri::parse("amqp://h/%zz"), Err(UriError::BadEscape("%zz".into())));
        assert_eq!(Uri::parse("amqp://u:p@:5672"), Err(UriError::EmptyHost));
        assert!(matches!(Uri::parse("amqps://h?verify=sometimes"), Err(UriError::BadQuery { .. })));
        assert!(matches!(Uri::parse("amqps://h?certfile=c.pem"), Err(UriError::BadQuery { .. })));
        assert!(matches!(Uri::parse("amqps://h?keyfile=k.pem"), Err(UriError::BadQuery { .. })));
    }

    #[test]
    fn amqps_defaults_to_5671_and_reads_the_tls_parameters() {
        let parsed = uri("amqps://h");
        assert_eq!((parsed.port, parsed.tls.clone()), (5671, Some(TlsOptions::default())));
        let parsed = uri("amqps://u:p@h:5999/v?cacertfile=%2Ftmp%2Fca.pem&certfile=c.pem&keyfile=k.pem\
             &verify=verify_peer&server_name_indication=broker.example&heartbeat=5");
        assert_eq!(parsed.port, 5999);
        assert_eq!(parsed.vhost, "v");
        assert_eq!(
            parsed.tls,
            Some(TlsOptions {
                ca_cert_file: Some("/tmp/ca.pem".into()),
                cert_file: Some("c.pem".into()),
                key_file: Some("k.pem".into()),
                verify_none: false,
                server_name: Some("broker.example".into()),
            })
        );
        assert!(uri("amqps://h?verify=verify_none").tls.is_some_and(|tls| tls.verify_none));
        assert_eq!(uri("amqp://h?cacertfile=ca.pem").tls, None, "amqp:// ignores TLS parameters");
    }
}

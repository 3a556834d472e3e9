//! How a setting's text becomes its value, the same for a flag, an environment variable and
//! the config file: sizes with units, a memory watermark, a log level, listening addresses.
//!
//! The parsers return a sentence for a bad value; clap prints it after the flag's name and the
//! config file reader after the key's line. `file` adapts them to serde, which also takes TOML
//! integers and floats where the flag would take their text.

use std::net::IpAddr;

use crate::logging::Level;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryWatermark {
    /// A fraction of the machine's RAM, as RabbitMQ's `vm_memory_high_watermark.relative`.
    Fraction(f64),
    Bytes(u64),
}

impl MemoryWatermark {
    /// `0.4` is a fraction; anything with a unit or above 1 is a size.
    pub fn parse(text: &str) -> Option<MemoryWatermark> {
        match text.parse::<f64>() {
            Ok(fraction) if fraction > 0.0 && fraction <= 1.0 => Some(MemoryWatermark::Fraction(fraction)),
            _ => crate::alarms::parse_size(text).filter(|bytes| *bytes > 0).map(MemoryWatermark::Bytes),
        }
    }

    pub fn bytes(self, total_memory_bytes: u64) -> u64 {
        match self {
            MemoryWatermark::Fraction(fraction) => (total_memory_bytes as f64 * fraction) as u64,
            MemoryWatermark::Bytes(bytes) => bytes,
        }
    }
}

/// The I/O driver a shard's runtime runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring where the kernel allows it, else epoll (the default).
    Auto,
    /// io_uring only: a shard that cannot set up its ring fails the start.
    IoUring,
    /// epoll even where io_uring works (containers that forbid io_uring behave this way).
    Epoll,
}

impl IoDriver {
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

pub fn io_driver(text: &str) -> Result<IoDriver, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(IoDriver::Auto),
        "io_uring" | "io-uring" | "iouring" | "uring" => Ok(IoDriver::IoUring),
        "epoll" | "legacy" => Ok(IoDriver::Epoll),
        _ => Err("expected auto, io_uring or epoll".into()),
    }
}

pub fn size(text: &str) -> Result<u64, String> {
    crate::alarms::parse_size(text)
        .ok_or_else(|| "expected a size: bytes, or a number with kB, MB, GB, KiB, MiB or GiB (50MB, 1GiB)".into())
}

pub fn memory_watermark(text: &str) -> Result<MemoryWatermark, String> {
    MemoryWatermark::parse(text).ok_or_else(|| "expected a fraction of RAM (0.4) or a size (512MB, 2GiB)".into())
}

pub fn log_level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| "expected error, warn, info or debug".into())
}

/// An IP literal, IPv6 with or without brackets (`::1`, `[::1]`).
pub fn ip_address(text: &str) -> Result<IpAddr, String> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(trimmed);
    bare.parse().map_err(|_| "expected an IP address (0.0.0.0, 127.0.0.1, ::, ::1 or [::1])".into())
}

/// serde's side: the config file's values, read with the parsers above.
pub mod file {
    use std::fmt;
    use std::net::IpAddr;

    use serde::de::{self, Deserializer, SeqAccess, Visitor};

    use super::MemoryWatermark;
    use crate::logging::Level;

    /// A TOML string, integer or float, as the text a flag would have carried.
    struct ScalarText {
        expected: &'static str,
    }

    impl<'de> Visitor<'de> for ScalarText {
        type Value = String;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str(self.expected)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_string())
        }

        fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
            Ok(number.to_string())
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }

        fn visit_f64<E: de::Error>(self, number: f64) -> Result<String, E> {
            Ok(number.to_string())
        }
    }

    fn parsed<'de, D, T>(
        deserializer: D,
        expected: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let text = deserializer.deserialize_any(ScalarText { expected })?;
        parse(&text).map(Some).map_err(|why| de::Error::custom(format!("bad value {text:?}: {why}")))
    }

    pub fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        parsed(deserializer, "a size: a number of bytes or a string such as \"50MB\"", super::size)
    }

    pub fn memory_watermark<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<MemoryWatermark>, D::Error> {
        parsed(deserializer, "a fraction of RAM (0.4) or a size (\"512MB\")", super::memory_watermark)
    }

    pub fn io_driver<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<super::IoDriver>, D::Error> {
        parsed(deserializer, "an I/O driver: \"auto\", \"io_uring\" or \"epoll\"", super::io_driver)
    }

    pub fn log_level<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Level>, D::Error> {
        parsed(deserializer, "a log level: \"error\", \"warn\", \"info\" or \"debug\"", super::log_level)
    }

    /// `["::", "0.0.0.0"]`, or one string, with commas between addresses as in the environment.
    pub fn ip_addresses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<IpAddr>>, D::Error> {
        struct Addresses;

        impl<'de> Visitor<'de> for Addresses {
            type Value = Vec<IpAddr>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a list of IP addresses such as [\"::\", \"0.0.0.0\"]")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<IpAddr>, E> {
                text.split(',').map(|one| address(one)).collect()
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Vec<IpAddr>, A::Error> {
                let mut addresses = Vec::new();
                while let Some(text) = items.next_element::<String>()? {
                    addresses.push(address(&text)?);
                }
                Ok(addresses)
            }
        }

        fn address<E: de::Error>(text: &str) -> Result<IpAddr, E> {
            super::ip_address(text).map_err(|why| E::custom(format!("bad address {text:?}: {why}")))
        }

        deserializer.deserialize_any(Addresses).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_ipv6_with_or_without_brackets() {
        assert_eq!(ip_address("::1"), Ok("::1".parse().expect("an address")));
        assert_eq!(ip_address("[::1]"), Ok("::1".parse().expect("an address")));
        assert_eq!(ip_address(" 127.0.0.1 "), Ok("127.0.0.1".parse().expect("an address")));
        assert!(ip_address("localhost").is_err());
        assert!(ip_address("[::1").is_err());
    }

    #[test]
    fn watermarks_are_fractions_up_to_1_and_sizes_above() {
        assert_eq!(memory_watermark("0.4"), Ok(MemoryWatermark::Fraction(0.4)));
        assert_eq!(memory_watermark("1"), Ok(MemoryWatermark::Fraction(1.0)));
        assert_eq!(memory_watermark("2GiB"), Ok(MemoryWatermark::Bytes(2 << 30)));
        assert!(memory_watermark("-1").is_err());
        assert!(memory_watermark("0").is_err());
    }
}

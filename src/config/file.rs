//! The config file (`--config FILE`): TOML, one key per setting, read into the same
//! `Settings` as the command line. An unknown key or a value of the wrong type is an error that
//! names the key's line, so a typo never passes silently for a default.

use std::path::Path;

use super::settings::Settings;
use super::ConfigError;

/// Reads and parses `path`.
pub fn read(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read it: {source}"),
    })?;
    parse(path, &text)
}

/// Parses the text of the file `path`.
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    toml::from_str::<Settings>(text).map_err(|error| ConfigError::File {
        path: path.to_path_buf(),
        line: error.span().map(|span| line_of(text, span.start)),
        message: message(&error),
    })
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|byte| **byte == b'\n').count() + 1
}

/// toml's message, with serde's "unknown field" said in this file's words (the list of every
/// key that follows it is longer than the line it would explain).
fn message(error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match message.strip_prefix("unknown field ") {
        Some(rest) => {
            let key = rest.split(", expected").next().unwrap_or(rest);
            format!("unknown key {key} (spatemq.example.toml lists every key)")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 100), 3);
    }
}

//! `spatemq ctl [--data-dir DIR] COMMAND [ARGS]`: administers the broker running on a data
//! directory through its control socket, with `rabbitmqctl`'s command names and output.
//!
//! A thin client: it sends the arguments, prints what the broker answers and exits with its
//! code. Files named on the command line are read and written here, in the caller's
//! directory: `import_definitions FILE` sends the file's content, `export_definitions FILE`
//! writes what comes back (`-` prints it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

const USAGE: &str = "\
spatemq ctl: administer a running SpateMQ broker (rabbitmqctl's commands)

USAGE:
    spatemq ctl [--data-dir DIR | --config FILE] COMMAND [ARGS] [-p VHOST] [-q] [-s]

    --data-dir DIR   the broker's data directory [env SPATEMQ_DATA_DIR; default: ./data]
    --config FILE    the broker's config file: its data_dir is used [env SPATEMQ_CONFIG]
                     (--data-dir, then SPATEMQ_DATA_DIR, win over it)

";

const EXIT_USAGE: u8 = 64;
const EXIT_UNAVAILABLE: u8 = 69;

pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let mut data_dir_flag: Option<PathBuf> = None;
    let mut config_file: Option<PathBuf> = std::env::var_os("SPATEMQ_CONFIG").map(PathBuf::from);
    let mut command = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" if command.is_empty() => match args.next() {
                Some(dir) => data_dir_flag = Some(PathBuf::from(dir)),
                None => return usage_error("--data-dir needs a directory"),
            },
            "--config" if command.is_empty() => match args.next() {
                Some(file) => config_file = Some(PathBuf::from(file)),
                None => return usage_error("--config needs a file"),
            },
            "-h" | "--help" if command.is_empty() => {
                print!("{USAGE}{}", crate::control::COMMANDS);
                return ExitCode::SUCCESS;
            }
            _ => match arg.strip_prefix("--data-dir=") {
                Some(dir) if command.is_empty() => data_dir_flag = Some(PathBuf::from(dir)),
                _ => command.push(arg),
            },
        }
    }
    // As the broker: the flag, then the environment, then the config file, then ./data.
    let from_file = match (&data_dir_flag, std::env::var_os("SPATEMQ_DATA_DIR"), &config_file) {
        (None, None, Some(file)) => match crate::config::data_dir_in_file(file) {
            Ok(found) => found,
            Err(problem) => {
                eprintln!("spatemq ctl: {problem}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        _ => None,
    };
    let data_dir = data_dir_flag
        .or_else(|| std::env::var_os("SPATEMQ_DATA_DIR").map(PathBuf::from))
        .or(from_file)
        .unwrap_or_else(|| PathBuf::from("data"));
    if command.is_empty() {
        return usage_error("no command given");
    }
    let mut input = None;
    let mut export_to = None;
    match command.first().map(String::as_str) {
        Some("import_definitions") => {
            let Some(file) = command.get(1) else { return usage_error("import_definitions FILE") };
            match std::fs::read_to_string(file) {
                Ok(content) => input = Some(content),
                Err(error) => {
                    eprintln!("Error: cannot read {file}: {error}");
                    return ExitCode::from(66);
                }
            }
        }
        Some("export_definitions") => export_to = command.get(1).cloned(),
        _ => {}
    }
    let answer = match ask(&data_dir, &command, input) {
        Ok(answer) => answer,
        Err(problem) => {
            eprintln!("Error: {problem}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    print!("{}", answer["out"].as_str().unwrap_or_default());
    eprint!("{}", answer["err"].as_str().unwrap_or_default());
    let mut code = answer["code"].as_i64().and_then(|code| u8::try_from(code).ok()).unwrap_or(1);
    if let (Some(file), Some(content)) = (export_to, answer["file"].as_str()) {
        if file == "-" {
            println!("{content}");
        } else if let Err(error) = write_private(&file, content) {
            eprintln!("Error: cannot write {file}: {error}");
            code = 73;
        }
    }
    ExitCode::from(code)
}

fn usage_error(problem: &str) -> ExitCode {
    eprintln!("spatemq ctl: {problem}\n\n{USAGE}{}", crate::control::COMMANDS);
    ExitCode::from(EXIT_USAGE)
}

fn ask(data_dir: &std::path::Path, command: &[String], input: Option<String>) -> Result<Value, String> {
    let socket = data_dir.join(crate::control::SOCKET_NAME);
    let mut stream = UnixStream::connect(&socket).map_err(|error| {
        format!(
            "cannot reach the broker at {}: {error} (is it running with --data-dir {}?)",
            socket.display(),
            data_dir.display()
        )
    })?;
    let request = json!({"args": command, "input": input});
    stream.write_all(request.to_string().as_bytes()).map_err(|error| error.to_string())?;
    stream.shutdown(std::net::Shutdown::Write).map_err(|error| error.to_string())?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).map_err(|error| error.to_string())?;
    serde_json::from_slice(&body).map_err(|error| format!("unreadable answer from the broker: {error}"))
}

/// Definitions hold password hashes: the file is readable by its owner only.
fn write_private(path: &str, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

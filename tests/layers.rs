//! The layers of `src/` point one way: each top-level module may use only the modules below it
//! in `LAYERS`. A `crate::NAME` path in a module's code (test code excluded) that names a module
//! at or above its own place fails this test with the file, the line and the path.
//!
//! A new top-level module must be given its place here; the order is the one
//! `docs/architecture.md` draws.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first. Each may import only the ones before it.
const LAYERS: &[&str] = &[
    "limits",
    "logging",
    "tls",
    "codec",
    "ids",
    "clock",
    "alarms",
    "config",
    "store",
    "broker",
    "amqp",
    "shard",
    "control",
    "management",
    "server",
    "host_checks",
    "bench",
    "ctl",
];

/// The crate roots: they put the layers together and may use any of them.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for file in source_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
        let top = top_module(&relative);
        if ROOTS.contains(&relative.to_string_lossy().as_ref()) {
            continue;
        }
        seen.insert(top.clone());
        let Some(place) = LAYERS.iter().position(|layer| *layer == top) else {
            problems.push(format!("src/{}: top-level module `{top}` has no place in LAYERS", relative.display()));
            continue;
        };
        let text = fs::read_to_string(&file).expect("source file reads");
        for (line_number, used) in crate_paths(&without_test_code(&text)) {
            let Some(used_place) = LAYERS.iter().position(|layer| *layer == used) else { continue };
            if used != top && used_place >= place {
                problems.push(format!(
                    "src/{}:{line_number}: `{top}` uses `crate::{used}`, which is not below it",
                    relative.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "layers pointing the wrong way:\n{}", problems.join("\n"));
    let missing: Vec<_> = LAYERS.iter().filter(|layer| !seen.contains(**layer)).collect();
    assert!(missing.is_empty(), "LAYERS names modules that do not exist: {missing:?}");
}

#[test]
fn the_checker_sees_a_back_edge_and_skips_test_code() {
    let code = "use crate::store::Store;\n#[cfg(test)]\nmod tests {\n    use crate::shard::Shard;\n}\nfn f() { crate::shard::x(); }\n";
    let paths = crate_paths(&without_test_code(code));
    assert_eq!(paths, vec![(1, "store".to_string()), (6, "shard".to_string())]);
    let grouped = "use crate::{broker::queue::Queue,\n    codec::{frame, hotpath}};\n";
    assert_eq!(crate_paths(grouped), vec![(1, "broker".to_string()), (1, "codec".to_string())]);
}

/// The first component of a path under src/, without `.rs`.
fn top_module(relative: &Path) -> String {
    let first = relative.components().next().expect("a file").as_os_str().to_string_lossy().into_owned();
    first.strip_suffix(".rs").map(str::to_string).unwrap_or(first)
}

/// Every `.rs` file under `dir`, minus the files of modules declared `#[cfg(test)] mod name;`.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut test_only = HashSet::new();
    collect(dir, &mut files);
    for file in &files {
        let text = fs::read_to_string(file).expect("source file reads");
        for name in test_module_declarations(&text) {
            let parent = module_dir(file);
            test_only.insert(parent.join(format!("{name}.rs")));
            test_only.insert(parent.join(&name));
        }
    }
    files.retain(|file| !test_only.iter().any(|excluded| file == excluded || file.starts_with(excluded)));
    files.sort();
    files
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("source folder reads") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// Where the child modules of `file` live: beside a `mod.rs`/`lib.rs`/`main.rs`, else in the
/// folder named after the file.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().expect("a folder").to_path_buf();
    match file.file_name().and_then(|name| name.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => parent,
        _ => parent.join(file.file_stem().expect("a name")),
    }
}

/// Names of `mod name;` declarations preceded by `#[cfg(test)]` (also `#[path = ...]` ones).
fn test_module_declarations(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut names = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if *line != "#[cfg(test)]" {
            continue;
        }
        let declaration = lines[index + 1..].iter().find(|next| !next.starts_with("#["));
        if let Some(name) =
            declaration.and_then(|next| module_name(next)).filter(|_| declaration.is_some_and(|d| d.ends_with(';')))
        {
            names.push(name);
        }
        // A `#[path = "x.rs"]` test module: exclude the named file too.
        for attribute in lines[index + 1..].iter().take_while(|next| next.starts_with("#[")) {
            if let Some(path) = attribute.strip_prefix("#[path = \"").and_then(|rest| rest.strip_suffix("\"]")) {
                names.push(path.trim_end_matches(".rs").to_string());
            }
        }
    }
    names
}

fn module_name(line: &str) -> Option<String> {
    let rest = line.trim_start_matches("pub(crate) ").trim_start_matches("pub(super) ").trim_start_matches("pub ");
    let rest = rest.strip_prefix("mod ")?;
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// The text with line comments blanked and every `#[cfg(test)]` item with a body removed;
/// line numbers are kept.
fn without_test_code(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut armed = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        if skipping {
            depth += brace_balance(code);
            if depth <= 0 && code.contains('}') {
                skipping = false;
            }
            out.push(String::new());
            continue;
        }
        if code.trim() == "#[cfg(test)]" {
            armed = true;
            out.push(String::new());
            continue;
        }
        if armed && code.contains('{') {
            armed = false;
            depth = brace_balance(code);
            skipping = depth > 0;
            out.push(String::new());
            continue;
        }
        if armed && code.trim_end().ends_with(';') {
            armed = false;
        }
        out.push(code.to_string());
    }
    out.join("\n")
}

fn brace_balance(code: &str) -> i64 {
    code.chars().map(|c| i64::from(c == '{') - i64::from(c == '}')).sum()
}

/// (line, top-level name) of every `crate::NAME` and `crate::{NAME, ...}` in `code`; a group may
/// span lines.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = code[from..].find("crate::") {
        let at = from + offset;
        from = at + "crate::".len();
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(top_names_of_group(group).into_iter().map(|name| (line, name)));
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.push((line, name));
        }
    }
    found
}

/// The first name of each item in `a::b, c::{d, e}}` up to the group's closing brace.
fn top_names_of_group(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            _ if at_item_start && (c.is_alphanumeric() || c == '_') => current.push(c),
            _ if at_item_start && !current.is_empty() => {
                names.push(std::mem::take(&mut current));
                at_item_start = false;
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        names.push(current);
    }
    names
}

//! The web UI's static files: the HTML page, its ES modules and style sheet, embedded in the
//! binary (no files to install, no CDN) and served on the management port beside `/api`.
//!
//! Only the paths in `ASSETS` exist: anything else (a `..`, an encoded one, a file that is not
//! listed) is RabbitMQ's 404. The files need no login (they hold no data); every call the UI
//! makes to `/api` carries the user's credentials. Each answer has an `ETag` made from the
//! file at build time and `Cache-Control: no-cache`, so a browser revalidates (a 304 without a
//! body) and never runs the files of an older broker after an upgrade.

use super::api::error_response;
use super::http::{Request, Response};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("ui/index.html") },
    Asset { path: "/index.html", content_type: "text/html; charset=utf-8", body: include_bytes!("ui/index.html") },
    Asset { path: "/ui/style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("ui/style.css") },
    Asset { path: "/ui/favicon.svg", content_type: "image/svg+xml", body: include_bytes!("ui/favicon.svg") },
    Asset { path: "/ui/app.js", content_type: JAVASCRIPT, body: include_bytes!("ui/app.js") },
    Asset { path: "/ui/api.js", content_type: JAVASCRIPT, body: include_bytes!("ui/api.js") },
    Asset { path: "/ui/dom.js", content_type: JAVASCRIPT, body: include_bytes!("ui/dom.js") },
    Asset { path: "/ui/chart.js", content_type: JAVASCRIPT, body: include_bytes!("ui/chart.js") },
    Asset { path: "/ui/table.js", content_type: JAVASCRIPT, body: include_bytes!("ui/table.js") },
    Asset { path: "/ui/forms.js", content_type: JAVASCRIPT, body: include_bytes!("ui/forms.js") },
    Asset { path: "/ui/overview.js", content_type: JAVASCRIPT, body: include_bytes!("ui/overview.js") },
    Asset { path: "/ui/connections.js", content_type: JAVASCRIPT, body: include_bytes!("ui/connections.js") },
    Asset { path: "/ui/exchanges.js", content_type: JAVASCRIPT, body: include_bytes!("ui/exchanges.js") },
    Asset { path: "/ui/queues.js", content_type: JAVASCRIPT, body: include_bytes!("ui/queues.js") },
    Asset { path: "/ui/admin.js", content_type: JAVASCRIPT, body: include_bytes!("ui/admin.js") },
    Asset { path: "/ui/policies.js", content_type: JAVASCRIPT, body: include_bytes!("ui/policies.js") },
];

/// The page may load its own files only, and may not be framed (no clickjacking of the
/// buttons that delete things).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// FNV-1a, at build time: the file's `ETag`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

/// Answers a request for a path outside `/api`.
pub fn serve(request: &Request) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == request.path) else {
        return error_response(404, "Object Not Found", "Not Found");
    };
    if request.method != "GET" && request.method != "HEAD" {
        return error_response(405, "method_not_allowed", "Method Not Allowed").with_header("allow", "GET, HEAD");
    }
    let etag = format!("\"{:016x}\"", fnv1a(asset.body));
    let matches = request.header("if-none-match").is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let response = if matches { Response::empty(304) } else { Response::new(200, asset.content_type, asset.body) };
    response
        .with_header("etag", etag)
        .with_header("cache-control", "no-cache")
        .with_header("x-content-type-options", "nosniff")
        .with_header("content-security-policy", CONTENT_SECURITY_POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        serve(&Request {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers: headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
            peer: "127.0.0.1:1".parse().expect("an address"),
            body: Default::default(),
        })
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_page_and_its_files_are_served_with_their_types() {
        let page = get("/", &[]);
        assert_eq!((page.status, header(&page, "content-type")), (200, Some("text/html; charset=utf-8")));
        let script = get("/ui/app.js", &[]);
        assert_eq!((script.status, header(&script, "content-type")), (200, Some(JAVASCRIPT)));
        assert_eq!(header(&script, "cache-control"), Some("no-cache"));
        assert_eq!(get("/ui/style.css", &[]).status, 200);
    }

    #[test]
    fn dot_dot_encoded_or_unlisted_paths_are_404() {
        for path in ["/ui/../api/overview", "/ui/%2e%2e/index.html", "/ui/", "/ui/nosuch.js", "/ui/app.js/", "/src"] {
            assert_eq!(get(path, &[]).status, 404, "{path}");
        }
    }

    #[test]
    fn a_known_etag_is_answered_with_304_and_no_body() {
        let first = get("/ui/app.js", &[]);
        let etag = header(&first, "etag").expect("an etag").to_string();
        let again = get("/ui/app.js", &[("If-None-Match", &etag)]);
        assert_eq!((again.status, again.body.len()), (304, 0));
        assert_eq!(get("/ui/app.js", &[("If-None-Match", "\"other\"")]).status, 200);
    }

    /// Every `/ui/...` file the page or a module names is one that is served.
    #[test]
    fn every_file_the_ui_refers_to_is_embedded() {
        for asset in ASSETS.iter().filter(|asset| asset.content_type != "image/svg+xml") {
            let text = std::str::from_utf8(asset.body).expect("text files are UTF-8");
            let mut rest = text;
            let mut seen = 0;
            while let Some(at) = rest.find("/ui/") {
                let tail = &rest[at..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c))).unwrap_or(tail.len());
                let path = &tail[..end];
                if path.ends_with(".js") || path.ends_with(".css") || path.ends_with(".svg") {
                    assert!(ASSETS.iter().any(|known| known.path == path), "{} names {path}", asset.path);
                    seen += 1;
                }
                rest = &tail[end.max(1)..];
            }
            if asset.path == "/" {
                assert!(seen >= 2, "the page loads its script and style sheet");
            }
        }
    }
}

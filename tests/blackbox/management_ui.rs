//! The web UI's files on the management port: the page and its modules with their types and
//! caching headers, RabbitMQ's 404 for anything not embedded (`..` included), and the UI's own
//! API calls refused without `WWW-Authenticate` (which would open the browser's login dialog
//! over the UI's), while other clients still get it.

use serde_json::json;

use super::{http, Managed};

#[test]
fn the_page_and_its_modules_are_served_beside_the_api() {
    let Some(managed) = Managed::start() else { return };
    let page = http(managed.http_port, "GET", "/", &[], b"");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.headers.contains("content-type: text/html; charset=utf-8"), "{page:?}");
    assert!(page.body.contains("/ui/app.js") && page.body.contains("/ui/style.css"), "{}", page.body);
    let script = http(managed.http_port, "GET", "/ui/app.js", &[], b"");
    assert_eq!(script.status, 200);
    assert!(script.headers.contains("content-type: text/javascript"), "{script:?}");
    assert!(script.headers.contains("cache-control: no-cache"), "{script:?}");
    let etag = script.headers.lines().find_map(|line| line.strip_prefix("etag: ")).expect("an etag").to_string();
    let again = http(managed.http_port, "GET", "/ui/app.js", &[("If-None-Match", etag)], b"");
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    let style = http(managed.http_port, "GET", "/ui/style.css", &[], b"");
    assert!(style.headers.contains("content-type: text/css"), "{style:?}");
}

#[test]
fn dot_dot_and_unknown_static_paths_are_rabbitmqs_404() {
    let Some(managed) = Managed::start() else { return };
    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for path in ["/ui/../api/overview", "/ui/%2e%2e/index.html", "/ui/nosuch.js", "/ui/", "/ui/app.js/x"] {
        let reply = http(managed.http_port, "GET", path, &[], b"");
        assert_eq!((reply.status, reply.json()), (404, not_found.clone()), "{path}");
    }
    assert_eq!(http(managed.http_port, "POST", "/ui/app.js", &[], b"").status, 405);
}

#[test]
fn the_uis_calls_are_refused_without_a_login_dialog_and_others_with_one() {
    let Some(managed) = Managed::start() else { return };
    let from_ui = [("X-Requested-With", "XMLHttpRequest".to_string())];
    let refused = http(managed.http_port, "GET", "/api/whoami", &from_ui, b"");
    assert_eq!((refused.status, refused.json()), (401, json!({"error": "not_authorized", "reason": "Login failed"})));
    assert!(!refused.headers.contains("www-authenticate"), "{refused:?}");
    let plain = http(managed.http_port, "GET", "/api/whoami", &[], b"");
    assert_eq!(plain.status, 401);
    assert!(plain.headers.contains("www-authenticate: basic realm=\"rabbitmq management\""), "{plain:?}");
    assert_eq!(managed.call("GET", "/api/whoami", None).json()["name"], json!("guest"));
}

//! The fixtures are RabbitMQ 3.10.8's own exports of one broker (see tests/fixtures/README.md):
//! `rabbitmqctl export_definitions`, `GET /api/definitions`, and `GET /api/definitions/staging`.

use super::*;
use crate::broker::passwords::HashAlgorithm;
use amq_protocol::types::AMQPValue;

const CTL_EXPORT: &str = include_str!("../../../tests/fixtures/rabbitmq-3.10-definitions.json");
const HTTP_EXPORT: &str = include_str!("../../../tests/fixtures/rabbitmq-3.10-http-definitions.json");
const VHOST_EXPORT: &str = include_str!("../../../tests/fixtures/rabbitmq-3.10-vhost-staging-definitions.json");

/// The passwords the fixture's users were created with.
const PASSWORDS: &[(&str, &str)] =
    &[("guest", "guest"), ("alice", "wonderland-42"), ("bob", "s3cret"), ("legacy", "old-pass"), ("carol", "c4r0l!")];

fn parsed(text: &str) -> Parsed {
    parse(text.as_bytes()).expect("a definitions file")
}

fn problems(text: &str) -> Vec<String> {
    match parse(text.as_bytes()) {
        Err(DefinitionsFileError::Shape(problems)) => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected shape problems, got {other:?}"),
    }
}

fn invalid(definitions: &DefinitionsFile) -> Vec<String> {
    match validate(definitions) {
        Err(DefinitionsFileError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected invalid definitions, got {other:?}"),
    }
}

fn user<'a>(definitions: &'a DefinitionsFile, name: &str) -> &'a User {
    definitions.users.iter().find(|user| user.name == name).expect("user in the file")
}

fn queue<'a>(definitions: &'a DefinitionsFile, name: &str) -> &'a Queue {
    definitions.queues.iter().find(|queue| queue.name == name).expect("queue in the file")
}

#[test]
fn rabbitmq_export_is_read_whole_and_valid() {
    let Parsed { definitions, warnings } = parsed(CTL_EXPORT);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(definitions.version(), Some("3.10.8"));
    assert_eq!(definitions.users.len(), 6);
    assert_eq!(user(&definitions, "alice").tags, ["administrator", "monitoring"]);
    assert_eq!(user(&definitions, "bob").limits, Limits::from([("max-channels".to_string(), 16)]));
    assert_eq!(user(&definitions, "legacy").hashing_algorithm, "rabbit_password_hashing_md5");

    let staging = definitions.vhosts.iter().find(|vhost| vhost.name == "staging").expect("staging");
    assert_eq!(staging.description, "Staging apps");
    assert_eq!(staging.tags, ["qa", "blue"]);
    assert_eq!(staging.default_queue_type.as_deref(), Some("classic"));
    assert_eq!(staging.limits, Limits::from([("max-connections".into(), 64), ("max-queues".into(), 128)]));

    let orders = queue(&definitions, "app.orders");
    assert!(orders.durable && !orders.auto_delete);
    assert_eq!(orders.arguments.inner().get("x-message-ttl"), Some(&AMQPValue::LongLongInt(60000)));
    assert_eq!(orders.arguments.inner().get("x-dead-letter-exchange"), Some(&AMQPValue::LongString("app.dlx".into())));
    assert!(!queue(&definitions, "transient").durable);
    let events = definitions.exchanges.iter().find(|exchange| exchange.name == "app.events").expect("app.events");
    assert_eq!(events.exchange_type, "topic");
    assert_eq!(events.arguments.inner().get("alternate-exchange"), Some(&AMQPValue::LongString("app.unrouted".into())));
    let to_exchange = definitions.bindings.iter().find(|binding| binding.destination == "app.events").expect("e2e");
    assert_eq!((to_exchange.source.as_str(), to_exchange.destination_type), ("amq.topic", DestinationType::Exchange));
    assert_eq!(to_exchange.routing_key, "*.audit");
    assert_eq!(definitions.policies[0].priority, 5);
    assert_eq!(definitions.policies[0].apply_to, "queues");
    assert_eq!(definitions.topic_permissions[0].exchange, "amq.topic");
    assert_eq!(definitions.parameters[0].component, "vhost-limits");
    validate(&definitions).expect("RabbitMQ's own export is valid");
}

#[test]
fn exported_users_log_in_with_their_passwords() {
    let definitions = parsed(CTL_EXPORT).definitions;
    for (name, password) in PASSWORDS {
        let hash = user(&definitions, name).password_hash().expect("a readable hash");
        assert!(hash.verify(password.as_bytes()), "{name}");
        assert!(!hash.verify(b"wrong"), "{name}");
    }
    let algorithm = |name| user(&definitions, name).password_hash().expect("hash").algorithm();
    assert_eq!(algorithm("legacy"), HashAlgorithm::Md5);
    assert_eq!(algorithm("carol"), HashAlgorithm::Sha512);
    // `rabbitmqctl clear_password` exports an empty hash: no password logs that user in.
    let cleared = user(&definitions, "svc").password_hash().expect("empty hash");
    assert!(!cleared.has_password() && !cleared.verify(b"tmp"));
}

#[test]
fn written_file_reads_back_the_same() {
    let original = parsed(CTL_EXPORT).definitions;
    let written = to_json(&original);
    let Parsed { definitions: mut again, warnings } = parsed(&written);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(again.rabbitmq_version.as_deref(), Some(EXPORT_RABBITMQ_VERSION));
    assert_eq!(again.product_name.as_deref(), Some("SpateMQ"));
    assert_eq!(again.product_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    (again.product_name, again.product_version) = (None, None);
    again.rabbit_version.clone_from(&original.rabbit_version);
    again.rabbitmq_version.clone_from(&original.rabbitmq_version);
    assert_eq!(again, original);
    assert_eq!(to_json(&again), written);
}

#[test]
fn written_file_has_rabbitmq_3_10_export_shape() {
    let written: Value = serde_json::from_str(&to_json(&parsed(CTL_EXPORT).definitions)).expect("JSON");
    let mut written = written.as_object().expect("object").clone();
    assert_eq!(written.remove("product_name"), Some(json!("SpateMQ")));
    assert!(written.remove("product_version").is_some());
    // The export leaves `internal` out because it leaves internal exchanges out; the
    // management API's export writes it, and this broker does, for every exchange.
    for exchange in written["exchanges"].as_array_mut().expect("exchanges") {
        let exchange = exchange.as_object_mut().expect("exchange");
        assert_eq!(exchange.remove("internal"), Some(json!(false)));
    }
    let rabbitmq: Value = serde_json::from_str(CTL_EXPORT).expect("JSON");
    assert_eq!(Value::Object(written), rabbitmq);
}

#[test]
fn management_api_export_is_read_too() {
    let Parsed { definitions, warnings } = parsed(HTTP_EXPORT);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(definitions.product_name.as_deref(), Some("RabbitMQ"));
    // It has the internal exchange the CLI export leaves out, and queues without `type`.
    let internal = definitions.exchanges.iter().find(|exchange| exchange.name == "app.internal").expect("internal");
    assert!(internal.internal && internal.auto_delete);
    assert!(definitions.queues.iter().all(|queue| queue.queue_type == "classic"));
    let from_ctl = parsed(CTL_EXPORT).definitions;
    let mut users = definitions.users.clone();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ctl_users = from_ctl.users.clone();
    ctl_users.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(users, ctl_users);
    assert_eq!(queue(&definitions, "app.lazy"), queue(&from_ctl, "app.lazy"));
    validate(&definitions).expect("valid");
}

#[test]
fn single_vhost_export_is_read_into_a_given_vhost() {
    let Parsed { definitions, warnings } = parse_for_vhost(VHOST_EXPORT.as_bytes(), "imported").expect("readable");
    // RabbitMQ's per-vhost export keeps `vhost` in parameters and policies only.
    assert_eq!(
        warnings,
        [
            "parameters[0].vhost: 'staging' ignored, the definitions are imported into 'imported'",
            "policies[0].vhost: 'staging' ignored, the definitions are imported into 'imported'",
        ]
    );
    let same_vhost = parse_for_vhost(VHOST_EXPORT.as_bytes(), "staging").expect("readable");
    assert_eq!(same_vhost.warnings, Vec::<String>::new());
    assert_eq!(definitions.queues.len(), 3);
    assert_eq!(definitions.exchanges.len(), 4);
    assert_eq!(definitions.bindings.len(), 4);
    assert!(definitions.queues.iter().all(|queue| queue.vhost == "imported"));
    assert!(definitions.bindings.iter().all(|binding| binding.vhost == "imported"));
    assert_eq!(definitions.policies[0].vhost, "imported");
    assert_eq!(definitions.parameters[0].vhost, "imported");
    assert!(definitions.users.is_empty() && definitions.vhosts.is_empty());
    validate(&definitions).expect("valid");
    // Read as a whole-broker file, its items have no virtual host.
    let missing = problems(VHOST_EXPORT);
    assert!(missing.iter().any(|problem| problem.starts_with("queues[0].vhost: missing")), "{missing:?}");
}

#[test]
fn whole_broker_file_read_into_one_vhost_warns_about_what_it_leaves() {
    let Parsed { definitions, warnings } = parse_for_vhost(CTL_EXPORT.as_bytes(), "staging").expect("readable");
    assert!(definitions.users.is_empty() && definitions.permissions.is_empty());
    assert_eq!(definitions.queues.len(), 5);
    for section in BROKER_WIDE {
        assert!(warnings.contains(&format!("{section}: ignored, a single virtual host's import leaves it out")));
    }
    // The queue of vhost "/" is moved, with a warning.
    assert!(warnings.contains(&"queues[0].vhost: '/' ignored, the definitions are imported into 'staging'".into()));
}

const BROKER_WIDE: [&str; 5] = ["users", "vhosts", "permissions", "topic_permissions", "global_parameters"];

#[test]
fn cut_short_or_not_json_is_a_syntax_error() {
    let cut = &CTL_EXPORT[..CTL_EXPORT.len() / 2];
    match parse(cut.as_bytes()) {
        Err(DefinitionsFileError::Syntax(reason)) => assert!(reason.contains("EOF while parsing"), "{reason}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let error = parse(b"users: []").expect_err("not JSON");
    assert!(error.to_string().starts_with("the definitions file is not valid JSON: "), "{error}");
}

#[test]
fn wrong_shapes_are_all_reported_with_their_paths() {
    let text = r#"{
        "users": [
            {"name": "a", "tags": ""},
            {"name": "b", "tags": "x"},
            {"name": "c", "tags": 5},
            {"tags": ["ok", 7]}
        ],
        "vhosts": {"name": "/"},
        "queues": [{"name": "q", "vhost": "/", "durable": "yes", "arguments": {"x-max-length": 18446744073709551615}}],
        "bindings": [{"vhost": "/", "source": "x", "destination": "q", "destination_type": "topic", "routing_key": ""}],
        "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": [], "priority": 1.5}]
    }"#;
    let found = problems(text);
    let expected = [
        "users[2].tags: expected a string or a list, found the number 5",
        "users[3].name: missing, expected a string",
        "users[3].tags[1]: expected a string, found the number 7",
        "vhosts: expected a list, found an object",
        "queues[0].durable: expected true or false, found a string",
        "queues[0].auto_delete: missing, expected true or false",
        "bindings[0].destination_type: expected \"queue\" or \"exchange\", found \"topic\"",
        "policies[0].definition: expected an object, found a list",
        "policies[0].priority: expected an integer, found the number 1.5",
        "queues[0].arguments.x-max-length: the integer 18446744073709551615 does not fit a signed 64-bit long",
    ];
    for problem in expected {
        assert!(found.contains(&problem.to_string()), "{problem} not in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let not_object = problems("[1, 2]");
    assert_eq!(not_object, ["expected an object, found a list"]);
}

#[test]
fn error_text_lists_every_problem() {
    let error = parse(br#"{"users": [{"name": 1, "tags": []}], "queues": 3}"#).expect_err("bad shape");
    assert_eq!(
        error.to_string(),
        "the file is not a definitions file (2 problems):\n  users[0].name: expected a string, found the number 1\n  queues: expected a list, found the number 3"
    );
}

#[test]
fn unknown_keys_are_warnings_not_errors() {
    let text = r#"{
        "explanation": "hand-written",
        "users": [{"name": "u", "tags": "administrator, monitoring,", "colour": "blue",
                   "permissions": {"/": {"configure": ".*", "write": ".*", "read": ".*"}}}],
        "vhosts": [{"name": "v", "metadata": {"description": "d", "owner": "me"}, "tracing": true}],
        "exchanges": [{"vhost": "v", "name": "e", "type": "direct", "durable": true, "auto_delete": false, "alias": 1}]
    }"#;
    let Parsed { definitions, warnings } = parsed(text);
    assert_eq!(
        warnings,
        [
            "explanation: unknown field, ignored",
            "users[0].permissions: ignored, a new user's preset permissions are not imported (list them under `permissions`)",
            "users[0].colour: unknown field, ignored",
            "vhosts[0].metadata.owner: unknown field, ignored",
            "exchanges[0].alias: unknown field, ignored",
        ]
    );
    assert_eq!(definitions.users[0].tags, ["administrator", "monitoring"]);
    assert_eq!(definitions.vhosts[0].description, "d");
    assert_eq!(definitions.vhosts[0].tracing, Some(true));
    assert!(!definitions.exchanges[0].internal);
}

#[test]
fn reserved_names_are_skipped_as_rabbitmq_skips_them() {
    let text = r#"{
        "queues": [{"vhost": "/", "name": "amq.gen-1", "durable": true, "auto_delete": false}],
        "exchanges": [
            {"vhost": "/", "name": "", "type": "direct", "durable": true, "auto_delete": false},
            {"vhost": "/", "name": "amq.direct", "type": "direct", "durable": true, "auto_delete": false}
        ]
    }"#;
    let Parsed { definitions, warnings } = parsed(text);
    assert!(definitions.queues.is_empty() && definitions.exchanges.is_empty());
    assert_eq!(
        warnings,
        [
            "queues[0]: queue 'amq.gen-1' skipped: a name starting with 'amq.' is reserved, RabbitMQ's import skips it",
            "exchanges[0]: exchange '' skipped: the default exchange is not imported",
            "exchanges[1]: exchange 'amq.direct' skipped: a name starting with 'amq.' is reserved, RabbitMQ's import skips it",
        ]
    );
}

#[test]
fn old_exports_and_hand_written_users_are_understood() {
    // A 3.5 export: no hashing_algorithm (MD5 then), tags as a string, and the pre-3.0 flag.
    let text = r#"{"rabbit_version": "3.5.7", "users": [
        {"name": "old", "password_hash": "kI3GChNpte2FApYFXScl+0dIluk=", "tags": "management"},
        {"name": "older", "password_hash": "", "administrator": "true"},
        {"name": "typed", "password": "clear words", "tags": []}
    ]}"#;
    let definitions = parsed(text).definitions;
    validate(&definitions).expect("valid");
    let old = &definitions.users[0];
    assert_eq!(old.hashing_algorithm, "rabbit_password_hashing_md5");
    assert!(old.password_hash().expect("md5 hash").verify(b"test12"));
    assert_eq!(definitions.users[1].tags, ["administrator"]);
    let typed = definitions.users[2].password_hash().expect("hashed now");
    assert_eq!(typed.algorithm(), HashAlgorithm::Sha256);
    assert!(typed.verify(b"clear words"));
    // Written back, a cleartext password stays cleartext: there is no hash to write.
    assert!(to_json(&definitions).contains(r#""password": "clear words""#));
    // A user without tags is refused, as RabbitMQ refuses it.
    let untagged = problems(r#"{"users": [{"name": "u"}]}"#);
    assert_eq!(
        untagged,
        ["users[0].tags: missing, expected a string or a list (RabbitMQ refuses a user without tags)"]
    );
}

#[test]
fn invalid_values_are_all_reported() {
    let text = r#"{
        "users": [
            {"name": "", "tags": []},
            {"name": "a", "tags": [], "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
             "hashing_algorithm": "rabbit_password_hashing_bcrypt"},
            {"name": "b", "tags": [], "password_hash": "!!", "hashing_algorithm": "rabbit_password_hashing_sha256"},
            {"name": "c", "tags": [], "password": "p", "password_hash": ""},
            {"name": "a", "tags": [], "limits": {"max-queues": 1}}
        ],
        "vhosts": [{"name": "v", "metadata": {"default_queue_type": "quorum"}, "limits": [["max-channels", 1]]}],
        "permissions": [{"user": "a", "vhost": "v", "configure": "^(?!amq\\.).*", "write": "[", "read": ".*"}],
        "policies": [{"vhost": "v", "name": "p", "pattern": ".*", "apply-to": "streams", "definition": {}}],
        "queues": [
            {"vhost": "v", "name": "q", "durable": true, "auto_delete": false, "arguments": {"x-message-ttl": -1}},
            {"vhost": "v", "name": "q", "durable": true, "auto_delete": false},
            {"vhost": "v", "name": "s", "durable": true, "auto_delete": false, "type": "mirrored"}
        ],
        "exchanges": [{"vhost": "v", "name": "x", "type": "x-unknown-type", "durable": true, "auto_delete": false,
                       "arguments": {"alternate-exchange": 5}}],
        "bindings": [{"vhost": "v", "source": "", "destination": "q", "destination_type": "queue", "routing_key": "q"}]
    }"#;
    let found = invalid(&parsed(text).definitions);
    let expected = [
        "users[0].name: empty, a name is required",
        "users[1]: unknown hashing_algorithm 'rabbit_password_hashing_bcrypt', expected one of rabbit_password_hashing_sha256, rabbit_password_hashing_sha512, rabbit_password_hashing_md5",
        "users[3]: both password and password_hash are given, RabbitMQ takes one",
        "users[4]: user 'a' is already defined by users[1]",
        "users[4].limits.max-queues: unknown limit, expected one of max-connections, max-channels",
        "vhosts[0].limits.max-channels: unknown limit, expected one of max-connections, max-queues",
        "vhosts[0].metadata.default_queue_type: quorum queues are not supported by this broker (only 'classic')",
        "policies[0].apply-to: apply-to 'streams' unrecognised; should be 'queues', 'exchanges' or 'all'",
        "policies[0].definition: no policy provided",
        "queues[0].arguments: PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost 'v': {value_negative,-1}",
        "queues[1]: queue 'q' in vhost 'v' is already defined by queues[0]",
        "queues[2].type: mirrored queues are not supported by this broker (only 'classic', 'quorum' and 'stream')",
        "exchanges[0].type: unknown exchange type 'x-unknown-type'",
        "exchanges[0].arguments: PRECONDITION_FAILED - invalid type 'long' for arg 'alternate-exchange' in exchange 'x' in vhost 'v'",
        "bindings[0].source: binding the default exchange is not permitted (RabbitMQ refuses it with 403)",
    ];
    for problem in expected {
        assert!(found.contains(&problem.to_string()), "{problem}\nnot in {found:#?}");
    }
    let bad_base64 = found.iter().find(|problem| problem.starts_with("users[2]: password_hash is not base64"));
    assert!(bad_base64.is_some(), "{found:#?}");
    let lookahead = found.iter().find(|problem| problem.starts_with("permissions[0].configure: '^(?!amq\\.).*'"));
    assert!(lookahead.is_some_and(|problem| problem.contains("RabbitMQ's PCRE accepts look-around")), "{found:#?}");
    let unclosed = found.iter().find(|problem| problem.starts_with("permissions[0].write: '['"));
    assert!(unclosed.is_some_and(|problem| !problem.contains("PCRE")), "{found:#?}");
    assert_eq!(found.len(), expected.len() + 3, "{found:#?}");
}

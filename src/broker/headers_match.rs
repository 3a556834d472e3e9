//! Headers-exchange matching: parses the `x-match` binding argument,
//! compiles a binding's arguments into a rule, and decides whether a
//! message's headers satisfy that rule, following RabbitMQ.
//!
//! It owns only the matching semantics and the x-match validation text. It
//! must not store bindings or know about destinations (the routing table
//! does), and matching must not allocate nor panic on any header values.

use amq_protocol::types::{AMQPValue, FieldTable, ShortString};

/// Binding argument that selects how the other arguments are combined.
pub const X_MATCH: &str = "x-match";

/// Value of the `x-match` binding argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XMatch {
    /// Every matchable argument must match (the default).
    All,
    /// At least one matchable argument must match.
    Any,
    /// Like `All`, but `x-` arguments are compared too.
    AllWithX,
    /// Like `Any`, but `x-` arguments are compared too.
    AnyWithX,
}

impl XMatch {
    pub fn parse(value: &[u8]) -> Option<Self> {
        match value {
            b"all" => Some(Self::All),
            b"any" => Some(Self::Any),
            b"all-with-x" => Some(Self::AllWithX),
            b"any-with-x" => Some(Self::AnyWithX),
            _ => None,
        }
    }

    /// Mode used for routing. Like RabbitMQ, anything unrecognised falls
    /// back to `All`: bindings stored before validation existed must keep
    /// routing, and new ones are rejected earlier by `validate_x_match`.
    pub fn from_arguments(arguments: &FieldTable) -> Self {
        arguments.inner().get(X_MATCH).and_then(string_bytes).and_then(Self::parse).unwrap_or(Self::All)
    }

    fn requires_all(self) -> bool {
        matches!(self, Self::All | Self::AllWithX)
    }

    fn compares_x_arguments(self) -> bool {
        matches!(self, Self::AllWithX | Self::AnyWithX)
    }
}

/// Checks the `x-match` binding argument the way RabbitMQ does on
/// queue.bind/exchange.bind to a headers exchange; the error text is meant
/// for a 406 PRECONDITION_FAILED reply. A missing `x-match` is accepted.
pub fn validate_x_match(arguments: &FieldTable) -> Result<(), String> {
    let Some(value) = arguments.inner().get(X_MATCH) else {
        return Ok(());
    };
    // RabbitMQ only accepts a long string; a short string cannot arrive from
    // the wire (the 's' tag decodes as a short int) but is accepted when
    // built in-process because its meaning is unambiguous.
    match string_bytes(value) {
        Some(bytes) if XMatch::parse(bytes).is_some() => Ok(()),
        Some(bytes) => Err(format!(
            "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
            String::from_utf8_lossy(bytes)
        )),
        None => Err(format!(
            "Invalid x-match field type {} (value {}); expected longstr",
            type_name(value),
            value_text(value)
        )),
    }
}

/// One headers binding, pre-filtered at bind time so routing does not
/// re-inspect `x-` keys or re-parse `x-match` on every publish.
#[derive(Clone, Debug)]
pub struct HeadersRule {
    x_match: XMatch,
    conditions: Box<[(ShortString, AMQPValue)]>,
}

impl HeadersRule {
    pub fn compile(arguments: &FieldTable) -> Self {
        let x_match = XMatch::from_arguments(arguments);
        // `x-match` itself is never a condition; other `x-` arguments are
        // conditions only in the -with-x modes (RabbitMQ behaviour).
        let conditions = arguments
            .inner()
            .iter()
            .filter(|(key, _)| {
                let key = key.as_str();
                key != X_MATCH && (x_match.compares_x_arguments() || !key.starts_with("x-"))
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Self { x_match, conditions }
    }

    #[cfg(test)]
    pub fn x_match(&self) -> XMatch {
        self.x_match
    }

    /// A message without a headers table is treated as having an empty one.
    /// `all` with no conditions matches everything; `any` with none matches
    /// nothing (RabbitMQ behaviour).
    pub fn matches(&self, headers: Option<&FieldTable>) -> bool {
        let satisfied = |(key, expected): &(ShortString, AMQPValue)| {
            match headers.and_then(|table| table.inner().get(key)) {
                None => false,
                // A void binding value only asks for the header to exist.
                Some(_) if matches!(expected, AMQPValue::Void) => true,
                Some(actual) => values_equal(expected, actual),
            }
        };
        if self.x_match.requires_all() {
            self.conditions.iter().all(satisfied)
        } else {
            self.conditions.iter().any(satisfied)
        }
    }
}

/// Numeric view of a value, wide enough for every AMQP integer type.
#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

fn number(value: &AMQPValue) -> Option<Number> {
    let n = match *value {
        AMQPValue::ShortShortInt(v) => Number::Int(v.into()),
        AMQPValue::ShortShortUInt(v) => Number::Int(v.into()),
        AMQPValue::ShortInt(v) => Number::Int(v.into()),
        AMQPValue::ShortUInt(v) => Number::Int(v.into()),
        AMQPValue::LongInt(v) => Number::Int(v.into()),
        AMQPValue::LongUInt(v) => Number::Int(v.into()),
        AMQPValue::LongLongInt(v) => Number::Int(v.into()),
        AMQPValue::Timestamp(v) => Number::Int(v.into()),
        AMQPValue::Float(v) => Number::Float(v.into()),
        AMQPValue::Double(v) => Number::Float(v),
        _ => return None,
    };
    Some(n)
}

fn numbers_equal(a: Number, b: Number) -> bool {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x == y,
        (Number::Float(x), Number::Float(y)) => x == y,
        // Exact comparison: the float must be integral and finite; the cast
        // saturates, and a saturated value is outside every AMQP integer range.
        (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
            f.is_finite() && f.fract() == 0.0 && f as i128 == i
        }
    }
}

/// Byte-string view of a value: RabbitMQ holds long strings, short strings
/// and byte arrays all as binaries, so they compare by content.
fn string_bytes(value: &AMQPValue) -> Option<&[u8]> {
    match value {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

/// Equality of a binding value and a header value.
///
/// Choice: this mirrors RabbitMQ's headers exchange, which compares the
/// decoded values with Erlang `==` and ignores the AMQP type tag at the top
/// level. So integers match across widths and signedness (a client sending
/// `I 5` matches a binding of `l 5`), timestamps compare as integers,
/// integers and floats compare numerically (`5` == `5.0`), and string-like
/// values compare by bytes. Booleans, decimals, arrays and tables must have
/// the same type and value; nested values keep their type tags, as they do
/// inside RabbitMQ's nested terms.
pub fn values_equal(binding: &AMQPValue, header: &AMQPValue) -> bool {
    match (number(binding), number(header)) {
        (Some(a), Some(b)) => return numbers_equal(a, b),
        (Some(_), None) | (None, Some(_)) => return false,
        (None, None) => {}
    }
    match (string_bytes(binding), string_bytes(header)) {
        (Some(a), Some(b)) => return a == b,
        (Some(_), None) | (None, Some(_)) => return false,
        (None, None) => {}
    }
    binding == header
}

/// RabbitMQ's name for a field value's type (`rabbit_binary_parser`), as its error texts print it.
pub(crate) fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// Short rendering of a value for error text; containers are summarised
/// because the reply text is a short string.
fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::Boolean(v) => v.to_string(),
        AMQPValue::Void => "undefined".to_owned(),
        AMQPValue::DecimalValue(d) => format!("{{{}, {}}}", d.scale, d.value),
        AMQPValue::FieldArray(_) => "[...]".to_owned(),
        AMQPValue::FieldTable(_) => "[...]".to_owned(),
        other => match (number(other), string_bytes(other)) {
            (Some(Number::Int(i)), _) => i.to_string(),
            (Some(Number::Float(f)), _) => f.to_string(),
            (None, Some(bytes)) => format!("\"{}\"", String::from_utf8_lossy(bytes)),
            (None, None) => "?".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, FieldArray, LongString};

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn rule(entries: &[(&str, AMQPValue)]) -> HeadersRule {
        HeadersRule::compile(&table(entries))
    }

    #[test]
    fn all_requires_every_condition() {
        let r = rule(&[("x-match", long("all")), ("a", long("1")), ("b", long("2"))]);
        assert!(r.matches(Some(&table(&[("a", long("1")), ("b", long("2")), ("c", long("3"))]))));
        assert!(!r.matches(Some(&table(&[("a", long("1"))]))));
        assert!(!r.matches(Some(&table(&[("a", long("1")), ("b", long("3"))]))));
        assert!(!r.matches(None));
    }

    #[test]
    fn missing_x_match_means_all() {
        let r = rule(&[("a", long("1")), ("b", long("2"))]);
        assert_eq!(r.x_match(), XMatch::All);
        assert!(!r.matches(Some(&table(&[("a", long("1"))]))));
        assert!(r.matches(Some(&table(&[("a", long("1")), ("b", long("2"))]))));
    }

    #[test]
    fn any_requires_one_condition() {
        let r = rule(&[("x-match", long("any")), ("a", long("1")), ("b", long("2"))]);
        assert!(r.matches(Some(&table(&[("b", long("2"))]))));
        assert!(r.matches(Some(&table(&[("a", long("1")), ("b", long("9"))]))));
        assert!(!r.matches(Some(&table(&[("a", long("9")), ("c", long("1"))]))));
        assert!(!r.matches(None));
    }

    #[test]
    fn empty_condition_sets() {
        let all = rule(&[("x-match", long("all")), ("x-other", long("v"))]);
        assert!(all.matches(None));
        assert!(all.matches(Some(&table(&[("z", long("1"))]))));
        let any = rule(&[("x-match", long("any"))]);
        assert!(!any.matches(None));
        assert!(!any.matches(Some(&table(&[("z", long("1"))]))));
        assert!(rule(&[]).matches(None));
    }

    #[test]
    fn x_arguments_are_ignored_unless_with_x() {
        let headers = table(&[("a", long("1")), ("x-tenant", long("t1"))]);
        let plain = rule(&[("x-match", long("all")), ("a", long("1")), ("x-tenant", long("t2"))]);
        assert!(plain.matches(Some(&headers)));
        let with_x = rule(&[("x-match", long("all-with-x")), ("a", long("1")), ("x-tenant", long("t2"))]);
        assert!(!with_x.matches(Some(&headers)));
        let with_x_ok = rule(&[("x-match", long("all-with-x")), ("x-tenant", long("t1"))]);
        assert!(with_x_ok.matches(Some(&headers)));

        let any_plain = rule(&[("x-match", long("any")), ("x-tenant", long("t1"))]);
        assert!(!any_plain.matches(Some(&headers)));
        let any_with_x = rule(&[("x-match", long("any-with-x")), ("x-tenant", long("t1"))]);
        assert!(any_with_x.matches(Some(&headers)));
        // x-match itself is never compared, even in -with-x modes.
        assert!(!any_with_x.matches(Some(&table(&[("x-match", long("any-with-x"))]))));
    }

    #[test]
    fn void_binding_value_matches_presence() {
        let r = rule(&[("flag", AMQPValue::Void)]);
        assert!(r.matches(Some(&table(&[("flag", long("anything"))]))));
        assert!(r.matches(Some(&table(&[("flag", AMQPValue::Void)]))));
        assert!(!r.matches(Some(&table(&[("other", long("x"))]))));
        assert!(!r.matches(None));
        // A void header does not satisfy a non-void binding value.
        let valued = rule(&[("flag", long("v"))]);
        assert!(!valued.matches(Some(&table(&[("flag", AMQPValue::Void)]))));
    }

    #[test]
    fn integers_compare_by_value_across_widths() {
        assert!(values_equal(&AMQPValue::LongLongInt(5), &AMQPValue::LongInt(5)));
        assert!(values_equal(&AMQPValue::ShortShortUInt(5), &AMQPValue::ShortInt(5)));
        assert!(values_equal(&AMQPValue::Timestamp(5), &AMQPValue::LongUInt(5)));
        assert!(!values_equal(&AMQPValue::LongInt(5), &AMQPValue::LongInt(6)));
        assert!(!values_equal(&AMQPValue::LongInt(-1), &AMQPValue::LongUInt(u32::MAX)));
        assert!(values_equal(&AMQPValue::Double(5.0), &AMQPValue::LongInt(5)));
        assert!(!values_equal(&AMQPValue::Double(5.5), &AMQPValue::LongInt(5)));
        assert!(!values_equal(&AMQPValue::Double(f64::NAN), &AMQPValue::Double(f64::NAN)));
        assert!(values_equal(&AMQPValue::Float(1.5), &AMQPValue::Double(1.5)));
        assert!(!values_equal(&AMQPValue::Double(1e300), &AMQPValue::LongLongInt(i64::MAX)));
    }

    #[test]
    fn other_types_compare_strictly() {
        assert!(!values_equal(&long("5"), &AMQPValue::LongInt(5)));
        assert!(!values_equal(&AMQPValue::Boolean(true), &AMQPValue::ShortShortUInt(1)));
        assert!(values_equal(&AMQPValue::Boolean(true), &AMQPValue::Boolean(true)));
        let byte_array = AMQPValue::ByteArray(b"abc".as_slice().into());
        assert!(values_equal(&long("abc"), &byte_array));
        let d = |scale, value| AMQPValue::DecimalValue(DecimalValue { scale, value });
        assert!(values_equal(&d(2, 100), &d(2, 100)));
        assert!(!values_equal(&d(2, 100), &d(1, 10)));
        let array = |v: AMQPValue| AMQPValue::FieldArray(FieldArray::from(vec![v]));
        assert!(values_equal(&array(AMQPValue::LongInt(1)), &array(AMQPValue::LongInt(1))));
        assert!(!values_equal(&array(AMQPValue::LongInt(1)), &array(AMQPValue::ShortInt(1))));
    }

    #[test]
    fn routing_uses_value_equality() {
        let r = rule(&[("x-match", long("all")), ("n", AMQPValue::LongLongInt(42))]);
        assert!(r.matches(Some(&table(&[("n", AMQPValue::ShortShortUInt(42))]))));
        assert!(!r.matches(Some(&table(&[("n", long("42"))]))));
    }

    #[test]
    fn invalid_x_match_falls_back_to_all_for_routing() {
        let r = rule(&[("x-match", long("foo")), ("a", long("1")), ("b", long("2"))]);
        assert_eq!(r.x_match(), XMatch::All);
        assert!(!r.matches(Some(&table(&[("a", long("1"))]))));
    }

    #[test]
    fn validate_x_match_messages() {
        assert_eq!(validate_x_match(&table(&[])), Ok(()));
        for mode in ["all", "any", "all-with-x", "any-with-x"] {
            assert_eq!(validate_x_match(&table(&[("x-match", long(mode))])), Ok(()));
        }
        assert_eq!(
            validate_x_match(&table(&[("x-match", long("foo"))])),
            Err("Invalid x-match field value <<\"foo\">>; expected all, any, all-with-x, or any-with-x".to_owned())
        );
        assert_eq!(
            validate_x_match(&table(&[("x-match", AMQPValue::LongLongInt(5))])),
            Err("Invalid x-match field type long (value 5); expected longstr".to_owned())
        );
        assert!(validate_x_match(&table(&[("x-match", long("ALL"))])).is_err());
    }
}

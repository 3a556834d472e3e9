//! List endpoints' query parameters, as RabbitMQ's management applies them: `sort` (a dotted
//! key) and `sort_reverse`, then with `page` the `name` filter (substring, or `use_regex`,
//! both caseless) and the page (`page_size` at most 500, default 100) wrapped in
//! `{total_count, item_count, filtered_count, page, page_size, page_count, items}`; without
//! `page`, a plain array. `columns` keeps only the named (dotted) keys of each item.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::api::{json_response, ApiError, ApiResult, Call};

const PAGE_SIZE_MAX: u64 = 500;
const PAGE_SIZE_DEFAULT: u64 = 100;

/// Answers a list request: `items` in their default order `default_sort` (keys), shaped by
/// the query.
pub fn reply(call: &Call, mut items: Vec<Value>, default_sort: &[&str]) -> ApiResult {
    let sort = call.query("sort").filter(|key| !key.is_empty());
    let mut keys: Vec<&str> = Vec::new();
    if let Some(sort) = &sort {
        keys.push(sort);
    }
    keys.extend(default_sort.iter().filter(|key| sort.as_deref() != Some(**key)));
    items.sort_by(|a, b| compare_by(a, b, &keys));
    if call.query("sort_reverse").as_deref() == Some("true") {
        items.reverse();
    }
    let columns: Option<Vec<Vec<String>>> = call
        .query("columns")
        .filter(|columns| !columns.is_empty())
        .map(|columns| columns.split(',').map(|column| column.split('.').map(str::to_string).collect()).collect());
    let pick = |item: Value| match &columns {
        Some(columns) => select(&item, columns),
        None => item,
    };
    let Some(page) = pagination(call)? else {
        return Ok(json_response(&Value::Array(items.into_iter().map(pick).collect())));
    };
    let total_count = items.len();
    let filtered: Vec<Value> = match call.query("name").filter(|name| !name.is_empty()) {
        Some(name) => {
            let matcher = NameMatch::new(&name, call.query("use_regex").as_deref() == Some("true"))?;
            items.into_iter().filter(|item| item["name"].as_str().is_some_and(|own| matcher.matches(own))).collect()
        }
        None => items,
    };
    let filtered_count = filtered.len();
    let offset = (page.number - 1).saturating_mul(page.size) as usize;
    if offset > filtered_count || (offset == filtered_count && filtered_count > 0) {
        return Err(ApiError::new(
            400,
            "page_out_of_range",
            format!("Page out of range, page: {} page size: {}, len: {filtered_count}", page.number, page.size),
        ));
    }
    let page_items: Vec<Value> = filtered.into_iter().skip(offset).take(page.size as usize).map(pick).collect();
    Ok(json_response(&json!({
        "total_count": total_count,
        "item_count": page_items.len(),
        "filtered_count": filtered_count,
        "page": page.number,
        "page_size": page.size,
        "page_count": (filtered_count as u64).div_ceil(page.size),
        "items": page_items,
    })))
}

struct Page {
    number: u64,
    size: u64,
}

fn pagination(call: &Call) -> Result<Option<Page>, ApiError> {
    let number = call.query("page");
    let size = call.query("page_size");
    let Some(number_text) = number else { return Ok(None) };
    let invalid = || {
        ApiError::new(
            400,
            "invalid_pagination_parameters",
            format!(
                "Invalid pagination parameters: page number {}, page size {}",
                number_text,
                size.as_deref().unwrap_or("undefined")
            ),
        )
    };
    let number: u64 = number_text.parse().map_err(|_| invalid())?;
    let size: u64 = match &size {
        Some(size) => size.parse().map_err(|_| invalid())?,
        None => PAGE_SIZE_DEFAULT,
    };
    if number == 0 || size == 0 || size > PAGE_SIZE_MAX {
        return Err(invalid());
    }
    Ok(Some(Page { number, size }))
}

enum NameMatch {
    Substring(String),
    Regex(regex_lite::Regex),
}

impl NameMatch {
    fn new(name: &str, regex: bool) -> Result<NameMatch, ApiError> {
        if !regex {
            return Ok(NameMatch::Substring(name.to_lowercase()));
        }
        regex_lite::RegexBuilder::new(name)
            .case_insensitive(true)
            .build()
            .map(NameMatch::Regex)
            .map_err(|error| ApiError::bad_request(format!("invalid regular expression '{name}': {error}")))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Substring(part) => name.to_lowercase().contains(part.as_str()),
            NameMatch::Regex(regex) => regex.is_match(name),
        }
    }
}

/// The value at a dotted key ("message_stats.publish").
fn dotted<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(item, |value, part| value.get(part))
}

fn compare_by(a: &Value, b: &Value, keys: &[&str]) -> Ordering {
    keys.iter()
        .map(|key| compare_values(dotted(a, key), dotted(b, key)))
        .find(|order| *order != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// Missing counts as 0 (RabbitMQ's "nothing sorts first"); numbers before booleans before
/// strings, as Erlang orders its terms.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(value: Option<&Value>) -> (u8, f64, String) {
        match value {
            None | Some(Value::Null) => (0, 0.0, String::new()),
            Some(Value::Number(number)) => (0, number.as_f64().unwrap_or(0.0), String::new()),
            Some(Value::Bool(flag)) => (1, 0.0, flag.to_string()),
            Some(Value::String(text)) => (2, 0.0, text.clone()),
            Some(other) => (3, 0.0, other.to_string()),
        }
    }
    let (a, b) = (rank(a), rank(b));
    a.0.cmp(&b.0).then(a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal)).then(a.2.cmp(&b.2))
}

/// Keeps only the named (dotted) keys.
fn select(item: &Value, columns: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for column in columns {
        let Some((first, rest)) = column.split_first() else { continue };
        let Some(value) = item.get(first) else { continue };
        if rest.is_empty() {
            out.insert(first.clone(), value.clone());
            continue;
        }
        let nested = select(value, &[rest.to_vec()]);
        match out.get_mut(first) {
            Some(Value::Object(existing)) => {
                if let Value::Object(more) = nested {
                    existing.extend(more);
                }
            }
            _ => {
                out.insert(first.clone(), nested);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_dotted_keys_only() {
        let item = json!({"name": "q", "messages": 3, "message_stats": {"publish": 5, "ack": 1}});
        let columns = vec![vec!["name".to_string()], vec!["message_stats".to_string(), "publish".to_string()]];
        assert_eq!(select(&item, &columns), json!({"name": "q", "message_stats": {"publish": 5}}));
    }

    #[test]
    fn missing_sorts_first_and_numbers_compare_as_numbers() {
        let mut items = vec![json!({"n": 10}), json!({}), json!({"n": 9})];
        items.sort_by(|a, b| compare_by(a, b, &["n"]));
        assert_eq!(items, vec![json!({}), json!({"n": 9}), json!({"n": 10})]);
    }
}

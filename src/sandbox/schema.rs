//! JSON Schema validation for the contracts we write ourselves from a vendor's documentation
//! (the vendors that publish no spec we may bundle) and for the vendors' own published schemas
//! we bundle (the Adaptive Card schema, draft-06): the keywords those documents use, nothing
//! more. A schema that uses any other keyword is refused when it is read, so a contract can
//! never be silently more lenient than it looks.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

use crate::wedsync::is_iso_date;

/// The keywords this validator understands. Annotations (`title`, `description`, ...) are
/// accepted and ignored; everything else is checked.
const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "$ref",
    // draft-06's `$id` and `definitions` (resolved like `$defs`).
    "id",
    "definitions",
    "title",
    "description",
    "examples",
    "example",
    "default",
    // The Adaptive Card schema's annotations: the card version (and host features) a property
    // arrived with.
    "version",
    "features",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "format",
    "anyOf",
    "oneOf",
    "allOf",
    "pattern",
];

/// The `format` values this validator checks.
const FORMATS: &[&str] = &["date", "date-time", "email", "uri", "uri-reference"];

/// One place where an instance breaks its schema: `at` names the field (`inputs[0].id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// A schema, with the `$defs` (or draft-06 `definitions`) of the document it came from for
/// `$ref`s, and its `pattern`s compiled.
pub struct Schema<'a> {
    node: &'a Value,
    defs: &'a Map<String, Value>,
    patterns: HashMap<&'a str, Regex>,
}

impl<'a> Schema<'a> {
    /// Checks every keyword of `node` (and of `defs`) is understood, every `$ref` resolves and
    /// every `pattern` is a regular expression.
    pub fn new(node: &'a Value, defs: &'a Map<String, Value>) -> Result<Self, String> {
        let mut patterns = HashMap::new();
        check_keywords(node, defs, "#", &mut patterns)?;
        for (name, def) in defs {
            check_keywords(def, defs, &format!("#/$defs/{name}"), &mut patterns)?;
        }
        Ok(Self {
            node,
            defs,
            patterns,
        })
    }

    /// Every way `instance` breaks the schema; empty when it conforms.
    pub fn validate(&self, instance: &Value) -> Vec<SchemaError> {
        let mut errors = Vec::new();
        self.check(self.node, instance, "", &mut errors);
        errors
    }

    fn check(&self, node: &Value, instance: &Value, at: &str, errors: &mut Vec<SchemaError>) {
        let Some(schema) = node.as_object() else {
            if node == &Value::Bool(false) {
                errors.push(error(at, "is not allowed"));
            }
            return;
        };
        let mut fail = |message: String| errors.push(error(at, &message));
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(target) = resolve(reference, self.defs) {
                self.check(target, instance, at, errors);
            }
            return;
        }
        if let Some(kind) = schema.get("type") {
            let kinds: Vec<&str> = match kind {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !kinds.iter().any(|kind| is_type(kind, instance)) {
                fail(format!(
                    "must be {}, not {}",
                    kinds.join(" or "),
                    type_name(instance)
                ));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(instance) {
                fail(format!("must be one of {}", Value::Array(allowed.clone())));
            }
        }
        if let Some(expected) = schema.get("const") {
            if expected != instance {
                fail(format!("must be {expected}"));
            }
        }
        if let Some(text) = instance.as_str() {
            let length = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if length < min {
                    fail(format!("must be at least {min} characters long"));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if length > max {
                    fail(format!("must be at most {max} characters long"));
                }
            }
            if let Some(format) = schema.get("format").and_then(Value::as_str) {
                if !matches_format(format, text) {
                    fail(format!("is not a valid {format}"));
                }
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                if !self
                    .patterns
                    .get(pattern)
                    .is_some_and(|re| re.is_match(text))
                {
                    fail(format!("must match {pattern}"));
                }
            }
        }
        if let Some(number) = instance.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if number < min {
                    fail(format!("must be at least {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if number > max {
                    fail(format!("must be at most {max}"));
                }
            }
        }
        if let Some(items) = instance.as_array() {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if count < min {
                    fail(format!("must have at least {min} items"));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if count > max {
                    fail(format!("must have at most {max} items"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{at}[{index}]"), errors);
                }
            }
        }
        if let Some(fields) = instance.as_object() {
            self.check_object(schema, fields, at, errors);
        }
        for branch in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(branch, instance, at, errors);
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            let Some(branches) = schema.get(keyword).and_then(Value::as_array) else {
                continue;
            };
            let passing: Vec<Vec<SchemaError>> = branches
                .iter()
                .map(|branch| {
                    let mut branch_errors = Vec::new();
                    self.check(branch, instance, at, &mut branch_errors);
                    branch_errors
                })
                .collect();
            let matched = passing.iter().filter(|e| e.is_empty()).count();
            if matched == 0 {
                // The branch that came closest says the most useful thing.
                if let Some(closest) = passing.into_iter().min_by_key(Vec::len) {
                    errors.extend(closest);
                }
            } else if exactly_one && matched > 1 {
                errors.push(error(at, "matches more than one of the allowed shapes"));
            }
        }
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        fields: &Map<String, Value>,
        at: &str,
        errors: &mut Vec<SchemaError>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(name) {
                errors.push(error(&join(at, name), "is required"));
            }
        }
        for (name, value) in fields {
            let field_at = join(at, name);
            match properties.and_then(|p| p.get(name)) {
                Some(property) => self.check(property, value, &field_at, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(error(&field_at, "is not a known field"))
                    }
                    Some(additional) => self.check(additional, value, &field_at, errors),
                    None => {}
                },
            }
        }
    }
}

fn error(at: &str, message: &str) -> SchemaError {
    SchemaError {
        at: at.to_owned(),
        message: message.to_owned(),
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

fn resolve<'a>(reference: &str, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    defs.get(
        reference
            .strip_prefix("#/$defs/")
            .or_else(|| reference.strip_prefix("#/definitions/"))?,
    )
}

/// Refuses keywords, formats and `$ref`s this validator does not implement, and compiles the
/// patterns into `patterns`.
fn check_keywords<'a>(
    node: &'a Value,
    defs: &Map<String, Value>,
    at: &str,
    patterns: &mut HashMap<&'a str, Regex>,
) -> Result<(), String> {
    let Some(schema) = node.as_object() else {
        return match node {
            Value::Bool(_) => Ok(()),
            _ => Err(format!("{at}: a schema must be an object or a boolean")),
        };
    };
    for (keyword, value) in schema {
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(format!("{at}: the keyword {keyword} is not supported"));
        }
        match keyword.as_str() {
            "$ref" => {
                let reference = value.as_str().unwrap_or_default();
                if resolve(reference, defs).is_none() {
                    return Err(format!("{at}: $ref {reference} does not resolve"));
                }
            }
            "format" => {
                let format = value.as_str().unwrap_or_default();
                if !FORMATS.contains(&format) {
                    return Err(format!("{at}: the format {format} is not supported"));
                }
            }
            "pattern" => {
                let pattern = value
                    .as_str()
                    .ok_or_else(|| format!("{at}: a pattern must be a string"))?;
                let compiled = Regex::new(pattern).map_err(|err| {
                    format!("{at}: the pattern {pattern} does not compile: {err}")
                })?;
                patterns.insert(pattern, compiled);
            }
            "properties" => {
                for (name, property) in value.as_object().into_iter().flatten() {
                    check_keywords(property, defs, &format!("{at}/properties/{name}"), patterns)?;
                }
            }
            "items" | "additionalProperties" => {
                check_keywords(value, defs, &format!("{at}/{keyword}"), patterns)?
            }
            "anyOf" | "oneOf" | "allOf" => {
                for (index, branch) in value.as_array().into_iter().flatten().enumerate() {
                    check_keywords(branch, defs, &format!("{at}/{keyword}/{index}"), patterns)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_type(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn matches_format(format: &str, text: &str) -> bool {
    match format {
        "date" => is_iso_date(text),
        "date-time" => humantime::parse_rfc3339_weak(text).is_ok(),
        "email" => text
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')),
        "uri" => url::Url::parse(text).is_ok(),
        "uri-reference" => url::Url::parse("https://reference.invalid/")
            .and_then(|base| base.join(text))
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(schema: Value, instance: Value) -> Vec<String> {
        let defs = Map::new();
        Schema::new(&schema, &defs)
            .unwrap()
            .validate(&instance)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn fields_are_named_by_their_path() {
        let schema = json!({
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": false,
            "properties": {"inputs": {"type": "array", "maxItems": 2, "items": {
                "type": "object", "required": ["id"],
                "properties": {"id": {"type": "string"}, "properties": {"type": "object", "additionalProperties": {"type": "string"}}}
            }}}
        });
        assert_eq!(
            errors(
                schema.clone(),
                json!({"inputs": [{"id": "1"}, {"id": 2, "properties": {"a": true}}]})
            ),
            vec![
                "inputs[1].id: must be string, not a number",
                "inputs[1].properties.a: must be string, not a boolean"
            ]
        );
        assert_eq!(
            errors(schema.clone(), json!({"extra": 1})),
            vec!["inputs: is required", "extra: is not a known field"]
        );
        assert_eq!(
            errors(
                schema,
                json!({"inputs": [{"id": "1"}, {"id": "2"}, {"id": "3"}]})
            ),
            vec!["inputs: must have at most 2 items"]
        );
    }

    #[test]
    fn enums_consts_formats_and_lengths_are_checked() {
        assert_eq!(
            errors(json!({"enum": ["a", "b"]}), json!("c")),
            vec![r#"must be one of ["a","b"]"#]
        );
        assert_eq!(
            errors(json!({"format": "date"}), json!("2027-13-01")),
            vec!["is not a valid date"]
        );
        assert!(errors(json!({"format": "date"}), json!("2027-06-12")).is_empty());
        assert_eq!(
            errors(json!({"minLength": 1}), json!("")),
            vec!["must be at least 1 characters long"]
        );
        assert_eq!(
            errors(json!({"type": "integer"}), json!(1.5)),
            vec!["must be integer, not a number"]
        );
    }

    #[test]
    fn any_of_reports_the_closest_branch_and_one_of_refuses_two_matches() {
        let note = json!({"anyOf": [{"required": ["jobId"]}, {"required": ["contactId"]}]});
        assert_eq!(errors(note.clone(), json!({})), vec!["jobId: is required"]);
        assert!(errors(note, json!({"contactId": "c"})).is_empty());
        let one = json!({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
        assert_eq!(
            errors(one, json!({"a": 1, "b": 2})),
            vec!["matches more than one of the allowed shapes"]
        );
    }

    #[test]
    fn all_of_and_patterns_are_checked() {
        let schema =
            json!({"allOf": [{"required": ["a"]}, {"properties": {"a": {"pattern": "^[a-z]+$"}}}]});
        assert_eq!(errors(schema.clone(), json!({})), vec!["a: is required"]);
        assert_eq!(
            errors(schema.clone(), json!({"a": "A1"})),
            vec!["a: must match ^[a-z]+$"]
        );
        assert!(errors(schema, json!({"a": "abc"})).is_empty());
        assert!(errors(json!({"format": "uri-reference"}), json!("/relative?x=1")).is_empty());
    }

    #[test]
    fn draft_06_definitions_resolve_like_defs() {
        let defs = json!({"id": {"type": "string"}});
        let defs = defs.as_object().unwrap();
        let schema = json!({"items": {"$ref": "#/definitions/id"}});
        let found = Schema::new(&schema, defs).unwrap().validate(&json!([1]));
        assert_eq!(found[0].to_string(), "[0]: must be string, not a number");
    }

    #[test]
    fn refs_resolve_in_defs() {
        let defs = json!({"id": {"type": "string"}});
        let defs = defs.as_object().unwrap();
        let schema = json!({"items": {"$ref": "#/$defs/id"}});
        let found = Schema::new(&schema, defs)
            .unwrap()
            .validate(&json!(["a", 1]));
        assert_eq!(found[0].to_string(), "[1]: must be string, not a number");
    }

    #[test]
    fn unsupported_keywords_formats_and_dangling_refs_are_refused_when_read() {
        let defs = Map::new();
        for (schema, expected) in [
            (
                json!({"minProperties": 1}),
                "the keyword minProperties is not supported",
            ),
            (json!({"pattern": "(a"}), "the pattern (a does not compile"),
            (
                json!({"properties": {"a": {"format": "ipv4"}}}),
                "the format ipv4 is not supported",
            ),
            (
                json!({"items": {"$ref": "#/$defs/missing"}}),
                "$ref #/$defs/missing does not resolve",
            ),
        ] {
            let refused = Schema::new(&schema, &defs).err().unwrap();
            assert!(refused.contains(expected), "{refused}");
        }
    }
}

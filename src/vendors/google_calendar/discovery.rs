//! Google's discovery document of the Calendar API (bundled in `contract/`), read as Google's
//! servers read requests: a body is checked against a schema of the document (unknown fields,
//! types, `date` and `date-time` formats, enums, and the fields the method requires), and a
//! query against the method's parameters. Discovery schemas are not JSON Schema (references by
//! schema name, `annotations.required` per method), hence a reader of their own.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::wedsync::{is_iso_date, is_rfc3339_timestamp};

pub struct Discovery {
    document: Value,
}

/// The bundled document; one that does not parse is a bug in this build, so it panics.
pub fn calendar() -> &'static Discovery {
    static DOCUMENT: OnceLock<Discovery> = OnceLock::new();
    DOCUMENT.get_or_init(|| Discovery {
        document: serde_json::from_str(include_str!("contract/calendar-v3.discovery.json"))
            .expect("the bundled discovery document is JSON"),
    })
}

impl Discovery {
    /// The method `resource.method` (`events.insert`).
    pub fn method(&self, resource: &str, method: &str) -> &Value {
        &self.document["resources"][resource]["methods"][method]
    }

    /// The scopes the method accepts.
    pub fn scopes(&self, resource: &str, method: &str) -> Vec<String> {
        self.method(resource, method)["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|scope| scope.as_str().map(str::to_owned))
            .collect()
    }

    /// What is wrong with `body` as the named schema for `resource.method`, as Google words it.
    pub fn check_body(
        &self,
        schema: &str,
        resource: &str,
        method: &str,
        body: &Value,
    ) -> Vec<String> {
        let method_id = self.method(resource, method)["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut problems = Vec::new();
        self.check(
            &Value::String(schema.to_owned()),
            body,
            "resource",
            &method_id,
            &mut problems,
        );
        problems
    }

    /// What is wrong with a query for `resource.method`: unknown parameters, values of the wrong
    /// type or outside the parameter's enum.
    pub fn check_query(
        &self,
        resource: &str,
        method: &str,
        query: &Map<String, Value>,
    ) -> Vec<String> {
        let parameters = &self.method(resource, method)["parameters"];
        let mut problems = Vec::new();
        for (name, value) in query {
            let parameter = &parameters[name];
            if !parameter.is_object() || parameter["location"] != "query" {
                problems.push(format!("Unknown parameter {name:?}"));
                continue;
            }
            let text = value.as_str().unwrap_or_default();
            let fits = match parameter["type"].as_str() {
                Some("integer") => text.parse::<i64>().is_ok(),
                Some("boolean") => matches!(text, "true" | "false"),
                _ => true,
            };
            let allowed = parameter["enum"]
                .as_array()
                .is_none_or(|values| values.iter().any(|allowed| allowed == text));
            if !fits || !allowed {
                problems.push(format!("Invalid value {text:?} for parameter {name:?}"));
            }
        }
        problems
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        method_id: &str,
        problems: &mut Vec<String>,
    ) {
        // A schema named by a string (the top) or by `$ref`.
        let schema = match schema {
            Value::String(name) => &self.document["schemas"][name.as_str()],
            _ => match schema["$ref"].as_str() {
                Some(name) => &self.document["schemas"][name],
                None => schema,
            },
        };
        match schema["type"].as_str() {
            Some("object") => {
                let Some(fields) = value.as_object() else {
                    problems.push(format!("Invalid value at '{at}': expected an object"));
                    return;
                };
                let properties = schema["properties"].as_object();
                for (name, field) in fields {
                    let nested = format!("{at}.{name}");
                    match properties.and_then(|properties| properties.get(name)) {
                        Some(property) => {
                            self.check(property, field, &nested, method_id, problems)
                        }
                        None => match schema.get("additionalProperties") {
                            Some(additional) => {
                                self.check(additional, field, &nested, method_id, problems)
                            }
                            None => problems.push(format!(
                                "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
                            )),
                        },
                    }
                }
                for (name, property) in properties.into_iter().flatten() {
                    let required = property["annotations"]["required"]
                        .as_array()
                        .is_some_and(|methods| methods.iter().any(|m| m == method_id));
                    if required && !fields.contains_key(name) {
                        problems.push(format!("Missing {at}.{name}"));
                    }
                }
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.check(
                            &schema["items"],
                            item,
                            &format!("{at}[{index}]"),
                            method_id,
                            problems,
                        );
                    }
                }
                None => problems.push(format!("Invalid value at '{at}': expected a list")),
            },
            Some("string") => {
                let Some(text) = value.as_str() else {
                    problems.push(format!("Invalid value at '{at}': expected a string"));
                    return;
                };
                let well_formed = match schema["format"].as_str() {
                    Some("date") => is_iso_date(text),
                    Some("date-time") => is_rfc3339_timestamp(text),
                    Some("int64") => text.parse::<i64>().is_ok(),
                    _ => true,
                };
                let allowed = schema["enum"]
                    .as_array()
                    .is_none_or(|values| values.iter().any(|allowed| allowed == text));
                if !well_formed || !allowed {
                    problems.push(format!("Invalid value at '{at}' ({text:?})"));
                }
            }
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                problems.push(format!("Invalid value at '{at}': expected an integer"));
            }
            Some("boolean") if !value.is_boolean() => {
                problems.push(format!("Invalid value at '{at}': expected a boolean"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_are_read_as_google_reads_them() {
        let discovery = calendar();
        let good = json!({
            "id": "herald0123", "summary": "Wedding", "status": "confirmed",
            "start": {"date": "2027-06-12", "timeZone": "Europe/London"},
            "end": {"date": "2027-06-13"},
            "attendees": [{"email": "sam@example.com", "displayName": "Sam"}],
            "extendedProperties": {"private": {"heraldWeddingId": "w-1"}}
        });
        assert_eq!(
            discovery.check_body("Event", "events", "insert", &good),
            Vec::<String>::new()
        );
        let problems = discovery.check_body(
            "Event",
            "events",
            "insert",
            &json!({"summary": "x", "start": {"date": "12/06/2027"}, "colour": "red", "attendees": [{"email": 1}]}),
        );
        assert_eq!(
            problems,
            [
                "Invalid value at 'resource.attendees[0].email': expected a string",
                "Invalid JSON payload received. Unknown name \"colour\" at 'resource': Cannot find field.",
                "Invalid value at 'resource.start.date' (\"12/06/2027\")",
                "Missing resource.end",
            ]
        );
        // A patch requires nothing.
        assert!(discovery
            .check_body("Event", "events", "patch", &json!({"status": "cancelled"}))
            .is_empty());
        let query = json!({"sendUpdates": "everyone", "colour": "x"});
        assert_eq!(
            discovery.check_query("events", "insert", query.as_object().unwrap()),
            [
                "Unknown parameter \"colour\"",
                "Invalid value \"everyone\" for parameter \"sendUpdates\""
            ]
        );
        let query = json!({"maxResults": "five", "privateExtendedProperty": "heraldWeddingId=w-1"});
        assert_eq!(
            discovery.check_query("events", "list", query.as_object().unwrap()),
            ["Invalid value \"five\" for parameter \"maxResults\""]
        );
    }
}

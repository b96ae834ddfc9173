//! Contract checks: a vendor's published API description, read once, and a check of one request
//! against it (operation found by method and path, parameters validated by name, presence and
//! type). A simulator refuses what the contract refuses, so a connector that drifts from the
//! vendor's contract fails the test suite even where the real vendor would be lenient.
//!
//! Today: Swagger 2.0 `formData`/`query`/`header` parameters, as Slack publishes them. The
//! conventions of a JSON body are applied as Slack documents them: a parameter typed `string`
//! that carries JSON (`blocks`, `attachments`) may be sent as the JSON value itself, and the
//! `token` parameter (a header or query parameter in the spec) may travel as
//! `Authorization: Bearer`. Query-string values are text and are checked by what they parse as.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A parameter of one operation.
#[derive(Debug, Clone)]
struct Parameter {
    location: String,
    kind: String,
    required: bool,
}

/// The operations of one API, by (method, path).
pub struct Contract {
    operations: HashMap<(String, String), HashMap<String, Parameter>>,
}

/// Something a request did that the contract does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl Contract {
    /// Reads a Swagger 2.0 document. `base_path` is prefixed to every path (Slack's `/api`).
    pub fn from_swagger(document: &Value) -> Result<Self, String> {
        let base = document["basePath"].as_str().unwrap_or("");
        let paths = document["paths"]
            .as_object()
            .ok_or("the document has no paths")?;
        let mut operations = HashMap::new();
        for (path, methods) in paths {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                let parameters = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let name = p["name"].as_str()?.to_owned();
                        let parameter = Parameter {
                            location: p["in"].as_str().unwrap_or("formData").to_owned(),
                            kind: p["type"].as_str().unwrap_or("string").to_owned(),
                            required: p["required"].as_bool().unwrap_or(false),
                        };
                        Some((name, parameter))
                    })
                    .collect();
                operations.insert((method.to_uppercase(), format!("{base}{path}")), parameters);
            }
        }
        Ok(Self { operations })
    }

    /// Checks a request's parameters (`fields`: a JSON body, or a query string with its values as
    /// text) and its `Authorization` header.
    pub fn check_json(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        fields: &Map<String, Value>,
    ) -> Vec<Violation> {
        let Some(parameters) = self
            .operations
            .get(&(method.to_uppercase(), path.to_owned()))
        else {
            return vec![Violation(format!(
                "{method} {path} is not an operation of the contract"
            ))];
        };
        let mut violations = Vec::new();
        for (name, value) in fields {
            match parameters.get(name) {
                None => violations.push(Violation(format!("unknown parameter `{name}`"))),
                Some(parameter) if parameter.location == "header" => violations.push(Violation(
                    format!("`{name}` belongs in a header, not the body"),
                )),
                Some(parameter) if !type_matches(&parameter.kind, value) => {
                    violations.push(Violation(format!(
                        "`{name}` must be a {}, not {value}",
                        parameter.kind
                    )))
                }
                Some(_) => {}
            }
        }
        for (name, parameter) in parameters.iter().filter(|(_, p)| p.required) {
            let present = match parameter.location.as_str() {
                // Slack accepts the token, wherever the spec puts it, as `Authorization: Bearer`.
                _ if name == "token" => {
                    fields.contains_key(name)
                        || authorization.is_some_and(|value| value.starts_with("Bearer "))
                }
                "header" => true,
                _ => fields.contains_key(name),
            };
            if !present {
                violations.push(Violation(format!("required parameter `{name}` is missing")));
            }
        }
        violations.sort_by(|a, b| a.0.cmp(&b.0));
        violations
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    // Query strings carry every value as text; what matters is that it parses as the type.
    if let Value::String(text) = value {
        match kind {
            "boolean" => return text == "true" || text == "false" || text == "1" || text == "0",
            "integer" => return text.parse::<i64>().is_ok(),
            "number" => return text.parse::<f64>().is_ok(),
            _ => {}
        }
    }
    match kind {
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        // A string parameter that carries JSON may be the JSON value itself in a JSON body.
        "string" => value.is_string() || value.is_array() || value.is_object(),
        _ => true,
    }
}

/// The Slack Web API contract (`contracts/slack_web_openapi_v2.json`), parsed once.
pub fn slack_contract() -> &'static Contract {
    static SLACK: OnceLock<Contract> = OnceLock::new();
    SLACK.get_or_init(|| {
        let document: Value =
            serde_json::from_str(include_str!("contracts/slack_web_openapi_v2.json"))
                .expect("the bundled Slack spec is JSON");
        Contract::from_swagger(&document).expect("the bundled Slack spec is Swagger 2.0")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(body: Value, authorization: Option<&str>) -> Vec<Violation> {
        slack_contract().check_json(
            "POST",
            "/api/chat.postMessage",
            authorization,
            body.as_object().unwrap(),
        )
    }

    #[test]
    fn a_well_formed_post_message_passes() {
        let body = json!({"channel": "#weddings", "text": "hi", "blocks": [{"type": "section"}], "unfurl_links": false});
        assert_eq!(check(body, Some("Bearer xoxb-1")), vec![]);
    }

    #[test]
    fn drift_from_the_contract_is_named() {
        assert_eq!(
            check(json!({"text": "hi"}), Some("Bearer xoxb-1")),
            vec![Violation("required parameter `channel` is missing".into())]
        );
        assert_eq!(
            check(
                json!({"channel": "C1", "colour": "red"}),
                Some("Bearer xoxb-1")
            ),
            vec![Violation("unknown parameter `colour`".into())]
        );
        assert_eq!(
            check(
                json!({"channel": "C1", "unfurl_links": "no"}),
                Some("Bearer xoxb-1")
            ),
            vec![Violation(
                "`unfurl_links` must be a boolean, not \"no\"".into()
            )]
        );
        assert_eq!(
            check(json!({"channel": "C1"}), None),
            vec![Violation("required parameter `token` is missing".into())]
        );
        let unknown_method =
            slack_contract().check_json("POST", "/api/chat.sendCarrierPigeon", None, &Map::new());
        assert_eq!(unknown_method.len(), 1);
    }

    #[test]
    fn the_methods_herald_will_need_are_in_the_contract() {
        for (method, path) in [
            ("POST", "/api/chat.postMessage"),
            ("POST", "/api/chat.scheduleMessage"),
            ("GET", "/api/auth.test"),
            ("GET", "/api/conversations.replies"),
        ] {
            assert!(
                slack_contract()
                    .operations
                    .contains_key(&(method.into(), path.into())),
                "{method} {path}"
            );
        }
    }
}

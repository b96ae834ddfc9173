//! Contract checks: a vendor's published API description, read once, and a check of one request
//! against it (operation found by method and path, parameters validated by name, presence and
//! type). A simulator refuses what the contract refuses, so a connector that drifts from the
//! vendor's contract fails the test suite even where the real vendor would be lenient.
//!
//! Two kinds of contract. A vendor's own published description (a Swagger 2.0 file), and,
//! where a vendor publishes none we may bundle, a contract we write from its
//! documentation: one JSON Schema per operation, with the documentation address beside it
//! ([`WrittenContract`], files in `contracts/`).
//!
//! Swagger: `formData`/`query`/`header` parameters, as vendors publish them in Swagger 2.0. The
//! conventions of a JSON body are applied as the bundled spec documents them: a parameter typed `string`
//! that carries JSON (`blocks`, `attachments`) may be sent as the JSON value itself, and the
//! `token` parameter (a header or query parameter in the spec) may travel as
//! `Authorization: Bearer`. Query-string values are text and are checked by what they parse as.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::schema::{Schema, SchemaError};

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
    /// Whether the contract has this operation (`GET`, `/api/auth.test`).
    pub fn has_operation(&self, method: &str, path: &str) -> bool {
        self.operations
            .contains_key(&(method.to_owned(), path.to_owned()))
    }

    /// Reads a Swagger 2.0 document. `base_path` is prefixed to every path (`/api`, say).
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
                // The token is accepted wherever the spec puts it, and as `Authorization: Bearer`.
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

/// A contract written from a vendor's documentation: a JSON document whose `operations` map
/// `"METHOD /path/{template}"` to `{"documentation": <address>, "body" | "query" | "form": <JSON
/// Schema>}`, with shared schemas in `$defs`.
/// Every schema is checked when the contract is read (see [`Schema::new`]).
pub struct WrittenContract {
    document: Value,
    /// (method, path segments, key into `operations`).
    operations: Vec<(String, Vec<String>, String)>,
}

/// Why a request breaks a written contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// No operation of the contract has this method and path.
    UnknownOperation(String),
    /// The request's body (or query, or form) breaks the operation's schema.
    Invalid(Vec<SchemaError>),
}

impl WrittenContract {
    pub fn from_document(document: Value) -> Result<Self, String> {
        let empty = Map::new();
        let defs = document["$defs"].as_object().unwrap_or(&empty);
        let mut operations = Vec::new();
        for (key, operation) in document["operations"]
            .as_object()
            .ok_or("the contract has no operations")?
        {
            let (method, path) = key
                .split_once(' ')
                .ok_or_else(|| format!("{key}: an operation is named \"METHOD /path\""))?;
            if operation["documentation"].as_str().is_none() {
                return Err(format!("{key}: the documentation address is missing"));
            }
            for part in ["body", "query", "form"] {
                if let Some(schema) = operation.get(part) {
                    Schema::new(schema, defs).map_err(|err| format!("{key} {part}: {err}"))?;
                }
            }
            let segments = path.split('/').map(str::to_owned).collect();
            operations.push((method.to_uppercase(), segments, key.clone()));
        }
        Ok(Self {
            document,
            operations,
        })
    }

    /// Checks one request: `instance` is its JSON body, or its query string or form as an
    /// object (see [`fields_of`]).
    pub fn check(&self, method: &str, path: &str, instance: &Value) -> Result<(), Breach> {
        let segments: Vec<&str> = path.split('/').collect();
        let Some((_, _, key)) = self.operations.iter().find(|(m, template, _)| {
            m.eq_ignore_ascii_case(method)
                && template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        }) else {
            return Err(Breach::UnknownOperation(format!(
                "{method} {path} is not an operation of the contract"
            )));
        };
        let operation = &self.document["operations"][key];
        let empty = Map::new();
        let defs = self.document["$defs"].as_object().unwrap_or(&empty);
        let Some(schema) = ["body", "query", "form"]
            .iter()
            .find_map(|part| operation.get(*part))
        else {
            return Ok(());
        };
        let errors = Schema::new(schema, defs)
            .map(|schema| schema.validate(instance))
            .unwrap_or_default();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Breach::Invalid(errors))
        }
    }
}

/// A query string or form body as a JSON object of strings: both carry every value as text, so
/// their schemas describe text (`"enum": ["true", "false"]` for a flag).
pub fn fields_of(encoded: &[u8]) -> Value {
    let fields = url::form_urlencoded::parse(encoded)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    Value::Object(fields)
}

/// A contract we wrote (`contract.json` in a vendor's folder), parsed; a bundled contract that
/// does not load is a bug in this build, so it panics.
pub fn load_written_contract(text: &str) -> WrittenContract {
    let document: Value = serde_json::from_str(text).expect("a bundled contract is JSON");
    WrittenContract::from_document(document)
        .unwrap_or_else(|err| panic!("a bundled contract is valid: {err}"))
}

/// A vendor's published Swagger 2.0 spec, parsed; panics like [`load_written_contract`].
pub fn load_swagger_contract(text: &str) -> Contract {
    let document: Value = serde_json::from_str(text).expect("a bundled spec is JSON");
    Contract::from_swagger(&document).expect("a bundled spec is Swagger 2.0")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_written_contract_without_documentation_addresses_is_refused() {
        let refused = WrittenContract::from_document(
            json!({"operations": {"GET /x": {"query": {"type": "object"}}}}),
        )
        .err()
        .unwrap();
        assert!(refused.contains("documentation"), "{refused}");
    }
}

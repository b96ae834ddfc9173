//! Conditions over a notification, written in CEL (the Common Expression Language,
//! <https://cel.dev>): a route's `when`, and whatever else decides on a notification's content.
//!
//! In scope: `notification` (the WedSync object, camelCase), and for brevity `wedding` (its
//! `weddingContext`, or an empty map) and `metadata`. A condition is compiled once, when it is
//! submitted, and held to [`MAX_SOURCE_CHARS`]; the parser bounds nesting (96 levels). What a
//! condition names that is not a field of the WedSync vocabulary is reported by
//! [`Condition::unknown_fields`], so a typo does not silently leave a route dead.
//!
//! This module owns compiling and evaluating; it does not know what a route is.

use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr};
use cel::IdedExpr;

use crate::wedsync::{WeddingNotification, NOTIFICATION_FIELDS, WEDDING_CONTEXT_FIELDS};

/// The longest condition accepted.
pub const MAX_SOURCE_CHARS: usize = 2048;

/// How deep a condition's expression may nest; evaluation recurses once per level.
pub const MAX_DEPTH: usize = 64;

/// The variables a condition may use.
const VARIABLES: &[&str] = &["notification", "wedding", "metadata"];

/// A CEL condition, compiled once.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<cel::Program>,
}

impl Condition {
    /// Compiles a condition; the error says why it is not one.
    pub fn compile(source: &str) -> Result<Self, String> {
        let length = source.chars().count();
        if length > MAX_SOURCE_CHARS {
            return Err(format!(
                "condition is {length} characters; at most {MAX_SOURCE_CHARS}"
            ));
        }
        // The CEL parser recurses per nested operator before its own depth check applies;
        // a thread with a known stack makes a hostile expression an error, not an abort.
        let owned = source.to_owned();
        let program = std::thread::Builder::new()
            .name("herald-cel-compile".into())
            .stack_size(64 * 1024 * 1024)
            .spawn(move || {
                let program = cel_env().compile(&owned).map_err(|err| err.to_string())?;
                // Measured (and, when refused, dropped) here, on the large stack.
                let depth = depth(program.expression());
                if depth > MAX_DEPTH {
                    return Err(format!("it nests {depth} deep; at most {MAX_DEPTH}"));
                }
                Ok(program)
            })
            .map_err(|err| format!("cannot compile now: {err}"))?
            .join()
            .map_err(|_| "not a valid CEL expression: the parser failed".to_owned())?
            .map_err(|err| format!("not a valid CEL expression: {err}"))?;
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition; anything but a boolean result is an error.
    pub fn evaluate(&self, notification: &WeddingNotification) -> Result<bool, String> {
        let mut context = cel::Context::with_env(cel_env().clone());
        context.add_variable_from_value("notification", cel_value(notification)?);
        let empty = serde_json::Map::new();
        match &notification.wedding_context {
            Some(wedding) => context.add_variable_from_value("wedding", cel_value(wedding)?),
            None => context.add_variable_from_value("wedding", cel_value(&empty)?),
        }
        context.add_variable_from_value("metadata", cel_value(&notification.metadata)?);
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(matched)) => Ok(matched),
            Ok(other) => Err(format!("evaluated to {other:?}, not true or false")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// What the condition names that no notification can have: variables other than
    /// `notification`, `wedding` and `metadata`, and fields of the first two that are not in
    /// the WedSync vocabulary (`metadata.*` is free-form). Each as written, e.g.
    /// `wedding.venu`. A condition naming one of these never matches.
    pub fn unknown_fields(&self) -> Vec<String> {
        let mut unknown = Vec::new();
        let mut bound = Vec::new();
        collect_unknown(self.program.expression(), &mut bound, &mut unknown);
        unknown.sort();
        unknown.dedup();
        unknown
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// The expressions directly under `expression`.
fn children(expression: &IdedExpr) -> Vec<&IdedExpr> {
    match &expression.expr {
        Expr::Select(select) => vec![&select.operand],
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => entry_children(&map.entries),
        Expr::Struct(structure) => entry_children(&structure.entries),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entry_children(entries: &[IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
            EntryExpr::StructField(field) => vec![&field.value],
        })
        .collect()
}

/// How many levels the expression tree has.
fn depth(expression: &IdedExpr) -> usize {
    1 + children(expression)
        .into_iter()
        .map(depth)
        .max()
        .unwrap_or(0)
}

/// Walks the expression; `bound` holds the names comprehension macros (`all`, `map`...)
/// introduce, which are not variables of the notification.
fn collect_unknown(expression: &IdedExpr, bound: &mut Vec<String>, unknown: &mut Vec<String>) {
    match &expression.expr {
        Expr::Ident(name) => {
            if !VARIABLES.contains(&name.as_str()) && !bound.contains(name) {
                unknown.push(name.clone());
            }
        }
        Expr::Select(select) => {
            if let Expr::Ident(root) = &select.operand.expr {
                let known = match root.as_str() {
                    "notification" if !bound.contains(root) => {
                        Some(NOTIFICATION_FIELDS.contains(&select.field.as_str()))
                    }
                    "wedding" if !bound.contains(root) => {
                        Some(WEDDING_CONTEXT_FIELDS.contains(&select.field.as_str()))
                    }
                    _ => None,
                };
                if known == Some(false) {
                    unknown.push(format!("{root}.{}", select.field));
                }
            }
            if let Expr::Select(inner) = &select.operand.expr {
                let nested_in_context = matches!(&inner.operand.expr, Expr::Ident(root) if root == "notification" && !bound.contains(root))
                    && inner.field == "weddingContext";
                if nested_in_context && !WEDDING_CONTEXT_FIELDS.contains(&select.field.as_str()) {
                    unknown.push(format!("notification.weddingContext.{}", select.field));
                }
            }
            collect_unknown(&select.operand, bound, unknown);
        }
        Expr::Comprehension(comprehension) => {
            collect_unknown(&comprehension.iter_range, bound, unknown);
            collect_unknown(&comprehension.accu_init, bound, unknown);
            let introduced = [
                Some(comprehension.iter_var.clone()),
                comprehension.iter_var2.clone(),
                Some(comprehension.accu_var.clone()),
            ];
            let before = bound.len();
            bound.extend(introduced.into_iter().flatten());
            collect_unknown(&comprehension.loop_cond, bound, unknown);
            collect_unknown(&comprehension.loop_step, bound, unknown);
            collect_unknown(&comprehension.result, bound, unknown);
            bound.truncate(before);
        }
        _ => {
            for child in children(expression) {
                collect_unknown(child, bound, unknown);
            }
        }
    }
}

fn cel_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<cel::Value, String> {
    cel::to_value(value).map_err(|err| err.to_string())
}

fn cel_env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wedsync::Priority;

    fn notification() -> WeddingNotification {
        serde_json::from_value(serde_json::json!({
            "notificationId": "n", "type": "timeline_change", "priority": "high",
            "title": "t", "message": "m",
            "weddingContext": {"weddingId": "w", "weddingDate": "2027-06-12", "venue": "Kew Gardens"},
            "metadata": {"affectsDeal": true}
        }))
        .unwrap()
    }

    #[test]
    fn conditions_see_the_notification_wedding_and_metadata() {
        let n = notification();
        let matches = |source: &str| Condition::compile(source).unwrap().evaluate(&n);
        assert_eq!(
            matches(r#"notification.type == "timeline_change" && wedding.venue == "Kew Gardens""#),
            Ok(true)
        );
        assert_eq!(
            matches(r#"metadata.affectsDeal && notification.priority in ["high", "emergency"]"#),
            Ok(true)
        );
        assert_eq!(n.priority, Priority::High);
        assert_eq!(matches(r#"wedding.venue.startsWith("Ritz")"#), Ok(false));
        assert!(matches("notification.title").is_err());
        assert!(matches("wedding.guestCount > 100").is_err());
        assert!(Condition::compile("notification.type ==").is_err());
    }

    #[test]
    fn hostile_nesting_is_an_error_not_an_abort() {
        for hostile in [
            format!("{}wedding.guestCount == 1", "-".repeat(2000)),
            format!("{}true", "!".repeat(2000)),
            format!("{}1 == 1", "1 + ".repeat(500)),
            format!("{}true{}", "(".repeat(1000), ")".repeat(1000)),
            format!("{}true{}", "[".repeat(1000), "]".repeat(1000)),
        ] {
            // Compiled, it must evaluate on a worker-sized stack (2 MiB, tokio's default);
            // otherwise the refusal must say why.
            match Condition::compile(&hostile) {
                Ok(condition) => {
                    let n = notification();
                    std::thread::Builder::new()
                        .stack_size(2 * 1024 * 1024)
                        .spawn(move || drop(condition.evaluate(&n)))
                        .unwrap()
                        .join()
                        .unwrap();
                }
                Err(err) => assert!(err.starts_with("not a valid CEL expression"), "{err}"),
            }
        }
        let err = Condition::compile(&format!("{}1 == 1", "1 + ".repeat(100))).unwrap_err();
        assert!(err.contains("at most 64"), "{err}");
        let err = Condition::compile(&"a".repeat(MAX_SOURCE_CHARS + 1)).unwrap_err();
        assert!(err.contains("at most 2048"), "{err}");
    }

    #[test]
    fn fields_outside_the_vocabulary_are_named() {
        let unknown = |source: &str| Condition::compile(source).unwrap().unknown_fields();
        assert_eq!(
            unknown(r#"wedding.venu == "Kew" && notification.weddingContext.guests > 1"#),
            vec!["notification.weddingContext.guests", "wedding.venu"]
        );
        assert_eq!(
            unknown(r#"notification.kind == "x" || notifcation.type == "y""#),
            vec!["notifcation", "notification.kind"]
        );
        assert!(unknown(
            r#"has(metadata.anything.at.all) && notification.contacts.exists(c, c.role == "planner") && wedding.venue == "x""#
        )
        .is_empty());
    }
}

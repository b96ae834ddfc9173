//! User-supplied message templates (minijinja), checked when they are submitted and rendered
//! within bounds, so no template can take the daemon down.
//!
//! Templates come from API callers (a routing's `transformationMaps`) and from configuration
//! (a chat vendor's `text_template`, reminders). minijinja guards statement nesting but not chains of
//! operators or filters, whose depth overflows a worker's stack, and a loop can run and allocate
//! without end. So a template is held to these limits:
//!
//! - when compiled: at most [`MAX_SOURCE_CHARS`] characters, at most [`MAX_OPERATORS_PER_TAG`]
//!   operators, filters and brackets in one `{{ }}` or `{% %}` tag, blocks nested at most
//!   [`MAX_BLOCK_DEPTH`] deep, and it must parse;
//! - what can grow without data to grow from is not there: the statements are `if` and `for`
//!   only (no `set`, macros or includes), the `*` operator (string and list repetition) is
//!   refused, and the globals (`range`, `namespace`...) and the filters that multiply their
//!   input (`replace`, `indent`, `batch`, `slice`, `format`...) are removed, so a loop can only
//!   walk the notification's own data;
//! - when rendered: at most [`FUEL`] instructions (minijinja's fuel), at most
//!   [`MAX_OUTPUT_BYTES`] of output, within [`RENDER_DEADLINE`], on the blocking pool (never an
//!   async worker), with at most [`MAX_CONCURRENT_RENDERS`] at once.
//!
//! This module owns the limits and the rendering; it does not know where templates come from.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

/// The longest template source accepted.
pub const MAX_SOURCE_CHARS: usize = 8 * 1024;
/// Operators, filters and opening brackets allowed in one tag (each nests the expression).
pub const MAX_OPERATORS_PER_TAG: usize = 64;
/// How deep `{% if %}`, `{% for %}` and the other blocks may nest.
pub const MAX_BLOCK_DEPTH: usize = 16;
/// Instructions one render may run.
pub const FUEL: u64 = 50_000;
/// Output one render may produce.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// How long one render may take.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(2);
/// Renders running at once; a render that cannot start within its deadline is refused as busy.
pub const MAX_CONCURRENT_RENDERS: usize = 4;

/// Why a template was refused or did not render. Every reason says which limit, and how far.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is {0} characters; at most {MAX_SOURCE_CHARS}")]
    TooLong(usize),
    #[error("a tag holds {0} operators, filters or brackets; at most {MAX_OPERATORS_PER_TAG}")]
    TooComplex(usize),
    #[error("blocks nest {0} deep; at most {MAX_BLOCK_DEPTH}")]
    TooDeep(usize),
    #[error("{0} is not available in Herald templates (statements: if, for; no `*`)")]
    NotAllowed(String),
    #[error("template does not compile: {0}")]
    Syntax(String),
    #[error("template does not render: {0}")]
    Render(String),
    #[error("template ran out of fuel (more than {FUEL} instructions)")]
    OutOfFuel,
    #[error("template output exceeds {MAX_OUTPUT_BYTES} bytes")]
    OutputTooLarge,
    #[error("template did not render within {RENDER_DEADLINE:?}")]
    Timeout,
    #[error("every template renderer is busy; try again")]
    Busy,
}

impl TemplateError {
    /// Whether rendering the same template on the same data could succeed later (only when the
    /// renderers were busy); everything else is the template's own doing.
    pub fn is_transient(&self) -> bool {
        matches!(self, TemplateError::Busy)
    }
}

/// A template that passed the submission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: Arc<str>,
}

impl Template {
    /// Checks a template's size and shape and compiles it.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let length = source.chars().count();
        if length > MAX_SOURCE_CHARS {
            return Err(TemplateError::TooLong(length));
        }
        check_shape(source)?;
        environment()
            .template_from_str(source)
            .map_err(|err| TemplateError::Syntax(describe(&err)))?;
        Ok(Self {
            source: source.into(),
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template with `context`'s fields in scope, within the render limits.
    pub async fn render(&self, context: &impl Serialize) -> Result<String, TemplateError> {
        let context = minijinja::Value::from_serialize(context);
        let source = self.source.clone();
        let permits = renderers();
        let permit = tokio::time::timeout(RENDER_DEADLINE, permits.clone().acquire_owned())
            .await
            .map_err(|_| TemplateError::Busy)?
            .map_err(|_| TemplateError::Busy)?;
        // The permit travels with the work: a render that outlives its deadline still holds
        // it until its fuel runs out, so runaway templates cannot pile up threads.
        let rendering = tokio::task::spawn_blocking(move || {
            let rendered = render_bounded(&source, context);
            drop(permit);
            rendered
        });
        match tokio::time::timeout(RENDER_DEADLINE, rendering).await {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(panicked)) => Err(TemplateError::Render(format!(
                "renderer failed: {panicked}"
            ))),
            Err(_) => Err(TemplateError::Timeout),
        }
    }
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

fn renderers() -> &'static Arc<Semaphore> {
    static RENDERERS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    RENDERERS.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_RENDERS)))
}

/// Builtin globals, all of which make values out of nothing (`range(100000)`) or hold state.
const REMOVED_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug"];
/// Builtin filters whose output can be many times their input.
const REMOVED_FILTERS: &[&str] = &[
    "replace", "indent", "batch", "slice", "format", "pprint", "chain", "zip", "groupby", "sum",
    "split", "lines",
];
/// The statements a template may use; every other one (`set`, `macro`, `include`...) is refused.
const ALLOWED_STATEMENTS: &[&str] = &[
    "if", "elif", "else", "endif", "for", "endfor", "raw", "endraw",
];

/// The environment every template is compiled and rendered in: minijinja's builtins without
/// what can grow on its own, with fuel.
fn environment() -> minijinja::Environment<'static> {
    let mut environment = minijinja::Environment::new();
    for global in REMOVED_GLOBALS {
        environment.remove_global(global);
    }
    for filter in REMOVED_FILTERS {
        environment.remove_filter(filter);
    }
    environment.set_fuel(Some(FUEL));
    environment
}

fn render_bounded(source: &str, context: minijinja::Value) -> Result<String, TemplateError> {
    let environment = environment();
    let template = environment
        .template_from_str(source)
        .map_err(|err| TemplateError::Syntax(describe(&err)))?;
    let mut output = BoundedOutput::default();
    let rendered = template.render_captured_to(context, &mut output).map(drop);
    match rendered {
        Ok(()) => String::from_utf8(output.bytes)
            .map_err(|_| TemplateError::Render("output is not UTF-8".into())),
        Err(_) if output.overflowed => Err(TemplateError::OutputTooLarge),
        Err(err) if err.kind() == minijinja::ErrorKind::OutOfFuel => Err(TemplateError::OutOfFuel),
        Err(err) => Err(TemplateError::Render(describe(&err))),
    }
}

/// minijinja's message without the template name it invents for `template_from_str`.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = err.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// Output that refuses to grow past [`MAX_OUTPUT_BYTES`], stopping the render when it would.
#[derive(Default)]
struct BoundedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("template output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// === shape checks ===

/// Counts, tag by tag, what makes minijinja's parser and compiler recurse, before they see it.
fn check_shape(source: &str) -> Result<(), TemplateError> {
    let mut depth = 0usize;
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let close = match after.as_bytes().first() {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                rest = after;
                continue;
            }
        };
        let body_and_rest = &after[1..];
        let (body, end) = tag_body(body_and_rest, close);
        if close != "#}" {
            let code = code_of(body);
            if code.contains('*') {
                return Err(TemplateError::NotAllowed("the `*` operator".into()));
            }
            let operators = count_operators(&code);
            if operators > MAX_OPERATORS_PER_TAG {
                return Err(TemplateError::TooComplex(operators));
            }
        }
        if close == "%}" {
            let keyword = body
                .trim_start_matches(['-', '+', ' ', '\t', '\n', '\r'])
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            if !ALLOWED_STATEMENTS.contains(&keyword) {
                return Err(TemplateError::NotAllowed(format!(
                    "the `{keyword}` statement"
                )));
            }
            if matches!(keyword, "if" | "for") {
                depth += 1;
                if depth > MAX_BLOCK_DEPTH {
                    return Err(TemplateError::TooDeep(depth));
                }
            } else if keyword.starts_with("end") {
                depth = depth.saturating_sub(1);
            }
        }
        rest = end;
    }
    Ok(())
}

/// Splits `text` at the tag's closing delimiter, skipping string literals; an unclosed tag is
/// all of the rest (the compiler reports it).
fn tag_body<'a>(text: &'a str, close: &str) -> (&'a str, &'a str) {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut quote: Option<u8> = None;
    while index < bytes.len() {
        let byte = bytes[index];
        match quote {
            Some(_) if byte == b'\\' => index += 1,
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None if close != "#}" && (byte == b'"' || byte == b'\'') => quote = Some(byte),
            // Compared as bytes: `index` may sit inside a multi-byte character, and the
            // delimiter, being ASCII, only matches on a character boundary.
            None if bytes[index..].starts_with(close.as_bytes()) => {
                return (&text[..index], &text[index + close.len()..]);
            }
            None => {}
        }
        index += 1;
    }
    (text, "")
}

/// A tag's body with its string literals blanked out, so what the checks read is code.
fn code_of(body: &str) -> String {
    let mut code = String::with_capacity(body.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in body.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => {
                quote = None;
                code.push(' ');
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => code.push(c),
        }
    }
    code
}

/// Operators, filters, opening brackets and operator words in a tag's code: each nests the
/// expression one level deeper in minijinja's parser.
fn count_operators(code: &str) -> usize {
    let symbols = code
        .chars()
        .filter(|c| "+-*/%~|<>=!([{".contains(*c))
        .count();
    let words = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| matches!(*word, "not" | "and" | "or" | "in" | "is" | "if" | "else"))
        .count();
    symbols + words
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> serde_json::Value {
        json!({"title": "Ceremony moved", "weddingContext": {"venue": "Kew Gardens"}})
    }

    #[tokio::test]
    async fn renders_the_notification_fields() {
        let template = Template::compile("[{{ weddingContext.venue|upper }}] {{ title }}").unwrap();
        assert_eq!(
            template.render(&context()).await.unwrap(),
            "[KEW GARDENS] Ceremony moved"
        );
    }

    #[test]
    fn operator_chains_are_refused_before_the_parser_sees_them() {
        for hostile in [
            format!("{{{{ {}1 }}}}", "-".repeat(10_000)),
            format!("{{{{ {}true }}}}", "not ".repeat(10_000)),
            format!("{{{{ title{} }}}}", "|upper".repeat(2_000)),
            format!("{{{{ {}1{} }}}}", "(".repeat(5_000), ")".repeat(5_000)),
        ] {
            let err = Template::compile(&hostile[..hostile.len().min(MAX_SOURCE_CHARS)]);
            assert!(matches!(err, Err(TemplateError::TooComplex(_))), "{err:?}");
        }
        assert_eq!(
            Template::compile(&"x".repeat(MAX_SOURCE_CHARS + 1)).unwrap_err(),
            TemplateError::TooLong(MAX_SOURCE_CHARS + 1)
        );
    }

    #[test]
    fn operators_inside_strings_and_comments_do_not_count() {
        let dashes = "-".repeat(200);
        Template::compile(&format!("{{{{ \"{dashes}\" }}}}{{# {dashes} #}}{dashes}")).unwrap();
    }

    #[test]
    fn text_beyond_ascii_in_and_after_tags_is_read_without_panicking() {
        // Found by `cargo fuzz run template`: an unclosed tag followed by a multi-byte character.
        assert!(Template::compile("{{\n\u{71c7}\u{87}").is_err());
        Template::compile("{{ 'é' }} {% if title == \"ü\\\"\" %}ß{% endif %} 🎉").unwrap();
    }

    #[test]
    fn block_nesting_is_bounded() {
        let nested =
            |n: usize| format!("{}x{}", "{% if true %}".repeat(n), "{% endif %}".repeat(n));
        Template::compile(&nested(MAX_BLOCK_DEPTH)).unwrap();
        assert_eq!(
            Template::compile(&nested(MAX_BLOCK_DEPTH + 1)).unwrap_err(),
            TemplateError::TooDeep(MAX_BLOCK_DEPTH + 1)
        );
        // Siblings are not nesting.
        Template::compile(&"{% if true %}x{% endif %}".repeat(100)).unwrap();
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        let err = Template::compile("{{ title").unwrap_err();
        assert!(
            matches!(&err, TemplateError::Syntax(reason) if reason.contains("syntax error")),
            "{err}"
        );
    }

    #[test]
    fn what_grows_without_data_is_not_there() {
        for (hostile, refused) in [
            ("{{ [1] * 100000000 }}", "the `*` operator"),
            ("{{ 'x' ** 3 }}", "the `*` operator"),
            ("{% set a = title %}{{ a }}", "the `set` statement"),
            ("{% macro m() %}x{% endmacro %}", "the `macro` statement"),
            ("{% include 'x' %}", "the `include` statement"),
        ] {
            assert_eq!(
                Template::compile(hostile).unwrap_err(),
                TemplateError::NotAllowed(refused.into()),
                "{hostile}"
            );
        }
        Template::compile("{{ '*' }} {{ title }} * {# * #}").unwrap();
    }

    #[tokio::test]
    async fn globals_and_multiplying_filters_are_gone() {
        for hostile in [
            "{% for a in range(100000) %}x{% endfor %}",
            "{{ title | replace('e', title) }}",
            "{{ title | indent(100000000) }}",
            "{{ namespace() }}",
        ] {
            let rendered = match Template::compile(hostile) {
                Ok(template) => template.render(&context()).await,
                Err(err) => Err(err),
            };
            assert!(
                matches!(
                    rendered,
                    Err(TemplateError::Syntax(_) | TemplateError::Render(_))
                ),
                "{hostile}: {rendered:?}"
            );
        }
    }

    fn many_items() -> serde_json::Value {
        json!({"title": "Ceremony moved", "items": vec![1; 1000]})
    }

    #[tokio::test]
    async fn loops_over_data_run_out_of_fuel() {
        let template = Template::compile(
            "{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            template.render(&many_items()).await.unwrap_err(),
            TemplateError::OutOfFuel
        );
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let template = Template::compile(
            "{% for a in items %}{% for b in items %}{{ title }}{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            template.render(&many_items()).await.unwrap_err(),
            TemplateError::OutputTooLarge
        );
    }

    #[tokio::test]
    async fn render_errors_name_the_problem() {
        let template = Template::compile("{{ title.nosuchmethod() }}").unwrap();
        assert!(matches!(
            template.render(&context()).await.unwrap_err(),
            TemplateError::Render(_)
        ));
    }
}

//! Templates: any text compiled, and when it compiles, rendered within the bounds.
#![no_main]

use std::sync::OnceLock;

use herald::template::Template;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a runtime"))
}

fuzz_target!(|source: &str| {
    if let Ok(template) = Template::compile(source) {
        let context = serde_json::json!({
            "title": "Ceremony moved", "message": "Now at 15:30",
            "weddingContext": {"venue": "Kew Gardens"},
            "contacts": [{"name": "Sam"}, {"name": "Alex"}]
        });
        let _ = runtime().block_on(template.render(&context));
    }
});

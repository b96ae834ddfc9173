//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the types they take and answer: served at `GET /openapi.json`, printed by `herald openapi`,
//! and the source of the TypeScript client in `clients/typescript/`.
//!
//! This module owns what every operation shares: the document's description, the API-key
//! security scheme (each operation names the role it needs as the scheme's scope, as OpenAPI 3.1
//! allows for role names), and the error answers every operation can give. The operations
//! themselves are registered with their routes in [`super::routes`], so a route cannot be served
//! without being in the document.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;

/// The name of the API-key security scheme (the operations name it as `"apiKey"`).
const API_KEY_SCHEME: &str = "apiKey";

/// The status codes any operation may answer with the error shape, beyond those it names.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "The request is malformed (JSON, headers, query)."),
    ("401", "No API key, or one Herald does not know."),
    (
        "403",
        "The key's role does not allow this call (`requiredRole` names the one it needs).",
    ),
    ("404", "Nothing of the key's organization has this id."),
    ("408", "The request body did not arrive in time."),
    ("413", "The request body is too large."),
    ("415", "The body is not `application/json`."),
    ("422", "A field is invalid (`field` names it)."),
    ("500", "Herald failed; the message says no more."),
    (
        "503",
        "Herald is shutting down or the integration did not answer.",
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Herald delivers WedSync notifications into the systems wedding suppliers use. \
            Every `/v1` call takes an organization's API key as a bearer token and sees only that \
            organization's data; each operation's security scope is the role it needs (`viewer`, \
            `sender` or `admin`). Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
)]
pub struct ApiDoc;

/// Adds the security scheme.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An organization's API key (`herald keys create`)."))
                    .build(),
            ),
        );
    }
}

/// Every operation of `document` answers the common errors it does not describe itself.
pub fn add_common_errors(document: &mut utoipa::openapi::OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            for (status, meaning) in COMMON_ERRORS {
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| RefOr::T(error_response(meaning)));
            }
        }
    }
}

/// An answer in the error shape, meaning `description`.
pub fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(ErrorBody::name()))))
                .build(),
        )
        .build()
}

/// The schema of a change (`PATCH`, a JSON merge patch) to a definition whose creation takes
/// `created`: every field optional, without the fields only a creation takes (`created_only`),
/// and `version`, described as `version`.
pub fn change_schema(
    created: RefOr<utoipa::openapi::schema::Schema>,
    version: &str,
    created_only: &[&str],
) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{Schema, Type};
    let RefOr::T(Schema::Object(mut object)) = created else {
        return created;
    };
    object.required.clear();
    for field in created_only {
        object.properties.shift_remove(*field);
    }
    object.properties.insert(
        "version".into(),
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(version))
            .into(),
    );
    RefOr::T(Schema::Object(object))
}

/// The operations of a path item, whichever methods it has.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
    ]
    .into_iter()
    .flatten()
}

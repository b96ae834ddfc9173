//! A monday.com account for what the monday.com connector calls, behaving as monday documents
//! (developer.monday.com/api-reference):
//!
//! - every document parsed and validated against monday's published schema for API version
//!   2026-10 (`contract/schema.2026-10.graphql`) by the GraphQL specification's rules, and its
//!   variables coerced to the types the operation declares; a breach is answered with HTTP 200
//!   and an `errors` array, as monday answers application errors;
//! - `Authorization: <token>` (no scheme); a wrong token is a 401. `API-Version` must be
//!   `2026-10`, the only version whose schema the simulator holds;
//! - boards with typed columns (text, date, status with its labels, email, long text) and
//!   groups; items found by a column's values (`items_page_by_column_values`), created
//!   (`create_item`) and changed (`change_multiple_column_values`) with column values checked
//!   per type (`ColumnValueException`, `InvalidColumnIdException`, `InvalidBoardIdException`,
//!   `ItemNameTooLongException`); updates on items; notifications to the account's users; `me`;
//! - the complexity budget: 10,000,000 points a minute (a personal token's), the minute starting
//!   at the first call; a document costing more than is left is refused with HTTP 429,
//!   `Retry-After` and `COMPLEXITY_BUDGET_EXHAUSTED` with `retry_in_seconds`; `complexity`
//!   answers `before`, `after`, `query` and `reset_in_x_seconds`. monday does not publish its
//!   cost formula: the simulator's own is 10,000 points a mutation and 1,000 plus 100 an item
//!   asked for a query.
//!
//! Not from monday's documentation, and the simulator's choice: the body of a 401, the code of a
//! document that fails validation (`GRAPHQL_VALIDATION_FAILED`), and `ResourceNotFoundException`
//! for an item or user that does not exist.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use apollo_compiler::executable::{Field, Selection, SelectionSet};
use apollo_compiler::response::JsonValue;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ast, ExecutableDocument, Schema};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{json, Map, Value};

use super::connector::API_VERSION;
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// A personal token's complexity budget a minute (paid plans).
const BUDGET: i64 = 10_000_000;
const BUDGET_WINDOW: Duration = Duration::from_secs(60);
const MUTATION_COST: i64 = 10_000;
const LONG_TEXT_LENGTH: usize = 2_000;
const ITEM_NAME_LENGTH: usize = 255;
const PATH: &str = "/v2";

/// monday's published schema, validated once.
fn schema() -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The published dump restates the built-in scalars and introspection types.
        let schema = Schema::builder()
            .ignore_builtin_redefinitions()
            .parse(
                include_str!("contract/schema.2026-10.graphql"),
                "schema.2026-10.graphql",
            )
            .build()
            .expect("monday's schema builds");
        schema.validate().expect("monday's schema is valid")
    })
}

/// A column's type, with a status column's labels.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    Text,
    Date,
    Status(Vec<String>),
    Email,
    LongText,
}

impl ColumnKind {
    fn name(&self) -> &'static str {
        match self {
            ColumnKind::Text => "text",
            ColumnKind::Date => "date",
            ColumnKind::Status(_) => "status",
            ColumnKind::Email => "email",
            ColumnKind::LongText => "long_text",
        }
    }
}

#[derive(Debug, Clone)]
struct Board {
    id: String,
    name: String,
    columns: Vec<(String, ColumnKind)>,
    groups: Vec<String>,
}

/// An item as the account keeps it: each column's value is its JSON value and its text.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub board_id: String,
    pub group_id: String,
    pub name: String,
    /// Column id to `{"value": ..., "text": ...}`.
    pub values: Map<String, Value>,
}

impl Item {
    /// The text of a column (a status's label, a date, an email).
    pub fn text(&self, column: &str) -> Option<&str> {
        self.values.get(column)?["text"].as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostedUpdate {
    pub id: String,
    pub item_id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentNotification {
    pub user_id: String,
    pub target_id: String,
    pub text: String,
}

struct Account {
    token: String,
    boards: Vec<Board>,
    items: Vec<Item>,
    updates: Vec<PostedUpdate>,
    notifications: Vec<SentNotification>,
    users: Vec<(String, String, String)>,
    next_id: u64,
    budget_left: i64,
    window_started: Option<Instant>,
}

#[derive(Clone)]
struct AppState {
    account: Arc<Mutex<Account>>,
    recorder: Recorder,
    faults: Faults,
}

pub struct FakeMonday {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    account: Arc<Mutex<Account>>,
}

/// An error of one field, as monday writes it.
struct FieldError {
    code: &'static str,
    message: String,
}

fn field_error(code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        code,
        message: message.into(),
    }
}

impl FakeMonday {
    /// Starts an account that takes `token`, with one user (the token's).
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> std::io::Result<Self> {
        let account = Arc::new(Mutex::new(Account {
            token: token.to_owned(),
            boards: Vec::new(),
            items: Vec::new(),
            updates: Vec::new(),
            notifications: Vec::new(),
            users: Vec::new(),
            next_id: 1_000_000_000,
            budget_left: BUDGET,
            window_started: None,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route(PATH, post(handle))
            .with_state(AppState {
                account: account.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        let server = Server::start(app, addr, faults.clone()).await?;
        let fake = Self {
            server,
            recorder,
            faults,
            account,
        };
        fake.add_user("Studio Owner", "owner@studio.example");
        Ok(fake)
    }

    /// The GraphQL endpoint, to configure as `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}{PATH}", self.server.url())
    }

    /// Adds a board with `columns` (id, type) and one group, `topics`; answers its id.
    pub fn add_board(&self, name: &str, columns: &[(&str, ColumnKind)]) -> String {
        let mut account = self.lock();
        let id = account.new_id();
        account.boards.push(Board {
            id: id.clone(),
            name: name.to_owned(),
            columns: columns
                .iter()
                .map(|(id, kind)| ((*id).to_owned(), kind.clone()))
                .collect(),
            groups: vec!["topics".to_owned()],
        });
        id
    }

    /// Adds a group to a board.
    pub fn add_group(&self, board: &str, group: &str) {
        let mut account = self.lock();
        if let Some(board) = account.boards.iter_mut().find(|b| b.id == board) {
            board.groups.push(group.to_owned());
        }
    }

    /// Adds an item (as someone using monday would), its column values as the API takes them;
    /// answers its id.
    pub fn add_item(&self, board: &str, name: &str, columns: Value) -> String {
        let mut account = self.lock();
        let args =
            json!({"board_id": board, "item_name": name, "column_values": columns.to_string()});
        let item = account
            .create_item(&args)
            .unwrap_or_else(|error| panic!("add_item: {}", error.message));
        item["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Adds a user of the account; answers its id.
    pub fn add_user(&self, name: &str, email: &str) -> String {
        let mut account = self.lock();
        let id = account.new_id();
        account
            .users
            .push((id.clone(), name.to_owned(), email.to_owned()));
        id
    }

    pub fn items(&self, board: &str) -> Vec<Item> {
        self.lock()
            .items
            .iter()
            .filter(|item| item.board_id == board)
            .cloned()
            .collect()
    }

    pub fn updates(&self) -> Vec<PostedUpdate> {
        self.lock().updates.clone()
    }

    pub fn notifications(&self) -> Vec<SentNotification> {
        self.lock().notifications.clone()
    }

    /// Spends the minute's complexity budget down to `left` points, the minute ending in
    /// `resets_in`.
    pub fn leave_complexity(&self, left: i64, resets_in: Duration) {
        let mut account = self.lock();
        let elapsed = BUDGET_WINDOW.saturating_sub(resets_in);
        account.window_started = Instant::now().checked_sub(elapsed).or(Some(Instant::now()));
        account.budget_left = left;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.account.lock().expect("monday lock")
    }
}

/// `POST /v2`: recorded, scripted faults first, then the account's answer.
async fn handle(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder.record("POST", PATH, &headers, request, status);
        return response;
    }
    let (status, answer, wait) = app
        .account
        .lock()
        .expect("monday lock")
        .answer(&headers, &request);
    app.recorder.record("POST", PATH, &headers, request, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if let Some(wait) = wait {
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
    }
    response
}

/// An answer of errors only.
fn errors(errors: Vec<Value>) -> Value {
    json!({"errors": errors, "account_id": 9_876_543})
}

/// A document refused before it ran, as `answer` returns it.
fn invalid(message: &str) -> (StatusCode, Value, Option<u64>) {
    (
        StatusCode::OK,
        errors(vec![error(message, "GRAPHQL_VALIDATION_FAILED")]),
        None,
    )
}

fn error(message: &str, code: &str) -> Value {
    json!({"message": message, "extensions": {"code": code}})
}

// === impl Account ===

impl Account {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Status, body and the seconds of a `Retry-After`.
    fn answer(&mut self, headers: &HeaderMap, request: &Value) -> (StatusCode, Value, Option<u64>) {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if token != self.token {
            return (
                StatusCode::UNAUTHORIZED,
                errors(vec![error("Not Authenticated", "UNAUTHENTICATED")]),
                None,
            );
        }
        let version = headers
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if version != API_VERSION {
            return (
                StatusCode::OK,
                errors(vec![error(
                    &format!("API-Version {version:?}: this account's simulator speaks {API_VERSION} only"),
                    "InvalidVersionException",
                )]),
                None,
            );
        }
        let Some(document) = request["query"].as_str() else {
            return (
                StatusCode::BAD_REQUEST,
                errors(vec![error("No query string was present", "BAD_REQUEST")]),
                None,
            );
        };
        let schema = schema();
        let document =
            match ExecutableDocument::parse_and_validate(schema, document, "query.graphql") {
                Ok(document) => document,
                Err(invalid) => {
                    let listed = invalid
                        .errors
                        .iter()
                        .map(|diagnostic| {
                            let mut reported =
                                serde_json::to_value(diagnostic.to_json()).unwrap_or(Value::Null);
                            reported["extensions"] = json!({"code": "GRAPHQL_VALIDATION_FAILED"});
                            reported
                        })
                        .collect();
                    return (StatusCode::OK, errors(listed), None);
                }
            };
        let operation = match document.operations.get(request["operationName"].as_str()) {
            Ok(operation) => operation,
            Err(refused) => return invalid(&refused.message().to_string()),
        };
        let given: JsonValue = match &request["variables"] {
            Value::Null => json!({}).into(),
            variables => variables.clone().into(),
        };
        let given = match given {
            JsonValue::Object(map) => map,
            _ => return invalid("variables must be an object"),
        };
        let variables: Value =
            match apollo_compiler::request::coerce_variable_values(schema, operation, &given) {
                Ok(coerced) => serde_json::to_value(&*coerced).unwrap_or(Value::Null),
                Err(refused) => return invalid(&refused.message().to_string()),
            };

        let is_mutation = operation.operation_type == ast::OperationType::Mutation;
        let roots = fields(&operation.selection_set);
        let cost: i64 = roots
            .iter()
            .map(|field| field_cost(field, &variables, is_mutation))
            .sum();
        let now = Instant::now();
        let started = match self.window_started {
            Some(started) if now.duration_since(started) < BUDGET_WINDOW => started,
            _ => {
                self.budget_left = BUDGET;
                self.window_started = Some(now);
                now
            }
        };
        // Whole seconds, rounded up: a client waiting this long finds the budget reset.
        let reset_in = (BUDGET_WINDOW
            .saturating_sub(now.duration_since(started))
            .as_secs_f64()
            .ceil() as u64)
            .max(1);
        if cost > self.budget_left {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                errors(vec![json!({
                    "message": "Complexity budget exhausted",
                    "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": reset_in},
                })]),
                Some(reset_in),
            );
        }
        let before = self.budget_left;
        self.budget_left -= cost;
        let complexity = json!({
            "before": before,
            "after": self.budget_left,
            "query": cost,
            "reset_in_x_seconds": reset_in,
        });

        let mut data = Map::new();
        let mut failures = Vec::new();
        for field in roots {
            let key = field.response_key().to_string();
            let args = arguments(field, &variables);
            let resolved = match field.name.as_str() {
                "complexity" => Ok(complexity.clone()),
                name => self.resolve(name, &args),
            };
            match resolved {
                Ok(value) => {
                    data.insert(key, project(&value, &field.selection_set, &variables));
                }
                Err(failure) => {
                    data.insert(key.clone(), Value::Null);
                    failures.push(json!({
                        "message": failure.message,
                        "path": [key],
                        "extensions": {"code": failure.code, "status_code": 200},
                    }));
                }
            }
        }
        let mut answer = json!({"data": data, "account_id": 9_876_543, "extensions": {"request_id": uuid::Uuid::new_v4().to_string()}});
        if !failures.is_empty() {
            answer["errors"] = Value::Array(failures);
        }
        (StatusCode::OK, answer, None)
    }

    fn resolve(&mut self, field: &str, args: &Value) -> Result<Value, FieldError> {
        match field {
            "me" => {
                let (id, name, email) = self.users[0].clone();
                Ok(
                    json!({"id": id, "name": name, "email": email, "account": {"id": "9876543", "name": "Studio", "slug": "studio"}}),
                )
            }
            "items_page_by_column_values" => self.find_items(args),
            "create_item" => self.create_item(args),
            "change_multiple_column_values" => self.change_columns(args),
            "create_update" => self.create_update(args),
            "create_notification" => self.create_notification(args),
            other => Err(field_error(
                "NotSimulated",
                format!("{other} is in monday's schema but not served by this simulator"),
            )),
        }
    }

    fn board(&self, id: &Value) -> Result<&Board, FieldError> {
        let id = id_text(id);
        self.boards
            .iter()
            .find(|board| board.id == id)
            .ok_or_else(|| field_error("InvalidBoardIdException", format!("Board {id} not found")))
    }

    fn find_items(&self, args: &Value) -> Result<Value, FieldError> {
        let board = self.board(&args["board_id"])?;
        let limit = args["limit"].as_u64().unwrap_or(25);
        if limit > 500 {
            return Err(field_error(
                "InvalidArgumentException",
                "limit may not exceed 500",
            ));
        }
        let mut rules = Vec::new();
        for rule in args["columns"].as_array().into_iter().flatten() {
            let column = rule["column_id"].as_str().unwrap_or_default();
            if !board.columns.iter().any(|(id, _)| id == column) {
                return Err(field_error(
                    "InvalidColumnIdException",
                    format!("This column ID doesn't exist for the board: {column}"),
                ));
            }
            let values: Vec<String> = rule["column_values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_lowercase))
                .collect();
            rules.push((column.to_owned(), values));
        }
        let items: Vec<Value> = self
            .items
            .iter()
            .filter(|item| item.board_id == board.id)
            .filter(|item| {
                rules.iter().all(|(column, values)| {
                    item.text(column)
                        .is_some_and(|text| values.contains(&text.to_lowercase()))
                })
            })
            .take(limit as usize)
            .map(|item| self.item_json(item))
            .collect();
        Ok(json!({"cursor": null, "items": items}))
    }

    fn item_json(&self, item: &Item) -> Value {
        let board = self.boards.iter().find(|b| b.id == item.board_id);
        let column_values: Vec<Value> = board
            .map(|board| {
                board
                    .columns
                    .iter()
                    .map(|(id, kind)| {
                        let value = item.values.get(id);
                        json!({
                            "id": id,
                            "type": kind.name(),
                            "text": value.map(|v| v["text"].clone()).unwrap_or(Value::Null),
                            "value": value.map(|v| Value::String(v["value"].to_string())).unwrap_or(Value::Null),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": item.id,
            "name": item.name,
            "board": {"id": item.board_id, "name": board.map(|b| b.name.clone())},
            "group": {"id": item.group_id},
            "column_values": column_values,
        })
    }

    fn create_item(&mut self, args: &Value) -> Result<Value, FieldError> {
        let board = self.board(&args["board_id"])?.clone();
        let name = args["item_name"].as_str().unwrap_or_default();
        if name.chars().count() > ITEM_NAME_LENGTH {
            return Err(field_error(
                "ItemNameTooLongException",
                "Item name is too long: the limit is 255 characters",
            ));
        }
        let group = match args["group_id"].as_str() {
            Some(group) if !board.groups.iter().any(|g| g == group) => {
                return Err(field_error(
                    "InvalidGroupIdException",
                    format!("Group {group} not found on board {}", board.id),
                ))
            }
            Some(group) => group.to_owned(),
            None => board.groups[0].clone(),
        };
        let values = column_values(&board, &args["column_values"])?;
        let item = Item {
            id: self.new_id(),
            board_id: board.id.clone(),
            group_id: group,
            name: name.to_owned(),
            values,
        };
        let answer = self.item_json(&item);
        self.items.push(item);
        Ok(answer)
    }

    fn change_columns(&mut self, args: &Value) -> Result<Value, FieldError> {
        let board = self.board(&args["board_id"])?.clone();
        let item_id = id_text(&args["item_id"]);
        let values = column_values(&board, &args["column_values"])?;
        let item = self
            .items
            .iter_mut()
            .find(|item| item.id == item_id && item.board_id == board.id)
            .ok_or_else(|| {
                field_error(
                    "ResourceNotFoundException",
                    format!("Item {item_id} not found on board {}", board.id),
                )
            })?;
        item.values.extend(values);
        let item = item.clone();
        Ok(self.item_json(&item))
    }

    fn create_update(&mut self, args: &Value) -> Result<Value, FieldError> {
        let item_id = id_text(&args["item_id"]);
        if !self.items.iter().any(|item| item.id == item_id) {
            return Err(field_error(
                "ResourceNotFoundException",
                format!("Item {item_id} not found"),
            ));
        }
        let body = args["body"].as_str().unwrap_or_default().to_owned();
        if body.trim().is_empty() {
            return Err(field_error(
                "InvalidArgumentException",
                "The update body is empty",
            ));
        }
        let update = PostedUpdate {
            id: self.new_id(),
            item_id: item_id.clone(),
            body: body.clone(),
        };
        let id = update.id.clone();
        self.updates.push(update);
        Ok(json!({"id": id, "body": body, "item_id": item_id}))
    }

    fn create_notification(&mut self, args: &Value) -> Result<Value, FieldError> {
        let user = id_text(&args["user_id"]);
        if !self.users.iter().any(|(id, _, _)| *id == user) {
            return Err(field_error(
                "ResourceNotFoundException",
                format!("User {user} not found"),
            ));
        }
        let target = id_text(&args["target_id"]);
        if args["target_type"] == "Project" && !self.items.iter().any(|item| item.id == target) {
            return Err(field_error(
                "ResourceNotFoundException",
                format!("Item {target} not found"),
            ));
        }
        let text = args["text"].as_str().unwrap_or_default().to_owned();
        self.notifications.push(SentNotification {
            user_id: user,
            target_id: target,
            text: text.clone(),
        });
        Ok(json!({"id": uuid::Uuid::new_v4().to_string(), "text": text}))
    }
}

/// The column values of a `create_item` or `change_multiple_column_values` (the JSON scalar: a
/// JSON string, as the API documents, or an object), each checked against its column's type.
fn column_values(board: &Board, given: &Value) -> Result<Map<String, Value>, FieldError> {
    let parsed = match given {
        Value::Null => return Ok(Map::new()),
        Value::String(text) => serde_json::from_str::<Value>(text).map_err(|err| {
            field_error(
                "ColumnValueException",
                format!("column_values is not valid JSON: {err}"),
            )
        })?,
        other => other.clone(),
    };
    let Value::Object(columns) = parsed else {
        return Err(field_error(
            "ColumnValueException",
            "column_values must be a JSON object of column ids",
        ));
    };
    let mut values = Map::new();
    for (column, value) in columns {
        let kind = board
            .columns
            .iter()
            .find(|(id, _)| *id == column)
            .map(|(_, kind)| kind)
            .ok_or_else(|| {
                field_error(
                    "InvalidColumnIdException",
                    format!("This column ID doesn't exist for the board: {column}"),
                )
            })?;
        let text = column_text(kind, &value).map_err(|reason| {
            field_error(
                "ColumnValueException",
                format!("invalid value for column {column} ({}): {reason}. Please check our API documentation for the correct data structure for this column. https://developer.monday.com/api-reference/docs/change-column-values", kind.name()),
            )
        })?;
        values.insert(column, json!({"value": value, "text": text}));
    }
    Ok(values)
}

/// The text a column shows for a value, or why the value does not fit the column.
fn column_text(kind: &ColumnKind, value: &Value) -> Result<String, String> {
    let field = |name: &str| value[name].as_str().or(value.as_str()).map(str::to_owned);
    match kind {
        ColumnKind::Text => value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "a text column takes a string".to_owned()),
        ColumnKind::LongText => {
            let text = field("text").ok_or("a long text column takes {\"text\": ...}")?;
            if text.chars().count() > LONG_TEXT_LENGTH {
                return Err("long text is limited to 2,000 characters".to_owned());
            }
            Ok(text)
        }
        ColumnKind::Date => {
            let date = value["date"]
                .as_str()
                .ok_or("a date column takes {\"date\": \"YYYY-MM-DD\"}")?;
            let bytes = date.as_bytes();
            let shaped = bytes.len() == 10
                && bytes.iter().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        *b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            if !shaped {
                return Err(format!("{date:?} is not a date (YYYY-MM-DD)"));
            }
            Ok(date.to_owned())
        }
        ColumnKind::Status(labels) => {
            if let Some(index) = value["index"].as_u64() {
                return labels
                    .get(index as usize)
                    .cloned()
                    .ok_or_else(|| format!("no label has index {index}"));
            }
            let label = field("label").ok_or("a status column takes {\"label\": ...}")?;
            if !labels.contains(&label) {
                return Err(format!("label does not exist in column: {label:?}"));
            }
            Ok(label)
        }
        ColumnKind::Email => {
            let email = value["email"]
                .as_str()
                .ok_or("an email column takes {\"email\": ..., \"text\": ...}")?;
            if !email.contains('@') {
                return Err(format!("{email:?} is not an email address"));
            }
            Ok(email.to_owned())
        }
    }
}

/// The fields of a selection set, fragments flattened.
fn fields(selection_set: &SelectionSet) -> Vec<&Field> {
    let mut found = Vec::new();
    for selection in &selection_set.selections {
        match selection {
            Selection::Field(field) => found.push(field.as_ref()),
            Selection::InlineFragment(fragment) => found.extend(fields(&fragment.selection_set)),
            Selection::FragmentSpread(_) => {}
        }
    }
    found
}

/// A field's arguments as JSON, variables substituted (their coerced values).
fn arguments(field: &Field, variables: &Value) -> Value {
    let mut args = Map::new();
    for argument in &field.arguments {
        args.insert(
            argument.name.to_string(),
            literal(&argument.value, variables),
        );
    }
    Value::Object(args)
}

/// An `ID` argument as text: GraphQL accepts an `ID` written as a string or as an integer.
fn id_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

fn literal(value: &ast::Value, variables: &Value) -> Value {
    match value {
        ast::Value::Null => Value::Null,
        ast::Value::Enum(name) => json!(name.as_str()),
        ast::Value::Variable(name) => variables[name.as_str()].clone(),
        ast::Value::String(text) => json!(text),
        ast::Value::Float(float) => json!(float.try_to_f64().unwrap_or_default()),
        ast::Value::Int(int) => json!(int.try_to_i32().unwrap_or_default()),
        ast::Value::Boolean(flag) => json!(flag),
        ast::Value::List(items) => items.iter().map(|item| literal(item, variables)).collect(),
        ast::Value::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(name, value)| (name.to_string(), literal(value, variables)))
                .collect(),
        ),
    }
}

/// What a root field costs in the simulator's model.
fn field_cost(field: &Field, variables: &Value, is_mutation: bool) -> i64 {
    match field.name.as_str() {
        "complexity" => 0,
        _ if is_mutation => MUTATION_COST,
        "me" => 10,
        _ => {
            let limit = arguments(field, variables)["limit"].as_i64().unwrap_or(25);
            1_000 + 100 * limit
        }
    }
}

/// `value` cut to what `selection_set` asks for, under each field's response key; an item's
/// `column_values(ids: ...)` keeps the columns asked for.
fn project(value: &Value, selection_set: &SelectionSet, variables: &Value) -> Value {
    if selection_set.selections.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(values) => values
            .iter()
            .map(|value| project(value, selection_set, variables))
            .collect(),
        Value::Object(object) => {
            let mut projected = Map::new();
            for field in fields(selection_set) {
                let mut inner = object
                    .get(field.name.as_str())
                    .cloned()
                    .unwrap_or(Value::Null);
                if field.name == "column_values" {
                    let asked = arguments(field, variables);
                    if let (Some(ids), Value::Array(columns)) =
                        (asked["ids"].as_array(), &mut inner)
                    {
                        columns.retain(|column| ids.contains(&column["id"]));
                    }
                }
                projected.insert(
                    field.response_key().to_string(),
                    project(&inner, &field.selection_set, variables),
                );
            }
            Value::Object(projected)
        }
        other => other.clone(),
    }
}

// === the conformance suite's simulator ===

/// The token the simulator takes.
const SIMULATED_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.simulated-monday-token";
const WEDDING_COLUMN: &str = "text_wedding";
const DATE_COLUMN: &str = "date4";
const STATUS_COLUMN: &str = "status";

fn wedding_columns() -> Vec<(&'static str, ColumnKind)> {
    vec![
        (WEDDING_COLUMN, ColumnKind::Text),
        (DATE_COLUMN, ColumnKind::Date),
        (
            STATUS_COLUMN,
            ColumnKind::Status(vec![
                "Enquiry".to_owned(),
                "Booked".to_owned(),
                "Planning".to_owned(),
                "Done".to_owned(),
            ]),
        ),
    ]
}

/// A running account with a weddings board, as the conformance suite and `herald demo --all`
/// drive it.
struct SimulatedAccount {
    monday: FakeMonday,
    board: String,
}

impl Simulation for super::Monday {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let monday = FakeMonday::start(addr, SIMULATED_TOKEN).await?;
            let board = monday.add_board("Weddings", &wedding_columns());
            Ok(Box::new(SimulatedAccount { monday, board }) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for SimulatedAccount {
    fn faults(&self) -> &Faults {
        &self.monday.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.monday.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_TOKEN.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "api_url = \"{}\", api_token = {secret}, board_id = \"{}\", wedding_column = \"{WEDDING_COLUMN}\", date_column = \"{DATE_COLUMN}\", status_column = \"{STATUS_COLUMN}\"",
            self.monday.api_url(),
            self.board
        )
    }

    /// A wedding's timeline change, which moves its item's date.
    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.monday.api_url()
    }

    fn about(&self) -> String {
        "a monday.com account with a weddings board (wedding id, date and status columns), checking every document against monday's 2026-10 schema".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        let document = request.body["query"].as_str().unwrap_or_default();
        document
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The complexity budget is always held to.
    fn hold_to_published_limits(&self) {}

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            500,
            &[],
            json!({"errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR", "status_code": 500}}]}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"errors": [{"message": "Not Authenticated", "extensions": {"code": "UNAUTHENTICATED"}}]}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"errors": [{"message": "Rate Limit Exceeded", "extensions": {"code": "RATE_LIMIT_EXCEEDED", "retry_in_seconds": 1}}]}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                200,
                &[],
                json!({"data": {"create_item": null}, "errors": [{"message": "invalid value - label does not exist in column. Please check our API documentation for the correct data structure for this column.", "path": ["create_item"], "extensions": {"code": "ColumnValueException", "status_code": 200, "error_data": {"column_type": "status"}}}]}),
            ),
            "label does not exist in column",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        let mut account = Account {
            token: "t".to_owned(),
            boards: Vec::new(),
            items: Vec::new(),
            updates: Vec::new(),
            notifications: Vec::new(),
            users: vec![("1".to_owned(), "Owner".to_owned(), "o@x".to_owned())],
            next_id: 100,
            budget_left: BUDGET,
            window_started: None,
        };
        account.boards.push(Board {
            id: "7".to_owned(),
            name: "Weddings".to_owned(),
            columns: wedding_columns()
                .into_iter()
                .map(|(id, kind)| (id.to_owned(), kind))
                .collect(),
            groups: vec!["topics".to_owned()],
        });
        account
    }

    fn ask(account: &mut Account, query: &str, variables: Value) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("t"));
        headers.insert("api-version", HeaderValue::from_static(API_VERSION));
        let (status, body, _) =
            account.answer(&headers, &json!({"query": query, "variables": variables}));
        (status, body)
    }

    #[test]
    fn documents_are_validated_against_mondays_schema() {
        let mut account = account();
        // A field Item does not have, an argument create_item does not take.
        let (status, body) = ask(
            &mut account,
            "mutation { create_item(board: 7, item_name: \"x\") { id colour } }",
            json!({}),
        );
        assert_eq!(status, StatusCode::OK);
        let messages: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert!(
            messages.contains(
                &"the required argument `Mutation.create_item(board_id:)` is not provided"
            ),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("`board` is not supported")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("does not have a field `colour`")),
            "{messages:?}"
        );
        assert!(account.items.is_empty());

        // A variable of the wrong type.
        let (_, body) = ask(
            &mut account,
            "mutation ($name: String!) { create_item(board_id: 7, item_name: $name) { id } }",
            json!({"name": 42}),
        );
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );

        // A valid one, with an alias and a column checked against its type.
        let (_, body) = ask(
            &mut account,
            "mutation ($cols: JSON) { made: create_item(board_id: 7, item_name: \"Sam & Alex\", column_values: $cols) { id name } }",
            json!({"cols": "{\"status\": {\"label\": \"Booked\"}, \"date4\": {\"date\": \"2027-06-12\"}}"}),
        );
        assert_eq!(body["data"]["made"]["name"], "Sam & Alex", "{body}");
        assert_eq!(account.items[0].text("status"), Some("Booked"));
        let (_, body) = ask(
            &mut account,
            "mutation { create_item(board_id: 7, item_name: \"x\", column_values: \"{\\\"status\\\": {\\\"label\\\": \\\"Lost\\\"}}\") { id } }",
            json!({}),
        );
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "ColumnValueException"
        );
        assert_eq!(body["data"]["create_item"], Value::Null);
        assert_eq!(account.items.len(), 1);
    }

    #[test]
    fn the_complexity_budget_is_spent_and_refused_when_short() {
        let mut account = account();
        let (_, body) = ask(
            &mut account,
            "query { complexity { before after query reset_in_x_seconds } items_page_by_column_values(board_id: 7, columns: [{column_id: \"text_wedding\", column_values: [\"w-1\"]}], limit: 10) { items { id } } }",
            json!({}),
        );
        assert_eq!(
            (
                &body["data"]["complexity"]["query"],
                &body["data"]["complexity"]["after"]
            ),
            (&json!(2_000), &json!(BUDGET - 2_000)),
            "{body}"
        );
        account.budget_left = 5_000;
        let (status, body) = ask(
            &mut account,
            "mutation { create_item(board_id: 7, item_name: \"x\") { id } }",
            json!({}),
        );
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "COMPLEXITY_BUDGET_EXHAUSTED"
        );
        assert!(account.items.is_empty());
    }
}

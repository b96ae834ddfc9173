//! The National Weather Service API for what the weather watch calls, behaving as
//! api.weather.gov's documentation and OpenAPI description say:
//!
//! - every request needs a `User-Agent` that names a contact (an email address or a website),
//!   else 403 (the NWS blocks callers it cannot identify);
//! - `GET /points/{lat},{lon}`: a point with more than four decimals is redirected (301) to the
//!   rounded one, a point outside the covered area (the United States and its territories, as
//!   a box here) is 404 `InvalidPoint`; else the point's forecast office, grid, zones and time
//!   zone;
//! - `GET /alerts/active` with only the query parameters the OpenAPI description lists (another
//!   one, or a malformed `point`, is 400 with `parameterErrors`): the alerts tests issued
//!   ([`FakeNationalWeatherService::issue`]) whose polygon holds the point, filtered by `status`,
//!   as a GeoJSON FeatureCollection with `Last-Modified`; a request whose `If-Modified-Since`
//!   is not older than the last change is answered 304 without a body;
//! - `GET /alerts/active/count`: how many alerts are active;
//! - errors as `application/problem+json` (`type`, `title`, `status`, `detail`, `instance`,
//!   `correlationId`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};

use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// The query parameters of `/alerts/active` in the NWS's OpenAPI description.
const ALERT_PARAMETERS: &[&str] = &[
    "status",
    "message_type",
    "event",
    "code",
    "area",
    "point",
    "region",
    "region_type",
    "zone",
    "urgency",
    "severity",
    "certainty",
    "limit",
];

pub struct FakeNationalWeatherService {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Alerts>>,
}

/// An alert as a test issues it: the CAP fields the watch reads, and the area it covers.
#[derive(Debug, Clone)]
pub struct IssuedAlert {
    /// The message's id (`urn:oid:...`).
    pub id: String,
    pub event: String,
    pub severity: String,
    /// `Alert`, `Update` or `Cancel`.
    pub message_type: String,
    /// The ids and `sent` times of the messages this one updates.
    pub references: Vec<(String, String)>,
    pub onset: String,
    pub ends: String,
    /// The area, as a closed ring of (longitude, latitude) points.
    pub polygon: Vec<(f64, f64)>,
}

impl IssuedAlert {
    /// A new alert (`Alert`) of `event` and `severity` over a square of `half_side` degrees
    /// around (`latitude`, `longitude`), in force from `onset` to `ends` (RFC 3339).
    pub fn around(
        id: &str,
        event: &str,
        severity: &str,
        (latitude, longitude): (f64, f64),
        (onset, ends): (&str, &str),
    ) -> Self {
        let half_side = 0.5;
        Self {
            id: id.to_owned(),
            event: event.to_owned(),
            severity: severity.to_owned(),
            message_type: "Alert".to_owned(),
            references: Vec::new(),
            onset: onset.to_owned(),
            ends: ends.to_owned(),
            polygon: vec![
                (longitude - half_side, latitude - half_side),
                (longitude + half_side, latitude - half_side),
                (longitude + half_side, latitude + half_side),
                (longitude - half_side, latitude + half_side),
                (longitude - half_side, latitude - half_side),
            ],
        }
    }
}

struct Alerts {
    features: Vec<Value>,
    /// When the alerts last changed, in whole seconds (what `Last-Modified` can say).
    changed_at: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Alerts>>,
    recorder: Recorder,
    faults: Faults,
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: &str, instance: &str) -> Response {
    let body = json!({
        "correlationId": "5b6c7d8e",
        "title": title,
        "type": format!("https://api.weather.gov/problems/{kind}"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": format!("https://api.weather.gov{instance}"),
    });
    (
        status,
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl FakeNationalWeatherService {
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Alerts {
            features: Vec::new(),
            changed_at: now_seconds(),
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/points/{point}", get(point))
            .route("/alerts/active", get(active_alerts))
            .route("/alerts/active/count", get(count))
            .with_state(AppState {
                state: state.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// Herald's `api_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Issues an alert (an update or a cancellation replaces none: the NWS keeps each message).
    pub fn issue(&self, alert: IssuedAlert) {
        let references: Vec<Value> = alert
            .references
            .iter()
            .map(|(identifier, sent)| {
                json!({
                    "@id": format!("https://api.weather.gov/alerts/{identifier}"),
                    "identifier": identifier,
                    "sender": "w-nws.webmaster@noaa.gov",
                    "sent": sent,
                })
            })
            .collect();
        let ring: Vec<Value> = alert
            .polygon
            .iter()
            .map(|(longitude, latitude)| json!([longitude, latitude]))
            .collect();
        let feature = json!({
            "id": format!("https://api.weather.gov/alerts/{}", alert.id),
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "@id": format!("https://api.weather.gov/alerts/{}", alert.id),
                "@type": "wx:Alert",
                "id": alert.id,
                "areaDesc": "Mecklenburg, NC",
                "sent": alert.onset,
                "effective": alert.onset,
                "onset": alert.onset,
                "expires": alert.ends,
                "ends": alert.ends,
                "status": "Actual",
                "messageType": alert.message_type,
                "category": "Met",
                "severity": alert.severity,
                "certainty": "Likely",
                "urgency": "Expected",
                "event": alert.event,
                "sender": "w-nws.webmaster@noaa.gov",
                "senderName": "NWS Greenville-Spartanburg SC",
                "headline": format!("{} issued by NWS Greenville-Spartanburg SC", alert.event),
                "description": format!("* WHAT...{} conditions expected.\n\n* WHERE...Mecklenburg County.", alert.event),
                "instruction": "Secure outdoor objects. Move marquees and guests indoors.",
                "response": "Prepare",
                "references": references,
            }
        });
        let mut alerts = self.lock();
        alerts.features.push(feature);
        // A change is always later than the last Last-Modified answered.
        alerts.changed_at = now_seconds().max(alerts.changed_at + 1);
    }

    /// Takes every alert back (they expired).
    pub fn clear(&self) {
        let mut alerts = self.lock();
        alerts.features.clear();
        alerts.changed_at = now_seconds().max(alerts.changed_at + 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Alerts> {
        self.state.lock().expect("nws lock")
    }
}

/// The caller's `User-Agent`, if it names a contact as the NWS asks.
fn identified(headers: &HeaderMap) -> bool {
    headers
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|agent| agent.contains('@') || agent.contains("http"))
}

/// Latitude and longitude of `text` (`lat,lon`) and whether it has more than four decimals.
fn parse_point(text: &str) -> Option<((f64, f64), bool)> {
    let (latitude, longitude) = text.split_once(',')?;
    let precise = |part: &str| part.split_once('.').is_some_and(|(_, d)| d.len() > 4);
    let degrees = |part: &str| {
        let valid = !part.is_empty()
            && part
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.');
        valid.then(|| part.parse::<f64>().ok()).flatten()
    };
    let point = (degrees(latitude)?, degrees(longitude)?);
    ((-90.0..=90.0).contains(&point.0) && (-180.0..=180.0).contains(&point.1))
        .then_some((point, precise(latitude) || precise(longitude)))
}

/// The United States and its territories, roughly: where the NWS has data.
fn covered((latitude, longitude): (f64, f64)) -> bool {
    (13.0..=72.0).contains(&latitude) && (-180.0..=-64.0).contains(&longitude)
        || (13.0..=21.0).contains(&latitude) && (144.0..=146.0).contains(&longitude)
}

/// Whether the ring (longitude, latitude) holds the point (even-odd rule).
fn inside(ring: &[Value], (latitude, longitude): (f64, f64)) -> bool {
    let corners: Vec<(f64, f64)> = ring
        .iter()
        .filter_map(|corner| Some((corner[0].as_f64()?, corner[1].as_f64()?)))
        .collect();
    let mut holds = false;
    for (i, &(x1, y1)) in corners.iter().enumerate() {
        let (x2, y2) = corners[(i + 1) % corners.len()];
        if (y1 > latitude) != (y2 > latitude)
            && longitude < x1 + (latitude - y1) * (x2 - x1) / (y2 - y1)
        {
            holds = !holds;
        }
    }
    holds
}

async fn point(
    State(app): State<AppState>,
    Path(text): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/points/{text}");
    let (status, response) = answer_point(&app, &text, &headers).await;
    app.recorder
        .record("GET", &path, &headers, Value::Null, status);
    response
}

async fn answer_point(app: &AppState, text: &str, headers: &HeaderMap) -> (StatusCode, Response) {
    if let Some(scripted) = app.faults.take().await {
        return scripted.answer();
    }
    let path = format!("/points/{text}");
    if !identified(headers) {
        return forbidden(&path);
    }
    let Some((at, too_precise)) = parse_point(text) else {
        let detail =
            format!("Parameter \"point\" is invalid: {text:?} is not a latitude,longitude");
        return (
            StatusCode::BAD_REQUEST,
            problem(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Bad Request",
                &detail,
                &path,
            ),
        );
    };
    if too_precise {
        let rounded = format!("/points/{:.4},{:.4}", at.0, at.1);
        let response = (
            StatusCode::MOVED_PERMANENTLY,
            [("location", rounded.as_str())],
            json!({"title": "Adjusting precision of point coordinate", "status": 301}).to_string(),
        )
            .into_response();
        return (StatusCode::MOVED_PERMANENTLY, response);
    }
    if !covered(at) {
        let detail = format!("Unable to provide data for requested point {text}");
        return (
            StatusCode::NOT_FOUND,
            problem(
                StatusCode::NOT_FOUND,
                "InvalidPoint",
                "Data Unavailable For Requested Point",
                &detail,
                &path,
            ),
        );
    }
    let body = json!({
        "id": format!("https://api.weather.gov/points/{text}"),
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [at.1, at.0]},
        "properties": {
            "@id": format!("https://api.weather.gov/points/{text}"),
            "cwa": "GSP",
            "gridId": "GSP",
            "gridX": 119,
            "gridY": 65,
            "forecast": "https://api.weather.gov/gridpoints/GSP/119,65/forecast",
            "forecastZone": "https://api.weather.gov/zones/forecast/NCZ071",
            "county": "https://api.weather.gov/zones/county/NCC119",
            "timeZone": "America/New_York",
            "radarStation": "KGSP",
        }
    });
    (
        StatusCode::OK,
        (
            StatusCode::OK,
            [("content-type", "application/geo+json")],
            body.to_string(),
        )
            .into_response(),
    )
}

fn forbidden(path: &str) -> (StatusCode, Response) {
    (
        StatusCode::FORBIDDEN,
        problem(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Forbidden",
            "Requests need a User-Agent that identifies the application and a contact (an email address or website)",
            path,
        ),
    )
}

async fn active_alerts(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let path = format!("/alerts/active?{query}");
    let (status, response) = answer_alerts(&app, &query, &headers).await;
    app.recorder
        .record("GET", &path, &headers, Value::Null, status);
    response
}

async fn answer_alerts(app: &AppState, query: &str, headers: &HeaderMap) -> (StatusCode, Response) {
    if let Some(scripted) = app.faults.take().await {
        return scripted.answer();
    }
    let path = format!("/alerts/active?{query}");
    if !identified(headers) {
        return forbidden(&path);
    }
    let parameters: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut errors = Vec::new();
    for name in parameters.keys() {
        if !ALERT_PARAMETERS.contains(&name.as_str()) {
            errors.push(json!({"parameter": name, "message": "Unknown parameter"}));
        }
    }
    let at = match parameters.get("point").map(|text| parse_point(text)) {
        Some(Some((at, false))) => Some(at),
        Some(_) => {
            errors.push(json!({"parameter": "point", "message": "Does not match the pattern of a point (lat,lon with at most four decimals)"}));
            None
        }
        None => None,
    };
    let status_filter = parameters.get("status").map(|status| status.to_lowercase());
    if let Some(status) = &status_filter {
        if !["actual", "exercise", "system", "test", "draft"].contains(&status.as_str()) {
            errors.push(json!({"parameter": "status", "message": "Does not have a value in the enumeration"}));
        }
    }
    if !errors.is_empty() {
        let body = json!({
            "correlationId": "1f2e3d4c",
            "parameterErrors": errors,
            "title": "Bad Request",
            "type": "https://api.weather.gov/problems/BadRequest",
            "status": 400,
            "detail": "Bad Request",
            "instance": "https://api.weather.gov/requests/1f2e3d4c",
        });
        return (
            StatusCode::BAD_REQUEST,
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/problem+json")],
                body.to_string(),
            )
                .into_response(),
        );
    }
    let alerts = app.state.lock().expect("nws lock");
    let last_modified =
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(alerts.changed_at));
    let unchanged = headers
        .get("if-modified-since")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok())
        .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|since| since.as_secs() >= alerts.changed_at);
    if unchanged {
        let response = (
            StatusCode::NOT_MODIFIED,
            [("last-modified", last_modified.as_str())],
        )
            .into_response();
        return (StatusCode::NOT_MODIFIED, response);
    }
    let features: Vec<Value> = alerts
        .features
        .iter()
        .filter(|feature| {
            let status = feature["properties"]["status"].as_str().unwrap_or_default();
            status_filter
                .as_ref()
                .is_none_or(|wanted| status.eq_ignore_ascii_case(wanted))
        })
        .filter(|feature| {
            at.is_none_or(|at| {
                feature["geometry"]["coordinates"][0]
                    .as_array()
                    .is_some_and(|ring| inside(ring, at))
            })
        })
        .cloned()
        .collect();
    let body = json!({
        "@context": {"@version": "1.1"},
        "type": "FeatureCollection",
        "features": features,
        "title": "Current watches, warnings, and advisories",
        "updated": humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(alerts.changed_at)).to_string(),
    });
    (
        StatusCode::OK,
        (
            StatusCode::OK,
            [
                ("content-type", "application/geo+json"),
                ("last-modified", last_modified.as_str()),
                ("cache-control", "public, max-age=30, s-maxage=30"),
            ],
            body.to_string(),
        )
            .into_response(),
    )
}

async fn count(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let path = "/alerts/active/count";
    let (status, response) = if let Some(scripted) = app.faults.take().await {
        scripted.answer()
    } else if !identified(&headers) {
        forbidden(path)
    } else {
        let total = app.state.lock().expect("nws lock").features.len();
        let body = json!({"total": total, "land": total, "marine": 0, "regions": {}, "areas": {}, "zones": {}});
        (StatusCode::OK, axum::Json(body).into_response())
    };
    app.recorder
        .record("GET", path, &headers, Value::Null, status);
    response
}

// === the conformance suite's view ===

impl Simulation for super::Weather {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let nws = FakeNationalWeatherService::start(addr).await?;
            Ok(Box::new(nws) as Box<dyn RunningSimulator>)
        })
    }
}

/// The sample venue: a barn outside Charlotte, North Carolina.
pub const SAMPLE_VENUE: (f64, f64) = (35.2271, -80.8431);

impl RunningSimulator for FakeNationalWeatherService {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The NWS takes no credential.
    fn credential(&self) -> String {
        String::new()
    }

    fn settings(&self, _secret: &str) -> String {
        format!(
            "contact = \"weather-desk@herald.example\", api_url = \"{}\", poll_interval = \"1s\"",
            self.url()
        )
    }

    /// A timeline change of a wedding at the sample venue, sixty days from today (a watch needs a
    /// day still to come).
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut sample = base_sample_notification(notification_id);
        let in_sixty_days = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .checked_add(jiff::Span::new().days(60))
            .map(|day| day.to_string())
            .unwrap_or_else(|_| "2099-06-12".to_owned());
        let context = &mut sample["weddingContext"];
        context["weddingId"] = json!(format!("w-{notification_id}"));
        context["weddingDate"] = json!(in_sixty_days);
        context["venueLocation"] = json!({"latitude": SAMPLE_VENUE.0, "longitude": SAMPLE_VENUE.1});
        sample
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "the National Weather Service: venue points and active alerts".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.path.clone()
    }

    fn hold_to_published_limits(&self) {
        // The NWS publishes no limit.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[("content-type", "application/problem+json")],
            json!({"title": "Service Unavailable", "type": "https://api.weather.gov/problems/ServiceUnavailable", "status": 503, "detail": "The service is temporarily unavailable"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            403,
            &[("content-type", "application/problem+json")],
            json!({"title": "Forbidden", "type": "https://api.weather.gov/problems/Forbidden", "status": 403, "detail": "Access to the requested resource is forbidden"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[
                ("retry-after", "1"),
                ("content-type", "application/problem+json"),
            ],
            json!({"title": "Too Many Requests", "type": "https://api.weather.gov/problems/RateLimitExceeded", "status": 429, "detail": "Request limit exceeded; retry after a few seconds"}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                404,
                &[("content-type", "application/problem+json")],
                json!({"title": "Data Unavailable For Requested Point", "type": "https://api.weather.gov/problems/InvalidPoint", "status": 404, "detail": "Unable to provide data for requested point 51.5072,-0.1276"}),
            ),
            "Data Unavailable For Requested Point",
        )
    }
}

//! The outbound HTTP client every connector shares, and the policy on where it may go.
//!
//! URLs come from users' configuration, so by default Herald refuses to call private, loopback,
//! link-local and other non-public addresses (checked on the literal address and on every DNS
//! answer, so a public name that resolves inward is refused too).
//! `security.allow_private_destinations` lifts that for on-premise systems and the local
//! simulators.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::Url;

use super::ConnectorError;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The shared client plus the destination policy.
#[derive(Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl OutboundClient {
    pub fn new(allow_private: bool) -> Result<Self, OutboundError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "Herald/",
                env!("CARGO_PKG_VERSION"),
                " (WedSync notification orchestrator)"
            ))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
        })
    }

    /// Parses a configured URL and checks it against the destination policy.
    pub fn check_url(&self, url: &str) -> Result<Url, ConnectorError> {
        let parsed = Url::parse(url)
            .map_err(|err| ConnectorError::Misconfigured(format!("{url:?} is not a URL: {err}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(ConnectorError::Misconfigured(format!(
                "{url:?} must be http or https"
            )));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(domain)) if domain.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            }
            Some(url::Host::Domain(_)) => None,
            None => {
                return Err(ConnectorError::Misconfigured(format!(
                    "{url:?} has no host"
                )))
            }
        };
        if let Some(ip) = literal {
            if !self.allow_private && !is_public(ip) {
                return Err(ConnectorError::Forbidden(format!(
                    "{ip} is a private or local address (set security.allow_private_destinations to allow it)"
                )));
            }
        }
        Ok(parsed)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Resolves `host` for a connection that is not HTTP (a mail server) and checks the addresses against
    /// the destination policy, as the HTTP client's resolver does: the first address allowed, to
    /// connect to exactly what was checked.
    pub async fn resolve_checked(
        &self,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, ConnectorError> {
        let host = host.trim_matches(['[', ']']);
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| ConnectorError::Unavailable(format!("cannot resolve {host}: {err}")))?
            .collect();
        let first = found
            .first()
            .copied()
            .ok_or_else(|| ConnectorError::Unavailable(format!("{host} has no address")))?;
        if self.allow_private {
            return Ok(first);
        }
        found
            .into_iter()
            .find(|address| is_public(address.ip()))
            .ok_or_else(|| {
                ConnectorError::Forbidden(format!(
                    "{host} is a private or local address (set security.allow_private_destinations to allow it)"
                ))
            })
    }
}

/// Maps a transport failure (no HTTP answer) to a connector error.
pub fn transport_error(err: reqwest::Error) -> ConnectorError {
    let text = error_chain(&err);
    if text.contains("private or local address") {
        return ConnectorError::Forbidden(text);
    }
    if err.is_timeout() {
        ConnectorError::Unavailable(format!("timed out: {text}"))
    } else if err.is_connect() {
        ConnectorError::Unavailable(format!("connection failed: {text}"))
    } else {
        ConnectorError::Unavailable(text)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A vendor's answer other than a 2xx, for the vendor to classify.
pub struct Refusal {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    /// The JSON body, or `null` when there is none.
    pub body: serde_json::Value,
}

/// Sends `request` with `body` as JSON (when given): the JSON answer of a 2xx (`null` when it has
/// none), or the [`Refusal`]; a transport failure is classified.
pub async fn send_json(
    request: reqwest::RequestBuilder,
    body: Option<&serde_json::Value>,
) -> Result<Result<serde_json::Value, Refusal>, ConnectorError> {
    let request = match body {
        Some(body) => request.json(body),
        None => request,
    };
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok(if status.is_success() {
        Ok(body)
    } else {
        Err(Refusal {
            status,
            headers,
            body,
        })
    })
}

/// Reads `Retry-After` as delta-seconds (the form vendors use for 429 and 503). An HTTP date is
/// not honoured and falls back to our own backoff.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    retry_after_value(value, SystemTime::now())
}

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110), relative to `now`; a date in
/// the past means "now".
fn retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classifies a non-success HTTP status the way most JSON APIs mean it. Vendors with their own
/// conventions (an `ok:false` in a 200) classify the body first and fall back to this.
pub fn classify_status(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> ConnectorError {
    let excerpt: String = body.chars().take(300).collect();
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 | 403 => ConnectorError::Unauthorized(format!("{status}: {excerpt}")),
        408 | 425 => ConnectorError::Unavailable(format!("{status}: {excerpt}")),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {excerpt}")),
        _ => ConnectorError::Rejected {
            code: status.as_u16().to_string(),
            message: excerpt,
        },
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
                || (a == 198 && (b == 18 || b == 19))) // benchmarking, 198.18.0.0/15
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80) // link-local, fe80::/10
        }
    }
}

/// Resolves names and keeps only public addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves only to private or local addresses").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_private_urls_are_refused_unless_allowed() {
        let strict = OutboundClient::new(false).unwrap();
        assert!(matches!(
            strict.check_url("http://169.254.169.254/latest/meta-data"),
            Err(ConnectorError::Forbidden(_))
        ));
        assert!(matches!(
            strict.check_url("http://localhost:8080/"),
            Err(ConnectorError::Forbidden(_))
        ));
        assert!(strict
            .check_url("https://hooks.example.com/wedsync")
            .is_ok());
        assert!(matches!(
            strict.check_url("ftp://example.com"),
            Err(ConnectorError::Misconfigured(_))
        ));
        let open = OutboundClient::new(true).unwrap();
        assert!(open.check_url("http://127.0.0.1:9000/").is_ok());
    }

    #[tokio::test]
    async fn hosts_for_other_protocols_are_checked_like_urls() {
        let strict = OutboundClient::new(false).unwrap();
        assert!(matches!(
            strict.resolve_checked("127.0.0.1", 587).await,
            Err(ConnectorError::Forbidden(_))
        ));
        assert!(matches!(
            strict.resolve_checked("localhost", 587).await,
            Err(ConnectorError::Forbidden(_))
        ));
        let open = OutboundClient::new(true).unwrap();
        assert_eq!(
            open.resolve_checked("127.0.0.1", 587).await.unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 587))
        );
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", "-5".parse().unwrap());
        assert_eq!(retry_after(&headers), None, "a negative delay is no delay");
    }

    #[test]
    fn retry_after_reads_an_http_date_too() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 12:00:00 GMT").unwrap();
        assert_eq!(
            retry_after_value("Wed, 25 Nov 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_value("Wed, 25 Nov 2026 11:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past means now"
        );
        assert_eq!(retry_after_value("soon", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let headers = HeaderMap::new();
        let classify = |code: u16| {
            classify_status(
                reqwest::StatusCode::from_u16(code).unwrap(),
                &headers,
                "body",
            )
        };
        assert!(matches!(classify(503), ConnectorError::Unavailable(_)));
        assert!(matches!(
            classify(429),
            ConnectorError::RateLimited { retry_after: None }
        ));
        assert!(matches!(classify(401), ConnectorError::Unauthorized(_)));
        assert!(matches!(classify(422), ConnectorError::Rejected { .. }));
    }
}

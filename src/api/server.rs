//! The HTTP/1.1 server under the API: accepting connections, the timeouts that keep slow or idle
//! clients from holding them, and graceful shutdown.
//!
//! `axum::serve` sets no timer, so a connection that never finishes its headers, or idles
//! between requests, stays open for ever. Herald serves each connection with hyper directly:
//! headers must arrive within `header_timeout` (hyper starts that clock whenever it waits for a
//! request, so it is also the idle keep-alive limit), and [`read_body_within_limits`] refuses a
//! body announced larger than `max_body_bytes` before reading it and gives the body
//! `body_timeout` to arrive.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::ApiError;

/// What the server holds every connection and request to.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in progress finish
/// (each connection closes after its current answer) and returns once every connection closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a clone; when all are dropped, every connection has closed.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(err) = served {
                            tracing::debug!(%err, "connection ended with an error");
                        }
                        break;
                    }
                    _ = closing.wait_for(|closing| *closing) => {
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

/// Middleware: refuses a body announced larger than the limit (413) without reading it, reads
/// the rest within the limit (413) and the body timeout (408), and hands the handler the body
/// already in memory.
pub async fn read_body_within_limits(
    State(limits): State<Arc<ServerLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().parse::<u64>());
    match announced {
        Some(Ok(length)) if length > limits.max_body_bytes as u64 => {
            return ApiError::TooLarge(limits.max_body_bytes).into_response();
        }
        Some(Err(_)) => {
            return ApiError::BadRequest("content-length is not a number".into()).into_response();
        }
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) if is_length_limit(&err) => {
            return ApiError::TooLarge(limits.max_body_bytes).into_response();
        }
        Ok(Err(err)) => {
            return ApiError::BadRequest(format!("the request body could not be read: {err}"))
                .into_response();
        }
        Err(_) => return ApiError::Timeout(limits.body_timeout).into_response(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

//! Vendor simulators: local HTTP servers that behave like the vendors Herald talks to (their
//! paths, auth checks, error bodies and rate limits), record every request, and take scripted
//! faults. The test suite, the benches, `herald demo` and `herald sandbox` all use them.
//!
//! They are not mocks of Herald: Herald's real connectors talk to them over real HTTP.

pub mod contract;
mod faults;
mod schema;

pub use faults::{Faults, RecordedRequest, Recorder, ScriptedResponse};
pub use schema::{Schema, SchemaError};

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Where every simulator takes fault scripts from outside: `POST` a JSON object with one of
/// `respondNext` (`{status, headers?, body?}`: the next request's answer), `goDown`
/// (`{status, body?}`: every answer until `comeBack`), `comeBack` (`true`), `dropNext` (how many
/// connections to drop) or `latencyMs`.
pub const FAULTS_PATH: &str = "/_herald/faults";

/// A simulator's HTTP server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// Serves `app` on `addr` (port 0 picks a free one), with the fault-control endpoint
    /// [`FAULTS_PATH`] scripting `faults` from outside (`herald sandbox` users, other processes).
    pub async fn start(
        app: axum::Router,
        addr: SocketAddr,
        faults: Faults,
    ) -> std::io::Result<Self> {
        let control = axum::Router::new()
            .route(FAULTS_PATH, axum::routing::post(faults::control))
            .with_state(faults);
        let app = control.merge(app);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "simulator server failed");
            }
        });
        Ok(Self { addr, _stop: stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The loopback address with a free port, for simulators in tests.
pub fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

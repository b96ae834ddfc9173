//! Routing requests (`POST /v1/routings`), kept so a result can be read again by its `routingId`.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{RoutingRecord, StoreError, StoreFuture};

/// Routing requests by their `routingId`.
pub trait Routings: Queued {
    /// Keeps a routing request; a second one with the same organization and `routingId` keeps
    /// the first.
    fn record_routing(&self, routing: RoutingRecord) -> StoreFuture<'_, ()> {
        self.queues().record_routing(routing)
    }
    /// The organization's routing request with this `routingId`.
    fn routing(
        &self,
        organization: &str,
        routing_id: &str,
    ) -> StoreFuture<'_, Option<RoutingRecord>>;
}

/// The statements [`Routings`] needs from a writer, run inside its group's transaction.
pub(super) trait RoutingStatements {
    async fn record_routing(&mut self, routing: &RoutingRecord) -> Result<(), StoreError>;
}

// === SQLite ===

impl Routings for SqliteStore {
    fn routing(
        &self,
        organization: &str,
        routing_id: &str,
    ) -> StoreFuture<'_, Option<RoutingRecord>> {
        let (organization, routing_id) = (organization.to_owned(), routing_id.to_owned());
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT notification_id, delivery_coordination, accepted_at FROM routings
                     WHERE organization = ?1 AND routing_id = ?2",
                    params![organization, routing_id],
                    |r| {
                        Ok(RoutingRecord {
                            organization: organization.clone(),
                            routing_id: routing_id.clone(),
                            notification_id: r.get(0)?,
                            delivery_coordination: r.get(1)?,
                            accepted_at: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
    }
}

impl RoutingStatements for SqliteWriter {
    async fn record_routing(&mut self, r: &RoutingRecord) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO routings (organization, routing_id, notification_id, delivery_coordination, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![r.organization, r.routing_id, r.notification_id, r.delivery_coordination, r.accepted_at],
        )?;
        Ok(())
    }
}

// === PostgreSQL ===

impl Routings for PostgresStore {
    fn routing(
        &self,
        organization: &str,
        routing_id: &str,
    ) -> StoreFuture<'_, Option<RoutingRecord>> {
        let (organization, routing_id) = (organization.to_owned(), routing_id.to_owned());
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    "SELECT notification_id, delivery_coordination, accepted_at FROM routings
                     WHERE organization = $1 AND routing_id = $2",
                    &[&organization, &routing_id],
                )
                .await?;
            Ok(row.map(|r| RoutingRecord {
                organization,
                routing_id,
                notification_id: r.get(0),
                delivery_coordination: r.get(1),
                accepted_at: r.get(2),
            }))
        })
    }
}

impl RoutingStatements for PostgresWriter {
    async fn record_routing(&mut self, r: &RoutingRecord) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO routings (organization, routing_id, notification_id, delivery_coordination, accepted_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&r.organization, &r.routing_id, &r.notification_id, &r.delivery_coordination, &r.accepted_at],
            )
            .await?;
        Ok(())
    }
}

//! The journal on SQLite.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::sqlite::{
    deliveries_of, delivery_by_id, delivery_from, open_deliveries_where, SqliteStore, SqliteWriter,
    DELIVERY_COLUMNS,
};
use crate::store::{
    cancelled_reason, coordination_columns, now_millis, sequenced_start, Acknowledgement,
    DeliveryRow, DeliveryState, Intake, NewNotification, OpenDelivery, SettledDelivery, Settlement,
    StoreError, StoreFuture, StoredNotification, UnixMillis,
};

use crate::store::queue::Queued;
use crate::store::Actor;

use super::{Journal, JournalStatements};

impl Journal for SqliteStore {
    fn replay(
        &self,
        organization: &str,
        delivery_id: i64,
        by: &Actor,
    ) -> StoreFuture<'_, Option<OpenDelivery>> {
        let replayed = self.queues().replay(organization, delivery_id, by);
        Box::pin(async move {
            let Some(row) = replayed.await? else {
                return Ok(None);
            };
            let delivery_id = row.delivery_id;
            let body = self
                .read(move |connection| {
                    connection
                        .query_row(
                            "SELECT COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
                               ON n.organization = d.organization AND n.notification_id = d.notification_id
                             WHERE d.id = ?1",
                            params![delivery_id],
                            |r| r.get::<_, String>(0),
                        )
                        .map_err(StoreError::from)
                })
                .await?;
            Ok(Some(OpenDelivery { row, body }))
        })
    }

    fn notification(
        &self,
        organization: &str,
        notification_id: &str,
    ) -> StoreFuture<'_, Option<StoredNotification>> {
        let (organization, notification_id) = (organization.to_owned(), notification_id.to_owned());
        self.read(move |connection| {
            let found = connection
                .query_row(
                    "SELECT body, accepted_at FROM notifications WHERE organization = ?1 AND notification_id = ?2",
                    params![organization, notification_id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?;
            let Some((body, accepted_at)) = found else { return Ok(None) };
            let deliveries = deliveries_of(connection, &organization, &notification_id)?;
            let mut statement = connection.prepare_cached(
                "SELECT integration_id, action_id, actor, at FROM acknowledgements
                 WHERE organization = ?1 AND notification_id = ?2 ORDER BY id",
            )?;
            let acknowledgements = statement
                .query_map(params![organization, notification_id], |r| {
                    Ok(Acknowledgement {
                        organization: organization.clone(),
                        notification_id: notification_id.clone(),
                        integration_id: r.get(0)?,
                        action_id: r.get(1)?,
                        actor: r.get(2)?,
                        at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(Some(StoredNotification { body, accepted_at, deliveries, acknowledgements }))
        })
    }

    fn open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, Vec<OpenDelivery>> {
        let integration_id = integration_id.to_owned();
        self.read(move |connection| {
            open_deliveries_where(
                connection,
                "d.integration_id = ?1 AND d.state IN ('pending', 'retrying')",
                params![integration_id],
            )
        })
    }

    fn has_open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, bool> {
        let integration_id = integration_id.to_owned();
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT 1 FROM deliveries WHERE integration_id = ?1 AND state IN ('pending', 'retrying') LIMIT 1",
                    params![integration_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
    }

    fn integrations_with_open_deliveries(&self) -> StoreFuture<'_, Vec<String>> {
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT DISTINCT integration_id FROM deliveries WHERE state IN ('pending', 'retrying')",
            )?;
            let ids = statement
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
    }

    fn next_in_sequence(&self, delivery_id: i64) -> StoreFuture<'_, Vec<OpenDelivery>> {
        self.read(move |connection| {
            open_deliveries_where(
                connection,
                "d.state IN ('pending', 'retrying') AND (d.organization, d.notification_id, d.sequence_position) =
                   (SELECT organization, notification_id, sequence_position + 1 FROM deliveries WHERE id = ?1)",
                params![delivery_id],
            )
        })
    }

    fn dead_letters(&self, organization: &str, limit: usize) -> StoreFuture<'_, Vec<DeliveryRow>> {
        let organization = organization.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE organization = ?1 AND state = 'dead_lettered' ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![organization, limit as i64], |r| Ok(delivery_from(r)))?;
            rows.map(|row| row?).collect()
        })
    }
}

impl JournalStatements for SqliteWriter {
    async fn journal(&mut self, batch: &[&NewNotification]) -> Result<Vec<Intake>, StoreError> {
        journal(&self.connection, batch)
    }

    async fn settle(
        &mut self,
        settlements: &[&Settlement],
        now: UnixMillis,
    ) -> Result<Vec<SettledDelivery>, StoreError> {
        settle(&self.connection, settlements, now)
    }

    async fn fail_over(
        &mut self,
        delivery_id: i64,
        attempts: u32,
        error: &str,
        backup: &str,
    ) -> Result<DeliveryRow, StoreError> {
        let connection = &self.connection;
        let now = now_millis();
        connection.execute(
            "UPDATE deliveries SET state = 'failed_over', attempts = MAX(attempts, ?4), last_error = ?2, settled_at = ?3 WHERE id = ?1",
            params![delivery_id, error, now, attempts],
        )?;
        connection.execute(
            "INSERT INTO deliveries (organization, notification_id, integration_id, route, failover_of, state, emergency, created_at, body, sequence_position, mode, on_failure)
             SELECT organization, notification_id, ?2, 'failover', id, 'pending', emergency, ?3, body, sequence_position, mode, on_failure FROM deliveries WHERE id = ?1",
            params![delivery_id, backup, now],
        )?;
        delivery_by_id(connection, connection.last_insert_rowid())?.ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {delivery_id} vanished during failover"))
        })
    }

    async fn replay(
        &mut self,
        organization: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        let changed = self.connection.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL, settled_at = NULL
             WHERE id = ?1 AND organization = ?2 AND state = 'dead_lettered'",
            params![delivery_id, organization],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        delivery_by_id(&self.connection, delivery_id)
    }
}

fn journal(connection: &Connection, batch: &[&NewNotification]) -> Result<Vec<Intake>, StoreError> {
    let now = now_millis();
    let mut insert_notification = connection.prepare_cached(
        "INSERT INTO notifications (organization, notification_id, priority, type, body, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    let mut insert_delivery = connection.prepare_cached(
        "INSERT INTO deliveries (organization, notification_id, integration_id, route, state, emergency, created_at, body, sequence_position, mode, on_failure)
         VALUES (?1, ?2, ?3, 'primary', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        let inserted = insert_notification.execute(params![
            item.organization,
            item.notification_id,
            item.priority,
            item.notification_type,
            item.body,
            now
        ])?;
        if inserted == 0 {
            outcomes.push(Intake::Duplicate(deliveries_of(
                connection,
                &item.organization,
                &item.notification_id,
            )?));
            continue;
        }
        let emergency = item.priority == "emergency";
        let coordination = item.coordination;
        let (mode, on_failure) = coordination_columns(coordination);
        let mut rows = Vec::with_capacity(item.targets.len());
        for (position, target) in item.targets.iter().enumerate() {
            let (state, sequence_position) = sequenced_start(coordination, position);
            insert_delivery.execute(params![
                item.organization,
                item.notification_id,
                target.integration_id,
                state.as_str(),
                emergency,
                now,
                target.body,
                sequence_position,
                mode,
                on_failure
            ])?;
            rows.push(DeliveryRow {
                delivery_id: connection.last_insert_rowid(),
                organization: item.organization.clone(),
                notification_id: item.notification_id.clone(),
                integration_id: target.integration_id.clone(),
                route: "primary".to_owned(),
                failover_of: None,
                state,
                emergency,
                attempts: 0,
                created_at: now,
                next_attempt_at: None,
                last_error: None,
                receipt: None,
                settled_at: None,
                details: None,
                coordination,
            });
        }
        outcomes.push(Intake::Accepted(rows));
    }
    Ok(outcomes)
}

fn settle(
    connection: &Connection,
    settlements: &[&Settlement],
    now: UnixMillis,
) -> Result<Vec<SettledDelivery>, StoreError> {
    let mut update = connection.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5,
                receipt = COALESCE(?6, receipt), settled_at = ?7, details = COALESCE(?8, details)
         WHERE id = ?1 AND state IN ('pending', 'retrying')
         RETURNING organization, notification_id",
    )?;
    let mut settled = Vec::with_capacity(settlements.len());
    for settlement in settlements {
        let c = settlement.columns(now);
        let changed = update
            .query_row(
                params![
                    c.delivery_id,
                    c.state,
                    c.attempts,
                    c.next_attempt_at,
                    c.last_error,
                    c.receipt,
                    c.settled_at,
                    c.details
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        let Some((organization, notification_id)) = changed else {
            continue;
        };
        let sequenced = settlement.sequenced_delivery().is_some();
        if sequenced {
            release_or_cancel_next(connection, c.delivery_id, now)?;
        }
        settled.push(SettledDelivery {
            delivery_id: c.delivery_id,
            organization,
            notification_id,
            state: DeliveryState::parse(c.state)?,
            sequenced,
        });
    }
    Ok(settled)
}

/// After a sequenced delivery settled: a failure that cancels (all-or-nothing, abort) cancels
/// every delivery of the notification still held; otherwise the next one is released.
fn release_or_cancel_next(
    connection: &Connection,
    delivery_id: i64,
    now: UnixMillis,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', settled_at = ?2, last_error = ?3
             WHERE state = 'held' AND (organization, notification_id) =
               (SELECT organization, notification_id FROM deliveries
                WHERE id = ?1 AND state = 'dead_lettered' AND (mode = 'all_or_nothing' OR on_failure = 'abort'))",
        )?
        .execute(params![delivery_id, now, cancelled_reason(delivery_id)])?;
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'pending'
             WHERE state = 'held' AND (organization, notification_id, sequence_position) =
               (SELECT organization, notification_id, sequence_position + 1 FROM deliveries
                WHERE id = ?1 AND state IN ('delivered', 'dead_lettered'))",
        )?
        .execute(params![delivery_id])?;
    Ok(())
}

//! The journal on PostgreSQL.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use crate::store::postgres::{delivery_from, PostgresStore, PostgresWriter, DELIVERY_COLUMNS};
use crate::store::{
    cancelled_reason, coordination_columns, now_millis, sequenced_start, Acknowledgement,
    DeliveryRow, DeliveryState, Intake, NewNotification, OpenDelivery, SettledDelivery, Settlement,
    StoreError, StoreFuture, StoredNotification, UnixMillis,
};

use crate::store::queue::Queued;
use crate::store::Actor;

use super::{Journal, JournalStatements};

impl Journal for PostgresStore {
    fn replay(
        &self,
        organization: &str,
        delivery_id: i64,
        by: &Actor,
    ) -> StoreFuture<'_, Option<OpenDelivery>> {
        let replayed = self.queues().replay(organization, delivery_id, by);
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let Some(row) = replayed.await? else {
                return Ok(None);
            };
            let body: String = reader
                .query_one(
                    "SELECT COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
                       ON n.organization = d.organization AND n.notification_id = d.notification_id
                     WHERE d.id = $1",
                    &[&row.delivery_id],
                )
                .await?
                .get(0);
            Ok(Some(OpenDelivery { row, body }))
        })
    }

    fn notification(
        &self,
        organization: &str,
        notification_id: &str,
    ) -> StoreFuture<'_, Option<StoredNotification>> {
        let (organization, notification_id) = (organization.to_owned(), notification_id.to_owned());
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let found = reader.query_opt(
                    "SELECT body, accepted_at FROM notifications WHERE organization = $1 AND notification_id = $2",
                    &[&organization, &notification_id],
                )
                .await?;
            let Some(found) = found else { return Ok(None) };
            let rows = reader.query(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization = $1 AND d.notification_id = $2 ORDER BY d.id"),
                    &[&organization, &notification_id],
                )
                .await?;
            let deliveries = rows.iter().map(delivery_from).collect::<Result<_, _>>()?;
            let acknowledgements = reader
                .query(
                    "SELECT integration_id, action_id, actor, at FROM acknowledgements
                     WHERE organization = $1 AND notification_id = $2 ORDER BY id",
                    &[&organization, &notification_id],
                )
                .await?
                .iter()
                .map(|r| Acknowledgement {
                    organization: organization.clone(),
                    notification_id: notification_id.clone(),
                    integration_id: r.get(0),
                    action_id: r.get(1),
                    actor: r.get(2),
                    at: r.get(3),
                })
                .collect();
            Ok(Some(StoredNotification {
                body: found.get(0),
                accepted_at: found.get(1),
                deliveries,
                acknowledgements,
            }))
        })
    }

    fn open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, Vec<OpenDelivery>> {
        let integration_id = integration_id.to_owned();
        Box::pin(async move {
            self.open_deliveries_where(
                "d.integration_id = $1 AND d.state IN ('pending', 'retrying')",
                &[&integration_id],
            )
            .await
        })
    }

    fn has_open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, bool> {
        let integration_id = integration_id.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            Ok(reader
                .query_opt(
                    "SELECT 1 FROM deliveries WHERE integration_id = $1 AND state IN ('pending', 'retrying') LIMIT 1",
                    &[&integration_id],
                )
                .await?
                .is_some())
        })
    }

    fn integrations_with_open_deliveries(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    "SELECT DISTINCT integration_id FROM deliveries WHERE state IN ('pending', 'retrying')",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn next_in_sequence(&self, delivery_id: i64) -> StoreFuture<'_, Vec<OpenDelivery>> {
        Box::pin(async move {
            self.open_deliveries_where(
                "d.state IN ('pending', 'retrying') AND (d.organization, d.notification_id, d.sequence_position) =
                   (SELECT organization, notification_id, sequence_position + 1 FROM deliveries WHERE id = $1)",
                &[&delivery_id],
            )
            .await
        })
    }

    fn dead_letters(&self, organization: &str, limit: usize) -> StoreFuture<'_, Vec<DeliveryRow>> {
        let organization = organization.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader.query(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization = $1 AND d.state = 'dead_lettered' ORDER BY d.id DESC LIMIT $2"),
                    &[&organization, &(limit as i64)],
                )
                .await?;
            rows.iter().map(delivery_from).collect()
        })
    }
}

impl JournalStatements for PostgresWriter {
    async fn journal(&mut self, batch: &[&NewNotification]) -> Result<Vec<Intake>, StoreError> {
        journal(&self.client, batch).await
    }

    async fn settle(
        &mut self,
        settlements: &[&Settlement],
        now: UnixMillis,
    ) -> Result<Vec<SettledDelivery>, StoreError> {
        settle(&self.client, settlements, now).await
    }

    async fn fail_over(
        &mut self,
        delivery_id: i64,
        attempts: u32,
        error: &str,
        backup: &str,
    ) -> Result<DeliveryRow, StoreError> {
        let now = now_millis();
        let attempts = attempts as i32;
        self.client
            .execute(
                "UPDATE deliveries SET state = 'failed_over', attempts = GREATEST(attempts, $4), last_error = $2, settled_at = $3 WHERE id = $1",
                &[&delivery_id, &error, &now, &attempts],
            )
            .await?;
        let row = self
            .client
            .query_opt(
                &format!(
                    "WITH inserted AS (
                       INSERT INTO deliveries (organization, notification_id, integration_id, route, failover_of, state, emergency, created_at, body, sequence_position, mode, on_failure)
                       SELECT organization, notification_id, $2, 'failover', id, 'pending', emergency, $3, body, sequence_position, mode, on_failure FROM deliveries WHERE id = $1
                       RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM inserted d"
                ),
                &[&delivery_id, &backup, &now],
            )
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("delivery {delivery_id} vanished during failover"))
            })?;
        delivery_from(&row)
    }

    async fn replay(
        &mut self,
        organization: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "WITH updated AS (
                       UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL, settled_at = NULL
                       WHERE id = $1 AND organization = $2 AND state = 'dead_lettered' RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM updated d"
                ),
                &[&delivery_id, &organization],
            )
            .await?;
        row.as_ref().map(delivery_from).transpose()
    }
}

async fn journal(tx: &Client, batch: &[&NewNotification]) -> Result<Vec<Intake>, StoreError> {
    let now = now_millis();
    let column =
        |f: fn(&NewNotification) -> &str| batch.iter().map(|n| f(n)).collect::<Vec<&str>>();
    let inserted: HashSet<(String, String)> = tx
        .query(
            "INSERT INTO notifications (organization, notification_id, priority, type, body, accepted_at)
             SELECT o, n, p, t, b, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(o, n, p, t, b)
             ON CONFLICT DO NOTHING RETURNING organization, notification_id",
            &[
                &column(|n| &n.organization),
                &column(|n| &n.notification_id),
                &column(|n| &n.priority),
                &column(|n| &n.notification_type),
                &column(|n| &n.body),
                &now,
            ],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    // The first occurrence of an inserted key is accepted; any other is a duplicate.
    let mut claimed = HashSet::new();
    let accepted: Vec<bool> = batch
        .iter()
        .map(|n| {
            let key = (n.organization.clone(), n.notification_id.clone());
            inserted.contains(&key) && claimed.insert(key)
        })
        .collect();

    let (mut organizations, mut ids, mut targets, mut emergencies, mut bodies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut states, mut positions, mut modes, mut on_failures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (item, _) in batch
        .iter()
        .zip(&accepted)
        .filter(|(_, accepted)| **accepted)
    {
        let (mode, on_failure) = coordination_columns(item.coordination);
        for (position, target) in item.targets.iter().enumerate() {
            let (state, sequence_position) = sequenced_start(item.coordination, position);
            organizations.push(item.organization.as_str());
            ids.push(item.notification_id.as_str());
            targets.push(target.integration_id.as_str());
            emergencies.push(item.priority == "emergency");
            bodies.push(target.body.as_deref());
            states.push(state.as_str());
            positions.push(sequence_position);
            modes.push(mode);
            on_failures.push(on_failure);
        }
    }
    let mut created: HashMap<(String, String, String), DeliveryRow> = HashMap::new();
    if !targets.is_empty() {
        let rows = tx
            .query(
                &format!(
                    "WITH inserted AS (
                       INSERT INTO deliveries (organization, notification_id, integration_id, route, state, emergency, created_at, body, sequence_position, mode, on_failure)
                       SELECT o, n, i, 'primary', s, e, $5, b, p, m, f
                       FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[]) AS u(o, n, i, e, b, s, p, m, f)
                       RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM inserted d"
                ),
                &[&organizations, &ids, &targets, &emergencies, &now, &bodies, &states, &positions, &modes, &on_failures],
            )
            .await?;
        for row in &rows {
            let delivery = delivery_from(row)?;
            created.insert(
                (
                    delivery.organization.clone(),
                    delivery.notification_id.clone(),
                    delivery.integration_id.clone(),
                ),
                delivery,
            );
        }
    }

    let duplicate_keys: Vec<(&str, &str)> = batch
        .iter()
        .zip(&accepted)
        .filter(|(_, accepted)| !**accepted)
        .map(|(n, _)| (n.organization.as_str(), n.notification_id.as_str()))
        .collect();
    let mut existing: HashMap<(String, String), Vec<DeliveryRow>> = HashMap::new();
    if !duplicate_keys.is_empty() {
        let (orgs, ids): (Vec<&str>, Vec<&str>) = duplicate_keys.into_iter().unzip();
        let rows = tx
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d
                     JOIN UNNEST($1::text[], $2::text[]) AS u(o, n) ON d.organization = u.o AND d.notification_id = u.n
                     ORDER BY d.id"
                ),
                &[&orgs, &ids],
            )
            .await?;
        for row in &rows {
            let delivery = delivery_from(row)?;
            let key = (
                delivery.organization.clone(),
                delivery.notification_id.clone(),
            );
            let rows = existing.entry(key).or_default();
            if !rows.iter().any(|r| r.delivery_id == delivery.delivery_id) {
                rows.push(delivery);
            }
        }
    }

    Ok(batch
        .iter()
        .zip(accepted)
        .map(|(item, accepted)| {
            if accepted {
                let rows = item
                    .targets
                    .iter()
                    .filter_map(|target| {
                        created.remove(&(
                            item.organization.clone(),
                            item.notification_id.clone(),
                            target.integration_id.clone(),
                        ))
                    })
                    .collect();
                Intake::Accepted(rows)
            } else {
                Intake::Duplicate(
                    existing
                        .get(&(item.organization.clone(), item.notification_id.clone()))
                        .cloned()
                        .unwrap_or_default(),
                )
            }
        })
        .collect())
}

async fn settle(
    client: &Client,
    settlements: &[&Settlement],
    now: UnixMillis,
) -> Result<Vec<SettledDelivery>, StoreError> {
    // One statement for the whole run (one settlement per delivery).
    let columns: Vec<_> = settlements.iter().map(|s| s.columns(now)).collect();
    let ids: Vec<i64> = columns.iter().map(|c| c.delivery_id).collect();
    let states: Vec<&str> = columns.iter().map(|c| c.state).collect();
    let attempts: Vec<i32> = columns.iter().map(|c| c.attempts as i32).collect();
    let next_attempts: Vec<Option<i64>> = columns.iter().map(|c| c.next_attempt_at).collect();
    let errors: Vec<Option<&str>> = columns.iter().map(|c| c.last_error).collect();
    let receipts: Vec<Option<&str>> = columns.iter().map(|c| c.receipt).collect();
    let settled: Vec<Option<i64>> = columns.iter().map(|c| c.settled_at).collect();
    let details: Vec<Option<&str>> = columns.iter().map(|c| c.details).collect();
    let changed = client
        .query(
            "UPDATE deliveries d SET state = u.state, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
                    last_error = u.last_error, receipt = COALESCE(u.receipt, d.receipt),
                    settled_at = u.settled_at, details = COALESCE(u.details, d.details)
             FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[])
                  AS u(id, state, attempts, next_attempt_at, last_error, receipt, settled_at, details)
             WHERE d.id = u.id AND d.state IN ('pending', 'retrying')
             RETURNING d.id, d.organization, d.notification_id, d.state",
            &[&ids, &states, &attempts, &next_attempts, &errors, &receipts, &settled, &details],
        )
        .await?;
    let sequenced: HashSet<i64> = settlements
        .iter()
        .filter_map(|settlement| settlement.sequenced_delivery())
        .collect();
    let mut announced = Vec::with_capacity(changed.len());
    for row in &changed {
        let delivery_id: i64 = row.try_get(0)?;
        let is_sequenced = sequenced.contains(&delivery_id);
        if is_sequenced {
            release_or_cancel_next(client, delivery_id, now).await?;
        }
        announced.push(SettledDelivery {
            delivery_id,
            organization: row.try_get(1)?,
            notification_id: row.try_get(2)?,
            state: DeliveryState::parse(row.try_get(3)?)?,
            sequenced: is_sequenced,
        });
    }
    Ok(announced)
}

/// After a sequenced delivery settled: a failure that cancels (all-or-nothing, abort) cancels
/// every delivery of the notification still held; otherwise the next one is released.
async fn release_or_cancel_next(
    client: &Client,
    delivery_id: i64,
    now: UnixMillis,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE deliveries SET state = 'cancelled', settled_at = $2, last_error = $3
             WHERE state = 'held' AND (organization, notification_id) =
               (SELECT organization, notification_id FROM deliveries
                WHERE id = $1 AND state = 'dead_lettered' AND (mode = 'all_or_nothing' OR on_failure = 'abort'))",
            &[&delivery_id, &now, &cancelled_reason(delivery_id)],
        )
        .await?;
    client
        .execute(
            "UPDATE deliveries SET state = 'pending'
             WHERE state = 'held' AND (organization, notification_id, sequence_position) =
               (SELECT organization, notification_id, sequence_position + 1 FROM deliveries
                WHERE id = $1 AND state IN ('delivered', 'dead_lettered'))",
            &[&delivery_id],
        )
        .await?;
    Ok(())
}

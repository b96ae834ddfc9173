//! Routing: which integrations a notification goes to, and the Router actor that takes a
//! validated batch through plan, durable journal and dispatch.
//!
//! The routing table is the organization's `[[routes]]`: notification types, a minimum priority,
//! and an optional condition in CEL (the Common Expression Language, <https://cel.dev>) over the
//! notification, e.g. `notification.weddingContext.venue == "Kew Gardens"`. Herald runs two
//! Router actors, one per lane, so emergencies never queue behind normal intake. The router plans synchronously and journals in a spawned task: its own
//! mailbox never waits for an fsync. It knows nothing about vendors or HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use supervision::Slot;

use crate::condition::Condition;
use crate::config::{Config, RouteConfig};
use crate::integration::{Job, Registry};
use crate::store::{
    DeliveryRow, DeliveryState, Intake, NewNotification, PlannedDelivery, Store, StoreError,
};
use crate::wedsync::{
    Coordination, FieldError, Lane, RoutingRule, TargetSystem, WeddingNotification,
};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("router unavailable (restarting or shutting down)")]
    Unavailable,
}

/// The organizations' routes: the configuration file's, then those WedSync created through the
/// API in the order they were created. Routes change while Herald runs: each organization's list
/// is replaced whole on a change, so routing reads a consistent list without locking it.
pub struct RoutingTable {
    routes: DashMap<String, Arc<Vec<RouteConfig>>>,
}

impl RoutingTable {
    pub fn from_config(config: &Config) -> Self {
        let mut routes: HashMap<String, Vec<RouteConfig>> = HashMap::new();
        for route in &config.routes {
            routes
                .entry(route.organization.clone())
                .or_default()
                .push(route.clone());
        }
        Self {
            routes: routes
                .into_iter()
                .map(|(organization, routes)| (organization, Arc::new(routes)))
                .collect(),
        }
    }

    /// The organization's routes, in order.
    pub fn routes(&self, organization: &str) -> Arc<Vec<RouteConfig>> {
        self.routes
            .get(organization)
            .map(|entry| entry.value().clone())
            .unwrap_or_default()
    }

    /// Adds a route, or replaces the organization's route with the same id where it stands.
    pub fn put(&self, route: RouteConfig) {
        let mut routes = self.routes(&route.organization).as_ref().clone();
        match routes.iter_mut().find(|existing| existing.id == route.id) {
            Some(existing) => *existing = route.clone(),
            None => routes.push(route.clone()),
        }
        self.routes.insert(route.organization, Arc::new(routes));
    }

    /// Removes the organization's route with this id.
    pub fn remove(&self, organization: &str, id: &str) {
        let mut routes = self.routes(organization).as_ref().clone();
        routes.retain(|route| route.id != id);
        self.routes
            .insert(organization.to_owned(), Arc::new(routes));
    }

    /// Returns the integrations the organization's routes choose, in route order, without repeats.
    pub fn targets(&self, organization: &str, notification: &WeddingNotification) -> Vec<String> {
        let mut targets: Vec<String> = Vec::new();
        for route in self.routes(organization).iter() {
            if route_matches(route, notification) {
                for target in &route.targets {
                    if !targets.contains(target) {
                        targets.push(target.clone());
                    }
                }
            }
        }
        targets
    }

    /// The organization's routes that send to this integration.
    /// What a vendor told Herald (an inbound event, a polled alert) as submissions of the
    /// integration's organization: each notification validated, then routed by the
    /// organization's routes to every target but the integration it came from.
    pub fn from_vendor(
        &self,
        organization: &str,
        integration_id: &str,
        notifications: Vec<WeddingNotification>,
    ) -> Result<Vec<Submission>, FieldError> {
        notifications
            .into_iter()
            .map(|notification| {
                notification.validate("", organization)?;
                let targets: Vec<String> = self
                    .targets(organization, &notification)
                    .into_iter()
                    .filter(|target| target != integration_id)
                    .collect();
                Ok(Submission {
                    explicit_targets: Some(targets),
                    ..Submission::routed(notification)
                })
            })
            .collect()
    }

    pub fn routes_targeting(&self, organization: &str, integration_id: &str) -> Vec<RouteConfig> {
        self.routes(organization)
            .iter()
            .filter(|route| route.targets.iter().any(|t| t == integration_id))
            .cloned()
            .collect()
    }

    /// Checks a routing request's explicit targets (`is_ours` says which are the organization's
    /// own integrations; any other is refused) and applies its rules. Errors name the field.
    pub fn explicit_targets(
        &self,
        notification: &WeddingNotification,
        requested: &[TargetSystem],
        rules: &[RoutingRule],
        is_ours: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, FieldError> {
        if requested.is_empty() {
            return Err(FieldError::new(
                "targetSystems",
                "must name at least one integration",
            ));
        }
        let mut targets = Vec::new();
        for (index, target) in requested.iter().enumerate() {
            if !is_ours(&target.system_id) {
                return Err(FieldError::new(
                    format!("targetSystems[{index}].systemId"),
                    format!(
                        "{:?} is not an integration of this organization",
                        target.system_id
                    ),
                ));
            }
            if !targets.contains(&target.system_id) {
                targets.push(target.system_id.clone());
            }
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            if let Some(unknown) = rule.named_systems().find(|named| !targets.contains(named)) {
                let field = if rule.target_systems.contains(unknown) {
                    "targetSystems"
                } else {
                    "integrationId"
                };
                return Err(FieldError::new(
                    format!("routingRules[{index}].{field}"),
                    format!("{unknown:?} is not one of the routing's targetSystems"),
                ));
            }
            let condition = match &rule.condition {
                Some(source) => Some(Condition::compile(source).map_err(|reason| {
                    FieldError::new(format!("routingRules[{index}].condition"), reason)
                })?),
                None => None,
            };
            compiled.push((rule, condition));
        }
        targets.retain(|target| {
            compiled
                .iter()
                .filter(|(rule, _)| rule.applies_to(target))
                .all(|(rule, condition)| {
                    (rule.types.is_empty() || rule.types.contains(&notification.notification_type))
                        && rule
                            .min_priority
                            .is_none_or(|min| notification.priority >= min)
                        && condition.as_ref().is_none_or(|condition| {
                            condition.evaluate(notification).unwrap_or(false)
                        })
                })
        });
        Ok(targets)
    }
}

fn route_matches(route: &RouteConfig, notification: &WeddingNotification) -> bool {
    let cheap = (route.types.is_empty() || route.types.contains(&notification.notification_type))
        && route
            .min_priority
            .is_none_or(|min| notification.priority >= min);
    if !cheap {
        return false;
    }
    let Some(condition) = &route.when else {
        return true;
    };
    match condition.evaluate(notification) {
        Ok(matched) => matched,
        Err(reason) => {
            // A condition that cannot be evaluated for this notification (a field it does not
            // have, say) does not match; the route's author sees why in the log.
            tracing::debug!(route = %route.name, %reason, "route condition did not evaluate");
            false
        }
    }
}

/// What intake did with one notification.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub notification_id: String,
    pub duplicate: bool,
    pub deliveries: Vec<DeliveryRow>,
}

/// A validated notification of one organization, with explicit targets when the caller named
/// them, and the notification as particular targets should see it (a routing's transformation
/// maps, already rendered).
pub struct Submission {
    pub notification: WeddingNotification,
    pub explicit_targets: Option<Vec<String>>,
    pub transformed: HashMap<String, WeddingNotification>,
    /// How the targets' deliveries depend on each other (a routing's coordination).
    pub coordination: Coordination,
}

impl Submission {
    /// A notification routed by the organization's routes, unchanged for every target.
    pub fn routed(notification: WeddingNotification) -> Self {
        Self {
            notification,
            explicit_targets: None,
            transformed: HashMap::new(),
            coordination: Coordination::default(),
        }
    }
}

/// A notification ready to journal: what each target will receive.
struct Planned {
    notification: Arc<WeddingNotification>,
    per_target: HashMap<String, Arc<WeddingNotification>>,
}

pub enum RouterMsg {
    /// Plans, journals (durably) and dispatches; answers once journaled.
    Accept {
        organization: String,
        submissions: Vec<Submission>,
        reply: RpcReplyPort<Result<Vec<Accepted>, RouterError>>,
    },
}

pub struct Router;

pub struct RouterArgs {
    pub lane: Lane,
    pub table: Arc<RoutingTable>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// Where this router publishes itself for the API to find it.
    pub slot: Slot<ActorRef<RouterMsg>>,
}

pub struct RouterState {
    args: RouterArgs,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterState, ActorProcessingErr> {
        args.slot.set(Some(myself));
        Ok(RouterState { args })
    }

    async fn handle(
        &self,
        _: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Accept {
            organization,
            submissions,
            reply,
        } = message;
        let args = &state.args;
        let encode = |notification: &WeddingNotification| {
            serde_json::to_string(notification)
                .map_err(|err| format!("cannot encode notification: {err}"))
        };
        let mut batch = Vec::with_capacity(submissions.len());
        let mut notifications = Vec::with_capacity(submissions.len());
        for submission in submissions {
            let notification = Arc::new(submission.notification.with_organization(&organization));
            let targets = submission
                .explicit_targets
                .unwrap_or_else(|| args.table.targets(&organization, &notification));
            let mut planned = Planned {
                notification: notification.clone(),
                per_target: HashMap::new(),
            };
            let mut deliveries = Vec::with_capacity(targets.len());
            for integration_id in targets {
                let body = match submission.transformed.get(&integration_id) {
                    Some(transformed) => {
                        let transformed =
                            Arc::new(transformed.clone().with_organization(&organization));
                        let body = encode(&transformed)?;
                        planned
                            .per_target
                            .insert(integration_id.clone(), transformed);
                        Some(body)
                    }
                    None => None,
                };
                deliveries.push(PlannedDelivery {
                    integration_id,
                    body,
                });
            }
            batch.push(NewNotification {
                organization: organization.clone(),
                notification_id: notification.notification_id.clone(),
                priority: notification.priority.as_str().to_owned(),
                notification_type: notification.notification_type.clone(),
                body: encode(&notification)?,
                targets: deliveries,
                coordination: submission.coordination,
            });
            notifications.push(planned);
        }
        let (lane, store, registry) = (args.lane, args.store.clone(), args.registry.clone());
        tokio::spawn(async move {
            let outcome =
                journal_and_dispatch(lane, &*store, &registry, batch, notifications).await;
            let _ = reply.send(outcome);
        });
        Ok(())
    }
}

async fn journal_and_dispatch(
    lane: Lane,
    store: &dyn Store,
    registry: &Arc<Registry>,
    batch: Vec<NewNotification>,
    notifications: Vec<Planned>,
) -> Result<Vec<Accepted>, RouterError> {
    let intakes = store.journal(lane, batch).await?;
    let lane_label = if lane == Lane::Emergency {
        "emergency"
    } else {
        "normal"
    };
    let mut per_integration: HashMap<String, Vec<Job>> = HashMap::new();
    let mut accepted = Vec::with_capacity(intakes.len());
    for (intake, planned) in intakes.into_iter().zip(notifications) {
        let (duplicate, deliveries) = match intake {
            Intake::Accepted(rows) => (false, rows),
            Intake::Duplicate(rows) => (true, rows),
        };
        if !duplicate && deliveries.is_empty() {
            // Accepted and journaled, and going nowhere: say so where an operator looks.
            tracing::info!(
                organization = planned.notification.organization_id.as_deref().unwrap_or_default(),
                notification = %planned.notification.notification_id,
                "notification matched no route; nothing will be delivered"
            );
            metrics::counter!("herald_unrouted_total", "lane" => lane_label).increment(1);
        }
        if !duplicate {
            // A held delivery waits for the one before it in its sequence, which releases it.
            for row in deliveries
                .iter()
                .filter(|row| row.state == DeliveryState::Pending)
            {
                let seen_as = planned
                    .per_target
                    .get(&row.integration_id)
                    .unwrap_or(&planned.notification);
                per_integration
                    .entry(row.integration_id.clone())
                    .or_default()
                    .push(Job::from_row(row, seen_as.clone()));
            }
        }
        accepted.push(Accepted {
            notification_id: planned.notification.notification_id.clone(),
            duplicate,
            deliveries,
        });
    }
    let duplicates = accepted.iter().filter(|a| a.duplicate).count() as u64;
    metrics::counter!("herald_intake_total", "lane" => lane_label, "outcome" => "accepted")
        .increment(accepted.len() as u64 - duplicates);
    metrics::counter!("herald_intake_total", "lane" => lane_label, "outcome" => "duplicate")
        .increment(duplicates);
    for (integration, jobs) in per_integration {
        registry.dispatch(&integration, jobs);
    }
    Ok(accepted)
}

/// How the API reaches the routers, whichever incarnation is live.
#[derive(Clone)]
pub struct RouterHandle {
    pub emergency: Slot<ActorRef<RouterMsg>>,
    pub normal: Slot<ActorRef<RouterMsg>>,
}

impl RouterHandle {
    /// Accepts submissions of one organization: emergencies through the emergency router, the
    /// rest through the normal one. Answers in the submissions' order once all are durable.
    pub async fn accept(
        &self,
        organization: &str,
        submissions: Vec<Submission>,
    ) -> Result<Vec<Accepted>, RouterError> {
        let mut order = Vec::with_capacity(submissions.len());
        let (mut urgent, mut normal) = (Vec::new(), Vec::new());
        for submission in submissions {
            let is_emergency = submission.notification.priority.is_emergency();
            order.push(is_emergency);
            if is_emergency {
                urgent.push(submission)
            } else {
                normal.push(submission)
            }
        }
        let urgent_result = self.send(&self.emergency, organization, urgent);
        let normal_result = self.send(&self.normal, organization, normal);
        let (urgent, normal) = tokio::join!(urgent_result, normal_result);
        let (mut urgent, mut normal) = (urgent?.into_iter(), normal?.into_iter());
        Ok(order
            .into_iter()
            .filter_map(|is_emergency| {
                if is_emergency {
                    urgent.next()
                } else {
                    normal.next()
                }
            })
            .collect())
    }

    async fn send(
        &self,
        slot: &Slot<ActorRef<RouterMsg>>,
        organization: &str,
        submissions: Vec<Submission>,
    ) -> Result<Vec<Accepted>, RouterError> {
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        let router = slot.get().ok_or(RouterError::Unavailable)?;
        let organization = organization.to_owned();
        ractor::call!(router, |reply| RouterMsg::Accept {
            organization,
            submissions,
            reply
        })
        .map_err(|_| RouterError::Unavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wedsync::Priority;

    fn table() -> RoutingTable {
        let route =
            |name: &str, types: &[&str], min: Option<Priority>, targets: &[&str]| RouteConfig {
                id: name.into(),
                organization: "studio".into(),
                name: name.into(),
                types: types.iter().map(|t| t.to_string()).collect(),
                min_priority: min,
                when: None,
                targets: targets.iter().map(|t| t.to_string()).collect(),
                source: crate::config::Source::Config,
            };
        let table = RoutingTable {
            routes: DashMap::new(),
        };
        table.put(route(
            "timeline",
            &["timeline_change"],
            None,
            &["crm", "chat"],
        ));
        table.put(route(
            "urgent",
            &[],
            Some(Priority::High),
            &["chat", "pager"],
        ));
        table
    }

    /// Whether the studio has this integration (`theirs` is another organization's).
    fn studios(id: &str) -> bool {
        ["crm", "chat", "pager"].contains(&id)
    }

    fn notification(kind: &str, priority: Priority) -> WeddingNotification {
        serde_json::from_value(serde_json::json!({
            "notificationId": "n", "type": kind, "priority": priority, "title": "t", "message": "m"
        }))
        .unwrap()
    }

    #[test]
    fn routes_match_on_type_and_minimum_priority() {
        let table = table();
        assert_eq!(
            table.targets("studio", &notification("timeline_change", Priority::Normal)),
            vec!["crm", "chat"]
        );
        assert_eq!(
            table.targets(
                "studio",
                &notification("timeline_change", Priority::Emergency)
            ),
            vec!["crm", "chat", "pager"]
        );
        assert_eq!(
            table.targets(
                "studio",
                &notification("payment_received", Priority::Emergency)
            ),
            vec!["chat", "pager"]
        );
        assert!(table
            .targets("studio", &notification("payment_received", Priority::Low))
            .is_empty());
        assert!(table
            .targets("other", &notification("timeline_change", Priority::High))
            .is_empty());
    }

    #[test]
    fn routes_match_by_their_conditions() {
        let mut n = notification("timeline_change", Priority::High);
        n.wedding_context = Some(serde_json::from_value(serde_json::json!({"weddingId": "w", "weddingDate": "2027-06-12", "venue": "Kew Gardens"})).unwrap());
        n.metadata.insert("affectsDeal".into(), true.into());
        let matches = |source: &str| Condition::compile(source).unwrap().evaluate(&n);
        // As the photo-studio example tells WedSync's own payments from its booking system's.
        assert_eq!(matches("!has(metadata.source)"), Ok(true));
        let mut from_booking = n.clone();
        from_booking
            .metadata
            .insert("source".into(), "booking-system".into());
        let booking_only =
            Condition::compile(r#"has(metadata.source) && metadata.source == "booking-system""#)
                .unwrap();
        assert_eq!(booking_only.evaluate(&from_booking), Ok(true));
        assert_eq!(booking_only.evaluate(&n), Ok(false));
        assert_eq!(
            Condition::compile("!has(metadata.source)")
                .unwrap()
                .evaluate(&from_booking),
            Ok(false)
        );

        let table = table();
        let mut urgent = table.routes("studio")[1].clone();
        urgent.when = Some(Condition::compile("has(metadata.affectsDeal)").unwrap());
        table.put(urgent);
        assert_eq!(table.targets("studio", &n), vec!["crm", "chat", "pager"]);
        n.metadata.clear();
        assert_eq!(
            table.targets("studio", &n),
            vec!["crm", "chat"],
            "the urgent route's condition no longer holds"
        );
    }

    #[test]
    fn explicit_targets_must_belong_to_the_organization_and_pass_their_rules() {
        let table = table();
        let n = notification("timeline_change", Priority::Normal);
        let system = |id: &str| TargetSystem {
            system_id: id.into(),
            system_type: None,
        };
        assert_eq!(
            table
                .explicit_targets(&n, &[system("theirs")], &[], studios)
                .unwrap_err()
                .field,
            "targetSystems[0].systemId"
        );
        let ours = [system("crm"), system("pager"), system("chat")];
        let rule =
            |value: serde_json::Value| -> RoutingRule { serde_json::from_value(value).unwrap() };
        // Herald's earlier form (one integration), the seed's (CEL over the systems it names),
        // and a rule naming no system, which applies to all.
        let rules = [
            rule(serde_json::json!({"integrationId": "pager", "minPriority": "high"})),
            rule(
                serde_json::json!({"ruleId": "r2", "condition": "notification.type == \"payment_received\"", "targetSystems": ["chat"]}),
            ),
            rule(
                serde_json::json!({"ruleId": "r3", "condition": "notification.priority != \"low\""}),
            ),
        ];
        assert_eq!(
            table.explicit_targets(&n, &ours, &rules, studios).unwrap(),
            vec!["crm"]
        );
        let unknown = [rule(serde_json::json!({"targetSystems": ["nowhere"]}))];
        assert_eq!(
            table
                .explicit_targets(&n, &ours, &unknown, studios)
                .unwrap_err()
                .field,
            "routingRules[0].targetSystems"
        );
        let broken = [rule(
            serde_json::json!({"condition": "notification.type =="}),
        )];
        assert_eq!(
            table
                .explicit_targets(&n, &ours, &broken, studios)
                .unwrap_err()
                .field,
            "routingRules[0].condition"
        );
    }
}

//! The load balancer on ELBv2: target registration and health, the switch points (a
//! listener's default action or one rule: read as greenlight's `SeenAction`s, written as the
//! frame around the forward greenlight owns), who forwards to a target group, and a group's
//! deregistration delay.

use super::error::{aws_error, error_code};
use crate::{tags, AdapterError, AdapterResult, LoadBalancer, MAX_FORWARDERS};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateCognitoActionConditionalBehaviorEnum, AuthenticateCognitoActionConfig,
    AuthenticateOidcActionConditionalBehaviorEnum, AuthenticateOidcActionConfig, ForwardActionConfig,
    HttpHeaderConditionConfig, Rule, RuleCondition, Tag, TargetDescription, TargetGroupStickinessConfig,
    TargetGroupTuple,
};
use greenlight_core::config::Switch;
use greenlight_core::decide::{TargetHealth, TargetState};
use greenlight_core::switch::{Cognito, Frame, Guard, Oidc, SeenAction, Stickiness, TEST_ROUTE_HEADER};
use std::collections::BTreeMap;

/// Application Load Balancer targets and switch point.
pub struct ElbLoadBalancer {
    pub client: aws_sdk_elasticloadbalancingv2::Client,
}

fn targets(instance_ids: &[String], port: u16) -> Vec<TargetDescription> {
    instance_ids
        .iter()
        .map(|id| TargetDescription::builder().id(id).port(port as i32).build())
        .collect()
}

/// Forward weights of an action, as percentages of their sum.
fn forward_weights(actions: &[Action]) -> Vec<(String, u8)> {
    let Some(forward) = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)) else {
        return vec![];
    };
    let tuples: Vec<(String, i64)> = match forward.forward_config() {
        Some(config) if !config.target_groups().is_empty() => config
            .target_groups()
            .iter()
            .filter_map(|t| Some((t.target_group_arn()?.to_string(), t.weight().unwrap_or(1) as i64)))
            .collect(),
        _ => forward
            .target_group_arn()
            .map(|tg| vec![(tg.to_string(), 1)])
            .unwrap_or_default(),
    };
    let total: i64 = tuples.iter().map(|(_, w)| *w).sum();
    tuples
        .into_iter()
        .map(|(tg, w)| (tg, if total > 0 { (w * 100 / total) as u8 } else { 0 }))
        .collect()
}

#[async_trait]
impl LoadBalancer for ElbLoadBalancer {
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_string();
                let health = d.target_health();
                let state = match health.and_then(|h| h.state()).map(|s| s.as_str()) {
                    Some("initial") => TargetState::Initial,
                    Some("healthy") => TargetState::Healthy,
                    Some("unhealthy") => TargetState::Unhealthy,
                    Some("unused") => TargetState::Unused,
                    Some("draining") => TargetState::Draining,
                    _ => TargetState::Unavailable,
                };
                let reason = health.and_then(|h| {
                    let code = h.reason().map(|r| r.as_str().to_string());
                    match (code, h.description()) {
                        (Some(code), Some(text)) => Some(format!("{code}: {text}")),
                        (code, text) => code.or(text.map(str::to_string)),
                    }
                });
                Some(TargetHealth {
                    instance_id: id,
                    state,
                    reason,
                })
            })
            .collect())
    }

    async fn register(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.client
            .register_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_ids, port)))
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "RegisterTargets", e))?;
        Ok(())
    }

    async fn deregister(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .deregister_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_ids, port)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A target already gone (e.g. terminated by an earlier delivery) is deregistered.
            Err(e) if error_code(&e) == Some("InvalidTarget") => {
                tracing::info!(target_group, ?instance_ids, "deregister: targets already gone");
                Ok(())
            }
            Err(e) => Err(aws_error("elbv2", "DeregisterTargets", e)),
        }
    }

    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()> {
        let read;
        let frame = match frame {
            Some(frame) => frame,
            None => {
                // A deployment recorded before frames were: keep what the point has now.
                let seen = self.switch_point(switch).await?;
                read = frame_as_read(&seen);
                &read
            }
        };
        let actions = actions_of(frame, weights);
        match &switch.rule_arn {
            Some(rule) => {
                self.client
                    .modify_rule()
                    .rule_arn(rule)
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyRule", e))?;
            }
            None => {
                self.client
                    .modify_listener()
                    .listener_arn(&switch.listener_arn)
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyListener", e))?;
            }
        }
        Ok(())
    }

    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>> {
        match &switch.rule_arn {
            Some(rule) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(rule)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "DescribeRules", e))?;
                let rule = out
                    .rules()
                    .first()
                    .ok_or_else(|| AdapterError::NotFound(format!("listener rule {rule}")))?;
                Ok(seen_actions(rule.actions()))
            }
            None => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(&switch.listener_arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "DescribeListeners", e))?;
                let listener = out
                    .listeners()
                    .first()
                    .ok_or_else(|| AdapterError::NotFound(format!("listener {}", switch.listener_arn)))?;
                Ok(seen_actions(listener.default_actions()))
            }
        }
    }

    async fn forwarders(&self, target_group: &str) -> AdapterResult<Vec<String>> {
        let groups = self
            .client
            .describe_target_groups()
            .target_group_arns(target_group)
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "DescribeTargetGroups", e))?;
        let balancers: Vec<String> = groups
            .target_groups()
            .iter()
            .flat_map(|g| g.load_balancer_arns().iter().cloned())
            .collect();
        let forwards = |actions: &[Action]| {
            greenlight_core::switch::weights(&seen_actions(actions))
                .iter()
                .any(|(tg, w)| tg == target_group && *w > 0)
        };
        let mut found = Vec::new();
        for balancer in balancers {
            let mut listeners = self
                .client
                .describe_listeners()
                .load_balancer_arn(&balancer)
                .into_paginator()
                .items()
                .send();
            while let Some(listener) = listeners.next().await {
                let listener = listener.map_err(|e| aws_error("elbv2", "DescribeListeners", e))?;
                let Some(listener_arn) = listener.listener_arn() else {
                    continue;
                };
                if forwards(listener.default_actions()) {
                    found.push(listener_arn.to_string());
                }
                // DescribeRules has no paginator in the SDK: follow NextMarker by hand.
                let mut marker: Option<String> = None;
                loop {
                    let page = self
                        .client
                        .describe_rules()
                        .listener_arn(listener_arn)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| aws_error("elbv2", "DescribeRules", e))?;
                    for rule in page.rules() {
                        // The default rule is the listener's default action, seen above.
                        if rule.is_default() != Some(true) && forwards(rule.actions()) {
                            found.extend(rule.rule_arn().map(str::to_string));
                        }
                    }
                    match page.next_marker() {
                        Some(next) if found.len() < MAX_FORWARDERS => marker = Some(next.to_string()),
                        _ => break,
                    }
                }
                if found.len() >= MAX_FORWARDERS {
                    found.truncate(MAX_FORWARDERS);
                    return Ok(found);
                }
            }
        }
        Ok(found)
    }

    async fn deregistration_delay_s(&self, target_group: &str) -> AdapterResult<u64> {
        let out = self
            .client
            .describe_target_group_attributes()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "DescribeTargetGroupAttributes", e))?;
        let delay = out
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value())
            // AWS's default when the attribute is absent.
            .unwrap_or("300");
        delay.parse().map_err(|_| {
            AdapterError::Invalid(format!(
                "target group {target_group}: deregistration_delay.timeout_seconds is {delay:?}, not a number of seconds"
            ))
        })
    }

    async fn open_test_route(&self, listener_arn: &str, deploy_id: &str, target_group: &str) -> AdapterResult<String> {
        // CreateRule is not idempotent: look first; a priority taken between the look and
        // the create (another deployment's route, a racing delivery of this one) is looked
        // for again, a bounded number of times.
        for _ in 0..3 {
            let rules = self.rules_of(listener_arn).await?;
            if let Some(rule) = rules.iter().find(|r| test_route_of(r).as_deref() == Some(deploy_id)) {
                return Ok(rule.rule_arn().unwrap_or_default().to_string());
            }
            let used: std::collections::BTreeSet<i32> =
                rules.iter().filter_map(|r| r.priority()?.parse().ok()).collect();
            let priority = (1..=50_000)
                .find(|p| !used.contains(p))
                .ok_or_else(|| AdapterError::Invalid(format!("listener {listener_arn} has no free rule priority")))?;
            let condition = RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name(TEST_ROUTE_HEADER)
                        .values(deploy_id)
                        .build(),
                )
                .build();
            let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
            let created = self
                .client
                .create_rule()
                .listener_arn(listener_arn)
                .priority(priority)
                .conditions(condition)
                .set_actions(Some(actions_of(&Frame::default(), &[(target_group.to_string(), 100)])))
                .tags(tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE))
                .tags(tag(tags::DEPLOY_ID, deploy_id))
                .send()
                .await;
            match created {
                Ok(out) => {
                    return Ok(out
                        .rules()
                        .first()
                        .and_then(|r| r.rule_arn())
                        .unwrap_or_default()
                        .to_string())
                }
                Err(e) if error_code(&e) == Some("PriorityInUse") => continue,
                Err(e) => return Err(aws_error("elbv2", "CreateRule", e)),
            }
        }
        Err(AdapterError::Aws {
            service: "elbv2",
            operation: "CreateRule",
            message: format!("listener {listener_arn}: every free priority was taken meanwhile, three times"),
            retryable: true,
        })
    }

    async fn close_test_route(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<()> {
        let rules = self.rules_of(listener_arn).await?;
        for rule in rules.iter().filter(|r| test_route_of(r).as_deref() == Some(deploy_id)) {
            let Some(arn) = rule.rule_arn() else { continue };
            match self.client.delete_rule().rule_arn(arn).send().await {
                Ok(_) => {}
                // Deleted by a racing delivery: closed.
                Err(e) if error_code(&e) == Some("RuleNotFound") => {}
                Err(e) => return Err(aws_error("elbv2", "DeleteRule", e)),
            }
        }
        Ok(())
    }

    async fn test_routes(&self, listener_arn: &str) -> AdapterResult<Vec<(String, String)>> {
        Ok(self
            .rules_of(listener_arn)
            .await?
            .iter()
            .filter_map(|r| Some((r.rule_arn()?.to_string(), test_route_of(r)?)))
            .take(MAX_FORWARDERS)
            .collect())
    }
}

impl ElbLoadBalancer {
    /// Every rule of `listener_arn` (DescribeRules, following its markers), at most 1 000
    /// (the most rules an ALB allows per load balancer is 100 by default, 1 000 raised).
    async fn rules_of(&self, listener_arn: &str) -> AdapterResult<Vec<Rule>> {
        let mut rules = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_rules()
                .listener_arn(listener_arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_error("elbv2", "DescribeRules", e))?;
            rules.extend(page.rules().iter().cloned());
            match page.next_marker() {
                Some(next) if rules.len() < 1_000 => marker = Some(next.to_string()),
                _ => return Ok(rules),
            }
        }
    }
}

/// The deploy id a test route's rule is for: its `http-header` condition on
/// [`TEST_ROUTE_HEADER`] with one value.
fn test_route_of(rule: &Rule) -> Option<String> {
    rule.conditions().iter().find_map(|c| {
        let header = c.http_header_config()?;
        let named = header
            .http_header_name()
            .is_some_and(|n| n.eq_ignore_ascii_case(TEST_ROUTE_HEADER));
        match header.values() {
            [value] if named => Some(value.clone()),
            _ => None,
        }
    })
}

/// A switch point's actions in greenlight's terms. A client secret is never read into them.
fn seen_actions(actions: &[Action]) -> Vec<SeenAction> {
    let mut actions: Vec<&Action> = actions.iter().collect();
    actions.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    actions
        .into_iter()
        .map(|action| match action.r#type() {
            Some(ActionTypeEnum::Forward) => SeenAction::Forward {
                order: action.order(),
                weights: forward_weights(std::slice::from_ref(action)),
                stickiness: action
                    .forward_config()
                    .and_then(|c| c.target_group_stickiness_config())
                    .map(|s| Stickiness {
                        enabled: s.enabled().unwrap_or(false),
                        duration_s: s.duration_seconds(),
                    }),
            },
            Some(ActionTypeEnum::AuthenticateOidc) if action.authenticate_oidc_config().is_some() => {
                let c = action.authenticate_oidc_config().expect("checked");
                SeenAction::Guard(Guard::AuthenticateOidc {
                    order: action.order(),
                    config: Oidc {
                        issuer: c.issuer().unwrap_or_default().to_string(),
                        authorization_endpoint: c.authorization_endpoint().unwrap_or_default().to_string(),
                        token_endpoint: c.token_endpoint().unwrap_or_default().to_string(),
                        user_info_endpoint: c.user_info_endpoint().unwrap_or_default().to_string(),
                        client_id: c.client_id().unwrap_or_default().to_string(),
                        session_cookie_name: c.session_cookie_name().map(str::to_string),
                        scope: c.scope().map(str::to_string),
                        session_timeout: c.session_timeout(),
                        extra_params: extra_params(c.authentication_request_extra_params()),
                        on_unauthenticated_request: c.on_unauthenticated_request().map(|b| b.as_str().to_string()),
                    },
                })
            }
            Some(ActionTypeEnum::AuthenticateCognito) if action.authenticate_cognito_config().is_some() => {
                let c = action.authenticate_cognito_config().expect("checked");
                SeenAction::Guard(Guard::AuthenticateCognito {
                    order: action.order(),
                    config: Cognito {
                        user_pool_arn: c.user_pool_arn().unwrap_or_default().to_string(),
                        user_pool_client_id: c.user_pool_client_id().unwrap_or_default().to_string(),
                        user_pool_domain: c.user_pool_domain().unwrap_or_default().to_string(),
                        session_cookie_name: c.session_cookie_name().map(str::to_string),
                        scope: c.scope().map(str::to_string),
                        session_timeout: c.session_timeout(),
                        extra_params: extra_params(c.authentication_request_extra_params()),
                        on_unauthenticated_request: c.on_unauthenticated_request().map(|b| b.as_str().to_string()),
                    },
                })
            }
            other => SeenAction::Other {
                action_type: other
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "untyped".into()),
                order: action.order(),
            },
        })
        .collect()
}

fn extra_params(params: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    params
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The frame of a switch point as read, whether or not greenlight could own it: its
/// authentication actions and its forward's order and stickiness (the legacy write path).
fn frame_as_read(seen: &[SeenAction]) -> Frame {
    let mut frame = Frame::default();
    for action in seen {
        match action {
            SeenAction::Guard(guard) => frame.guards.push(guard.clone()),
            SeenAction::Forward { order, stickiness, .. } => {
                frame.forward_order = *order;
                frame.stickiness = stickiness.clone();
            }
            SeenAction::Other { .. } => {}
        }
    }
    frame
}

/// The action list of a switch point: `frame`'s actions, then the forward over `weights`
/// with the frame's order and stickiness. An OIDC action keeps its client secret on the
/// load balancer (`UseExistingClientSecret`); greenlight never holds it.
fn actions_of(frame: &Frame, weights: &[(String, u8)]) -> Vec<Action> {
    let mut actions: Vec<Action> = frame
        .guards
        .iter()
        .map(|guard| match guard {
            Guard::AuthenticateOidc { order, config: c } => Action::builder()
                .r#type(ActionTypeEnum::AuthenticateOidc)
                .set_order(*order)
                .authenticate_oidc_config(
                    AuthenticateOidcActionConfig::builder()
                        .issuer(&c.issuer)
                        .authorization_endpoint(&c.authorization_endpoint)
                        .token_endpoint(&c.token_endpoint)
                        .user_info_endpoint(&c.user_info_endpoint)
                        .client_id(&c.client_id)
                        .use_existing_client_secret(true)
                        .set_session_cookie_name(c.session_cookie_name.clone())
                        .set_scope(c.scope.clone())
                        .set_session_timeout(c.session_timeout)
                        .set_authentication_request_extra_params(params_of(&c.extra_params))
                        .set_on_unauthenticated_request(
                            c.on_unauthenticated_request
                                .as_deref()
                                .map(AuthenticateOidcActionConditionalBehaviorEnum::from),
                        )
                        .build(),
                )
                .build(),
            Guard::AuthenticateCognito { order, config: c } => Action::builder()
                .r#type(ActionTypeEnum::AuthenticateCognito)
                .set_order(*order)
                .authenticate_cognito_config(
                    AuthenticateCognitoActionConfig::builder()
                        .user_pool_arn(&c.user_pool_arn)
                        .user_pool_client_id(&c.user_pool_client_id)
                        .user_pool_domain(&c.user_pool_domain)
                        .set_session_cookie_name(c.session_cookie_name.clone())
                        .set_scope(c.scope.clone())
                        .set_session_timeout(c.session_timeout)
                        .set_authentication_request_extra_params(params_of(&c.extra_params))
                        .set_on_unauthenticated_request(
                            c.on_unauthenticated_request
                                .as_deref()
                                .map(AuthenticateCognitoActionConditionalBehaviorEnum::from),
                        )
                        .build(),
                )
                .build(),
        })
        .collect();
    let mut config = ForwardActionConfig::builder();
    for (tg, weight) in weights {
        config = config.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(tg)
                .weight(*weight as i32)
                .build(),
        );
    }
    if let Some(sticky) = &frame.stickiness {
        config = config.target_group_stickiness_config(
            TargetGroupStickinessConfig::builder()
                .enabled(sticky.enabled)
                .set_duration_seconds(sticky.duration_s)
                .build(),
        );
    }
    actions.push(
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .set_order(frame.forward_order)
            .forward_config(config.build())
            .build(),
    );
    actions
}

fn params_of(params: &BTreeMap<String, String>) -> Option<std::collections::HashMap<String, String>> {
    (!params.is_empty()).then(|| params.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_weights_are_percentages_of_their_sum() {
        let tuple = |tg: &str, w: i32| TargetGroupTuple::builder().target_group_arn(tg).weight(w).build();
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(tuple("a", 9))
                    .target_groups(tuple("b", 1))
                    .build(),
            )
            .build();
        assert_eq!(forward_weights(&[action]), vec![("a".into(), 90), ("b".into(), 10)]);
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("a")
            .build();
        assert_eq!(forward_weights(&[plain]), vec![("a".into(), 100)]);
        assert_eq!(forward_weights(&[]), vec![]);
    }
}

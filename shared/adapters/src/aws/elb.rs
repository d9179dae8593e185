//! The load balancer on ELBv2: target registration and health, and the switch point's
//! forward weights (a listener's default action or one rule).

use super::error::{aws_error, error_code};
use crate::{AdapterError, AdapterResult, LoadBalancer};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetDescription, TargetGroupTuple,
};
use greenlight_core::config::Switch;
use greenlight_core::decide::{TargetHealth, TargetState};

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

    async fn set_traffic(&self, switch: &Switch, weights: &[(String, u8)]) -> AdapterResult<()> {
        let mut config = ForwardActionConfig::builder();
        for (tg, weight) in weights {
            config = config.target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(tg)
                    .weight(*weight as i32)
                    .build(),
            );
        }
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(config.build())
            .build();
        match &switch.rule_arn {
            Some(rule) => {
                self.client
                    .modify_rule()
                    .rule_arn(rule)
                    .actions(action)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyRule", e))?;
            }
            None => {
                self.client
                    .modify_listener()
                    .listener_arn(&switch.listener_arn)
                    .default_actions(action)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyListener", e))?;
            }
        }
        Ok(())
    }

    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
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
                Ok(forward_weights(rule.actions()))
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
                Ok(forward_weights(listener.default_actions()))
            }
        }
    }
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

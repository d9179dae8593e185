//! Switch points as load balancers have them. A service's traffic is switched on every one of
//! its switch points (listeners' default actions, listener rules, possibly on several load
//! balancers), all moved to the same weights by every change. Of each, greenlight owns only
//! the `forward` action's target groups and weights; everything else is its **frame**, kept
//! exactly: the actions before the forward (authenticate-oidc, authenticate-cognito, with
//! their `Order`) and the forward's target-group stickiness. ELBv2 has no partial update
//! (ModifyListener and ModifyRule replace the whole action list), so a change re-sends the
//! frame as it was read. A switch point greenlight cannot own that way is refused with a
//! reason ([`own`]).
//!
//! A client secret is never part of a frame: it is dropped when read, and a change re-sends an
//! OIDC action with `UseExistingClientSecret`, so no secret reaches the ledger or the logs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most switch points one service may have: every traffic change touches each of them
/// (concurrently), and the revert plan carries each frame.
pub const MAX_SWITCH_POINTS: usize = 10;

/// The header of a deployment's test route: a listener rule on the first switch point's
/// listener forwarding requests with `X-Greenlight-Deployment: <deploy id>` to green only,
/// from green's launch until it goes live or the deployment ends.
pub const TEST_ROUTE_HEADER: &str = "X-Greenlight-Deployment";

/// One switch point: a listener's default action, or one listener rule when several services
/// share a listener by host or path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub listener_arn: String,
    #[serde(default)]
    pub rule_arn: Option<String>,
}

impl Switch {
    /// The ARN greenlight modifies: the rule's, or the listener's for its default action.
    pub fn arn(&self) -> &str {
        self.rule_arn.as_deref().unwrap_or(&self.listener_arn)
    }
}

/// The registration's switch points: one object (`"switch": {...}`) or a list of them
/// (`"switch": [{...}, {...}]`); stored back the way it was written for one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switches(Vec<Switch>);

impl Switches {
    pub fn one(switch: Switch) -> Self {
        Switches(vec![switch])
    }
    pub fn new(points: Vec<Switch>) -> Self {
        Switches(points)
    }
    pub fn points(&self) -> &[Switch] {
        &self.0
    }
    /// The first point (the one a registration of one point names).
    pub fn first(&self) -> Option<&Switch> {
        self.0.first()
    }
    /// The ARNs, comma-separated, for messages.
    pub fn describe(&self) -> String {
        self.0.iter().map(Switch::arn).collect::<Vec<_>>().join(", ")
    }
    /// What is wrong with the list, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.0.is_empty() {
            problems.push("switch must name at least one listener or rule".into());
        }
        if self.0.len() > MAX_SWITCH_POINTS {
            problems.push(format!(
                "switch names {} points; at most {MAX_SWITCH_POINTS}",
                self.0.len()
            ));
        }
        for (i, point) in self.0.iter().enumerate() {
            if !point.listener_arn.starts_with("arn:") || !point.listener_arn.contains(":listener/") {
                problems.push(format!("switch[{i}].listener_arn must be a listener ARN"));
            }
            if let Some(rule) = &point.rule_arn {
                if !rule.starts_with("arn:") || !rule.contains(":listener-rule/") {
                    problems.push(format!("switch[{i}].rule_arn must be a listener rule ARN"));
                }
            }
            if self.0[..i].iter().any(|p| p.arn() == point.arn()) {
                problems.push(format!("switch[{i}] names {} twice", point.arn()));
            }
        }
        problems
    }
}

impl Serialize for Switches {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Switches {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Switch),
            Many(Vec<Switch>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(one)) => Ok(Switches(vec![one])),
            Ok(OneOrMany::Many(many)) => Ok(Switches(many)),
            Err(_) => Err(serde::de::Error::custom(
                "switch must be {\"listener_arn\": ..., \"rule_arn\": ...} or a list of them",
            )),
        }
    }
}

/// A forward action's target-group stickiness, re-sent as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stickiness {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<i32>,
}

/// An OpenID Connect authentication action, without its client secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub user_info_endpoint: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unauthenticated_request: Option<String>,
}

/// An Amazon Cognito authentication action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cognito {
    pub user_pool_arn: String,
    pub user_pool_client_id: String,
    pub user_pool_domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unauthenticated_request: Option<String>,
}

/// An action that runs before the forward and that greenlight re-sends untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Guard {
    AuthenticateOidc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<i32>,
        config: Oidc,
    },
    AuthenticateCognito {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<i32>,
        config: Cognito,
    },
}

/// What greenlight keeps of a switch point it changes: everything but the forward's target
/// groups and weights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// The actions before the forward, in their order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
    /// The forward action's `Order`, when the switch point gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_order: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Stickiness>,
}

/// One action of a switch point as read from the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SeenAction {
    /// An action greenlight keeps before the forward.
    Guard(Guard),
    /// A forward: `(target group ARN, weight as % of the sum)`.
    Forward {
        #[serde(default)]
        order: Option<i32>,
        weights: Vec<(String, u8)>,
        #[serde(default)]
        stickiness: Option<Stickiness>,
    },
    /// Any other action (`redirect`, `fixed-response`, a type greenlight does not know).
    Other {
        action_type: String,
        #[serde(default)]
        order: Option<i32>,
    },
}

/// The forward's weights (`(target group, %)`) of a switch point's actions; empty when it has
/// no forward.
pub fn weights(actions: &[SeenAction]) -> Vec<(String, u8)> {
    actions
        .iter()
        .find_map(|a| match a {
            SeenAction::Forward { weights, .. } => Some(weights.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The frame of a switch point greenlight may own for a service whose target groups are
/// `pair`, or why it may not: exactly one forward, last, over the pair only (a foreign target
/// group would be dropped by greenlight's next change), and nothing before it but
/// authentication actions.
pub fn own(point: &Switch, actions: &[SeenAction], pair: &[String; 2]) -> Result<Frame, String> {
    let arn = point.arn();
    let forwards = actions
        .iter()
        .filter(|a| matches!(a, SeenAction::Forward { .. }))
        .count();
    if let Some(SeenAction::Other { action_type, .. }) = actions.iter().find(|a| matches!(a, SeenAction::Other { .. }))
    {
        return Err(format!(
            "{arn} has a {action_type} action; greenlight switches only a forward (with authentication actions before it)"
        ));
    }
    match forwards {
        0 => return Err(format!("{arn} has no forward action for greenlight to own")),
        1 => {}
        n => return Err(format!("{arn} has {n} forward actions; greenlight owns exactly one")),
    }
    let mut frame = Frame::default();
    for (i, action) in actions.iter().enumerate() {
        match action {
            SeenAction::Guard(guard) => frame.guards.push(guard.clone()),
            SeenAction::Forward {
                order,
                weights,
                stickiness,
            } => {
                if i + 1 != actions.len() {
                    return Err(format!("{arn}: its forward action is not the last action"));
                }
                if let Some((foreign, _)) = weights.iter().find(|(tg, _)| !pair.contains(tg)) {
                    return Err(format!(
                        "{arn} forwards to {foreign}, which is not one of the service's target groups; \
                         greenlight would drop it from the forward"
                    ));
                }
                frame.forward_order = *order;
                frame.stickiness = stickiness.clone();
            }
            SeenAction::Other { .. } => unreachable!("refused above"),
        }
    }
    Ok(frame)
}

/// A change to one switch point: its frame (None for a deployment recorded before frames
/// were: the load balancer adapter then reads the frame just before writing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointWrite {
    pub switch: Switch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Frame>,
}

/// The listener or rule (by ARN) whose forward gives `target_group` a weight, among
/// `(ARN, weights)`: the first that still forwards traffic to it.
pub fn still_forwarding<'a>(points: &'a [(String, Vec<(String, u8)>)], target_group: &str) -> Option<&'a str> {
    points
        .iter()
        .find(|(_, weights)| weights.iter().any(|(tg, w)| tg == target_group && *w > 0))
        .map(|(arn, _)| arn.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2";
    const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/web/1/2/3";

    fn pair() -> [String; 2] {
        ["arn:tg/a".to_string(), "arn:tg/b".to_string()]
    }

    fn oidc() -> Guard {
        Guard::AuthenticateOidc {
            order: Some(1),
            config: Oidc {
                issuer: "https://idp".into(),
                authorization_endpoint: "https://idp/auth".into(),
                token_endpoint: "https://idp/token".into(),
                user_info_endpoint: "https://idp/me".into(),
                client_id: "client".into(),
                session_cookie_name: None,
                scope: Some("openid".into()),
                session_timeout: Some(3600),
                extra_params: BTreeMap::new(),
                on_unauthenticated_request: Some("authenticate".into()),
            },
        }
    }

    fn forward(weights: &[(&str, u8)], stickiness: Option<Stickiness>) -> SeenAction {
        SeenAction::Forward {
            order: Some(2),
            weights: weights.iter().map(|(t, w)| (t.to_string(), *w)).collect(),
            stickiness,
        }
    }

    #[test]
    fn greenlight_owns_exactly_one_last_forward_over_the_pair_and_keeps_the_rest() {
        let point = Switch {
            listener_arn: LISTENER.into(),
            rule_arn: None,
        };
        let sticky = Some(Stickiness {
            enabled: true,
            duration_s: Some(600),
        });
        let other = |t: &str| SeenAction::Other {
            action_type: t.into(),
            order: None,
        };
        let table: Vec<(&str, Vec<SeenAction>, Result<Frame, &str>)> = vec![
            (
                "plain forward",
                vec![forward(&[("arn:tg/a", 100)], None)],
                Ok(Frame {
                    forward_order: Some(2),
                    ..Frame::default()
                }),
            ),
            (
                "authentication and stickiness kept",
                vec![
                    SeenAction::Guard(oidc()),
                    forward(&[("arn:tg/a", 90), ("arn:tg/b", 10)], sticky.clone()),
                ],
                Ok(Frame {
                    guards: vec![oidc()],
                    forward_order: Some(2),
                    stickiness: sticky,
                }),
            ),
            ("no forward", vec![other("redirect")], Err("has a redirect action")),
            ("nothing", vec![], Err("no forward action")),
            (
                "two forwards",
                vec![forward(&[("arn:tg/a", 100)], None), forward(&[("arn:tg/b", 100)], None)],
                Err("2 forward actions"),
            ),
            (
                "a foreign target group",
                vec![forward(&[("arn:tg/a", 90), ("arn:tg/other", 10)], None)],
                Err("arn:tg/other, which is not one of the service's target groups"),
            ),
            (
                "forward not last",
                vec![forward(&[("arn:tg/a", 100)], None), SeenAction::Guard(oidc())],
                Err("not the last action"),
            ),
        ];
        for (what, actions, want) in table {
            let got = own(&point, &actions, &pair());
            match (want, got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{what}"),
                (Err(want), Err(got)) => {
                    assert!(got.contains(want) && got.contains(LISTENER), "{what}: {got}")
                }
                (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn one_switch_point_is_written_back_as_one_object_and_a_list_as_a_list() {
        let one: Switches = serde_json::from_str(&format!(r#"{{"listener_arn": "{LISTENER}"}}"#)).unwrap();
        assert_eq!(one.points().len(), 1);
        assert!(serde_json::to_value(&one).unwrap().is_object());
        let many: Switches = serde_json::from_str(&format!(
            r#"[{{"listener_arn": "{LISTENER}"}}, {{"listener_arn": "{LISTENER}", "rule_arn": "{RULE}"}}]"#
        ))
        .unwrap();
        assert_eq!(many.points().len(), 2);
        assert!(serde_json::to_value(&many).unwrap().is_array());
        assert!(many.problems().is_empty(), "{:?}", many.problems());
        let err = serde_json::from_str::<Switches>(r#""arn""#).unwrap_err().to_string();
        assert!(err.contains("a list of them"), "{err}");
    }

    #[test]
    fn a_switch_list_that_cannot_work_is_refused_with_every_reason() {
        let p = |l: &str, r: Option<&str>| Switch {
            listener_arn: l.into(),
            rule_arn: r.map(str::to_string),
        };
        assert!(Switches::new(vec![]).problems()[0].contains("at least one"));
        let twice = Switches::new(vec![p(LISTENER, None), p(LISTENER, None)]).problems();
        assert!(twice.iter().any(|m| m.contains("twice")), "{twice:?}");
        let too_many = Switches::new(vec![p(LISTENER, None); MAX_SWITCH_POINTS + 1]).problems();
        assert!(too_many.iter().any(|m| m.contains("at most 10")), "{too_many:?}");
        let bad = Switches::new(vec![p("listener", Some("rule"))]).problems();
        assert_eq!(bad.len(), 2, "{bad:?}");
        // A listener's default action and a rule of the same listener are two points.
        assert!(Switches::new(vec![p(LISTENER, None), p(LISTENER, Some(RULE))])
            .problems()
            .is_empty());
    }

    #[test]
    fn no_secret_field_exists_in_a_frame() {
        let frame = Frame {
            guards: vec![oidc()],
            ..Frame::default()
        };
        let text = serde_json::to_string(&frame).unwrap().to_lowercase();
        assert!(!text.contains("secret"), "{text}");
        let refused = serde_json::from_str::<Oidc>(
            r#"{"issuer":"i","authorization_endpoint":"a","token_endpoint":"t","user_info_endpoint":"u","client_id":"c","client_secret":"s"}"#,
        );
        assert!(refused.is_err(), "a frame never stores a client secret");
    }

    #[test]
    fn the_first_point_still_forwarding_to_a_group_is_named() {
        let points = vec![
            ("l1".to_string(), vec![("a".to_string(), 0), ("b".to_string(), 100)]),
            ("l2".to_string(), vec![("a".to_string(), 10), ("b".to_string(), 90)]),
        ];
        assert_eq!(still_forwarding(&points, "a"), Some("l2"));
        assert_eq!(still_forwarding(&points, "c"), None);
    }
}

//! Reading `infra/template.yaml` for tests: the SAM template as JSON (short-form intrinsics
//! such as `!Ref X` become their long form, `{"Ref": "X"}`), each function's IAM role, and
//! whether that role grants the AWS actions a function's process was seen calling.

use greenlight_local::emulator::repo_root;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The template, parsed.
pub struct Template {
    pub doc: Value,
}

impl Template {
    /// Parses `infra/template.yaml`.
    pub fn load() -> Template {
        let path = repo_root().join("infra/template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"));
        Template { doc: to_json(yaml) }
    }

    /// Resource `logical_id` (panics with the id when absent).
    pub fn resource(&self, logical_id: &str) -> &Value {
        let resource = &self.doc["Resources"][logical_id];
        assert!(resource.is_object(), "infra/template.yaml has no resource {logical_id}");
        resource
    }

    /// The logical ids of resources of `kind` (e.g. `AWS::Serverless::Function`).
    pub fn resources_of(&self, kind: &str) -> Vec<String> {
        let resources = self.doc["Resources"].as_object().expect("Resources");
        resources
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The resource of function `name`, by its handler name (`launch-green` →
    /// `LaunchGreenFunction`).
    pub fn function(&self, name: &str) -> &Value {
        self.resource(&function_id(name))
    }

    /// The logical id of the role function `name` runs with.
    pub fn role_of(&self, name: &str) -> String {
        let role = &self.function(name)["Properties"]["Role"];
        let target = role["Fn::GetAtt"][0].as_str();
        target
            .unwrap_or_else(|| panic!("{name}'s Role is not !GetAtt <Role>.Arn: {role}"))
            .to_string()
    }

    /// Every `Allow` statement of role `role_id`: its inline policies and the managed
    /// policies of this template it attaches.
    pub fn statements(&self, role_id: &str) -> Vec<Value> {
        let role = &self.resource(role_id)["Properties"];
        let mut statements = Vec::new();
        for policy in role["Policies"].as_array().into_iter().flatten() {
            statements.extend(as_list(&policy["PolicyDocument"]["Statement"]));
        }
        for managed in role["ManagedPolicyArns"].as_array().into_iter().flatten() {
            let id = managed["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{role_id} attaches a policy from outside the template: {managed}"));
            statements.extend(self.policy_statements(id));
        }
        statements.into_iter().filter(|s| s["Effect"] == "Allow").collect()
    }

    /// The `Allow` statements of managed policy `policy_id`.
    pub fn policy_statements(&self, policy_id: &str) -> Vec<Value> {
        let statements = as_list(&self.resource(policy_id)["Properties"]["PolicyDocument"]["Statement"]);
        statements.into_iter().filter(|s| s["Effect"] == "Allow").collect()
    }

    /// The IAM actions `called` (the emulator's `service:Action` API names) need that the
    /// role of function `name` does not allow.
    pub fn ungranted(&self, name: &str, called: &[String]) -> Vec<String> {
        ungranted_by(&self.statements(&self.role_of(name)), called)
    }
}

/// The IAM actions `called` needs that no statement of `statements` allows (on some resource).
/// `sts:GetCallerIdentity` needs no permission.
pub fn ungranted_by(statements: &[Value], called: &[String]) -> Vec<String> {
    let allowed: BTreeSet<String> = statements
        .iter()
        .flat_map(|s| as_list(&s["Action"]))
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    called
        .iter()
        .filter(|api| *api != "sts:GetCallerIdentity")
        .flat_map(|api| iam_actions(api))
        .filter(|needed| !allowed.contains(needed))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `launch-green` → `LaunchGreenFunction`.
pub fn function_id(name: &str) -> String {
    let mut id: String = name
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

/// The IAM actions an API call is authorised by. Most are the call itself; a transaction is
/// authorised per item action, and RunInstances that tags on launch needs CreateTags too.
fn iam_actions(api: &str) -> Vec<String> {
    match api {
        "dynamodb:TransactWriteItems" => vec![
            "dynamodb:PutItem".into(),
            "dynamodb:UpdateItem".into(),
            "dynamodb:ConditionCheckItem".into(),
        ],
        "ec2:RunInstances" => vec!["ec2:RunInstances".into(), "ec2:CreateTags".into()],
        other => vec![other.to_string()],
    }
}

/// A statement's `Action`/`Statement` as a list (IAM allows a single value too).
pub fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        single => vec![single.clone()],
    }
}

/// YAML → JSON, with CloudFormation's short-form tags in their long form.
fn to_json(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => json!(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
                };
                out.insert(key, to_json(value));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = to_json(tagged.value);
            match (name, value) {
                ("Ref", value) => json!({ "Ref": value }),
                ("GetAtt", Value::String(path)) => {
                    let (resource, attribute) = path.split_once('.').unwrap_or((&path, ""));
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (name, value) => json!({ format!("Fn::{name}"): value }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_intrinsics_become_long_form() {
        let yaml = "a: !Ref Bucket\nb: !GetAtt Role.Arn\nc: !Sub 'x-${AWS::Region}'\nd: [1, two]\n";
        let doc = to_json(serde_yaml::from_str(yaml).unwrap());
        assert_eq!(
            doc,
            json!({"a": {"Ref": "Bucket"}, "b": {"Fn::GetAtt": ["Role", "Arn"]},
                   "c": {"Fn::Sub": "x-${AWS::Region}"}, "d": [1, "two"]})
        );
    }

    #[test]
    fn function_ids_are_pascal_case_handler_names() {
        assert_eq!(function_id("launch-green"), "LaunchGreenFunction");
        assert_eq!(function_id("finalize"), "FinalizeFunction");
    }
}

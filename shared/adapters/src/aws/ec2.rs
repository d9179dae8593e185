//! The fleet on EC2: images, instances launched with a ClientToken and tagged on launch,
//! terminated only when tagged `managed-by=greenlight` for the service.

use super::error::{aws_error, error_code};
use crate::{tags, AdapterError, AdapterResult, Fleet, Instance, InstanceState, LaunchRequest};
use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, IamInstanceProfileSpecification, InstanceType, ResourceType, Tag, TagSpecification};
use greenlight_core::decide::ImageFacts;
use std::collections::BTreeMap;

/// EC2 images and instances.
pub struct Ec2Fleet {
    pub client: aws_sdk_ec2::Client,
}

fn ec2_tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        instance_id: i.instance_id()?.to_string(),
        state: InstanceState::from_ec2(i.state().and_then(|s| s.name()).map(|n| n.as_str())),
        private_ip: i.private_ip_address().map(str::to_string),
        tags: tag_map(i.tags()),
        image_id: i.image_id().map(str::to_string),
        launched_at: i.launch_time().map(|t| t.secs().max(0) as u64),
    })
}

/// Every state but `terminated`, as EC2's `instance-state-name` filter takes them.
fn not_terminated() -> Vec<&'static str> {
    InstanceState::ALL
        .into_iter()
        .filter(|s| *s != InstanceState::Terminated)
        .map(InstanceState::as_str)
        .collect()
}

impl Ec2Fleet {
    /// DescribeInstances with filters, every page.
    async fn find(&self, filters: Vec<Filter>) -> AdapterResult<Vec<Instance>> {
        self.find_at_most(filters, usize::MAX).await
    }

    /// DescribeInstances with filters, page after page until `limit` instances are found.
    async fn find_at_most(&self, filters: Vec<Filter>, limit: usize) -> AdapterResult<Vec<Instance>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("ec2", "DescribeInstances", e))?;
            for reservation in out.reservations() {
                found.extend(reservation.instances().iter().filter_map(instance_of));
            }
            if found.len() >= limit {
                found.truncate(limit);
                return Ok(found);
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(found),
            }
        }
    }
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

#[async_trait]
impl Fleet for Ec2Fleet {
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>> {
        let out = self.client.describe_images().image_ids(ami).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if error_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => return Ok(None),
            Err(e) => return Err(aws_error("ec2", "DescribeImages", e)),
        };
        Ok(out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(ami))
            .map(|image| ImageFacts {
                owner: image.owner_id().unwrap_or_default().to_string(),
                available: image.state().map(|s| s.as_str()) == Some("available"),
                tags: tag_map(image.tags()),
            }))
    }

    async fn image_builder_ami(&self, image_arn: &str) -> AdapterResult<Option<String>> {
        let out = self
            .client
            .describe_images()
            .filters(filter("tag:Ec2ImageBuilderArn", &[image_arn]))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DescribeImages", e))?;
        Ok(out.images().iter().find_map(|i| i.image_id()).map(str::to_string))
    }

    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>> {
        let tags_for = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .tags(ec2_tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE))
                .tags(ec2_tag(tags::SERVICE, &request.service))
                .tags(ec2_tag(tags::VERSION, &request.version))
                .tags(ec2_tag(tags::DEPLOY_ID, &request.deploy_id))
                .tags(ec2_tag("Name", &format!("{}-{}", request.service, request.version)))
                .build()
        };
        let launch = &request.launch;
        let count = launch.count as i32;
        let out = self
            .client
            .run_instances()
            .image_id(&request.ami)
            .instance_type(InstanceType::from(launch.instance_type.as_str()))
            .min_count(count)
            .max_count(count)
            .subnet_id(&launch.subnet_id)
            .set_security_group_ids(Some(launch.security_group_ids.clone()).filter(|g| !g.is_empty()))
            .set_iam_instance_profile(
                launch
                    .instance_profile_arn
                    .as_ref()
                    .map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
            )
            .set_user_data(
                launch
                    .user_data
                    .as_ref()
                    .map(|u| aws_smithy_types::base64::encode(u.as_bytes())),
            )
            .client_token(&request.client_token)
            .tag_specifications(tags_for(ResourceType::Instance))
            .tag_specifications(tags_for(ResourceType::Volume))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect()),
            Err(e) if error_code(&e) == Some("IdempotentParameterMismatch") => Err(AdapterError::Invalid(format!(
                "RunInstances token {} was used with other parameters (the service's launch settings changed mid-deployment?); abort this deployment and publish the image again with a new attempt",
                request.client_token
            ))),
            Err(e) => Err(aws_error("ec2", "RunInstances", e)),
        }
    }

    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>> {
        self.find(vec![
            filter(&format!("tag:{}", tags::DEPLOY_ID), &[deploy_id]),
            filter("instance-state-name", &not_terminated()),
        ])
        .await
    }

    async fn instances_of_service(&self, service: &str, limit: usize) -> AdapterResult<Vec<Instance>> {
        self.find_at_most(
            vec![
                filter(&format!("tag:{}", tags::MANAGED_BY), &[tags::MANAGED_BY_VALUE]),
                filter(&format!("tag:{}", tags::SERVICE), &[service]),
                filter("instance-state-name", &not_terminated()),
            ],
            limit,
        )
        .await
    }

    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>> {
        if instance_ids.is_empty() {
            return Ok(vec![]);
        }
        // A filter (not InstanceIds) so that unknown ids are left out instead of failing.
        let ids: Vec<&str> = instance_ids.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        for chunk in ids.chunks(200) {
            found.extend(self.find(vec![filter("instance-id", chunk)]).await?);
        }
        Ok(found)
    }

    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>> {
        let found = self.describe(instance_ids).await?;
        let ours = |i: &Instance| {
            i.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGED_BY_VALUE)
                && i.tags.get(tags::SERVICE).map(String::as_str) == Some(service)
        };
        let refused: Vec<String> = instance_ids
            .iter()
            .filter(|id| !found.iter().any(|i| &i.instance_id == *id && ours(i)))
            .filter(|id| found.iter().any(|i| &i.instance_id == *id))
            .cloned()
            .collect();
        let to_terminate: Vec<String> = found
            .iter()
            .filter(|i| ours(i) && i.state != InstanceState::Terminated)
            .map(|i| i.instance_id.clone())
            .collect();
        if !to_terminate.is_empty() {
            self.client
                .terminate_instances()
                .set_instance_ids(Some(to_terminate))
                .send()
                .await
                .map_err(|e| aws_error("ec2", "TerminateInstances", e))?;
        }
        Ok(refused)
    }
}

//! The orchestrator on Step Functions: one execution per deployment, named by its id.

use super::error::{aws_error, error_code};
use crate::{AdapterError, AdapterResult, Orchestrator};
use async_trait::async_trait;

/// Starts the deployment's Step Functions execution, named by the deployment id.
pub struct SfnOrchestrator {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

#[async_trait]
impl Orchestrator for SfnOrchestrator {
    async fn start(&self, deploy_id: &str, input: &serde_json::Value) -> AdapterResult<()> {
        if self.state_machine_arn.is_empty() {
            return Err(AdapterError::Invalid(
                "GREENLIGHT_STATE_MACHINE_ARN is not set: start-deployment cannot start the pipeline".into(),
            ));
        }
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(deploy_id)
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Same name: already started (running with the same input, or closed).
            Err(e) if error_code(&e) == Some("ExecutionAlreadyExists") => Ok(()),
            Err(e) => Err(aws_error("sfn", "StartExecution", e)),
        }
    }
}

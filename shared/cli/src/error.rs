//! The CLI's errors and the exit codes scripts rely on: 1 for a refusal or a failure
//! (nothing was done, or AWS said no), 2 for a usage error (clap's code for bad arguments).
//! Every message says what to do next.

use greenlight_adapters::AdapterError;
use std::fmt;

/// Why a verb did not complete.
#[derive(Debug)]
pub enum CliError {
    /// Refused or failed: exit 1.
    Failed(String),
    /// A usage error found after parsing (e.g. an unreadable file argument): exit 2.
    Usage(String),
}

impl CliError {
    pub fn failed(message: impl Into<String>) -> Self {
        CliError::Failed(message.into())
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
        }
    }

    /// A ledger or load balancer failure, with a hint at the usual causes.
    pub fn aws(err: AdapterError, table: &str) -> Self {
        let text = err.to_string();
        let hint = if text.contains("ResourceNotFoundException") && text.contains("dynamodb") {
            format!(
                "the ledger table {table:?} does not exist in this account and region: set --table (or \
                 GREENLIGHT_TABLE) to the stack's ledger table, and check --region and --profile"
            )
        } else if matches!(err, AdapterError::Aws { .. }) {
            "check your AWS credentials and region (--profile, --region, or AWS_PROFILE / AWS_REGION)".to_string()
        } else {
            String::new()
        };
        if hint.is_empty() {
            CliError::Failed(text)
        } else {
            CliError::Failed(format!("{text}\n{hint}"))
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Failed(m) | CliError::Usage(m) => f.write_str(m),
        }
    }
}

/// Result of a verb.
pub type CliResult<T> = Result<T, CliError>;

/// The refusal every verb gives for a service the ledger does not know.
pub fn not_registered(service: &str) -> CliError {
    CliError::failed(format!(
        "service {service} is not registered: register it with `greenlight service register <file>` \
         (see `greenlight services` for the registered ones)"
    ))
}

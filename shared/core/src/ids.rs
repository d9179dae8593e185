//! Identities and validation of names that reach AWS.
//!
//! The deployment id is derived from what defines a deployment (service, version, AMI and an
//! explicit attempt number), so duplicate image events map to one deployment (created with
//! `attribute_not_exists`), and the RunInstances `ClientToken` and the Step Functions
//! execution name derive from it.

use sha2::{Digest, Sha256};
use std::fmt;

/// Why a name or id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid service name {0:?}: use 1-48 characters of a-z, 0-9 and '-', starting with a letter")]
    Service(String),
    #[error("invalid AMI id {0:?}: expected ami- followed by 8 or 17 hex digits, e.g. ami-0abc1234def567890")]
    Ami(String),
    #[error("invalid deployment id {0:?}: expected d- followed by 20 hex digits")]
    DeployId(String),
}

/// At most 64 characters of `text` (then `…`): how a rejection repeats what it rejected,
/// so a hostile input never comes back whole in an error message or a log line.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// `text` quoted for a message: [`shorten`]ed and escaped (`{:?}`: no raw control characters).
pub fn quote(text: &str) -> String {
    format!("{:?}", shorten(text))
}

/// A message from a library that may repeat its input raw (serde's "unknown field"), made
/// safe to show and log: control characters escaped, at most 300 characters.
pub fn sanitize(message: &str) -> String {
    let (mut out, mut count) = (String::new(), 0);
    for c in message.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.into()
        };
        count += piece.chars().count();
        if count > 300 {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Validates a service name (it becomes part of ledger keys, tags and object keys).
pub fn check_service(name: &str) -> Result<(), IdError> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(IdError::Service(shorten(name)))
    }
}

/// Validates an AMI id (`ami-` + 8 or 17 lowercase hex digits).
pub fn check_ami(ami: &str) -> Result<(), IdError> {
    let ok = ami.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(IdError::Ami(shorten(ami)))
    }
}

/// A deployment id: `d-` + 20 hex digits of SHA-256(service, version, ami, attempt).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeployId(String);

/// The identity of one CloudWatch alarm transition (`alarm-` + 20 hex digits of SHA-256 over
/// the alarm's name, the state it entered and when): the same in the EventBridge `Alarm
/// State Change` event and in the alarm's direct Lambda action, so a transition that reaches
/// revert-service both ways (and any redelivery of either) is one rollback request.
pub fn alarm_transition_id(alarm_name: &str, state: &str, at_ms: u64) -> String {
    let mut hash = Sha256::new();
    for part in ["alarm", alarm_name, state, &at_ms.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let hex: String = hash.finalize().iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("alarm-{hex}")
}

impl DeployId {
    /// Derives the id of the deployment of `ami` as `version` of `service`.
    /// `attempt` is 1 for the first deployment of an image; re-deploying the same image after
    /// an abort is an explicit new attempt.
    pub fn derive(service: &str, version: &str, ami: &str, attempt: u32) -> Self {
        Self::hashed(&[service, version, ami, &attempt.to_string()])
    }

    /// The id of a rollback that redeploys `ami` as `version`, requested by event
    /// `event_id`: repeated deliveries of the event map to one deployment.
    pub fn derive_rollback(service: &str, version: &str, ami: &str, event_id: &str) -> Self {
        Self::hashed(&["rollback", service, version, ami, event_id])
    }

    /// The id of a phoenix re-pave of `ami` as `version`, replacing the live fleet `fleet`
    /// (its deploy id, or `adopted@<launched_at>`): every run that finds that fleet too old
    /// maps to one deployment.
    pub fn derive_repave(service: &str, version: &str, ami: &str, fleet: &str) -> Self {
        Self::hashed(&["repave", service, version, ami, fleet])
    }

    /// `d-` + the first 20 hex digits of SHA-256 over the NUL-separated parts.
    fn hashed(parts: &[&str]) -> Self {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        let hex: String = hash.finalize().iter().take(10).map(|b| format!("{b:02x}")).collect();
        DeployId(format!("d-{hex}"))
    }

    /// Parses an id received from outside (step input, CLI).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let ok = text
            .strip_prefix("d-")
            .is_some_and(|hex| hex.len() == 20 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        if ok {
            Ok(DeployId(text.to_string()))
        } else {
            Err(IdError::DeployId(shorten(text)))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RunInstances `ClientToken` for launch batch `batch` (≤ 64 ASCII characters).
    pub fn client_token(&self, batch: u32) -> String {
        format!("greenlight-{}-launch-{batch}", self.0)
    }
}

impl fmt::Display for DeployId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_id_is_deterministic_and_distinguishes_inputs() {
        let a = DeployId::derive("checkout", "v2", "ami-0123456789abcdef0", 1);
        assert_eq!(a, DeployId::derive("checkout", "v2", "ami-0123456789abcdef0", 1));
        assert_ne!(a, DeployId::derive("checkout", "v2", "ami-0123456789abcdef0", 2));
        assert_ne!(a, DeployId::derive("checkout", "v3", "ami-0123456789abcdef0", 1));
        // No ambiguity from concatenation.
        assert_ne!(
            DeployId::derive("ab", "c", "ami-00000000", 1),
            DeployId::derive("a", "bc", "ami-00000000", 1)
        );
        assert!(DeployId::parse(a.as_str()).is_ok());
        assert!(a.client_token(0).len() <= 64);
        // A rollback's redeployment: one per triggering event, never a rollout's id.
        let r = DeployId::derive_rollback("checkout", "v2", "ami-0123456789abcdef0", "ev-1");
        assert_eq!(
            r,
            DeployId::derive_rollback("checkout", "v2", "ami-0123456789abcdef0", "ev-1")
        );
        assert_ne!(
            r,
            DeployId::derive_rollback("checkout", "v2", "ami-0123456789abcdef0", "ev-2")
        );
        assert_ne!(r, a);
        assert!(DeployId::parse(r.as_str()).is_ok());
    }

    #[test]
    fn validates_names() {
        assert!(check_service("checkout-api").is_ok());
        for bad in ["", "Checkout", "1svc", "a/b", "a b", &"a".repeat(49)] {
            assert!(check_service(bad).is_err(), "{bad:?}");
        }
        assert!(check_ami("ami-0123456789abcdef0").is_ok());
        assert!(check_ami("ami-12345678").is_ok());
        for bad in ["ami-", "ami-XYZ12345", "i-12345678", "ami-123"] {
            assert!(check_ami(bad).is_err(), "{bad:?}");
        }
        assert!(DeployId::parse("d-123").is_err());
    }

    #[test]
    fn rejects_hostile_service_names() {
        let long = "a".repeat(49);
        let table = [
            "",
            " ",
            "a/b",
            "a\\b",
            "..",
            "../etc",
            "a..b",
            "a.b",
            "a%2Fb",
            "checkout ",
            " checkout",
            "check out",
            "check\tout",
            "checkout\n",
            "checkout\0",
            "Checkout",
            "CHECKOUT",
            "ch\u{0435}ckout",  // Cyrillic e
            "\u{ff43}heckout",  // fullwidth c
            "checkout\u{200b}", // zero-width space
            "checke\u{301}",    // combining accent
            "-checkout",
            "1checkout",
            "_checkout",
            &long,
        ];
        for bad in table {
            assert!(check_service(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "checkout-api", "a1-b2", &"a".repeat(48)] {
            assert!(check_service(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn rejects_hostile_ami_ids() {
        let table = [
            "",
            "ami-",
            "ami-1234567",
            "ami-123456789",
            "ami-0123456789abcdef",
            "ami-0123456789abcdef01",
            "AMI-12345678",
            "Ami-12345678",
            "ami-ABCDEF12",
            "ami-ghijklmn",
            "ami_12345678",
            "ami12345678",
            " ami-12345678",
            "ami-12345678 ",
            "ami-12345678\n",
            "ami-\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}\u{ff17}\u{ff18}", // fullwidth digits
            "ami-1234567\u{0661}",                                                  // Arabic-Indic one
            "ami-../../x",
            "ami-1234%2F8",
            "i-12345678",
            "snap-12345678",
            "arn:aws:ec2:us-east-1::image/ami-12345678",
        ];
        for bad in table {
            assert!(check_ami(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "d-3B9F2C41A7E05D6C8E12",
            "d-3b9f2c41a7e05d6c8e1",
            "d-3b9f2c41a7e05d6c8e12a",
            " d-3b9f2c41a7e05d6c8e12",
            "d-3b9f2c41a7e05d6c8e1g",
            "d-../3b9f2c41a7e05d6c8e",
        ] {
            assert!(DeployId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DeployId::parse("d-3b9f2c41a7e05d6c8e12").is_ok());
    }

    #[test]
    fn rejections_quote_hostile_input_short_and_escaped() {
        let huge = "a".repeat(100_000);
        let err = check_service(&huge).unwrap_err().to_string();
        assert!(err.len() < 300 && err.contains('…'), "{err}");
        let err = check_ami("ami-\u{1b}[2J\u{7}").unwrap_err().to_string();
        assert!(!err.contains(char::is_control) && err.contains("\\u{1b}"), "{err}");
        assert_eq!(quote("ok"), "\"ok\"");
        let clean = sanitize(&format!("unknown field `\u{1b}[31m{}`", "x".repeat(1000)));
        assert!(
            !clean.contains(char::is_control) && clean.chars().count() <= 301,
            "{clean}"
        );
    }
}

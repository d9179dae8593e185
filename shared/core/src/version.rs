//! Version ordering: `v1.2.3`, `1.2`, `2.0.0-rc.1`. Numeric components compare numerically;
//! a pre-release sorts before its release. Anything else is rejected with a clear error, so
//! "older than live" is never guessed from string order.

use std::cmp::Ordering;
use std::fmt;

/// A parsed, comparable version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: Vec<u64>,
    pre: Option<String>,
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?}: use dotted numbers with an optional leading 'v' and '-pre' suffix, e.g. v1.4.2 or 2.0.0-rc.1")]
pub struct VersionError(pub String);

impl Version {
    /// Parses `v1.2.3`, `1.2.3`, `1.2.3-rc.1` (1 to 4 numeric components).
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let err = || VersionError(crate::ids::shorten(text));
        if text.is_empty() || text.len() > 64 {
            return Err(err());
        }
        let body = text.strip_prefix('v').unwrap_or(text);
        let (core, pre) = match body.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (body, None),
        };
        if let Some(pre) = pre {
            // Dot-separated identifiers, none empty (`rc.1`, not `rc..1` or `rc.`).
            let ok = pre
                .split('.')
                .all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            if !ok {
                return Err(err());
            }
        }
        let mut numbers = Vec::new();
        for part in core.split('.') {
            if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            numbers.push(part.parse().map_err(|_| err())?);
        }
        if numbers.len() > 4 {
            return Err(err());
        }
        Ok(Version {
            numbers,
            pre: pre.map(str::to_string),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        for i in 0..len {
            let a = self.numbers.get(i).copied().unwrap_or(0);
            let b = other.numbers.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nums: Vec<String> = self.numbers.iter().map(u64::to_string).collect();
        write!(f, "{}", nums.join("."))?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions_numerically_not_lexically() {
        let table = [
            ("v1.2.3", "v1.10.0", Ordering::Less),
            ("2", "1.9.9", Ordering::Greater),
            ("v1.0", "1.0.0", Ordering::Equal),
            ("1.0.0-rc.1", "1.0.0", Ordering::Less),
            ("1.0.0-rc.2", "1.0.0-rc.1", Ordering::Greater),
        ];
        for (a, b, want) in table {
            let got = Version::parse(a).unwrap().cmp(&Version::parse(b).unwrap());
            assert_eq!(got, want, "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_ordered() {
        for bad in ["", "v", "latest", "1..2", "1.2.3.4.5", "1.x", "1.0-", "1.0-a b", "../1"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_hostile_versions() {
        let long = format!("v{}", "1.".repeat(40));
        let table = [
            " ",
            "V1",
            "vv1",
            "v 1",
            " 1.0",
            "1.0 ",
            "1.0\n",
            "1.0\0",
            "1/2",
            "1\\2",
            "1.0/../../x",
            "..",
            "%2e%2e",
            "1.0-rc/1",
            "1.0-rc%2F1",
            "1.0-rc..1", // found by the property test: an empty pre-release identifier
            "1.0-rc.",
            "1.0-.rc",
            "\u{ff11}.\u{ff10}", // fullwidth digits
            "\u{661}.\u{660}",   // Arabic-Indic digits
            "1234567890",        // a component over 9 digits
            "-1",
            "+1",
            "1e3",
            "0x10",
            "1.0+build.5",
            &long,
        ];
        for bad in table {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "v1.2.3",
            "1.2",
            "2.0.0-rc.1",
            "1.0.0-alpha-1",
            "999999999.0",
            "1.0.0-0.3.7",
        ] {
            assert!(Version::parse(good).is_ok(), "{good:?}");
        }
        let err = Version::parse(&"9".repeat(100_000)).unwrap_err().to_string();
        assert!(err.len() < 400, "the rejection quotes a shortened input: {err}");
    }
}

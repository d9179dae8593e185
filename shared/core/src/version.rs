//! Version precedence, SemVer 2.0.0 §11 with our two additions: an optional leading `v` and 1
//! to 4 numeric components (`v1.2`, `1.2.3.4`). Pre-release identifiers compare one by one
//! (numeric ones numerically, numeric below alphanumeric, fewer fields below more); build
//! metadata (`+build.5`) is accepted and kept for display but ignored for precedence. An EC2
//! Image Builder image's build number (`2.4.0/3`, from `…:image/<name>/2.4.0/3`) is part of
//! the release: a rebuild of the same recipe version is a newer release. Anything else is
//! rejected with a clear error, so "older than live" is never guessed from string order.
//!
//! Equality is precedence: `v1.0`, `1.0.0` and `1.0.0+b.7` are one version (`Eq` agrees
//! with `Ord`).

use std::cmp::Ordering;
use std::fmt;

/// The longest version accepted, in bytes.
pub const MAX_LEN: usize = 64;
/// The most numeric components (`1.2.3.4`).
const MAX_NUMBERS: usize = 4;
/// The most digits of a numeric component or identifier (fits a `u64` with room to spare).
const MAX_DIGITS: usize = 9;

/// A parsed, comparable version.
#[derive(Debug, Clone)]
pub struct Version {
    /// 1 to 4 numeric components; missing ones compare as 0 (`1.2` = `1.2.0`).
    numbers: Vec<u64>,
    /// Pre-release identifiers; empty for a release.
    pre: Vec<PreId>,
    /// EC2 Image Builder's build number of this version, if the image came from there.
    image_build: Option<u64>,
    /// SemVer build metadata (after `+`): shown, never compared.
    metadata: Option<String>,
}

/// One dot-separated pre-release identifier. The variant order is the precedence: numeric
/// identifiers sort below alphanumeric ones (SemVer §11.4.3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PreId {
    /// Digits only, no leading zero: compared numerically (§11.4.1).
    Numeric(u64),
    /// Letters, digits and hyphens: compared in ASCII order (§11.4.2).
    Alphanumeric(String),
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?}: use 1-4 dotted numbers with an optional leading 'v', '-pre-release' and '+build' (SemVer), e.g. v1.4.2, 2.0.0-rc.1 or 1.2.3+build.5; an Image Builder build is MAJOR.MINOR.PATCH/BUILD")]
pub struct VersionError(pub String);

impl Version {
    /// Parses `v1.2.3`, `1.2`, `1.2.3-rc.1`, `1.2.3+build.5`, `2.4.0/3` (Image Builder).
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let err = || VersionError(crate::ids::shorten(text));
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(err());
        }
        let body = text.strip_prefix('v').unwrap_or(text);
        let (body, metadata) = match body.split_once('+') {
            Some((body, meta)) => (body, Some(meta)),
            None => (body, None),
        };
        let (body, image_build) = match body.split_once('/') {
            Some((body, build)) => (body, Some(build)),
            None => (body, None),
        };
        let (core, pre) = match body.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (body, None),
        };
        let mut numbers = Vec::new();
        for part in core.split('.') {
            if part.is_empty() || part.len() > MAX_DIGITS || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            numbers.push(part.parse().map_err(|_| err())?);
        }
        if numbers.len() > MAX_NUMBERS {
            return Err(err());
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(PreId::parse)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(err)?,
        };
        if let Some(meta) = metadata {
            // Dot-separated, none empty; leading zeros are allowed here (§10).
            if !meta.split('.').all(identifier) {
                return Err(err());
            }
        }
        let image_build = match image_build {
            None => None,
            // Image Builder's versions are MAJOR.MINOR.PATCH with no pre-release, its builds
            // count from 1.
            Some(build) if numbers.len() == 3 && pre.is_empty() && positive(build) => {
                Some(build.parse().map_err(|_| err())?)
            }
            Some(_) => return Err(err()),
        };
        Ok(Version {
            numbers,
            pre,
            image_build,
            metadata: metadata.map(str::to_string),
        })
    }

    /// The version of an Image Builder image: its recipe `version` and its `build` number.
    pub fn image_builder(version: &str, build: &str) -> Result<Self, VersionError> {
        Version::parse(&format!("{version}/{build}"))
    }
}

/// A non-empty run of ASCII letters, digits and hyphens.
fn identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// 1-9 digits, not starting with 0.
fn positive(text: &str) -> bool {
    (1..=MAX_DIGITS).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0')
}

impl PreId {
    /// One pre-release identifier; `None` if empty, of other characters, or numeric with a
    /// leading zero (SemVer §9).
    fn parse(id: &str) -> Option<Self> {
        if !identifier(id) {
            return None;
        }
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return Some(PreId::Alphanumeric(id.to_string()));
        }
        if id.len() > MAX_DIGITS || (id.len() > 1 && id.starts_with('0')) {
            return None;
        }
        id.parse().ok().map(PreId::Numeric)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        let number = |v: &Version, i: usize| v.numbers.get(i).copied().unwrap_or(0);
        (0..len)
            .map(|i| number(self, i).cmp(&number(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            // A pre-release sorts below its release (§11.3); two pre-releases compare
            // identifier by identifier, the longer winning a tie (§11.4.4): Vec's order.
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (false, true) => Ordering::Less,
                (true, false) => Ordering::Greater,
                (false, false) => self.pre.cmp(&other.pre),
            })
            // A version without an Image Builder build sorts below its builds.
            .then_with(|| self.image_build.cmp(&other.image_build))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nums: Vec<String> = self.numbers.iter().map(u64::to_string).collect();
        write!(f, "{}", nums.join("."))?;
        if !self.pre.is_empty() {
            let ids: Vec<String> = self
                .pre
                .iter()
                .map(|id| match id {
                    PreId::Numeric(n) => n.to_string(),
                    PreId::Alphanumeric(s) => s.clone(),
                })
                .collect();
            write!(f, "-{}", ids.join("."))?;
        }
        if let Some(build) = self.image_build {
            write!(f, "/{build}")?;
        }
        if let Some(meta) = &self.metadata {
            write!(f, "+{meta}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn orders_versions_numerically_not_lexically() {
        let table = [
            ("v1.2.3", "v1.10.0", Ordering::Less),
            ("2", "1.9.9", Ordering::Greater),
            ("v1.0", "1.0.0", Ordering::Equal),
            ("1.0.0-rc.1", "1.0.0", Ordering::Less),
            ("1.0.0-rc.2", "1.0.0-rc.1", Ordering::Greater),
            // Found as a new user: rc.10 was refused as a downgrade from rc.2.
            ("2.0.0-rc.10", "2.0.0-rc.2", Ordering::Greater),
            ("1.0.0-2", "1.0.0-10", Ordering::Less),
            ("1.0.0-alpha", "1.0.0-1", Ordering::Greater),
            ("1.0.0-rc.1.1", "1.0.0-rc.1", Ordering::Greater),
            ("1.0.0-a-b", "1.0.0-a", Ordering::Greater),
            ("1.0.0-B", "1.0.0-a", Ordering::Less), // ASCII order: uppercase first
            ("1.0-rc.1", "1.0.0-rc.1", Ordering::Equal),
            ("1.2.3+build.5", "1.2.3", Ordering::Equal),
            ("1.2.3+build.5", "1.2.3+build.4", Ordering::Equal),
            ("1.2.3-rc.1+b", "1.2.3-rc.1", Ordering::Equal),
            ("1.2.3+b", "1.2.4", Ordering::Less),
            // Image Builder rebuilds: build 3 of 2.4.0 is newer than build 1.
            ("2.4.0/3", "2.4.0/1", Ordering::Greater),
            ("2.4.0/10", "2.4.0/9", Ordering::Greater),
            ("2.4.0/1", "2.4.0", Ordering::Greater),
            ("2.4.0/9", "2.4.1", Ordering::Less),
            ("v2.4.0/2", "2.4.0/2+x", Ordering::Equal),
        ];
        for (a, b, want) in table {
            let (x, y) = (v(a), v(b));
            assert_eq!(x.cmp(&y), want, "{a} vs {b}");
            assert_eq!(y.cmp(&x), want.reverse(), "{b} vs {a}");
            assert_eq!(x == y, want.is_eq(), "Eq agrees with Ord: {a} vs {b}");
        }
    }

    #[test]
    fn follows_the_semver_spec_precedence_chain() {
        // SemVer 2.0.0 §11.4's own example, and §11.2's.
        let chains: [&[&str]; 2] = [
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
            ],
            &["1.0.0", "2.0.0", "2.1.0", "2.1.1"],
        ];
        for chain in chains {
            for (i, a) in chain.iter().enumerate() {
                for (j, b) in chain.iter().enumerate() {
                    assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn display_keeps_what_identifies_the_release() {
        for (text, shown) in [
            ("v1.2.3", "1.2.3"),
            ("1.2.3+build.5", "1.2.3+build.5"),
            ("2.0.0-rc.10", "2.0.0-rc.10"),
            ("2.4.0/3", "2.4.0/3"),
            ("v1.0-0.3.7+exp.sha.5114f85", "1.0-0.3.7+exp.sha.5114f85"),
        ] {
            assert_eq!(v(text).to_string(), shown);
            assert_eq!(v(shown), v(text), "the shown form parses back to the same version");
        }
        assert_eq!(Version::image_builder("2.4.0", "3"), Ok(v("2.4.0/3")));
        assert!(Version::image_builder("2.4.0", "0").is_err());
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
            "1.0.0-01",     // a numeric pre-release identifier with a leading zero (§9)
            "1.0.0+",       // empty build metadata
            "1.0.0+a..b",   // an empty build identifier
            "1.0.0+a+b",    // two '+'
            "1.0.0+a/b",    // a slash in build metadata
            "1.0.0/0",      // Image Builder builds count from 1
            "1.0.0/01",     // ... and have no leading zero
            "1.0.0/",       // an empty build
            "1.0.0/1/2",    // two builds
            "1.0.0-rc.1/2", // Image Builder versions have no pre-release
            "1.0/2",        // ... and three components
            "1.0.0/x",
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
            "1.0+build.5",
            "1.0.0+001",
            "2.4.0/3",
            "v2.4.0/3+meta",
        ] {
            assert!(Version::parse(good).is_ok(), "{good:?}");
        }
        let err = Version::parse(&"9".repeat(100_000)).unwrap_err().to_string();
        assert!(err.len() < 400, "the rejection quotes a shortened input: {err}");
    }
}

//! `version`: before 1.0, MXC accepts any semver whose major.minor lies in 0.6..=0.9 and, more
//! importantly, uses it to choose the network model (directional from 0.8). From 1.0 a version
//! names an exact contract and must be spelled exactly: `1.0.0`, and MXC's development contract
//! `1.1.0-alpha` when experimental features are enabled.

use std::fmt;

/// The schema version a config declared, reduced to what matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SchemaVersion {
    /// No version (absent, `null` or `""`): treated as pre-0.8 everywhere.
    Unversioned,
    /// A declared `major.minor` (patch and pre-release are ignored, as MXC does).
    Declared { major: u64, minor: u64 },
}

impl SchemaVersion {
    /// Whether the directional (0.8) network model and `runtimeConfig` are available.
    pub fn supports_directional_network(self) -> bool {
        match self {
            SchemaVersion::Unversioned => false,
            SchemaVersion::Declared { major, minor } => major > 0 || minor >= 8,
        }
    }

    /// The value recorded in the `io.mxc.schema-version` annotation.
    pub fn annotation(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaVersion::Unversioned => f.write_str("legacy"),
            SchemaVersion::Declared { major, minor } => write!(f, "{major}.{minor}"),
        }
    }
}

pub(crate) const SUPPORTED_RANGE: &str = ">=0.6, <=0.9";

/// One of MXC's exact 1.x contracts: closed, typed, `null`-free request roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exact {
    /// `1.0.0`, MXC's stable contract.
    V1_0_0,
    /// `1.1.0-alpha`, MXC's development contract (experimental).
    V1_1_0Alpha,
}

impl Exact {
    pub fn as_str(self) -> &'static str {
        match self {
            Exact::V1_0_0 => "1.0.0",
            Exact::V1_1_0Alpha => "1.1.0-alpha",
        }
    }

    /// The exact contract a version string names, if it names one.
    pub fn named(text: &str) -> Option<Exact> {
        [Exact::V1_0_0, Exact::V1_1_0Alpha]
            .into_iter()
            .find(|exact| exact.as_str() == text)
    }
}

/// Parses `version` as MXC does; the error is the reason to report. `experimental` admits the
/// development contract.
pub(crate) fn parse(version: Option<&str>, experimental: bool) -> Result<SchemaVersion, String> {
    let Some(text) = version.filter(|text| !text.is_empty()) else {
        return Ok(SchemaVersion::Unversioned);
    };
    if let Some(exact) = Exact::named(text) {
        if exact == Exact::V1_1_0Alpha && !experimental {
            return Err(
                "1.1.0-alpha is MXC's development contract: it is accepted only with experimental \
                 features enabled (--experimental)"
                    .to_string(),
            );
        }
    }
    let parsed = semver::Version::parse(text)
        .map_err(|_| "must be semver (e.g., 'X.Y.Z' or 'X.Y.Z-alpha')".to_string())?;
    let (major, minor) = (parsed.major, parsed.minor);
    if major >= 1 && Exact::named(text).is_none() {
        return Err(format!(
            "unsupported contract version; registered versions are 0.6 through 0.9 ({SUPPORTED_RANGE}), \
             1.0.0 and, with experimental features, 1.1.0-alpha"
        ));
    }
    if (major, minor) < (0, 6) {
        return Err(format!(
            "config schema version is older than supported (supported: {SUPPORTED_RANGE}); update your config"
        ));
    }
    if major == 0 && minor > 9 {
        return Err(format!(
            "config schema version is newer than supported (supported: {SUPPORTED_RANGE}); upgrade mxc-oci"
        ));
    }
    Ok(SchemaVersion::Declared { major, minor })
}

/// Parses a version string without judging the range: for gates that only need major.minor.
pub(crate) fn probe(version: Option<&str>) -> Option<SchemaVersion> {
    let text = version.filter(|text| !text.is_empty())?;
    let parsed = semver::Version::parse(text).ok()?;
    Some(SchemaVersion::Declared {
        major: parsed.major,
        minor: parsed.minor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_are_unversioned() {
        assert_eq!(parse(None, false), Ok(SchemaVersion::Unversioned));
        assert_eq!(parse(Some(""), false), Ok(SchemaVersion::Unversioned));
    }

    #[test]
    fn one_point_x_versions_are_exact() {
        assert_eq!(
            parse(Some("1.0.0"), false),
            Ok(SchemaVersion::Declared { major: 1, minor: 0 })
        );
        for wrong in ["1.0.1", "1.0.0-alpha", "1.1.0", "2.0.0", "1.0.0+build"] {
            let reason = parse(Some(wrong), true).unwrap_err();
            assert!(
                reason.contains("unsupported contract version"),
                "{wrong}: {reason}"
            );
        }
        assert!(parse(Some("1.1.0-alpha"), false)
            .unwrap_err()
            .contains("--experimental"));
        assert_eq!(
            parse(Some("1.1.0-alpha"), true),
            Ok(SchemaVersion::Declared { major: 1, minor: 1 })
        );
    }

    #[test]
    fn compares_major_minor_only() {
        for ok in [
            "0.6.0-alpha",
            "0.7.3",
            "0.8.0-alpha",
            "0.9.0-dev",
            "0.9.7+build",
        ] {
            assert!(parse(Some(ok), false).is_ok(), "{ok}");
        }
        assert!(parse(Some("0.5.9"), false).unwrap_err().contains("older"));
        assert!(parse(Some("0.10.0"), false).unwrap_err().contains("newer"));
        assert!(parse(Some("0.8"), false).unwrap_err().contains("semver"));
    }

    #[test]
    fn directional_from_0_8() {
        assert!(!parse(Some("0.7.0"), false)
            .unwrap()
            .supports_directional_network());
        assert!(parse(Some("0.8.0-alpha"), false)
            .unwrap()
            .supports_directional_network());
        assert!(parse(Some("1.0.0"), false)
            .unwrap()
            .supports_directional_network());
        assert!(!SchemaVersion::Unversioned.supports_directional_network());
    }
}

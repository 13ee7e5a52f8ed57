//! `version`: MXC accepts any semver whose major.minor lies in 0.6..=0.9 and, more importantly,
//! uses it to choose the network model (directional from 0.8).

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

/// Parses `version` as MXC does; the error is the reason to report.
pub(crate) fn parse(version: Option<&str>) -> Result<SchemaVersion, String> {
    let Some(text) = version.filter(|text| !text.is_empty()) else {
        return Ok(SchemaVersion::Unversioned);
    };
    let parsed = semver::Version::parse(text)
        .map_err(|_| "must be semver (e.g., 'X.Y.Z' or 'X.Y.Z-alpha')".to_string())?;
    let (major, minor) = (parsed.major, parsed.minor);
    if (major, minor) < (0, 6) {
        return Err(format!(
            "config schema version is older than supported (supported: {SUPPORTED_RANGE}); update your config"
        ));
    }
    if (major, minor) > (0, 9) {
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
        assert_eq!(parse(None), Ok(SchemaVersion::Unversioned));
        assert_eq!(parse(Some("")), Ok(SchemaVersion::Unversioned));
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
            assert!(parse(Some(ok)).is_ok(), "{ok}");
        }
        assert!(parse(Some("0.5.9")).unwrap_err().contains("older"));
        assert!(parse(Some("0.10.0")).unwrap_err().contains("newer"));
        assert!(parse(Some("1.0.0")).unwrap_err().contains("newer"));
        assert!(parse(Some("0.8")).unwrap_err().contains("semver"));
    }

    #[test]
    fn directional_from_0_8() {
        assert!(!parse(Some("0.7.0")).unwrap().supports_directional_network());
        assert!(parse(Some("0.8.0-alpha"))
            .unwrap()
            .supports_directional_network());
        assert!(!SchemaVersion::Unversioned.supports_directional_network());
    }
}

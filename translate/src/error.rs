//! Policy errors: each names the source, the JSON path, the offending value and the reason.

use std::fmt;

use crate::source::Source;

/// One rejection of a config, printed as a single line a user can act on:
/// `cfg.json: network.egress.allow[0].ports[0].endPort = 80: must be greater than or equal to port (443)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: Source,
    /// JSON path of the offending element (`filesystem.deniedPaths[2]`); empty for the document.
    pub path: String,
    /// The offending value, rendered as compact JSON, when there is one.
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if !self.path.is_empty() {
            f.write_str(&self.path)?;
            if let Some(value) = &self.value {
                write!(f, " = {value}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every rejection found in one config (validation reports as many as it can at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn first(&self) -> &ConfigError {
        &self.0[0]
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// Collects errors against one source while a config is walked.
#[derive(Debug)]
pub(crate) struct Report {
    source: Source,
    errors: Vec<ConfigError>,
}

impl Report {
    pub(crate) fn new(source: &Source) -> Self {
        Report {
            source: source.clone(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.source.clone(),
            path: path.into(),
            value: None,
            reason: reason.into(),
        }
    }

    /// Records a rejection of `path` whose value is `value` (rendered as JSON).
    pub(crate) fn reject(
        &mut self,
        path: impl Into<String>,
        value: impl serde::Serialize,
        reason: impl Into<String>,
    ) {
        let mut error = self.error(path, reason);
        error.value = serde_json::to_string(&value).ok();
        self.errors.push(error);
    }

    /// Records a rejection that is about a path but not about one value (a missing field, a
    /// combination of fields).
    pub(crate) fn reject_path(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        let error = self.error(path, reason);
        self.errors.push(error);
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors collected so far; call only after something was rejected.
    pub(crate) fn into_errors(self) -> ConfigErrors {
        debug_assert!(!self.errors.is_empty());
        ConfigErrors(self.errors)
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Joins a JSON path and a member name: `join("network", "egress")` is `network.egress`.
pub(crate) fn join(parent: &str, member: &str) -> String {
    if parent.is_empty() {
        member.to_string()
    } else {
        format!("{parent}.{member}")
    }
}

/// Appends an array index: `index("filesystem.deniedPaths", 2)` is `filesystem.deniedPaths[2]`.
pub(crate) fn index(parent: &str, position: usize) -> String {
    format!("{parent}[{position}]")
}

//! Policy errors: each names the source, the JSON path, the offending value and the reason.

use std::fmt;

use crate::source::Source;

/// Which of MXC's failure classes a rejection falls in. Executors map it to MXC's exit status
/// and library status code, so that a caller sees the same class MXC's own executor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// The document is malformed or outside the schema: MXC's `Request error`, exit status 1,
    /// library status `malformed_request`.
    #[default]
    Request,
    /// The containment names a backend that does not exist on Linux: MXC's `error: ...`, exit
    /// status 1, library status `unsupported_containment`.
    Containment,
    /// The backend cannot run this policy on this host: MXC's runner failure, exit status 255
    /// with the JSON error envelope, library status `backend_error`.
    Backend,
}

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
    pub class: Class,
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

    /// The class the whole rejection is reported in: the document's problems first (MXC parses
    /// before it looks at the backend), then an unavailable backend, then the runner's.
    pub fn class(&self) -> Class {
        [Class::Request, Class::Containment, Class::Backend]
            .into_iter()
            .find(|class| self.0.iter().any(|e| e.class == *class))
            .unwrap_or_default()
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
    /// The class of the rejections recorded from now on.
    class: Class,
}

impl Report {
    pub(crate) fn new(source: &Source) -> Self {
        Report {
            source: source.clone(),
            errors: Vec::new(),
            class: Class::Request,
        }
    }

    /// A report whose rejections fall in `class` unless recorded with another.
    pub(crate) fn in_class(source: &Source, class: Class) -> Self {
        Report {
            class,
            ..Report::new(source)
        }
    }

    /// Runs `record` with the rejections it records in `class`.
    pub(crate) fn classed(&mut self, class: Class, record: impl FnOnce(&mut Report)) {
        let previous = std::mem::replace(&mut self.class, class);
        record(self);
        self.class = previous;
    }

    pub(crate) fn error(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.source.clone(),
            path: path.into(),
            value: None,
            reason: reason.into(),
            class: self.class,
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

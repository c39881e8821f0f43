//! Configuration errors: what failed, where (file:line), and why.

/// The kind of a configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Lua could not parse it.
    Syntax,
    /// Evaluating it raised an error.
    Runtime,
    /// It ran past the instruction or memory limit.
    Limit,
    /// A declaration has a wrong type, a missing field or an unknown key.
    Schema,
    /// Two declarations of the same name.
    Duplicate,
    /// A dependency names a service nobody declares.
    Dependency,
    /// Dependencies form a cycle.
    Cycle,
    /// moonlit itself failed (a bug).
    Internal,
}

/// Longest message of a [`ConfigError`].
pub const MAX_MESSAGE: usize = 1024;

/// One configuration error. `message` starts with the location
/// ("services/web.lua:3: ...") whenever one is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{message}")]
pub struct ConfigError {
    pub kind: ErrorKind,
    /// The module (file) it belongs to, e.g. "services/web.lua".
    pub module: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        kind: ErrorKind,
        module: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let mut message: String = message.into();
        // A message is a console line: what a module put into it (a huge
        // string value, a name) is clipped, keeping the start (location,
        // service and key come first).
        if message.len() > MAX_MESSAGE {
            let total = message.len();
            message.truncate(message.floor_char_boundary(MAX_MESSAGE - 64));
            message.push_str(&format!("... ({total} bytes in all)"));
        }
        ConfigError {
            kind,
            module: module.into(),
            message,
        }
    }

    pub(crate) fn internal(e: &mlua::Error) -> ConfigError {
        ConfigError::new(
            ErrorKind::Internal,
            "",
            format!("internal Lua error: {}", crate::runtime::error_summary(e)),
        )
    }
}

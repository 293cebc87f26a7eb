//! Errors for stimuli the state machine cannot accept.

/// A message from a peer that is malformed or refers to something unknown.
/// The I/O layer logs it and carries on; state is never half-updated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoreError {
    /// An op name this scheduler does not implement.
    #[error("unknown operation '{0}'")]
    UnknownOp(String),
    /// A required field is missing or has the wrong type.
    #[error("malformed '{op}' message: {problem}")]
    Malformed {
        /// the op being handled
        op: String,
        /// what was wrong
        problem: String,
    },
    /// A worker registration that cannot be accepted.
    #[error("{0}")]
    Registration(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::Malformed`].
    pub fn malformed(op: &str, problem: impl Into<String>) -> CoreError {
        CoreError::Malformed {
            op: op.to_string(),
            problem: problem.into(),
        }
    }
}

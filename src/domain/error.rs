use std::fmt;

/// Stable error codes, sent to clients as `extensions.code`. Clients branch on
/// these, so a code never changes meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    OrderCancelled,
    InvalidTransition,
    VersionConflict,
    ProductUnavailable,
    /// Retryable: overload, a lost database connection, a transaction Postgres aborted.
    /// The message (and `extensions.mayHaveApplied`) says whether the change may have been applied.
    Unavailable,
    /// A per-connection or per-customer limit was reached; the message names it.
    LimitExceeded,
    /// Automatic Persisted Queries: send the document with its hash once.
    PersistedQueryNotFound,
    /// Only trusted documents run here, and this one is not among them.
    PersistedQueryNotInList,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadUserInput,
        ErrorCode::OrderCancelled,
        ErrorCode::InvalidTransition,
        ErrorCode::VersionConflict,
        ErrorCode::ProductUnavailable,
        ErrorCode::Unavailable,
        ErrorCode::LimitExceeded,
        ErrorCode::PersistedQueryNotFound,
        ErrorCode::PersistedQueryNotInList,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::OrderCancelled => "ORDER_CANCELLED",
            ErrorCode::InvalidTransition => "INVALID_TRANSITION",
            ErrorCode::VersionConflict => "VERSION_CONFLICT",
            ErrorCode::ProductUnavailable => "PRODUCT_UNAVAILABLE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::PersistedQueryNotInList => "PERSISTED_QUERY_NOT_IN_LIST",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a request for order data can fail with. Messages are written for
/// the person using the app: they never carry SQL or internal detail.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the order is cancelled and can no longer change")]
    OrderCancelled,
    #[error("{0}")]
    InvalidTransition(&'static str),
    #[error("the order is at version {actual}, not the expected {expected}; reload it and try again")]
    VersionConflict { expected: i64, actual: i64 },
    #[error("the product is not available")]
    ProductUnavailable,
    #[error("{0}")]
    BadInput(String),
    #[error("the customer of this token no longer exists")]
    UnknownCustomer,
    #[error("too many {what}: at most {per_minute} {what} a minute per customer; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        what: &'static str,
        per_minute: u32,
        retry_after: std::time::Duration,
    },
    /// A transient failure: retry with backoff (`expectedVersion` makes a retried write safe).
    #[error("{}", .0.message())]
    Unavailable(Retry),
    /// Anything unexpected: logged in full where it happens, shown as "internal error".
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::NotFound(_) => ErrorCode::NotFound,
            DomainError::OrderCancelled => ErrorCode::OrderCancelled,
            DomainError::InvalidTransition(_) => ErrorCode::InvalidTransition,
            DomainError::VersionConflict { .. } => ErrorCode::VersionConflict,
            DomainError::ProductUnavailable => ErrorCode::ProductUnavailable,
            DomainError::BadInput(_) => ErrorCode::BadUserInput,
            DomainError::UnknownCustomer => ErrorCode::Unauthenticated,
            DomainError::RateLimited { .. } => ErrorCode::LimitExceeded,
            DomainError::Unavailable(_) => ErrorCode::Unavailable,
            DomainError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// When a refused write may be tried again.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DomainError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        DomainError::BadInput(message.into())
    }

    /// True when the request may have changed data although it failed: the
    /// client must reload before it repeats a write that is not guarded by `expectedVersion`.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, DomainError::Unavailable(Retry::OutcomeUnknown))
    }
}

/// Why a request failed in a way that a retry may fix, and so what the
/// client knows about its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// No database connection became free within the pool's acquire timeout.
    Overloaded,
    /// The database connection was lost, or Postgres aborted the transaction
    /// (serialization failure, deadlock) before it committed: nothing was written.
    Aborted,
    /// The connection was lost while the transaction was committing: it may
    /// or may not have been applied.
    OutcomeUnknown,
}

impl Retry {
    fn message(self) -> &'static str {
        match self {
            Retry::Overloaded => "the service is busy; nothing was changed, try again shortly",
            Retry::Aborted => "the database could not complete the request; nothing was changed, try again shortly",
            Retry::OutcomeUnknown => {
                "the connection to the database was lost while committing, so the change may have been applied; \
                 reload the order (or retry with expectedVersion) before repeating it"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate code {s}");
        }
    }

    #[test]
    fn only_an_unknown_commit_may_have_applied() {
        for retry in [Retry::Overloaded, Retry::Aborted] {
            let err = DomainError::Unavailable(retry);
            assert!(!err.may_have_applied());
            assert!(err.to_string().contains("nothing was changed"), "{err}");
        }
        let err = DomainError::Unavailable(Retry::OutcomeUnknown);
        assert!(err.may_have_applied());
        assert!(err.to_string().contains("may have been applied"), "{err}");
        assert_eq!(err.code(), ErrorCode::Unavailable);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = DomainError::Internal("relation \"orders\" does not exist".into());
        assert_eq!(err.to_string(), "internal error");
        assert_eq!(err.code(), ErrorCode::Internal);
    }
}

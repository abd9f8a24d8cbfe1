//! The one place where a Postgres rule violation becomes a typed domain error.
//!
//! Postgres reports every broken invariant with an SQLSTATE and the name of the
//! constraint (or of the trigger-raised pseudo-constraint) that guards it; the
//! table below is the whole mapping. Failures that a retry may fix (a lost
//! connection, an aborted transaction, an exhausted pool) are `UNAVAILABLE`;
//! anything else is internal.

use sea_orm::{sqlx, ConnAcquireErr, DbErr, RuntimeErr};

use crate::domain::{DomainError, Retry};

/// What Postgres said, reduced to the parts that identify the broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub sqlstate: String,
    pub constraint: Option<String>,
}

fn sqlx_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// Extracts the SQLSTATE and constraint name, if the error came from Postgres.
pub fn violation(err: &DbErr) -> Option<Violation> {
    let sqlx::Error::Database(db) = sqlx_error(err)? else {
        return None;
    };
    Some(Violation {
        sqlstate: db.code()?.into_owned(),
        constraint: db.constraint().map(str::to_owned),
    })
}

/// The domain error a violated rule stands for, if it is one of ours.
pub fn rule_error(violation: &Violation) -> Option<DomainError> {
    // Class 23: integrity constraint violation (checks, foreign keys, uniques,
    // and the trigger-raised rules, which reuse check_violation / foreign_key_violation).
    if !violation.sqlstate.starts_with("23") {
        return None;
    }
    let error = match violation.constraint.as_deref()? {
        "order_items_order_not_cancelled" | "orders_cancelled_is_final" => DomainError::OrderCancelled,
        "order_items_order_fkey" => DomainError::NotFound("order"),
        "order_items_product_id_fkey" => DomainError::NotFound("product"),
        "order_items_product_available" => DomainError::ProductUnavailable,
        "order_items_quantity_range" => DomainError::bad_input("quantity must be between 1 and 999"),
        "order_items_unit_price_non_negative" | "products_price_non_negative" => {
            DomainError::bad_input("a price cannot be negative")
        }
        "orders_status_transition" => {
            DomainError::InvalidTransition("the order cannot move to that status from its current one")
        }
        "orders_created_open" => DomainError::InvalidTransition("a new order must be open"),
        "orders_schedule_needs_items" => DomainError::InvalidTransition("a scheduled order needs at least one item"),
        "orders_window_in_future" => DomainError::bad_input("the delivery window must start in the future"),
        "orders_window_ordered" => DomainError::bad_input("the delivery window must end after it starts"),
        "orders_cancel_reason_length" => DomainError::bad_input("the cancel reason must be at most 500 characters"),
        "orders_customer_id_fkey" => DomainError::UnknownCustomer,
        _ => return None,
    };
    Some(error)
}

/// What kind of transient failure an error is, if it is one.
enum Transient {
    /// No connection could be had in time (or Postgres has no slot left).
    Overloaded,
    /// Postgres aborted the transaction; a retry runs it again.
    Aborted,
    /// The connection broke: whatever was not committed is rolled back.
    ConnectionLost,
}

fn transient(err: &DbErr) -> Option<Transient> {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => return Some(Transient::Overloaded),
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => return Some(Transient::ConnectionLost),
        _ => {}
    }
    match sqlx_error(err)? {
        sqlx::Error::PoolTimedOut => Some(Transient::Overloaded),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Transient::ConnectionLost),
        sqlx::Error::Database(db) => match db.code()?.as_ref() {
            // serialization_failure, deadlock_detected
            "40001" | "40P01" => Some(Transient::Aborted),
            // too_many_connections
            "53300" => Some(Transient::Overloaded),
            // connection exceptions; admin, crash and start-up shutdowns; idle session timeouts
            code if code.starts_with("08") => Some(Transient::ConnectionLost),
            "57P01" | "57P02" | "57P03" | "25P03" | "57P05" => Some(Transient::ConnectionLost),
            _ => None,
        },
        _ => None,
    }
}

/// Maps a database error to the domain: a known rule to its typed error, a
/// transient failure to `Unavailable` (nothing was written: any transaction
/// it interrupted is rolled back), anything else to `Internal` (logged here
/// with its full cause). For the error of a COMMIT, use [`classify_commit`].
pub fn classify(err: DbErr) -> DomainError {
    classify_at(err, false)
}

/// Like [`classify`], for the error of a COMMIT: a connection lost there
/// leaves the outcome unknown, and the client is told so.
pub fn classify_commit(err: DbErr) -> DomainError {
    classify_at(err, true)
}

fn classify_at(err: DbErr, committing: bool) -> DomainError {
    if let Some(error) = violation(&err).as_ref().and_then(rule_error) {
        return error;
    }
    let retry = match transient(&err) {
        Some(Transient::Overloaded) => Retry::Overloaded,
        Some(Transient::Aborted) => Retry::Aborted,
        Some(Transient::ConnectionLost) if committing => Retry::OutcomeUnknown,
        Some(Transient::ConnectionLost) => Retry::Aborted,
        None => {
            tracing::error!(error = %err, "unexpected database error");
            return DomainError::Internal(Box::new(err));
        }
    };
    tracing::warn!(error = %err, ?retry, "transient database failure; answering UNAVAILABLE");
    DomainError::Unavailable(retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorCode;

    fn code_of(sqlstate: &str, constraint: &str) -> Option<ErrorCode> {
        rule_error(&Violation {
            sqlstate: sqlstate.into(),
            constraint: Some(constraint.into()),
        })
        .map(|e| e.code())
    }

    #[test]
    fn each_rule_has_its_code() {
        assert_eq!(
            code_of("23514", "order_items_order_not_cancelled"),
            Some(ErrorCode::OrderCancelled)
        );
        assert_eq!(
            code_of("23514", "orders_cancelled_is_final"),
            Some(ErrorCode::OrderCancelled)
        );
        assert_eq!(
            code_of("23514", "order_items_quantity_range"),
            Some(ErrorCode::BadUserInput)
        );
        assert_eq!(
            code_of("23514", "orders_status_transition"),
            Some(ErrorCode::InvalidTransition)
        );
        assert_eq!(
            code_of("23503", "order_items_product_id_fkey"),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            code_of("23514", "order_items_product_available"),
            Some(ErrorCode::ProductUnavailable)
        );
    }

    #[test]
    fn unknown_constraints_and_other_classes_are_not_rules() {
        assert_eq!(code_of("23514", "something_else"), None);
        assert_eq!(code_of("40P01", "order_items_quantity_range"), None);
    }

    /// A Postgres error with a given SQLSTATE, as sqlx reports it.
    #[derive(Debug)]
    struct PgError(&'static str);

    impl std::fmt::Display for PgError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for PgError {}

    impl sqlx::error::DatabaseError for PgError {
        fn message(&self) -> &str {
            "postgres said no"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn postgres(sqlstate: &'static str) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(
            sqlx::Error::Database(Box::new(PgError(sqlstate))).into(),
        ))
    }

    fn connection_reset() -> DbErr {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Io(io).into()))
    }

    #[test]
    fn an_exhausted_pool_is_unavailable_not_internal() {
        let err = classify(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(matches!(err, DomainError::Unavailable(Retry::Overloaded)));
    }

    #[test]
    fn aborted_transactions_and_lost_connections_are_retryable_and_not_applied() {
        for err in [
            postgres("40001"),
            postgres("40P01"),
            postgres("57P01"),
            postgres("08006"),
            connection_reset(),
        ] {
            let described = err.to_string();
            let err = classify(err);
            assert!(
                matches!(err, DomainError::Unavailable(Retry::Aborted)),
                "{described}: {err:?}"
            );
            assert!(!err.may_have_applied());
        }
    }

    #[test]
    fn a_connection_lost_while_committing_may_have_applied() {
        let err = classify_commit(connection_reset());
        assert!(matches!(err, DomainError::Unavailable(Retry::OutcomeUnknown)));
        assert!(err.may_have_applied());
        // Postgres aborting the commit itself is a clear answer: nothing was written.
        assert!(!classify_commit(postgres("40001")).may_have_applied());
    }

    #[test]
    fn other_postgres_errors_stay_internal() {
        assert_eq!(classify(postgres("42P01")).code(), ErrorCode::Internal);
    }

    #[test]
    fn non_database_errors_are_internal() {
        let err = classify(DbErr::Custom("boom".into()));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(err.to_string(), "internal error");
    }
}

//! The one place where a Postgres rule violation becomes a typed domain error.
//!
//! Postgres reports every broken invariant with an SQLSTATE and the name of the
//! constraint (or of the trigger-raised pseudo-constraint) that guards it; the
//! table below is the whole mapping. Anything not in it is internal.

use sea_orm::{sqlx, ConnAcquireErr, DbErr, RuntimeErr};

use crate::domain::DomainError;

/// What Postgres said, reduced to the parts that identify the broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub sqlstate: String,
    pub constraint: Option<String>,
}

/// Extracts the SQLSTATE and constraint name, if the error came from Postgres.
pub fn violation(err: &DbErr) -> Option<Violation> {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err else {
        return None;
    };
    let sqlx::Error::Database(db) = e.as_ref() else {
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

/// Maps a database error to the domain: a known rule to its typed error, an
/// exhausted pool to `Busy`, anything else to `Internal` (logged here with its
/// full cause).
pub fn classify(err: DbErr) -> DomainError {
    if let Some(error) = violation(&err).as_ref().and_then(rule_error) {
        return error;
    }
    if matches!(err, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)) {
        tracing::warn!("no database connection free within the acquire timeout; answering UNAVAILABLE");
        return DomainError::Busy;
    }
    tracing::error!(error = %err, "unexpected database error");
    DomainError::Internal(Box::new(err))
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

    #[test]
    fn an_exhausted_pool_is_unavailable_not_internal() {
        let err = classify(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert_eq!(err.code(), ErrorCode::Unavailable);
    }

    #[test]
    fn non_database_errors_are_internal() {
        let err = classify(DbErr::Custom("boom".into()));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(err.to_string(), "internal error");
    }
}

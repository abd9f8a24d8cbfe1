//! Customers of an identity provider, found (or created) by their subject.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use uuid::Uuid;

use super::{classify, violation};
use crate::domain::DomainError;

/// What the provider says about a newcomer, for the customer row provisioning creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomerProfile {
    /// Lower-cased and shaped like an address, or `None`.
    pub email: Option<String>,
    /// 1 to 200 characters.
    pub display_name: String,
}

/// The customer linked to `subject`, if any.
pub async fn customer_of_subject(db: &DatabaseConnection, subject: &str) -> Result<Option<Uuid>, DomainError> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM customers WHERE external_subject = $1",
            [subject.into()],
        ))
        .await
        .map_err(classify)?;
    row.map(|row| row.try_get::<Uuid>("", "id"))
        .transpose()
        .map_err(classify)
}

/// The customer of `subject`, created from `profile` if there is none. Race-free
/// across instances: the unique subject lets one insert win, and everyone reads
/// the winner's row. An email already held by another customer is not linked
/// (that would hand over their orders): the newcomer is created without one.
pub async fn provision_customer(
    db: &DatabaseConnection,
    subject: &str,
    profile: &NewCustomerProfile,
) -> Result<Uuid, DomainError> {
    let mut email = profile.email.clone();
    loop {
        let inserted = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO customers (id, email, display_name, external_subject) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (external_subject) DO NOTHING",
                [
                    Uuid::now_v7().into(),
                    email.clone().into(),
                    profile.display_name.clone().into(),
                    subject.into(),
                ],
            ))
            .await;
        match inserted {
            Ok(_) => {}
            Err(error)
                if email.is_some()
                    && violation(&error).is_some_and(|v| v.constraint.as_deref() == Some("customers_email_key")) =>
            {
                tracing::warn!(
                    subject,
                    "a new provider subject's email belongs to another customer; created without an email"
                );
                email = None;
                continue;
            }
            Err(error) => return Err(classify(error)),
        }
        return customer_of_subject(db, subject)
            .await?
            .ok_or_else(|| DomainError::Internal("a provisioned customer is not visible after its insert".into()));
    }
}

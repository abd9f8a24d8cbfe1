//! The GraphQL API: schema assembly and request limits. Resolvers are thin:
//! they authenticate, parse ids, and call `db`; rules and their errors come
//! from Postgres and `domain`.

mod context;
mod cursor;
mod errors;
mod live;
mod mutation;
mod persisted;
mod query;
mod subscription;
mod types;

use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;

pub use context::RequestAuth;
pub use errors::{error_list, error_response_body, ErrorCodes};
pub use live::{LiveExecutor, Output};
pub use mutation::MutationRoot;
pub use persisted::{ClientRequest, ManifestError, PersistedDocuments, PersistedError};
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

use crate::config::Limits;
use crate::domain::WriteBudgets;
use crate::live::Hub;

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Page-size bound, read by the connection resolvers.
#[derive(Debug, Clone, Copy)]
pub struct MaxPageSize(pub u32);

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot).extension(ErrorCodes)
}

/// The served schema, with its data and limits.
pub fn build_schema(db: DatabaseConnection, hub: Arc<Hub>, limits: &Limits, budgets: Arc<WriteBudgets>) -> AppSchema {
    builder()
        .data(db)
        .data(hub)
        .data(budgets)
        .data(MaxPageSize(limits.max_page_size))
        .limit_depth(limits.max_query_depth)
        .limit_complexity(limits.max_query_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16)
        .finish()
}

/// The type of the operation a request runs, or `None` when the document does
/// not parse or does not name one operation; execution then reports why.
pub fn operation_type(query: &str, operation_name: Option<&str>) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(query).ok()?;
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.map(|operation| operation.node.ty)
}

/// The SDL that `schema.graphql` at the repository root must equal.
pub fn sdl() -> String {
    builder().finish().sdl()
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schema_matches_the_served_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == super::sdl(),
            "schema.graphql differs from the schema ordercast serves; regenerate it with \
             `cargo run --quiet -- sdl > schema.graphql` and review the diff"
        );
    }
}

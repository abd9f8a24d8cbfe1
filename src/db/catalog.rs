//! Customers and the product catalogue.

use entity::{customers, products};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::classify;
use crate::domain::DomainError;

/// One page of the catalogue, ordered by SKU.
#[derive(Debug)]
pub struct ProductPage {
    pub products: Vec<products::Model>,
    pub has_next_page: bool,
}

pub async fn find_customer(db: &DatabaseConnection, id: Uuid) -> Result<Option<customers::Model>, DomainError> {
    customers::Entity::find_by_id(id).one(db).await.map_err(classify)
}

pub async fn find_customer_by_email(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Option<customers::Model>, DomainError> {
    customers::Entity::find()
        .filter(customers::Column::Email.eq(email.trim().to_lowercase()))
        .one(db)
        .await
        .map_err(classify)
}

/// Keyset pagination over the unique SKU.
pub async fn list_products(
    db: &DatabaseConnection,
    first: u64,
    after_sku: Option<String>,
) -> Result<ProductPage, DomainError> {
    let mut query = products::Entity::find();
    if let Some(after) = after_sku {
        query = query.filter(products::Column::Sku.gt(after));
    }
    let mut rows = query
        .order_by_asc(products::Column::Sku)
        .limit(first + 1)
        .all(db)
        .await
        .map_err(classify)?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(ProductPage {
        products: rows,
        has_next_page,
    })
}

//! Demo data for development and the README walkthrough.

use entity::{customers, products};
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use uuid::Uuid;

use super::classify;
use crate::domain::DomainError;

/// (email, display name)
pub const DEMO_CUSTOMERS: [(&str, &str); 2] = [("alice@example.com", "Alice"), ("bob@example.com", "Bob")];

/// (sku, name, price in cents, available)
pub const DEMO_PRODUCTS: [(&str, &str, i64, bool); 12] = [
    ("APL-001", "Apples, 1 kg", 349, true),
    ("BAN-001", "Bananas, 1 kg", 199, true),
    ("BRD-001", "Sourdough bread", 450, true),
    ("BUT-001", "Butter, 250 g", 289, true),
    ("CHE-001", "Cheddar, 200 g", 399, true),
    ("COF-001", "Coffee beans, 500 g", 1199, true),
    ("EGG-012", "Eggs, dozen", 379, true),
    ("MLK-001", "Milk, 1 l", 129, true),
    ("PAS-001", "Spaghetti, 500 g", 159, true),
    ("RCE-001", "Basmati rice, 1 kg", 329, true),
    ("TOM-001", "Tomatoes, 500 g", 279, true),
    ("TRF-001", "White truffle, 50 g", 24900, false),
];

/// Inserts the demo customers and products that are missing; never changes existing rows.
pub async fn seed(db: &DatabaseConnection) -> Result<(), DomainError> {
    let customers = DEMO_CUSTOMERS.iter().map(|(email, name)| customers::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(Some((*email).to_owned())),
        display_name: Set((*name).to_owned()),
        ..Default::default()
    });
    customers::Entity::insert_many(customers)
        .on_conflict(OnConflict::column(customers::Column::Email).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
        .map_err(classify)?;

    let products = DEMO_PRODUCTS
        .iter()
        .map(|(sku, name, price, available)| products::ActiveModel {
            id: Set(Uuid::now_v7()),
            sku: Set((*sku).to_owned()),
            name: Set((*name).to_owned()),
            price_cents: Set(*price),
            available: Set(*available),
            ..Default::default()
        });
    products::Entity::insert_many(products)
        .on_conflict(OnConflict::column(products::Column::Sku).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    Ok(())
}

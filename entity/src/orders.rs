use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Lifecycle of an order (I3): open <-> scheduled, either -> cancelled, which is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    #[sea_orm(string_value = "open")]
    Open,
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub delivery_window_start: Option<DateTimeUtc>,
    pub delivery_window_end: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
    /// Set by the database: 1 at creation, +1 per committed transaction that
    /// changes the order or its items.
    pub version: i64,
    /// Set by the database: the transaction that produced `version`. Internal:
    /// absent from the JSON states of `order_versions`.
    #[serde(default)]
    pub version_xact: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::customers::Entity",
        from = "Column::CustomerId",
        to = "super::customers::Column::Id"
    )]
    Customer,
    #[sea_orm(has_many = "super::order_items::Entity")]
    Items,
}

impl Related<super::customers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Customer.def()
    }
}

impl Related<super::order_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Items.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

use async_graphql::{Context, Object, Result, ID};

use super::context::{caller, db};
use super::types::{DeliveryWindowInput, Order};
use crate::auth::Caller;
use crate::db as store;
use crate::domain::{parse_id, Write, WriteBudgets};

pub struct MutationRoot;

/// Every mutation is one Postgres transaction and returns the order as that
/// transaction committed it. `expectedVersion`, when given, makes the change
/// conditional: a different current version fails with VERSION_CONFLICT and
/// writes nothing.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Starts a new, empty, open order for the caller.
    async fn create_order(&self, ctx: &Context<'_>) -> Result<Order> {
        let caller = writer(ctx, Write::CreateOrder)?;
        Ok(Order(store::create_order(db(ctx), caller.customer_id).await?.into()))
    }

    /// Adds a product to an open or scheduled order; adding it again raises its quantity.
    async fn add_item(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        product_id: ID,
        #[graphql(default = 1)] quantity: i32,
        expected_version: Option<i32>,
    ) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let product_id = parse_id(&product_id, "product id")?;
        let view = store::add_item(
            db(ctx),
            caller.customer_id,
            order_id,
            product_id,
            quantity,
            expected_version.map(i64::from),
        )
        .await?;
        Ok(Order(view.into()))
    }

    /// Sets the quantity of a product already in the order (1 to 999).
    async fn set_item_quantity(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        product_id: ID,
        quantity: i32,
        expected_version: Option<i32>,
    ) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let product_id = parse_id(&product_id, "product id")?;
        let view = store::set_item_quantity(
            db(ctx),
            caller.customer_id,
            order_id,
            product_id,
            quantity,
            expected_version.map(i64::from),
        )
        .await?;
        Ok(Order(view.into()))
    }

    /// Removes a product from the order. A scheduled order keeps at least one item.
    async fn remove_item(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        product_id: ID,
        expected_version: Option<i32>,
    ) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let product_id = parse_id(&product_id, "product id")?;
        let view = store::remove_item(
            db(ctx),
            caller.customer_id,
            order_id,
            product_id,
            expected_version.map(i64::from),
        )
        .await?;
        Ok(Order(view.into()))
    }

    /// Schedules delivery (or moves the window of a scheduled order). Needs at least one item.
    async fn schedule_order(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        window: DeliveryWindowInput,
        expected_version: Option<i32>,
    ) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let view = store::schedule_order(
            db(ctx),
            caller.customer_id,
            order_id,
            window.into(),
            expected_version.map(i64::from),
        )
        .await?;
        Ok(Order(view.into()))
    }

    /// Takes a scheduled order back to open, dropping its delivery window.
    async fn reopen_order(&self, ctx: &Context<'_>, order_id: ID, expected_version: Option<i32>) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let view = store::reopen_order(db(ctx), caller.customer_id, order_id, expected_version.map(i64::from)).await?;
        Ok(Order(view.into()))
    }

    /// Cancels the order for good: afterwards no item can be added, changed or removed.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        reason: Option<String>,
        expected_version: Option<i32>,
    ) -> Result<Order> {
        let caller = writer(ctx, Write::Change)?;
        let order_id = parse_id(&order_id, "order id")?;
        let view = store::cancel_order(
            db(ctx),
            caller.customer_id,
            order_id,
            reason,
            expected_version.map(i64::from),
        )
        .await?;
        Ok(Order(view.into()))
    }
}

/// The authenticated caller, once the write has been charged to its budgets.
fn writer(ctx: &Context<'_>, write: Write) -> Result<Caller> {
    let caller = caller(ctx)?;
    ctx.data_unchecked::<std::sync::Arc<WriteBudgets>>()
        .spend(caller.customer_id, write)?;
    Ok(caller)
}

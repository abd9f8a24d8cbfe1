use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, Result, ID};

use super::context::{auth, caller, db};
use super::cursor;
use super::types::{Customer, Order, OrderStatus, Product};
use super::MaxPageSize;
use crate::db as store;
use crate::domain::{parse_id, DomainError};

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The authenticated customer.
    async fn me(&self, ctx: &Context<'_>) -> Result<Customer> {
        let caller = caller(ctx)?;
        let customer = store::find_customer(db(ctx), caller.customer_id).await?;
        Ok(Customer(customer.ok_or(DomainError::UnknownCustomer)?))
    }

    /// One of the caller's orders; null when it does not exist or is someone else's.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let caller = caller(ctx)?;
        let id = parse_id(&id, "order id")?;
        Ok(store::find_order(db(ctx), caller.customer_id, id)
            .await?
            .map(|view| Order(view.into())))
    }

    /// The caller's orders, newest first.
    #[graphql(complexity = "page_complexity(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> Result<Connection<String, Order>> {
        let caller = caller(ctx)?;
        let first = page_size(ctx, first)?;
        let after = after.as_deref().map(cursor::decode_order).transpose()?;
        let page = store::list_orders(db(ctx), caller.customer_id, first, after, status.map(Into::into)).await?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(page.orders.into_iter().map(|view| {
            let cursor = cursor::encode_order(store::OrderCursor {
                created_at: view.order.created_at,
                id: view.order.id,
            });
            Edge::new(cursor, Order(view.into()))
        }));
        Ok(connection)
    }

    /// The product catalogue, by SKU. Needs no token; a bad token is still refused.
    #[graphql(complexity = "page_complexity(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, Product>> {
        auth(ctx).allow_anonymous()?;
        let first = page_size(ctx, first)?;
        let after = after.as_deref().map(cursor::decode_product).transpose()?;
        let has_previous_page = after.is_some();
        let page = store::list_products(db(ctx), first, after).await?;
        let mut connection = Connection::new(has_previous_page, page.has_next_page);
        connection.edges.extend(
            page.products
                .into_iter()
                .map(|product| Edge::new(cursor::encode_product(&product.sku), Product(product))),
        );
        Ok(connection)
    }
}

/// A list costs its children once per requested item, so `first` is bounded
/// by the complexity limit as well as by the page-size limit.
fn page_complexity(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first)
        .unwrap_or(0)
        .max(1)
        .saturating_mul(child_complexity)
}

fn page_size(ctx: &Context<'_>, first: i32) -> std::result::Result<u64, DomainError> {
    let MaxPageSize(max) = ctx.data_opt::<MaxPageSize>().copied().unwrap_or(MaxPageSize(100));
    match u32::try_from(first) {
        Ok(n) if (1..=max).contains(&n) => Ok(u64::from(n)),
        _ => Err(DomainError::bad_input(format!("`first` must be between 1 and {max}"))),
    }
}

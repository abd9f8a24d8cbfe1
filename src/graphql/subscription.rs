use std::sync::Arc;

use async_graphql::{Context, Result, Subscription, ID};
use futures::{Stream, StreamExt};

use super::context::{caller, db};
use super::types::OrderUpdate;
use crate::domain::parse_id;
use crate::live::{self, Hub, LiveError};

pub struct SubscriptionRoot;

/// Live updates come from what Postgres committed, through Debezium and Kafka,
/// whichever instance made the change (or any other writer). A subscription
/// ends with UNAUTHENTICATED when its token expires.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// One order: a SNAPSHOT first, then every committed change exactly once,
    /// in version order. With `afterVersion` (after a reconnect), the versions
    /// missed since then come first instead of the snapshot.
    async fn order_updates(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        after_version: Option<i32>,
    ) -> Result<impl Stream<Item = Result<OrderUpdate>>> {
        let caller = caller(ctx)?;
        let order_id = parse_id(&order_id, "order id")?;
        let stream = live::order_updates(
            db(ctx).clone(),
            hub(ctx),
            caller,
            order_id,
            after_version.map(i64::from),
        );
        Ok(stream.map(to_graphql))
    }

    /// Every order of the caller: a SNAPSHOT of each open or scheduled order,
    /// then every committed change of any of them, new orders included.
    async fn my_order_updates(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Result<OrderUpdate>>> {
        let caller = caller(ctx)?;
        Ok(live::my_order_updates(db(ctx).clone(), hub(ctx), caller).map(to_graphql))
    }
}

fn hub(ctx: &Context<'_>) -> Arc<Hub> {
    ctx.data_unchecked::<Arc<Hub>>().clone()
}

/// Keeps the original error as the GraphQL error's source, for its code.
fn to_graphql(item: Result<live::Update, LiveError>) -> Result<OrderUpdate> {
    match item {
        Ok(update) => Ok(OrderUpdate(update)),
        Err(LiveError::Domain(error)) => Err(error.into()),
        Err(LiveError::Auth(error)) => Err(error.into()),
    }
}

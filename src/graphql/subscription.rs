use std::sync::Arc;

use async_graphql::{Context, Result, Subscription, ID};
use futures::stream::{self, BoxStream, StreamExt};

use super::context::{caller, db};
use super::live::LivePlan;
use super::types::OrderUpdate;
use crate::domain::parse_id;
use crate::live::{self, Hub, LiveError, Topic};

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
    ) -> Result<BoxStream<'static, Result<OrderUpdate>>> {
        let caller = caller(ctx)?;
        let order_id = parse_id(&order_id, "order id")?;
        let after_version = after_version.map(i64::from);
        Ok(follow(
            ctx,
            caller,
            Topic::Order {
                order_id,
                after_version,
            },
        ))
    }

    /// Every order of the caller: a SNAPSHOT of each open or scheduled order,
    /// then every committed change of any of them, new orders included.
    async fn my_order_updates(&self, ctx: &Context<'_>) -> Result<BoxStream<'static, Result<OrderUpdate>>> {
        let caller = caller(ctx)?;
        Ok(follow(ctx, caller, Topic::MyOrders))
    }
}

/// The topic's live stream, unless the WebSocket transport runs this request
/// under a `LivePlan`: then the resolver only reports the topic, or resolves
/// one update the transport already has.
fn follow(ctx: &Context<'_>, caller: crate::auth::Caller, topic: Topic) -> BoxStream<'static, Result<OrderUpdate>> {
    match ctx.data_opt::<LivePlan>() {
        None => {
            let hub = ctx.data_unchecked::<Arc<Hub>>().clone();
            live::updates(db(ctx).clone(), hub, caller, topic)
                .map(to_graphql)
                .boxed()
        }
        Some(LivePlan::Discover(found)) => {
            found.report(topic);
            stream::empty().boxed()
        }
        Some(LivePlan::Render(item)) => stream::iter(item.take()).map(to_graphql).boxed(),
    }
}

/// Keeps the original error as the GraphQL error's source, for its code.
fn to_graphql(item: Result<live::Update, LiveError>) -> Result<OrderUpdate> {
    match item {
        Ok(update) => Ok(OrderUpdate(update)),
        Err(LiveError::Domain(error)) => Err(error.into()),
        Err(LiveError::Auth(error)) => Err(error.into()),
    }
}

//! The public order events on `ordercast.order-events`, as another team's
//! service reads them: one plain-JSON event per committed order version, keyed
//! by order id, in version order, each valid against its checked-in JSON
//! Schema in `contracts/order-events/`. Needs the real stack (`make stack`).

#[path = "../common/mod.rs"]
mod common;

mod contract;

//! Live order updates: the fan-out hub that routes committed versions to the
//! subscribers of each order and of each customer, and the subscription
//! streams that turn them into an exact, ordered, gap-free sequence.

mod hub;
mod recovery;
mod stream;

pub use hub::{Delivery, Hub, Subscription};
pub use recovery::run as run_recovery;
pub use stream::{updates, LiveError, Topic, Update};

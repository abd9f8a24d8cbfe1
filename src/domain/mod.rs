//! The vocabulary of the business: what an order looks like to a caller, and the
//! typed errors a rule violation turns into.

mod budget;
mod change;
mod error;
mod model;

pub use budget::{Write, WriteBudgets};
pub use change::{parse_state, parse_state_text, seconds_after_commit, ChangeKind, OrderVersion};
pub use error::{DomainError, ErrorCode, Retry};
pub use model::{parse_id, CustomerId, DeliveryWindow, ItemView, OrderView};

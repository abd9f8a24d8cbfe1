//! Per-customer write budgets: one account (or one stolen token) may not fill
//! the database or starve the others. GCRA limiters from `governor`, keyed by
//! customer; counted per instance, so N instances admit up to N times the rate.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use super::DomainError;
use crate::config::RateLimits;

/// What a write spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    CreateOrder,
    /// Any other mutation.
    Change,
}

/// The budgets of one instance.
pub struct WriteBudgets {
    create_order: Budget,
    mutations: Budget,
}

struct Budget {
    limiter: DefaultKeyedRateLimiter<Uuid>,
    per_minute: NonZeroU32,
    what: &'static str,
}

impl Budget {
    fn per_minute(per_minute: u32, what: &'static str) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Budget {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute,
            what,
        }
    }

    fn spend(&self, customer: Uuid) -> Result<(), DomainError> {
        self.limiter.check_key(&customer).map_err(|not_until| {
            metrics::counter!(crate::telemetry::metric::RATE_LIMITED, "limit" => self.what).increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            DomainError::RateLimited {
                what: self.what,
                per_minute: self.per_minute.get(),
                retry_after: wait.max(Duration::from_secs(1)),
            }
        })
    }
}

impl WriteBudgets {
    pub fn new(limits: &RateLimits) -> Self {
        WriteBudgets {
            create_order: Budget::per_minute(limits.create_order_per_minute, "new orders"),
            mutations: Budget::per_minute(limits.mutations_per_minute, "changes"),
        }
    }

    /// Spends one unit of each budget the write counts against, or says when to retry.
    pub fn spend(&self, customer: Uuid, write: Write) -> Result<(), DomainError> {
        self.mutations.spend(customer)?;
        if write == Write::CreateOrder {
            self.create_order.spend(customer)?;
        }
        Ok(())
    }

    /// Drops the state of customers whose budgets are full again, so memory
    /// follows the customers active in the last minute, not all ever seen.
    pub fn forget_idle(&self) {
        for budget in [&self.create_order, &self.mutations] {
            budget.limiter.retain_recent();
            budget.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_beyond_its_budget_is_refused_with_a_wait_and_others_are_not() {
        let budgets = WriteBudgets::new(&RateLimits {
            create_order_per_minute: 2,
            mutations_per_minute: 100,
        });
        let (greedy, other) = (Uuid::now_v7(), Uuid::now_v7());
        budgets.spend(greedy, Write::CreateOrder).unwrap();
        budgets.spend(greedy, Write::CreateOrder).unwrap();
        let refused = budgets.spend(greedy, Write::CreateOrder).unwrap_err();
        assert_eq!(refused.code(), super::super::ErrorCode::LimitExceeded);
        assert!(
            refused.to_string().contains("at most 2 new orders a minute"),
            "{refused}"
        );
        assert!(refused.retry_after().is_some_and(|wait| wait >= Duration::from_secs(1)));
        budgets.spend(greedy, Write::Change).unwrap();
        budgets.spend(other, Write::CreateOrder).unwrap();
    }
}

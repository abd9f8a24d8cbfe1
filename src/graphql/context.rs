use async_graphql::Context;
use sea_orm::DatabaseConnection;

use crate::auth::{AuthError, Caller};

/// What the transport learned about the caller, attached to every request.
#[derive(Debug, Clone)]
pub enum RequestAuth {
    Anonymous,
    Authenticated(Caller),
    Rejected(AuthError),
}

impl RequestAuth {
    /// The authenticated caller, or why there is none. A login that expired
    /// since the transport checked it (a long-lived socket) serves nothing more.
    pub fn caller(&self) -> Result<Caller, AuthError> {
        match self {
            RequestAuth::Authenticated(caller) if caller.is_expired() => Err(AuthError::Expired),
            RequestAuth::Authenticated(caller) => Ok(*caller),
            RequestAuth::Anonymous => Err(AuthError::Missing),
            RequestAuth::Rejected(reason) => Err(reason.clone()),
        }
    }

    /// Fails only on a credential that was sent and is bad; anonymous is fine.
    pub fn allow_anonymous(&self) -> Result<(), AuthError> {
        match self {
            RequestAuth::Rejected(reason) => Err(reason.clone()),
            _ => Ok(()),
        }
    }
}

pub(crate) fn auth<'a>(ctx: &'a Context<'_>) -> &'a RequestAuth {
    ctx.data_opt::<RequestAuth>().unwrap_or(&RequestAuth::Anonymous)
}

pub(crate) fn caller(ctx: &Context<'_>) -> Result<Caller, AuthError> {
    auth(ctx).caller()
}

pub(crate) fn db<'a>(ctx: &'a Context<'_>) -> &'a DatabaseConnection {
    ctx.data_unchecked::<DatabaseConnection>()
}

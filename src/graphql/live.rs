//! Subscriptions for the streaming transports (graphql-transport-ws, multipart
//! HTTP, SSE), rendered once per distinct selection and version instead of
//! once per subscriber.
//!
//! async-graphql's `execute_stream` keeps a parsed document, variables and a
//! query environment per subscription, and resolves and serialises every
//! update for every subscriber. Ten thousand devices watching one order would
//! each pay for the same JSON. So a subscription operation runs in two steps:
//!
//! 1. *Discover*: async-graphql executes the request once, fully (parsing,
//!    validation, limits, argument coercion, authentication), with a
//!    [`LivePlan::Discover`] attached; the resolver reports its [`Topic`]
//!    instead of returning a stream. Errors come back exactly as without this.
//! 2. *Follow*: the transport drives [`live::updates`] for that topic itself
//!    and, for each update, asks the shared [`RenderCache`] for the frame's
//!    payload. On a miss, async-graphql executes the request again with a
//!    [`LivePlan::Render`] carrying that one update; the result is kept under
//!    (customer, query, operation, variables, order, version, change, resync),
//!    which determines it completely.
//!
//! Operations that are not subscriptions, and subscriptions whose document
//! selects no or several topics, run through `execute_stream` unchanged.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response, Variables};
use futures::stream::{self, BoxStream, StreamExt};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::context::RequestAuth;
use super::{error_list, operation_type, AppSchema, ClientRequest, PersistedDocuments};
use crate::auth::{AuthError, Caller};
use crate::domain::{ChangeKind, ErrorCode};
use crate::live::{self, Hub, LiveError, Topic, Update};

/// How the subscription resolvers behave in one execution; attached by this
/// module as request data, absent for every other transport.
pub(crate) enum LivePlan {
    /// Report the topic and return an empty stream.
    Discover(Discovered),
    /// Resolve exactly this one item.
    Render(RenderItem),
}

/// The topics a discovery execution reported.
#[derive(Default, Clone)]
pub(crate) struct Discovered(Arc<Mutex<Vec<Topic>>>);

impl Discovered {
    pub(crate) fn report(&self, topic: Topic) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(topic);
    }

    fn single(&self) -> Option<Topic> {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).as_slice() {
            [topic] => Some(*topic),
            _ => None,
        }
    }
}

/// The item a render execution resolves.
pub(crate) struct RenderItem(Mutex<Option<Result<Update, LiveError>>>);

impl RenderItem {
    /// The item on the first call, `None` after.
    pub(crate) fn take(&self) -> Option<Result<Update, LiveError>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// One message of an operation, serialised: the `payload` of a
/// graphql-transport-ws `next` or `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A GraphQL response (`{"data": ...}`, maybe with `errors`).
    Next(Arc<str>),
    /// The errors of an operation that failed without data; it is over.
    Error(Arc<str>),
}

impl Output {
    /// A response's message: `Error` when it failed without data.
    pub fn of(response: Response) -> Self {
        if response.data == async_graphql::Value::Null && !response.errors.is_empty() {
            Output::Error(to_json(&response.errors))
        } else {
            Output::Next(to_json(&response))
        }
    }

    /// The error of an operation still open when its login expires.
    pub fn login_expired() -> Self {
        Output::Error(to_json(&error_list(
            ErrorCode::Unauthenticated,
            &AuthError::Expired.to_string(),
        )))
    }

    /// For the impossible case of a render execution that yields nothing.
    fn internal() -> Self {
        Output::Error(to_json(&error_list(ErrorCode::Internal, "internal error")))
    }
}

fn to_json(value: &impl serde::Serialize) -> Arc<str> {
    serde_json::to_string(value)
        .expect("GraphQL responses serialise to JSON")
        .into()
}

/// Runs the streaming transports' operations; one per instance, cheap to clone.
#[derive(Clone)]
pub struct LiveExecutor {
    schema: AppSchema,
    db: DatabaseConnection,
    hub: Arc<Hub>,
    rendered: Arc<RenderCache>,
    documents: Arc<PersistedDocuments>,
}

impl LiveExecutor {
    /// `render_cache_bytes` bounds the memory of rendered updates kept for reuse.
    pub fn new(
        schema: AppSchema,
        db: DatabaseConnection,
        hub: Arc<Hub>,
        render_cache_bytes: u64,
        documents: Arc<PersistedDocuments>,
    ) -> Self {
        LiveExecutor {
            schema,
            db,
            hub,
            rendered: Arc::new(RenderCache::new(render_cache_bytes)),
            documents,
        }
    }

    /// The messages of one operation, which may name a persisted document.
    pub fn execute(&self, request: ClientRequest, auth: RequestAuth) -> BoxStream<'static, Output> {
        match self.documents.resolve(request) {
            Ok(request) => self.execute_resolved(request, auth),
            Err(refused) => {
                let errors = error_list(refused.code(), &refused.to_string());
                stream::once(async move { Output::Error(to_json(&errors)) }).boxed()
            }
        }
    }

    /// The messages of one operation whose document is known. A subscription
    /// without a valid login runs like any other operation, so its resolver
    /// refuses it with the usual error.
    pub fn execute_resolved(&self, request: Request, auth: RequestAuth) -> BoxStream<'static, Output> {
        let is_subscription =
            operation_type(&request.query, request.operation_name.as_deref()) == Some(OperationType::Subscription);
        let caller = match auth.caller() {
            Ok(caller) if is_subscription => caller,
            _ => return self.schema.execute_stream(request.data(auth)).map(Output::of).boxed(),
        };
        let this = self.clone();
        let selection = Arc::new(Selection::new(caller, request));
        async_stream::stream! {
            let discovered = Discovered::default();
            let discovery = this.schema.execute_stream(selection.request().data(LivePlan::Discover(discovered.clone())));
            if let Some(response) = Box::pin(discovery.into_future()).await.0 {
                // The resolvers return no stream while discovering: this is an error.
                yield Output::of(response);
                return;
            }
            let Some(topic) = discovered.single() else {
                for await response in this.schema.execute_stream(selection.request()) {
                    yield Output::of(response);
                }
                return;
            };
            for await item in live::updates(this.db.clone(), this.hub.clone(), selection.caller, topic) {
                match item {
                    Ok(update) => match this.rendered.cached(&selection, &update) {
                        Some(output) => yield output,
                        None => yield Box::pin(this.rendered.render(&this.schema, &selection, update)).await,
                    },
                    Err(error) => {
                        yield Box::pin(render(&this.schema, &selection, Err(error))).await;
                        return;
                    }
                }
            }
        }
        .boxed()
    }
}

/// What a subscription's updates are rendered from: everything of the request
/// that can change the output. The operation's document is parsed again per
/// render rather than kept per subscriber.
struct Selection {
    caller: Caller,
    query: String,
    operation_name: Option<String>,
    variables: Variables,
    /// `variables` as JSON, for equality.
    variables_json: String,
    hash: u64,
}

impl Selection {
    fn new(caller: Caller, request: Request) -> Self {
        /// Keyed once per process, so clients cannot choose colliding selections.
        static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);
        let variables_json = serde_json::to_string(&request.variables).unwrap_or_default();
        let hash = HASHER.hash_one((
            caller.customer_id,
            &request.query,
            &request.operation_name,
            &variables_json,
        ));
        Selection {
            caller,
            query: request.query,
            operation_name: request.operation_name,
            variables: request.variables,
            variables_json,
            hash,
        }
    }

    fn request(&self) -> Request {
        let mut request = Request::new(self.query.clone()).variables(self.variables.clone());
        request.operation_name = self.operation_name.clone();
        request.data(RequestAuth::Authenticated(self.caller))
    }

    fn renders_like(&self, other: &Selection) -> bool {
        self.hash == other.hash
            && self.caller.customer_id == other.caller.customer_id
            && self.query == other.query
            && self.operation_name == other.operation_name
            && self.variables_json == other.variables_json
    }
}

/// Identifies a rendered update: the same key always renders the same JSON.
#[derive(Clone)]
struct RenderKey {
    selection: Arc<Selection>,
    order_id: Uuid,
    version: i64,
    change: ChangeKind,
    resync: bool,
}

impl RenderKey {
    fn new(selection: &Arc<Selection>, update: &Update) -> Self {
        RenderKey {
            selection: selection.clone(),
            order_id: update.version.order_id,
            version: update.version.version,
            change: update.version.change,
            resync: update.resync,
        }
    }
}

impl PartialEq for RenderKey {
    fn eq(&self, other: &Self) -> bool {
        self.order_id == other.order_id
            && self.version == other.version
            && self.change == other.change
            && self.resync == other.resync
            && (Arc::ptr_eq(&self.selection, &other.selection) || self.selection.renders_like(&other.selection))
    }
}

impl Eq for RenderKey {}

impl Hash for RenderKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (
            self.selection.hash,
            self.order_id,
            self.version,
            self.change,
            self.resync,
        )
            .hash(state);
    }
}

/// Rendered updates, shared by all subscriptions of an instance. Concurrent
/// misses on one key render once; the others wait for that result.
pub(crate) struct RenderCache {
    entries: quick_cache::sync::Cache<RenderKey, Output, RenderWeight>,
}

/// The bytes an entry keeps alive: its payload, and its selection's text (the
/// selection is shared by subscribers, so this over-counts, and the bound holds).
#[derive(Clone)]
struct RenderWeight;

impl quick_cache::Weighter<RenderKey, Output> for RenderWeight {
    fn weight(&self, key: &RenderKey, output: &Output) -> u64 {
        let payload = match output {
            Output::Next(json) | Output::Error(json) => json.len(),
        };
        let selection = key.selection.query.len() + key.selection.variables_json.len();
        u64::try_from(payload + selection + std::mem::size_of::<RenderKey>()).unwrap_or(u64::MAX)
    }
}

/// A typical entry, for the cache's initial sizing only.
const TYPICAL_RENDER_BYTES: u64 = 2 * 1024;

impl RenderCache {
    fn new(max_bytes: u64) -> Self {
        let max_bytes = max_bytes.max(TYPICAL_RENDER_BYTES);
        let estimated_entries = usize::try_from(max_bytes / TYPICAL_RENDER_BYTES).unwrap_or(usize::MAX);
        RenderCache {
            entries: quick_cache::sync::Cache::with_weighter(estimated_entries, max_bytes, RenderWeight),
        }
    }

    /// The rendered update if it is cached (the common case of a fan-out, and
    /// no allocation), else `None`.
    fn cached(&self, selection: &Arc<Selection>, update: &Update) -> Option<Output> {
        self.entries.get(&RenderKey::new(selection, update))
    }

    async fn render(&self, schema: &AppSchema, selection: &Arc<Selection>, update: Update) -> Output {
        let key = RenderKey::new(selection, &update);
        let rendered = self
            .entries
            .get_or_insert_async(&key, async {
                Ok::<_, std::convert::Infallible>(render(schema, selection, Ok(update)).await)
            })
            .await;
        match rendered {
            Ok(output) => output,
            Err(never) => match never {},
        }
    }
}

/// Executes the selection for one item.
async fn render(schema: &AppSchema, selection: &Selection, item: Result<Update, LiveError>) -> Output {
    let request = selection
        .request()
        .data(LivePlan::Render(RenderItem(Mutex::new(Some(item)))));
    match schema.execute_stream(request).into_future().await.0 {
        Some(response) => Output::of(response),
        None => Output::internal(),
    }
}

#[cfg(test)]
mod tests {
    use std::hash::DefaultHasher;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::domain::{OrderVersion, OrderView};

    #[test]
    fn the_render_cache_holds_at_most_its_bytes() {
        let cache = RenderCache::new(64 * 1024);
        let selection = selection(Uuid::now_v7(), "subscription { x }", serde_json::json!({}));
        let payload: Arc<str> = Arc::from("x".repeat(1_000));
        for version in 0..1_000 {
            let key = RenderKey {
                selection: selection.clone(),
                order_id: Uuid::nil(),
                version,
                change: ChangeKind::ItemAdded,
                resync: false,
            };
            cache.entries.insert(key, Output::Next(payload.clone()));
        }
        assert!(cache.entries.weight() <= 64 * 1024, "{}", cache.entries.weight());
        assert!(
            cache.entries.len() >= 32,
            "the cache keeps what fits: {}",
            cache.entries.len()
        );
    }

    fn selection(customer_id: Uuid, query: &str, variables: serde_json::Value) -> Arc<Selection> {
        let caller = Caller {
            customer_id,
            expires_at: SystemTime::now() + Duration::from_secs(60),
        };
        let request = Request::new(query).variables(Variables::from_json(variables));
        Arc::new(Selection::new(caller, request))
    }

    fn update(customer_id: Uuid, version: i64, resync: bool) -> Update {
        let version = OrderVersion::snapshot(OrderView::empty_open(Uuid::nil(), customer_id, version));
        Update {
            version: Arc::new(version),
            resync,
        }
    }

    fn hash(key: &RenderKey) -> u64 {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn keys_are_equal_exactly_when_the_rendering_must_be() {
        let customer = Uuid::now_v7();
        let query = "subscription($o: ID!) { orderUpdates(orderId: $o) { version } }";
        let base = selection(customer, query, serde_json::json!({ "o": "1" }));
        let key = RenderKey::new(&base, &update(customer, 2, false));
        let same = RenderKey::new(
            &selection(customer, query, serde_json::json!({ "o": "1" })),
            &update(customer, 2, false),
        );
        assert!(
            key == same && hash(&key) == hash(&same),
            "same contents, other allocation"
        );
        for (what, other) in [
            (
                "customer",
                RenderKey::new(
                    &selection(Uuid::now_v7(), query, serde_json::json!({ "o": "1" })),
                    &update(customer, 2, false),
                ),
            ),
            (
                "variables",
                RenderKey::new(
                    &selection(customer, query, serde_json::json!({ "o": "2" })),
                    &update(customer, 2, false),
                ),
            ),
            (
                "query",
                RenderKey::new(
                    &selection(
                        customer,
                        "subscription { myOrderUpdates { version } }",
                        serde_json::json!({}),
                    ),
                    &update(customer, 2, false),
                ),
            ),
            ("version", RenderKey::new(&base, &update(customer, 3, false))),
            ("resync", RenderKey::new(&base, &update(customer, 2, true))),
        ] {
            assert!(key != other, "a different {what} renders differently");
        }
    }
}

//! The rdkafka consumer. It assigns partitions itself (no consumer group
//! membership, no offset commits), so every instance reads every partition
//! and no instance can take partitions away from another.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use super::decode::{decode_version, DecodeError, Decoded};
use crate::config::{CdcTopics, KafkaConfig};
use crate::domain::seconds_after_commit;
use crate::live::Hub;
use crate::telemetry::metric;

/// Where the change events are and how patient to be with them.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    /// Brokers and the operator's librdkafka properties (TLS, SASL, timeouts).
    pub kafka: KafkaConfig,
    /// Debezium's topic for the `order_versions` table.
    pub versions_topic: String,
    /// Debezium's topic for the `cdc_gaps` table: announcements of uncaptured changes.
    pub gaps_topic: String,
    /// Debezium's heartbeat topic: proof of life while no order changes.
    pub heartbeat_topic: String,
    /// Silence after which the stream counts as stalled (heartbeats come every 2 s).
    pub stall_after: Duration,
}

impl CdcConfig {
    pub fn new(kafka: KafkaConfig, topics: &CdcTopics) -> Self {
        CdcConfig {
            kafka,
            versions_topic: topics.cdc_topic.clone(),
            gaps_topic: topics.cdc_gaps_topic.clone(),
            heartbeat_topic: topics.cdc_heartbeat_topic.clone(),
            stall_after: Duration::from_secs(10),
        }
    }

    /// The librdkafka configuration: our latency tuning, then the operator's
    /// properties (which may override the tuning), then what ordercast owns
    /// (the parser refuses those from outside).
    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("fetch.wait.max.ms", "5")
            .set("fetch.min.bytes", "1")
            .set("statistics.interval.ms", "5000")
            // A broker that comes back is found within a second, not librdkafka's default 10 s.
            .set("reconnect.backoff.max.ms", "1000");
        for option in &self.kafka.kafka_options {
            client.set(option.key.as_str(), option.expose_value());
        }
        client
            .set("bootstrap.servers", &self.kafka.kafka_brokers)
            // Required by librdkafka, never joined: partitions are assigned by hand.
            .set("group.id", format!("ordercast-live-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest");
        client
    }

    /// Builds a client once to let librdkafka judge every property, so a typo or
    /// a missing CA file stops `serve` with a clear message instead of retrying forever.
    /// It is dropped at once; what it meets meanwhile is the real consumer's to report.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        match self
            .client_config()
            .create_with_context::<_, BaseConsumer<Silent>>(Silent)
        {
            Ok(_) => Ok(()),
            Err(KafkaError::ClientConfig(_, description, key, _value)) => Err(KafkaConfigError { key, description }),
            Err(other) => Err(KafkaConfigError {
                key: String::new(),
                description: other.to_string(),
            }),
        }
    }
}

/// The context of the throw-away client `validate` builds: nothing it hears is logged.
struct Silent;

impl ClientContext for Silent {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::trace!(target: "rdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::trace!(target: "rdkafka", %error, reason, "kafka client error while validating the configuration");
    }
}

impl ConsumerContext for Silent {}

/// A Kafka property librdkafka rejected. The value is left out: it may be a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid Kafka client configuration{}: {description} (set with ORDERCAST_KAFKA_* or --kafka-option; see librdkafka's CONFIGURATION.md)", if key.is_empty() { String::new() } else { format!(" for `{key}`") })]
pub struct KafkaConfigError {
    pub key: String,
    pub description: String,
}

/// What readiness reports about the CDC stream. `assigned` means the start
/// offsets are fixed: every commit from then on will be consumed.
#[derive(Debug)]
pub struct CdcStatus {
    assigned: AtomicBool,
    /// Set by the first assignment and never cleared: the instance has been
    /// live once, so it is warm enough to take traffic.
    warmed_up: AtomicBool,
    outage: AtomicBool,
    /// Why the current outage began (meaningful while `outage` is set).
    outage_reason: Mutex<&'static str>,
    /// Wall-clock milliseconds of the last record consumed (change or heartbeat).
    last_event_ms: AtomicI64,
}

impl Default for CdcStatus {
    fn default() -> Self {
        CdcStatus {
            assigned: AtomicBool::new(false),
            warmed_up: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            outage_reason: Mutex::new(""),
            last_event_ms: AtomicI64::new(now_ms()),
        }
    }
}

/// Live updates right now: healthy, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdcHealth {
    Live,
    /// Start offsets are not fixed yet (starting, or the consumer is being rebuilt).
    Starting,
    Outage(&'static str),
}

impl CdcStatus {
    /// Start offsets fixed and no outage.
    pub fn is_ready(&self) -> bool {
        self.health() == CdcHealth::Live
    }

    pub fn health(&self) -> CdcHealth {
        if self.outage.load(Ordering::Acquire) {
            CdcHealth::Outage(*self.outage_reason.lock().unwrap_or_else(PoisonError::into_inner))
        } else if !self.assigned.load(Ordering::Acquire) {
            CdcHealth::Starting
        } else {
            CdcHealth::Live
        }
    }

    /// True once the consumer has had its partitions assigned, even if the
    /// stream is interrupted now.
    pub fn is_warm(&self) -> bool {
        self.warmed_up.load(Ordering::Acquire)
    }

    /// Seconds since the last change event or heartbeat was consumed.
    pub fn last_event_age(&self) -> f64 {
        (now_ms() - self.last_event_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0
    }

    fn begin_outage(&self, why: &'static str) {
        *self.outage_reason.lock().unwrap_or_else(PoisonError::into_inner) = why;
        // Before the first assignment nothing was live, so nothing was interrupted:
        // the cause is logged where it is known.
        if !self.outage.swap(true, Ordering::AcqRel) && self.is_warm() {
            metrics::counter!(metric::CDC_OUTAGES).increment(1);
            tracing::warn!(
                why,
                "CDC stream interrupted; subscribers that fall behind catch up when it resumes"
            );
        }
    }

    /// Records a consumed record; true when it ended an outage.
    fn record_event(&self) -> bool {
        self.last_event_ms.store(now_ms(), Ordering::Relaxed);
        self.outage.swap(false, Ordering::AcqRel)
    }

    fn set_assigned(&self, assigned: bool) -> bool {
        if assigned {
            self.warmed_up.store(true, Ordering::Release);
        }
        self.assigned.swap(assigned, Ordering::AcqRel)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

struct CdcContext {
    status: Arc<CdcStatus>,
    brokers: String,
    reports: ProblemReports,
}

/// What keeps the consumer from Kafka, as an operator would fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KafkaProblem {
    /// Nothing answers (connection refused, unknown host, every broker down).
    Unreachable,
    /// The brokers refused our SASL credentials or mechanism.
    Authentication,
    /// The TLS handshake failed (unknown CA, host name mismatch, wrong protocol).
    Tls,
}

impl KafkaProblem {
    fn of(error: &KafkaError) -> Option<Self> {
        match error.rdkafka_error_code()? {
            // Not one lost connection: brokers drop idle ones, and a cluster serves on without one.
            RDKafkaErrorCode::AllBrokersDown => Some(KafkaProblem::Unreachable),
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
                Some(KafkaProblem::Authentication)
            }
            RDKafkaErrorCode::SSL => Some(KafkaProblem::Tls),
            _ => None,
        }
    }

    /// The readiness reason while it lasts.
    fn reason(self) -> &'static str {
        match self {
            KafkaProblem::Unreachable => "all Kafka brokers are down",
            KafkaProblem::Authentication => "Kafka refused the SASL credentials",
            KafkaProblem::Tls => "the TLS handshake with Kafka failed",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            KafkaProblem::Unreachable => {
                "is Kafka running and are the brokers right? (KAFKA_BROKERS; the local stack: `make stack`)"
            }
            KafkaProblem::Authentication => {
                "check ORDERCAST_KAFKA_SASL_USERNAME, ORDERCAST_KAFKA_SASL_PASSWORD and ORDERCAST_KAFKA_SASL_MECHANISM"
            }
            KafkaProblem::Tls => {
                "ORDERCAST_KAFKA_SSL_CA_LOCATION must name the CA that signed the brokers' certificates, and the broker host must match them"
            }
        }
    }

    /// Whether it explains the others: a refused login also leaves every broker "down".
    fn is_specific(self) -> bool {
        self != KafkaProblem::Unreachable
    }
}

/// A connection to one broker failed or its name did not resolve.
fn is_connection_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve)
    )
}

/// How often the same problem is logged again while it lasts.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Turns librdkafka's stream of errors (one per broker and retry) into one log
/// line per problem and minute, until the stream works again.
#[derive(Debug, Default)]
struct ProblemReports {
    last: Mutex<std::collections::HashMap<KafkaProblem, Instant>>,
}

impl ProblemReports {
    /// The problem that explains `problem` (a recent refused login or TLS failure
    /// explains brokers being "down"), and whether to log it now.
    fn note(&self, problem: KafkaProblem) -> (KafkaProblem, bool) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = |p: &KafkaProblem| last.get(p).is_some_and(|at| at.elapsed() < REPORT_AGAIN_AFTER);
        if !problem.is_specific() {
            if let Some(cause) = [KafkaProblem::Authentication, KafkaProblem::Tls]
                .into_iter()
                .find(recent)
            {
                return (cause, false);
            }
        }
        if recent(&problem) {
            return (problem, false);
        }
        last.insert(problem, Instant::now());
        (problem, true)
    }

    /// The stream works: the next problem is news again.
    fn clear(&self) {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl ClientContext for CdcContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Every failure librdkafka logs also reaches `error`, which reports it once;
        // its own lines (one per broker and retry) are for debugging only.
        tracing::debug!(target: "rdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason);
    }
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for partition in topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.app_offset >= 0)
            {
                let lag = (partition.hi_offset - partition.app_offset).max(0);
                metrics::gauge!(metric::CDC_CONSUMER_LAG, "topic" => topic.topic.clone(), "partition" => partition.partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

impl CdcContext {
    /// Marks the outage a known problem causes and logs it once; anything
    /// else is logged at debug level (librdkafka retries it by itself).
    fn report(&self, error: &KafkaError, reason: &str) {
        let Some(problem) = KafkaProblem::of(error) else {
            tracing::debug!(%error, reason, "kafka client error");
            return;
        };
        let (cause, log_now) = self.reports.note(problem);
        self.status.begin_outage(cause.reason());
        if log_now {
            let detail = if reason.is_empty() {
                error.to_string()
            } else {
                reason.to_owned()
            };
            tracing::error!(
                "cannot use Kafka at {}: {}: {detail}; {}",
                self.brokers,
                problem.reason(),
                problem.hint()
            );
        }
    }
}

impl ConsumerContext for CdcContext {}

type CdcConsumer = StreamConsumer<CdcContext>;

/// Consumes forever, rebuilding the consumer after fatal errors.
pub async fn run(config: CdcConfig, hub: Arc<Hub>, status: Arc<CdcStatus>) {
    loop {
        if let Err(error) = consume(&config, &hub, &status).await {
            tracing::error!(%error, "CDC consumer failed; restarting it");
            status.set_assigned(false);
            status.begin_outage("the Kafka consumer is being rebuilt after an error");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

async fn consume(config: &CdcConfig, hub: &Hub, status: &Arc<CdcStatus>) -> Result<(), KafkaError> {
    let consumer: Arc<CdcConsumer> = Arc::new(config.client_config().create_with_context(CdcContext {
        status: status.clone(),
        brokers: config.kafka.kafka_brokers.clone(),
        reports: ProblemReports::default(),
    })?);
    // The assignments live in the blocking lookup while one runs (a lookup waits up to 5 s
    // when Kafka does not answer), so records and errors keep flowing meanwhile.
    let mut assignments = Some(Assignments::new(config));
    let mut lookup: Option<tokio::task::JoinHandle<(Result<bool, KafkaError>, Assignments)>> = None;
    let mut expects_heartbeats = false;
    let mut last_record = Instant::now();
    let hot = HotMetrics::new(config);
    let mut metadata_tick = tokio::time::interval(Duration::from_secs(2));
    // A slow lookup (Kafka unreachable) is followed by one tick, not a burst of them.
    metadata_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = consumer.recv() => match message {
                Ok(message) => {
                    last_record = Instant::now();
                    if status.record_event() {
                        consumer.context().reports.clear();
                        tracing::info!("CDC stream resumed; comparing subscribers with Postgres");
                        hub.request_recovery();
                    }
                    let topic = message.topic();
                    if topic == config.gaps_topic {
                        hot.gap_events.increment(1);
                        metrics::counter!(metric::CDC_GAPS).increment(1);
                        tracing::warn!(partition = message.partition(), offset = message.offset(), "the change stream announced a gap (changes committed but never captured); comparing subscribers with Postgres");
                        hub.request_recovery();
                    } else if topic == config.versions_topic {
                        hot.version_events.increment(1);
                        if let Err(error) = route_version(hub, &hot, message.payload(), message.timestamp().to_millis()) {
                            metrics::counter!(metric::CDC_DECODE_ERRORS, "topic" => topic.to_owned()).increment(1);
                            tracing::warn!(topic, partition = message.partition(), offset = message.offset(), %error, "skipping a malformed change event");
                        }
                    } else {
                        metrics::counter!(metric::CDC_EVENTS, "topic" => topic.to_owned()).increment(1);
                    }
                }
                Err(error) if KafkaProblem::of(&error).is_some() => consumer.context().report(&error, ""),
                Err(error) => {
                    // One broker connection lost is librdkafka's to retry (and reported as a
                    // problem once every broker is down); anything else is worth a line.
                    if is_connection_error(&error) {
                        tracing::debug!(%error, "a Kafka connection failed while consuming");
                    } else {
                        tracing::warn!(%error, "error while consuming change events");
                    }
                    status.begin_outage("the Kafka consumer reported an error");
                }
            },
            finished = async { lookup.as_mut().expect("polled only while a lookup runs").await }, if lookup.is_some() => {
                lookup = None;
                let (refreshed, back) = finished.map_err(|_| KafkaError::Canceled)?;
                expects_heartbeats = back.expects_heartbeats();
                assignments = Some(back);
                if refreshed? && !status.set_assigned(true) {
                    consumer.context().reports.clear();
                    // Start offsets are fixed now. A subscription that read its state
                    // before this point may have missed a commit: compare it with Postgres.
                    hub.request_recovery();
                }
            }
            _ = metadata_tick.tick() => {
                if let Some(mut pending) = assignments.take() {
                    let kafka = consumer.clone();
                    lookup = Some(tokio::task::spawn_blocking(move || {
                        let refreshed = pending.refresh(&*kafka);
                        (refreshed, pending)
                    }));
                }
                metrics::gauge!(metric::CDC_LAST_EVENT_AGE).set(status.last_event_age());
                if expects_heartbeats && last_record.elapsed() > config.stall_after {
                    status.begin_outage("no change event or heartbeat within the stall limit");
                }
            }
        }
    }
}

/// What the consumer needs from Kafka to assign partitions by hand; blocking calls.
trait PartitionSource {
    /// The partitions of a topic (none while it does not exist); `None` when Kafka is unreachable.
    fn partitions_of(&self, topic: &str) -> Option<Vec<i32>>;
    fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, KafkaError>;
    fn assign(&self, additions: &TopicPartitionList) -> Result<(), KafkaError>;
}

impl PartitionSource for CdcConsumer {
    fn partitions_of(&self, topic: &str) -> Option<Vec<i32>> {
        use rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART as UNKNOWN_TOPIC;
        let metadata = self.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let mut partitions = Vec::new();
        for entry in metadata.topics().iter().filter(|t| t.name() == topic) {
            match entry.error() {
                None => partitions.extend(entry.partitions().iter().map(|p| p.id())),
                // Not created yet (Debezium creates it with its first record): no partitions.
                Some(UNKNOWN_TOPIC) => {}
                // Anything else (a leader being elected, a broker starting) is not an answer.
                Some(_) => return None,
            }
        }
        Some(partitions)
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        self.fetch_watermarks(topic, partition, Duration::from_secs(5))
            .map(|(_, high)| high)
    }

    fn assign(&self, additions: &TopicPartitionList) -> Result<(), KafkaError> {
        self.incremental_assign(additions)
    }
}

/// The partitions this consumer reads. A partition counts as assigned only
/// once `incremental_assign` took it: a failed lookup or assignment leaves it
/// to the next refresh, never silently unread.
#[derive(Debug)]
struct Assignments {
    versions_topic: String,
    gaps_topic: String,
    heartbeat_topic: String,
    assigned: HashSet<(String, i32)>,
    /// Topics listed at least once. On a topic's first listing its partitions
    /// start at their current end (concrete offsets, so "from now" is well
    /// defined); a partition that appears later starts at its beginning, since
    /// all of it is newer than our start.
    listed: HashSet<String>,
}

impl Assignments {
    fn new(config: &CdcConfig) -> Self {
        Assignments {
            versions_topic: config.versions_topic.clone(),
            gaps_topic: config.gaps_topic.clone(),
            heartbeat_topic: config.heartbeat_topic.clone(),
            assigned: HashSet::new(),
            listed: HashSet::new(),
        }
    }

    /// Assigns partitions not assigned yet. True when every topic could be
    /// listed and everything listed is assigned now.
    fn refresh(&mut self, kafka: &impl PartitionSource) -> Result<bool, KafkaError> {
        let mut complete = true;
        let mut additions = TopicPartitionList::new();
        let mut added = Vec::new();
        let mut listed = Vec::new();
        for topic in [&self.versions_topic, &self.gaps_topic, &self.heartbeat_topic] {
            let Some(fresh) = self.plan(kafka, topic) else {
                // Kafka cannot answer now; asking about the next topic would only wait again.
                complete = false;
                break;
            };
            for &(partition, offset) in &fresh {
                additions.add_partition_offset(topic, partition, offset)?;
            }
            added.extend(
                fresh
                    .into_iter()
                    .map(|(partition, offset)| (topic.clone(), partition, offset)),
            );
            listed.push(topic.clone());
        }
        if !added.is_empty() {
            kafka.assign(&additions)?;
        }
        for (topic, partition, offset) in added {
            tracing::info!(topic, partition, ?offset, "consuming change events");
            self.assigned.insert((topic, partition));
        }
        self.listed.extend(listed);
        Ok(complete)
    }

    /// The partitions of `topic` to add and where each starts; `None` when
    /// Kafka could not tell (the topic is then left for the next refresh).
    fn plan(&self, kafka: &impl PartitionSource, topic: &str) -> Option<Vec<(i32, Offset)>> {
        let first_listing = !self.listed.contains(topic);
        let mut fresh = Vec::new();
        for partition in kafka.partitions_of(topic)? {
            if self.assigned.contains(&(topic.to_owned(), partition)) {
                continue;
            }
            // Heartbeats are only proof of life: old ones are of no use.
            let offset = if first_listing || topic == self.heartbeat_topic {
                match kafka.high_watermark(topic, partition) {
                    Ok(high) => Offset::Offset(high),
                    Err(error) => {
                        tracing::debug!(topic, partition, %error, "no watermark yet; retrying on the next refresh");
                        return None;
                    }
                }
            } else {
                Offset::Beginning
            };
            fresh.push((partition, offset));
        }
        Some(fresh)
    }

    fn expects_heartbeats(&self) -> bool {
        self.assigned.iter().any(|(topic, _)| *topic == self.heartbeat_topic)
    }
}

/// The metrics every record touches, registered once rather than looked up per record.
struct HotMetrics {
    version_events: Counter,
    gap_events: Counter,
    commit_to_kafka: Histogram,
    commit_to_consume: Histogram,
}

impl HotMetrics {
    fn new(config: &CdcConfig) -> Self {
        HotMetrics {
            version_events: metrics::counter!(metric::CDC_EVENTS, "topic" => config.versions_topic.clone()),
            gap_events: metrics::counter!(metric::CDC_EVENTS, "topic" => config.gaps_topic.clone()),
            commit_to_kafka: metrics::histogram!(metric::CDC_COMMIT_TO_KAFKA),
            commit_to_consume: metrics::histogram!(metric::CDC_COMMIT_TO_CONSUME),
        }
    }
}

/// Hands a version record to the hub if anyone here follows its order or customer. The
/// order's state is decoded only then: every instance reads every partition, and most
/// records are of orders nobody on this instance follows.
fn route_version(
    hub: &Hub,
    hot: &HotMetrics,
    payload: Option<&[u8]>,
    kafka_timestamp_ms: Option<i64>,
) -> Result<(), DecodeError> {
    let Decoded::Version(record) = decode_version(payload)? else {
        return Ok(());
    };
    record_pipeline_latency(hot, record.committed_at_ms, kafka_timestamp_ms);
    if hub.follows(record.order_id, record.customer_id) {
        hub.publish(record.into_version()?);
    }
    Ok(())
}

/// Splits commit-to-push latency into its stages: Debezium and Connect (commit to the Kafka
/// record timestamp), then Kafka to this instance (the rest, up to decoding here).
fn record_pipeline_latency(hot: &HotMetrics, committed_at_ms: Option<i64>, kafka_timestamp_ms: Option<i64>) {
    if let Some(seconds) = kafka_timestamp_ms.and_then(|ms| seconds_after_commit(committed_at_ms, ms)) {
        hot.commit_to_kafka.record(seconds);
    }
    if let Some(seconds) = seconds_after_commit(committed_at_ms, chrono::Utc::now().timestamp_millis()) {
        hot.commit_to_consume.record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::*;

    /// Kafka as the assignment logic sees it, with lookups that can fail on demand.
    #[derive(Default)]
    struct FakeKafka {
        partitions: HashMap<String, Vec<i32>>,
        unreachable: RefCell<HashSet<String>>,
        fail_assign: Cell<bool>,
        assigned: RefCell<Vec<(String, i32, Offset)>>,
    }

    impl PartitionSource for FakeKafka {
        fn partitions_of(&self, topic: &str) -> Option<Vec<i32>> {
            if self.unreachable.borrow().contains(topic) {
                return None;
            }
            Some(self.partitions.get(topic).cloned().unwrap_or_default())
        }

        fn high_watermark(&self, _topic: &str, partition: i32) -> Result<i64, KafkaError> {
            Ok(100 + i64::from(partition))
        }

        fn assign(&self, additions: &TopicPartitionList) -> Result<(), KafkaError> {
            if self.fail_assign.get() {
                return Err(KafkaError::Canceled);
            }
            for element in additions.elements() {
                self.assigned
                    .borrow_mut()
                    .push((element.topic().to_owned(), element.partition(), element.offset()));
            }
            Ok(())
        }
    }

    fn config() -> CdcConfig {
        CdcConfig::new(KafkaConfig::new("unused:9092"), &CdcTopics::default())
    }

    fn kafka(versions: &[i32], heartbeats: &[i32]) -> FakeKafka {
        let config = config();
        FakeKafka {
            partitions: HashMap::from([
                (config.versions_topic.clone(), versions.to_vec()),
                (config.heartbeat_topic.clone(), heartbeats.to_vec()),
            ]),
            ..FakeKafka::default()
        }
    }

    fn assigned_partitions(kafka: &FakeKafka, topic: &str) -> Vec<i32> {
        let mut partitions: Vec<i32> = kafka
            .assigned
            .borrow()
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, p, _)| *p)
            .collect();
        partitions.sort();
        partitions
    }

    /// True when every assignment started at its partition's high watermark.
    fn all_from_the_end(kafka: &FakeKafka) -> bool {
        kafka
            .assigned
            .borrow()
            .iter()
            .all(|(_, p, offset)| *offset == Offset::Offset(100 + i64::from(*p)))
    }

    #[test]
    fn a_failed_heartbeat_lookup_still_assigns_the_versions_partitions_and_retries() {
        let config = config();
        let kafka = kafka(&[0, 1, 2], &[0]);
        kafka.unreachable.borrow_mut().insert(config.heartbeat_topic.clone());
        let mut assignments = Assignments::new(&config);
        assert!(
            !assignments.refresh(&kafka).unwrap(),
            "incomplete while a topic cannot be listed"
        );
        assert_eq!(assigned_partitions(&kafka, &config.versions_topic), [0, 1, 2]);

        kafka.unreachable.borrow_mut().clear();
        assert!(assignments.refresh(&kafka).unwrap());
        assert_eq!(assigned_partitions(&kafka, &config.heartbeat_topic), [0]);
        assert_eq!(
            assigned_partitions(&kafka, &config.versions_topic),
            [0, 1, 2],
            "nothing is assigned twice"
        );
    }

    #[test]
    fn a_failed_versions_lookup_is_retried_until_it_takes_effect() {
        let config = config();
        let kafka = kafka(&[0, 1], &[0]);
        kafka.unreachable.borrow_mut().insert(config.versions_topic.clone());
        let mut assignments = Assignments::new(&config);
        assert!(!assignments.refresh(&kafka).unwrap());
        assert!(assigned_partitions(&kafka, &config.versions_topic).is_empty());
        kafka.unreachable.borrow_mut().clear();
        assert!(assignments.refresh(&kafka).unwrap());
        assert_eq!(assigned_partitions(&kafka, &config.versions_topic), [0, 1]);
        assert!(
            all_from_the_end(&kafka),
            "the first listing starts at the end, even when it comes late: {:?}",
            kafka.assigned.borrow()
        );
    }

    #[test]
    fn an_assignment_that_failed_is_not_recorded() {
        let config = config();
        let kafka = kafka(&[0, 1], &[0]);
        let mut assignments = Assignments::new(&config);
        kafka.fail_assign.set(true);
        assert!(assignments.refresh(&kafka).is_err());
        kafka.fail_assign.set(false);
        assert!(assignments.refresh(&kafka).unwrap());
        assert_eq!(assigned_partitions(&kafka, &config.versions_topic), [0, 1]);
        assert!(
            all_from_the_end(&kafka),
            "still the first listing: from the end, not from the beginning"
        );
    }

    #[test]
    fn a_partition_that_appears_later_is_read_from_its_beginning() {
        let config = config();
        let mut kafka = kafka(&[0], &[0]);
        let mut assignments = Assignments::new(&config);
        assert!(assignments.refresh(&kafka).unwrap());
        kafka.partitions.insert(config.versions_topic.clone(), vec![0, 1]);
        assert!(assignments.refresh(&kafka).unwrap());
        let late = kafka
            .assigned
            .borrow()
            .iter()
            .find(|(t, p, _)| *t == config.versions_topic && *p == 1)
            .map(|(_, _, offset)| *offset);
        assert_eq!(late, Some(Offset::Beginning));
        assert!(assignments.expects_heartbeats());
    }
    #[test]
    fn librdkafka_is_built_with_tls_and_sasl() {
        let builtin = ClientConfig::new()
            .create_native_config()
            .and_then(|native| native.get("builtin.features"))
            .unwrap();
        for feature in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(
                builtin.split(',').any(|f| f == feature),
                "{feature} missing from {builtin}"
            );
        }
    }

    #[test]
    fn a_refused_login_is_reported_once_and_explains_the_brokers_being_down() {
        let reports = ProblemReports::default();
        let refused = KafkaError::Global(RDKafkaErrorCode::Authentication);
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(KafkaProblem::of(&refused), Some(KafkaProblem::Authentication));
        assert_eq!(KafkaProblem::of(&down), Some(KafkaProblem::Unreachable));
        assert_eq!(
            KafkaProblem::of(&KafkaError::Global(RDKafkaErrorCode::SSL)),
            Some(KafkaProblem::Tls)
        );
        assert_eq!(KafkaProblem::of(&KafkaError::Canceled), None);
        let one_connection = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(
            KafkaProblem::of(&one_connection),
            None,
            "brokers close idle connections"
        );
        assert!(is_connection_error(&one_connection));

        use KafkaProblem::{Authentication, Unreachable};
        assert_eq!(reports.note(Authentication), (Authentication, true));
        assert_eq!(reports.note(Authentication), (Authentication, false), "once a minute");
        assert_eq!(
            reports.note(Unreachable),
            (Authentication, false),
            "brokers are down because they refuse us: the reason stays, no second, misleading line"
        );
        reports.clear();
        assert_eq!(
            reports.note(Unreachable),
            (Unreachable, true),
            "after a recovery, news again"
        );
    }
}

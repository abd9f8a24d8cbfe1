//! Change data capture: every instance reads the Debezium topic of
//! `order_versions` from Kafka (all partitions, from the end, no consumer
//! group, no commits) and publishes each committed order version to the hub.

mod consumer;
mod decode;

pub use consumer::{run, CdcConfig, CdcHealth, CdcStatus, KafkaConfigError};
pub use decode::{decode_version, DecodeError, Decoded};

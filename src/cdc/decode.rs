//! Decoding Debezium's JSON change events (converter without schemas) of the
//! `order_versions` table, in two steps: the routing fields first, the order's
//! state only for a record somebody follows. Every instance reads every
//! partition, so most records concern orders none of its subscribers follow,
//! and parsing their whole state would be most of the instance's CDC cost.
//! Unknown fields are ignored; anything malformed is a `DecodeError`, which
//! the consumer counts and skips.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::{parse_state_text, ChangeKind, OrderVersion};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Debezium JSON envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("a create event without `after`")]
    MissingAfter,
    #[error("`state` is not an order state: {0}")]
    State(#[source] serde_json::Error),
    #[error("{0}")]
    Change(String),
}

/// What one record of the topic means to us.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A version was committed (`op` c), or read by a snapshot (`op` r).
    Version(VersionRecord<'a>),
    /// A deleted row's tombstone, or a change we do not act on (updates and
    /// deletes of immutable version rows only happen when history is pruned).
    Ignored,
}

/// A committed version as far as routing needs it; its state is still the
/// record's text, borrowed.
#[derive(Debug)]
pub struct VersionRecord<'a> {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub version: i64,
    pub change: ChangeKind,
    /// Commit time in Postgres (Debezium `source.ts_ms`), when known.
    pub committed_at_ms: Option<i64>,
    state: &'a RawValue,
}

impl VersionRecord<'_> {
    /// Decodes the order's state: the whole version, as subscribers get it.
    pub fn into_version(self) -> Result<OrderVersion, DecodeError> {
        // Debezium sends `jsonb` as a JSON string; accept a JSON object too.
        let view = match serde_json::from_str::<Cow<'_, str>>(self.state.get()) {
            Ok(text) => parse_state_text(&text),
            Err(_) => parse_state_text(self.state.get()),
        }
        .map_err(DecodeError::State)?;
        Ok(OrderVersion {
            order_id: self.order_id,
            customer_id: self.customer_id,
            version: self.version,
            change: self.change,
            view: view.into(),
            committed_at_ms: self.committed_at_ms,
        })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow)]
    after: Option<VersionRow<'a>>,
    source: Source,
}

#[derive(Deserialize)]
struct Source {
    ts_ms: Option<i64>,
}

#[derive(Deserialize)]
struct VersionRow<'a> {
    order_id: Uuid,
    version: i64,
    customer_id: Uuid,
    #[serde(borrow)]
    change: Cow<'a, str>,
    #[serde(borrow)]
    state: &'a RawValue,
}

/// Decodes one record value up to its routing fields; `None` is a tombstone.
pub fn decode_version(payload: Option<&[u8]>) -> Result<Decoded<'_>, DecodeError> {
    let Some(payload) = payload else {
        return Ok(Decoded::Ignored);
    };
    let envelope: Envelope = serde_json::from_slice(payload).map_err(DecodeError::Envelope)?;
    if envelope.op != "c" && envelope.op != "r" {
        return Ok(Decoded::Ignored);
    }
    let row = envelope.after.ok_or(DecodeError::MissingAfter)?;
    Ok(Decoded::Version(VersionRecord {
        order_id: row.order_id,
        customer_id: row.customer_id,
        version: row.version,
        change: row.change.parse::<ChangeKind>().map_err(DecodeError::Change)?,
        committed_at_ms: envelope.source.ts_ms,
        state: row.state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "01a213b7-407f-75ae-9b8d-742bb8a25317";
    const CUSTOMER: &str = "01a213b7-3d55-7036-822a-be997e7ecba2";

    fn state() -> String {
        serde_json::json!({
            "id": ORDER, "customer_id": CUSTOMER, "status": "open", "delivery_window_start": null,
            "delivery_window_end": null, "cancel_reason": null, "version": 2,
            "created_at": "2026-11-25T17:18:26.549783+00:00", "updated_at": "2026-11-25T17:18:26.560203+00:00",
            "items": []
        })
        .to_string()
    }

    fn event(op: &str) -> Vec<u8> {
        serde_json::json!({
            "before": null,
            "after": { "order_id": ORDER, "version": 2, "customer_id": CUSTOMER, "change": "ITEM_REMOVED",
                       "state": state(), "committed_at": "2026-11-25T17:18:26.56Z", "future_column": 1 },
            "source": { "ts_ms": 1764091106560i64, "lsn": 123, "txId": 9, "unknown": true },
            "op": op, "ts_ms": 1764091106570i64, "transaction": null
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn creates_and_snapshot_reads_decode_to_versions() {
        for op in ["c", "r"] {
            let payload = event(op);
            let Decoded::Version(record) = decode_version(Some(&payload)).unwrap() else {
                panic!("{op}")
            };
            assert_eq!(record.order_id.to_string(), ORDER);
            assert_eq!(record.customer_id.to_string(), CUSTOMER);
            let version = record.into_version().unwrap();
            assert_eq!(version.version, 2);
            assert_eq!(version.change, ChangeKind::ItemRemoved);
            assert_eq!(version.view.order.id.to_string(), ORDER);
            assert_eq!(version.committed_at_ms, Some(1764091106560));
        }
    }

    #[test]
    fn a_state_sent_as_an_object_decodes_too() {
        let object = String::from_utf8(event("c"))
            .unwrap()
            .replace(&serde_json::to_string(&state()).unwrap(), &state());
        let Decoded::Version(record) = decode_version(Some(object.as_bytes())).unwrap() else {
            panic!("ignored")
        };
        assert_eq!(record.into_version().unwrap().view.order.version, 2);
    }

    #[test]
    fn a_broken_state_is_found_only_when_the_version_is_decoded_whole() {
        let broken = String::from_utf8(event("c")).unwrap().replace("open", "exploded");
        let Decoded::Version(record) = decode_version(Some(broken.as_bytes())).unwrap() else {
            panic!("ignored")
        };
        assert_eq!(record.version, 2);
        assert!(matches!(record.into_version(), Err(DecodeError::State(_))));
    }

    #[test]
    fn tombstones_deletes_and_updates_are_ignored() {
        assert!(matches!(decode_version(None), Ok(Decoded::Ignored)));
        assert!(matches!(decode_version(Some(&event("d"))), Ok(Decoded::Ignored)));
        assert!(matches!(decode_version(Some(&event("u"))), Ok(Decoded::Ignored)));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(matches!(
            decode_version(Some(b"not json")),
            Err(DecodeError::Envelope(_))
        ));
        assert!(matches!(
            decode_version(Some(br#"{"op":"c","source":{}}"#)),
            Err(DecodeError::MissingAfter)
        ));
        let bad_state = String::from_utf8(event("c"))
            .unwrap()
            .replace("ITEM_REMOVED", "EXPLODED");
        assert!(matches!(
            decode_version(Some(bad_state.as_bytes())),
            Err(DecodeError::Change(_))
        ));
    }
}

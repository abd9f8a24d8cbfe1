//! Opaque Relay cursors. Clients must not parse them; we may change their
//! format, so they are base64 and versioned by a prefix.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use uuid::Uuid;

use crate::db::OrderCursor;
use crate::domain::DomainError;

const ORDER_PREFIX: &str = "o1:";
const PRODUCT_PREFIX: &str = "p1:";

pub fn encode_order(cursor: OrderCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{ORDER_PREFIX}{}:{}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    ))
}

pub fn decode_order(raw: &str) -> Result<OrderCursor, DomainError> {
    let text = decode(raw, ORDER_PREFIX)?;
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let created_at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(OrderCursor { created_at, id })
}

pub fn encode_product(sku: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PRODUCT_PREFIX}{sku}"))
}

pub fn decode_product(raw: &str) -> Result<String, DomainError> {
    decode(raw, PRODUCT_PREFIX)
}

fn decode(raw: &str, prefix: &str) -> Result<String, DomainError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(prefix).map(str::to_owned).ok_or_else(invalid)
}

fn invalid() -> DomainError {
    DomainError::bad_input("`after` is not a cursor from this list")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_cursors_round_trip() {
        let cursor = OrderCursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_order(&encode_order(cursor)).unwrap(), cursor);
    }

    #[test]
    fn cursors_of_another_list_or_garbage_are_rejected() {
        assert!(decode_order(&encode_product("MLK-001")).is_err());
        assert!(decode_order("%%%").is_err());
        assert_eq!(decode_product(&encode_product("MLK-001")).unwrap(), "MLK-001");
    }
}

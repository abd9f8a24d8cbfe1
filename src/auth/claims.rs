//! Reading a provider token's claims: the one naming the customer, and the
//! profile a provisioned customer starts with.

use serde_json::{Map, Value};

use crate::db::NewCustomerProfile;

/// Longest subject `customers.external_subject` holds.
const MAX_SUBJECT_CHARS: usize = 255;
const MAX_EMAIL_CHARS: usize = 320;
const MAX_DISPLAY_NAME_CHARS: usize = 200;

/// The claim at `path`: dot-separated keys into nested objects. At each level a
/// key that itself has dots (Auth0's `https://example.com/customer`) matches
/// whole before the path is split, longest key first.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.char_indices()
        .rev()
        .filter(|&(_, c)| c == '.')
        .find_map(|(dot, _)| {
            let nested = claims.get(&path[..dot])?.as_object()?;
            claim_at(nested, &path[dot + 1..])
        })
}

/// A claim usable as a subject: a non-empty string (or an integer, as some
/// providers send numeric user ids) of at most 255 characters.
pub fn subject_of(value: &Value) -> Option<String> {
    let subject = match value {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        _ => return None,
    };
    (!subject.is_empty() && subject.chars().count() <= MAX_SUBJECT_CHARS).then_some(subject)
}

/// Email and display name for a newcomer, from the standard OpenID Connect
/// claims. A malformed email is left out rather than refusing the sign-in.
pub fn profile_of(claims: &Map<String, Value>) -> NewCustomerProfile {
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let email = text("email").map(str::to_lowercase).filter(|email| {
        let shaped = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        shaped && email.chars().count() <= MAX_EMAIL_CHARS
    });
    let full_name = match (text("given_name"), text("family_name")) {
        (Some(given), Some(family)) => Some(format!("{given} {family}")),
        (given, family) => given.or(family).map(str::to_owned),
    };
    let name = text("name")
        .map(str::to_owned)
        .or(full_name)
        .or_else(|| text("preferred_username").map(str::to_owned))
        .or_else(|| text("nickname").map(str::to_owned))
        .or_else(|| email.as_deref().and_then(|e| e.split('@').next()).map(str::to_owned))
        .unwrap_or_else(|| "Customer".to_owned());
    NewCustomerProfile {
        email,
        display_name: name.chars().take(MAX_DISPLAY_NAME_CHARS).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn paths_reach_nested_and_namespaced_claims() {
        let c = claims(json!({
            "sub": "auth0|42",
            "app": { "customer": "c-1", "deep": { "id": 7 } },
            "https://shop.example.com/customer": "ns-1",
            "https://shop.example.com/claims": { "customer": "ns-2" },
        }));
        assert_eq!(claim_at(&c, "sub"), Some(&json!("auth0|42")));
        assert_eq!(claim_at(&c, "app.customer"), Some(&json!("c-1")));
        assert_eq!(claim_at(&c, "app.deep.id"), Some(&json!(7)));
        assert_eq!(claim_at(&c, "https://shop.example.com/customer"), Some(&json!("ns-1")));
        assert_eq!(
            claim_at(&c, "https://shop.example.com/claims.customer"),
            Some(&json!("ns-2"))
        );
        assert_eq!(claim_at(&c, "app.missing"), None);
        assert_eq!(claim_at(&c, "sub.x"), None);
    }

    #[test]
    fn subjects_are_short_non_empty_strings_or_integers() {
        assert_eq!(subject_of(&json!("auth0|42")), Some("auth0|42".to_owned()));
        assert_eq!(subject_of(&json!(12345)), Some("12345".to_owned()));
        for bad in [
            json!(""),
            json!("  "),
            json!(1.5),
            json!(null),
            json!(["a"]),
            json!("x".repeat(256)),
        ] {
            assert_eq!(subject_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn profiles_take_the_best_name_and_only_a_well_formed_email() {
        let full = profile_of(&claims(json!({ "email": " Ada@Example.COM ", "name": "Ada Lovelace" })));
        assert_eq!(full.email.as_deref(), Some("ada@example.com"));
        assert_eq!(full.display_name, "Ada Lovelace");
        let parts = profile_of(&claims(
            json!({ "given_name": "Ada", "family_name": "L", "email": "nope" }),
        ));
        assert_eq!(parts.email, None);
        assert_eq!(parts.display_name, "Ada L");
        let from_email = profile_of(&claims(json!({ "email": "grace@example.com" })));
        assert_eq!(from_email.display_name, "grace");
        let nothing = profile_of(&claims(json!({ "sub": "x" })));
        assert_eq!(
            nothing,
            NewCustomerProfile {
                email: None,
                display_name: "Customer".to_owned()
            }
        );
        let long = profile_of(&claims(json!({ "name": "é".repeat(500) })));
        assert_eq!(long.display_name.chars().count(), 200);
    }
}

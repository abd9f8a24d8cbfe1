//! Persisted operations, on every transport (HTTP, both WebSocket protocols).
//!
//! Automatic Persisted Queries (Apollo's protocol; Apollo Client, Apollo iOS and
//! Kotlin, urql): a client sends the SHA-256 of its document in
//! `extensions.persistedQuery`; a hash this instance has not seen gets
//! `PERSISTED_QUERY_NOT_FOUND`, the client sends the document with its hash
//! once, and from then on the hash alone. Registered documents are kept in a
//! cache bounded in bytes.
//!
//! Trusted documents (`ORDERCAST_TRUSTED_DOCUMENTS`): only the documents of a
//! manifest built with the apps run, by id (`documentId`, Relay's `doc_id`, or
//! an APQ hash) or by their exact text; anything else gets
//! `PERSISTED_QUERY_NOT_IN_LIST`, so a stolen token cannot run arbitrary
//! queries. Nothing is registered at run time then.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::ErrorCode;

/// A GraphQL request as clients send it: the standard fields, and the id of a
/// persisted document where the client names it outside `extensions`.
#[derive(Debug, Deserialize)]
pub struct ClientRequest {
    #[serde(flatten)]
    pub request: async_graphql::Request,
    #[serde(default, rename = "documentId", alias = "doc_id")]
    pub document_id: Option<String>,
}

impl From<async_graphql::Request> for ClientRequest {
    fn from(request: async_graphql::Request) -> Self {
        ClientRequest {
            request,
            document_id: None,
        }
    }
}

/// Why a request naming a persisted document cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistedError {
    /// Apollo clients look for this exact message.
    #[error("PersistedQueryNotFound")]
    NotFound,
    #[error("this server runs only the operations of its trusted documents; this one is not among them")]
    NotInList,
    #[error("provided sha does not match query")]
    HashMismatch,
    #[error("persistedQuery version {0} is not supported; use version 1")]
    UnsupportedVersion(i64),
}

impl PersistedError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PersistedError::NotFound => ErrorCode::PersistedQueryNotFound,
            PersistedError::NotInList => ErrorCode::PersistedQueryNotInList,
            PersistedError::HashMismatch | PersistedError::UnsupportedVersion(_) => ErrorCode::BadUserInput,
        }
    }
}

/// A trusted-documents manifest that cannot be used; the message says why.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading the trusted documents {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    #[error(
        "the trusted documents {path} are neither an Apollo persisted query manifest \
         ({{\"format\": \"apollo-persisted-query-manifest\", \"operations\": [...]}}) nor a JSON object of id → document: {why}"
    )]
    Malformed { path: String, why: String },
}

/// The documents of a manifest, by their id and by the SHA-256 of their text
/// (so APQ hashes find them whatever ids the manifest uses).
#[derive(Debug)]
struct Manifest {
    by_id: HashMap<String, Arc<str>>,
    documents: usize,
}

/// The persisted documents of one instance.
pub struct PersistedDocuments {
    trusted: Option<Manifest>,
    registered: quick_cache::sync::Cache<String, Arc<str>, DocumentWeight>,
}

#[derive(Clone)]
struct DocumentWeight;

impl quick_cache::Weighter<String, Arc<str>> for DocumentWeight {
    fn weight(&self, hash: &String, document: &Arc<str>) -> u64 {
        u64::try_from(hash.len() + document.len() + 64).unwrap_or(u64::MAX)
    }
}

impl PersistedDocuments {
    /// `trusted`: a manifest file; then only its documents run.
    pub fn new(trusted: Option<&Path>, cache_bytes: u64) -> Result<Self, ManifestError> {
        let trusted = trusted.map(Manifest::load).transpose()?;
        let cache_bytes = cache_bytes.max(4096);
        Ok(PersistedDocuments {
            trusted,
            registered: quick_cache::sync::Cache::with_weighter(
                usize::try_from(cache_bytes / 1024).unwrap_or(usize::MAX),
                cache_bytes,
                DocumentWeight,
            ),
        })
    }

    /// How many documents are trusted, if only trusted documents run.
    pub fn trusted_count(&self) -> Option<usize> {
        self.trusted.as_ref().map(|manifest| manifest.documents)
    }

    /// The request with its document filled in, or why it cannot run.
    pub fn resolve(&self, client: ClientRequest) -> Result<async_graphql::Request, PersistedError> {
        let mut request = client.request;
        let apq_hash = apq_hash(&request.extensions)?;
        let id = client.document_id.or(apq_hash.clone());
        if let Some(manifest) = &self.trusted {
            return match id {
                Some(id) => {
                    let document = manifest.by_id.get(&id).ok_or(PersistedError::NotInList)?;
                    if !request.query.is_empty() && request.query != **document {
                        return Err(PersistedError::HashMismatch);
                    }
                    request.query = document.to_string();
                    Ok(request)
                }
                None if manifest.by_id.contains_key(&sha256_hex(&request.query)) => Ok(request),
                None => Err(PersistedError::NotInList),
            };
        }
        match (apq_hash, request.query.is_empty()) {
            (Some(hash), true) => {
                let document = self.registered.get(&hash).ok_or(PersistedError::NotFound)?;
                request.query = document.to_string();
                Ok(request)
            }
            (Some(hash), false) => {
                if sha256_hex(&request.query) != hash {
                    return Err(PersistedError::HashMismatch);
                }
                self.registered.insert(hash, Arc::from(request.query.as_str()));
                Ok(request)
            }
            (None, _) if id.is_some() => Err(PersistedError::NotFound),
            (None, _) => Ok(request),
        }
    }
}

/// The hash of an APQ request, checked for the protocol version.
fn apq_hash(extensions: &async_graphql::Extensions) -> Result<Option<String>, PersistedError> {
    let Some(persisted) = extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let persisted = persisted.clone().into_json().unwrap_or(Value::Null);
    let version = persisted.get("version").and_then(Value::as_i64).unwrap_or(1);
    if version != 1 {
        return Err(PersistedError::UnsupportedVersion(version));
    }
    Ok(persisted
        .get("sha256Hash")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase))
}

fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

impl Manifest {
    fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        Manifest::parse(&text).map_err(|why| ManifestError::Malformed { path: shown, why })
    }

    fn parse(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct ApolloManifest {
            operations: Vec<ApolloOperation>,
        }
        #[derive(Deserialize)]
        struct ApolloOperation {
            id: String,
            body: String,
        }
        let value: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let documents: Vec<(String, String)> = if value.get("format").is_some() {
            let manifest: ApolloManifest = serde_json::from_value(value).map_err(|error| error.to_string())?;
            manifest.operations.into_iter().map(|op| (op.id, op.body)).collect()
        } else {
            let map: HashMap<String, String> = serde_json::from_value(value).map_err(|error| error.to_string())?;
            map.into_iter().collect()
        };
        if documents.is_empty() {
            return Err("it lists no documents".to_owned());
        }
        let count = documents.len();
        let mut by_id = HashMap::with_capacity(2 * count);
        for (id, body) in documents {
            let body: Arc<str> = Arc::from(body);
            by_id.insert(sha256_hex(&body), body.clone());
            by_id.insert(id, body);
        }
        Ok(Manifest {
            by_id,
            documents: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ME: &str = "{ me { id } }";

    fn client(body: Value) -> ClientRequest {
        serde_json::from_value(body).unwrap()
    }

    fn apq(hash: &str) -> Value {
        json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
    }

    #[test]
    fn automatic_persisted_queries_register_once_then_run_by_hash() {
        let documents = PersistedDocuments::new(None, 1 << 20).unwrap();
        let hash = sha256_hex(ME);
        let by_hash = || client(json!({ "extensions": apq(&hash), "variables": { "a": 1 } }));
        assert_eq!(documents.resolve(by_hash()).unwrap_err(), PersistedError::NotFound);
        let wrong = client(json!({ "query": "{ products { id } }", "extensions": apq(&hash) }));
        assert_eq!(documents.resolve(wrong).unwrap_err(), PersistedError::HashMismatch);
        let register = client(json!({ "query": ME, "extensions": apq(&hash) }));
        assert_eq!(documents.resolve(register).unwrap().query, ME);
        let resolved = documents.resolve(by_hash()).unwrap();
        assert_eq!(resolved.query, ME);
        assert_eq!(resolved.variables.into_value().into_json().unwrap(), json!({ "a": 1 }));
        assert_eq!(documents.resolve(client(json!({ "query": ME }))).unwrap().query, ME);
        let future = client(json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash } } }));
        assert_eq!(
            documents.resolve(future).unwrap_err(),
            PersistedError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn trusted_documents_run_by_id_or_exact_text_and_nothing_else() {
        let manifest = json!({
            "format": "apollo-persisted-query-manifest", "version": 1,
            "operations": [{ "id": "me-1", "name": "Me", "type": "query", "body": ME }],
        });
        let path = std::env::temp_dir().join(format!("ordercast-trusted-{}.json", uuid::Uuid::now_v7()));
        std::fs::write(&path, manifest.to_string()).unwrap();
        let documents = PersistedDocuments::new(Some(&path), 1 << 20).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(documents.trusted_count(), Some(1));
        for known in [
            json!({ "documentId": "me-1" }),
            json!({ "doc_id": "me-1" }),
            json!({ "query": ME }),
            json!({ "extensions": apq(&sha256_hex(ME)) }),
        ] {
            assert_eq!(documents.resolve(client(known)).unwrap().query, ME);
        }
        for unknown in [
            json!({ "query": "{ products { id } }" }),
            json!({ "documentId": "other" }),
            json!({ "query": "{ products { id } }", "extensions": apq(&sha256_hex("{ products { id } }")) }),
        ] {
            assert_eq!(
                documents.resolve(client(unknown)).unwrap_err(),
                PersistedError::NotInList
            );
        }
    }

    #[test]
    fn relay_style_manifests_are_flat_maps_and_bad_ones_say_why() {
        let flat = Manifest::parse(&json!({ "abc": ME }).to_string()).unwrap();
        assert_eq!(flat.by_id["abc"].as_ref(), ME);
        assert!(Manifest::parse("[]").unwrap_err().contains("invalid type"));
        assert!(Manifest::parse("{}").unwrap_err().contains("no documents"));
    }
}

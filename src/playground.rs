//! The GraphiQL playground on `/`, served entirely from the binary: no CDN, so
//! it works offline and behind firewalls.
//!
//! The assets are built from `web/graphiql/` by `make playground` (npm ci and
//! esbuild) and checked in under `src/playground/assets/`, so `cargo build`
//! never needs npm. `VERSION` is a hash of the bundle; the page references the
//! assets as `/playground/graphiql.{js,css}?v=VERSION`, which may be cached for
//! a year, while the page itself is revalidated on every load (ETag).

use axum::extract::RawQuery;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Hash of the bundle, written by `web/graphiql/build.mjs`.
const VERSION: &str = include_str!("playground/assets/VERSION");

const INDEX: Asset = Asset {
    etag: "page",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("playground/assets/index.html"),
    gzip: None,
};
const SCRIPT: Asset = Asset {
    etag: "js",
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("playground/assets/graphiql.js"),
    gzip: Some(include_bytes!("playground/assets/graphiql.js.gz")),
};
const STYLE: Asset = Asset {
    etag: "css",
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("playground/assets/graphiql.css"),
    gzip: Some(include_bytes!("playground/assets/graphiql.css.gz")),
};

/// The page may load only what ordercast itself serves; WebSocket
/// subscriptions go to the same origin (`'self'` covers ws: and wss: there).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// `GET /` (the page) and `GET /playground/graphiql.{js,css}`; HEAD as well.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/playground/graphiql.js", get(script))
        .route("/playground/graphiql.css", get(style))
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = INDEX.respond(&headers, REVALIDATE);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
        .headers_mut()
        .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn script(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers, asset_cache_control(query.as_deref()))
}

async fn style(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    STYLE.respond(&headers, asset_cache_control(query.as_deref()))
}

/// Cached for good only under the current `?v=`: a bare or stale URL is
/// revalidated, so an upgrade is never hidden behind an old copy.
fn asset_cache_control(query: Option<&str>) -> &'static str {
    let current = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.strip_prefix("v=") == Some(VERSION));
    if current {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

struct Asset {
    /// Distinguishes the assets' ETags, which all derive from `VERSION`.
    etag: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A gzip-compressed copy of `body`, if one is built.
    gzip: Option<&'static [u8]>,
}

impl Asset {
    fn respond(&self, request: &HeaderMap, cache_control: &'static str) -> Response {
        let gzip = self.gzip.filter(|_| accepts_gzip(request));
        // A strong ETag names one representation, so the gzip copy has its own.
        let etag = match gzip {
            Some(_) => format!("\"{VERSION}-{}-gzip\"", self.etag),
            None => format!("\"{VERSION}-{}\"", self.etag),
        };
        let mut headers = vec![
            (header::ETAG, etag.clone()),
            (header::CACHE_CONTROL, cache_control.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ];
        if self.gzip.is_some() {
            headers.push((header::VARY, "accept-encoding".to_owned()));
        }
        if none_match(request, &etag) {
            return (StatusCode::NOT_MODIFIED, header_map(headers)).into_response();
        }
        headers.push((header::CONTENT_TYPE, self.content_type.to_owned()));
        if gzip.is_some() {
            headers.push((header::CONTENT_ENCODING, "gzip".to_owned()));
        }
        (StatusCode::OK, header_map(headers), gzip.unwrap_or(self.body)).into_response()
    }
}

fn header_map(pairs: Vec<(HeaderName, String)>) -> HeaderMap {
    pairs
        .into_iter()
        .filter_map(|(name, value)| Some((name, HeaderValue::try_from(value).ok()?)))
        .collect()
}

/// True if `Accept-Encoding` lists gzip (or `*`) with a non-zero weight.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// True if `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET).
fn none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn header(response: &Response, name: HeaderName) -> Option<&str> {
        response.headers().get(name).map(|value| value.to_str().unwrap())
    }

    #[test]
    fn the_page_references_this_build_of_the_assets_and_nothing_remote() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        assert_eq!(VERSION.len(), 16, "VERSION is 16 hex digits, without a newline");
        assert!(page.contains(&format!("/playground/graphiql.js?v={VERSION}")));
        assert!(page.contains(&format!("/playground/graphiql.css?v={VERSION}")));
        assert!(!page.contains("//"), "the page loads nothing from another origin");
    }

    #[test]
    fn assets_are_immutable_only_under_the_current_version() {
        assert_eq!(asset_cache_control(Some(&format!("v={VERSION}"))), IMMUTABLE);
        assert_eq!(asset_cache_control(Some("v=0123456789abcdef")), REVALIDATE);
        assert_eq!(asset_cache_control(None), REVALIDATE);
    }

    #[test]
    fn gzip_is_served_to_clients_that_accept_it() {
        let plain = SCRIPT.respond(&HeaderMap::new(), IMMUTABLE);
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(header(&plain, header::CONTENT_ENCODING), None);
        assert_eq!(
            header(&plain, header::CONTENT_TYPE),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(header(&plain, header::CACHE_CONTROL), Some(IMMUTABLE));

        let gzip = SCRIPT.respond(&request(&[(header::ACCEPT_ENCODING, "br, gzip;q=0.8")]), IMMUTABLE);
        assert_eq!(header(&gzip, header::CONTENT_ENCODING), Some("gzip"));
        assert_ne!(header(&gzip, header::ETAG), header(&plain, header::ETAG));

        let refused = STYLE.respond(&request(&[(header::ACCEPT_ENCODING, "gzip;q=0, br")]), IMMUTABLE);
        assert_eq!(header(&refused, header::CONTENT_ENCODING), None);
        assert_eq!(header(&refused, header::CONTENT_TYPE), Some("text/css; charset=utf-8"));
    }

    #[test]
    fn a_matching_etag_answers_not_modified() {
        let first = STYLE.respond(&HeaderMap::new(), REVALIDATE);
        let etag = header(&first, header::ETAG).unwrap().to_owned();
        let again = STYLE.respond(
            &request(&[(header::IF_NONE_MATCH, &format!("\"x\", W/{etag}"))]),
            REVALIDATE,
        );
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, header::ETAG), Some(etag.as_str()));
        let other = STYLE.respond(&request(&[(header::IF_NONE_MATCH, "\"stale\"")]), REVALIDATE);
        assert_eq!(other.status(), StatusCode::OK);
    }
}

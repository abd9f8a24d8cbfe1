//! The GraphiQL playground on `/`, served entirely from the binary: no CDN, so
//! it works offline and behind firewalls.
//!
//! The assets are built from `web/graphiql/` by `make playground` (npm ci and
//! esbuild) and checked in under `src/playground/assets/`, so `cargo build`
//! never needs npm. How they are cached is `static_assets`' business, shared
//! with the demo storefront.

use axum::extract::RawQuery;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::static_assets::Asset;

/// Hash of the bundle, written by `web/graphiql/build.mjs`.
const VERSION: &str = include_str!("playground/assets/VERSION");

const INDEX: Asset = Asset {
    version: VERSION,
    etag: "page",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("playground/assets/index.html"),
    gzip: None,
};
const SCRIPT: Asset = Asset {
    version: VERSION,
    etag: "js",
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("playground/assets/graphiql.js"),
    gzip: Some(include_bytes!("playground/assets/graphiql.js.gz")),
};
const STYLE: Asset = Asset {
    version: VERSION,
    etag: "css",
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("playground/assets/graphiql.css"),
    gzip: Some(include_bytes!("playground/assets/graphiql.css.gz")),
};

/// The page may load only what ordercast itself serves; WebSocket
/// subscriptions go to the same origin (`'self'` covers ws: and wss: there).
/// GraphiQL sets inline styles, hence `'unsafe-inline'` for styles only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /` (the page) and `GET /playground/graphiql.{js,css}`; HEAD as well.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/playground/graphiql.js", get(script))
        .route("/playground/graphiql.css", get(style))
}

async fn index(headers: HeaderMap) -> Response {
    INDEX.page(&headers, CONTENT_SECURITY_POLICY)
}

async fn script(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    SCRIPT.versioned(&headers, query.as_deref())
}

async fn style(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    STYLE.versioned(&headers, query.as_deref())
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};

    use super::*;
    use crate::static_assets::tests::{header, request};
    use crate::static_assets::IMMUTABLE;

    #[test]
    fn the_page_references_this_build_of_the_assets_and_nothing_remote() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        assert_eq!(VERSION.len(), 16, "VERSION is 16 hex digits, without a newline");
        assert!(page.contains(&format!("/playground/graphiql.js?v={VERSION}")));
        assert!(page.contains(&format!("/playground/graphiql.css?v={VERSION}")));
        assert!(!page.contains("//"), "the page loads nothing from another origin");
    }

    #[tokio::test]
    async fn the_bundle_is_served_with_its_types_and_cached_under_its_version() {
        let page = index(HeaderMap::new()).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(header(&page, header::CONTENT_TYPE), Some("text/html; charset=utf-8"));
        assert!(header(&page, header::CONTENT_SECURITY_POLICY).is_some());

        let gzip = request(&[(header::ACCEPT_ENCODING, "gzip")]);
        let js = script(RawQuery(Some(format!("v={VERSION}"))), gzip.clone()).await;
        assert_eq!(
            header(&js, header::CONTENT_TYPE),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(header(&js, header::CONTENT_ENCODING), Some("gzip"));
        assert_eq!(header(&js, header::CACHE_CONTROL), Some(IMMUTABLE));
        let css = style(RawQuery(None), gzip).await;
        assert_eq!(header(&css, header::CONTENT_TYPE), Some("text/css; charset=utf-8"));
    }
}

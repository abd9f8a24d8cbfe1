//! The demo storefront on `/demo`: pick products, see the cart, schedule or
//! cancel, with live updates. Open it on two devices to watch a change made on
//! one appear on the other, and a cancelled order refuse the other's "Add".
//!
//! Like GraphiQL it is served from the binary alone (no CDN): built from
//! `web/demo/` by `make demo` (npm ci and esbuild) and checked in under
//! `src/demo/assets/`, so `cargo build` never needs npm. Caching is
//! `static_assets`' business, shared with the playground.

use axum::extract::RawQuery;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::static_assets::Asset;

/// Hash of the bundle, written by `web/demo/build.mjs`.
const VERSION: &str = include_str!("demo/assets/VERSION");

const INDEX: Asset = Asset {
    version: VERSION,
    etag: "demo-page",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("demo/assets/index.html"),
    gzip: None,
};
const SCRIPT: Asset = Asset {
    version: VERSION,
    etag: "demo-js",
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("demo/assets/demo.js"),
    gzip: Some(include_bytes!("demo/assets/demo.js.gz")),
};
const STYLE: Asset = Asset {
    version: VERSION,
    etag: "demo-css",
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("demo/assets/demo.css"),
    gzip: Some(include_bytes!("demo/assets/demo.css.gz")),
};

/// Only what ordercast serves, and no inline script or style at all: the page
/// is plain DOM, so it needs none of GraphiQL's allowances. `'self'` covers
/// the same-origin WebSocket; `data:` is the empty favicon.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /demo` (the page, also as `/demo/`) and `GET /demo/demo.{js,css}`; HEAD as well.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/demo", get(index))
        .route("/demo/", get(index))
        .route("/demo/demo.js", get(script))
        .route("/demo/demo.css", get(style))
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
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::static_assets::tests::header;
    use crate::static_assets::{IMMUTABLE, REVALIDATE};

    async fn get(uri: &str, accept_encoding: Option<&str>) -> Response {
        let mut request = Request::get(uri);
        if let Some(coding) = accept_encoding {
            request = request.header(header::ACCEPT_ENCODING, coding);
        }
        routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[test]
    fn the_page_references_this_build_of_the_assets_and_nothing_remote() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        assert_eq!(VERSION.len(), 16, "VERSION is 16 hex digits, without a newline");
        assert!(page.contains(&format!("/demo/demo.js?v={VERSION}")));
        assert!(page.contains(&format!("/demo/demo.css?v={VERSION}")));
        assert!(!page.contains("//"), "the page loads nothing from another origin");
        assert!(
            !page.contains("<style") && !page.contains(" style="),
            "the policy allows no inline style"
        );
    }

    #[tokio::test]
    async fn the_page_and_its_assets_answer_with_their_types() {
        for uri in ["/demo", "/demo/"] {
            let page = get(uri, None).await;
            assert_eq!(page.status(), StatusCode::OK, "{uri}");
            assert_eq!(header(&page, header::CONTENT_TYPE), Some("text/html; charset=utf-8"));
            assert_eq!(header(&page, header::CACHE_CONTROL), Some(REVALIDATE));
            assert_eq!(
                header(&page, header::CONTENT_SECURITY_POLICY),
                Some(CONTENT_SECURITY_POLICY)
            );
        }

        let js = get(&format!("/demo/demo.js?v={VERSION}"), Some("gzip")).await;
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(
            header(&js, header::CONTENT_TYPE),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(header(&js, header::CONTENT_ENCODING), Some("gzip"));
        assert_eq!(header(&js, header::CACHE_CONTROL), Some(IMMUTABLE));

        let css = get("/demo/demo.css", None).await;
        assert_eq!(header(&css, header::CONTENT_TYPE), Some("text/css; charset=utf-8"));
        assert_eq!(header(&css, header::CACHE_CONTROL), Some(REVALIDATE), "no current ?v=");

        assert_eq!(get("/demo/other.js", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_demo_and_the_playground_do_not_share_etags() {
        for asset in [&INDEX, &SCRIPT, &STYLE] {
            assert!(asset.etag.starts_with("demo-"));
        }
    }
}

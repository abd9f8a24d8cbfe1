//! Web pages compiled into the binary (GraphiQL on `/`, the demo storefront on
//! `/demo`), served the one way both need: no CDN and no files on disk, so
//! they work offline and a deployment is the binary alone.
//!
//! Each bundle is built by esbuild from pinned npm packages and checked in
//! with a `VERSION` (a hash of the bundle). A page references its scripts and
//! styles as `…?v=VERSION`: under the current version they may be cached for a
//! year, while the page itself is revalidated on every load (ETag), so an
//! upgrade is never hidden behind an old copy.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub(crate) const REVALIDATE: &str = "no-cache";

/// One file of a bundle, embedded with `include_bytes!`.
pub(crate) struct Asset {
    /// The bundle's `VERSION`: its ETags and the `?v=` that may be cached for good.
    pub version: &'static str,
    /// Distinguishes the ETags of a bundle's files, which all derive from `version`.
    pub etag: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A gzip-compressed copy of `body`, if one is built.
    pub gzip: Option<&'static [u8]>,
}

impl Asset {
    /// A page: revalidated on every load, and allowed to load only what
    /// `content_security_policy` names. It sends no referrer, so a token in
    /// its fragment or an order id never leaves with a link.
    pub(crate) fn page(&self, request: &HeaderMap, content_security_policy: &'static str) -> Response {
        let mut response = self.respond(request, REVALIDATE);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(content_security_policy),
        );
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }

    /// A script or stylesheet requested with `query` (`v=VERSION`, normally).
    pub(crate) fn versioned(&self, request: &HeaderMap, query: Option<&str>) -> Response {
        self.respond(request, self.cache_control(query))
    }

    /// Cached for good only under the current `?v=`: a bare or stale URL is revalidated.
    fn cache_control(&self, query: Option<&str>) -> &'static str {
        let current = query
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.strip_prefix("v=") == Some(self.version));
        if current {
            IMMUTABLE
        } else {
            REVALIDATE
        }
    }

    pub(crate) fn respond(&self, request: &HeaderMap, cache_control: &'static str) -> Response {
        let gzip = self.gzip.filter(|_| accepts_gzip(request));
        // A strong ETag names one representation, so the gzip copy has its own.
        let etag = match gzip {
            Some(_) => format!("\"{}-{}-gzip\"", self.version, self.etag),
            None => format!("\"{}-{}\"", self.version, self.etag),
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn request(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    pub(crate) fn header(response: &Response, name: HeaderName) -> Option<&str> {
        response.headers().get(name).map(|value| value.to_str().unwrap())
    }

    const SCRIPT: Asset = Asset {
        version: "0123456789abcdef",
        etag: "js",
        content_type: "text/javascript; charset=utf-8",
        body: b"console.log(1)",
        gzip: Some(b"\x1f\x8b"),
    };
    const STYLE: Asset = Asset {
        version: "0123456789abcdef",
        etag: "css",
        content_type: "text/css; charset=utf-8",
        body: b"body{}",
        gzip: Some(b"\x1f\x8b"),
    };

    #[test]
    fn assets_are_immutable_only_under_the_current_version() {
        assert_eq!(SCRIPT.cache_control(Some("v=0123456789abcdef")), IMMUTABLE);
        assert_eq!(SCRIPT.cache_control(Some("x=1&v=0123456789abcdef")), IMMUTABLE);
        assert_eq!(SCRIPT.cache_control(Some("v=fedcba9876543210")), REVALIDATE);
        assert_eq!(SCRIPT.cache_control(None), REVALIDATE);
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

    #[test]
    fn a_page_is_revalidated_and_carries_its_policy() {
        let page = STYLE.page(&HeaderMap::new(), "default-src 'self'");
        assert_eq!(header(&page, header::CACHE_CONTROL), Some(REVALIDATE));
        assert_eq!(
            header(&page, header::CONTENT_SECURITY_POLICY),
            Some("default-src 'self'")
        );
        assert_eq!(header(&page, header::REFERRER_POLICY), Some("no-referrer"));
    }
}

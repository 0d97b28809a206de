//! URL canonicalization: one article, one URL, whatever alert or campaign linked it.

use url::Url;

/// Query parameters that track a click rather than name a resource.
const TRACKING_PARAMETERS: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gclsrc",
    "msclkid",
    "yclid",
    "twclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "wickedid",
    "rb_clickid",
    "s_cid",
    "ncid",
    "cmpid",
    "ref_src",
];

/// Returns true when the query parameter `name` only tracks a click.
fn is_tracking(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("utm_") || TRACKING_PARAMETERS.contains(&name.as_str())
}

/// Returns the canonical form of an `http(s)` URL: a Google redirect (`google.com/url?…
/// &url=`) unwrapped to its target, the scheme and host lowercased, the default port,
/// the fragment and the tracking parameters (`utm_*`, `fbclid`, `gclid`, …) removed,
/// the other parameters kept in their order. `None` when `raw` is not an absolute
/// `http(s)` URL.
pub fn canonical_url(raw: &str) -> Option<String> {
    let mut url = Url::parse(raw.trim()).ok()?;
    // A redirect may wrap a redirect; two levels is all that occurs in practice, and
    // the bound keeps a hostile chain from looping.
    for _ in 0..3 {
        match redirect_target(&url) {
            Some(target) => url = target,
            None => break,
        }
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(name, _)| !is_tracking(name)).map(|(n, v)| (n.into(), v.into())).collect();
    if kept.is_empty() {
        url.set_query(None);
    } else if kept.len() != url.query_pairs().count() {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Some(url.into())
}

/// Returns the target of a Google redirect link, as Google Alerts feeds and mails use
/// for every entry (`https://www.google.com/url?rct=j&sa=t&url=<target>&ct=ga&…`).
fn redirect_target(url: &Url) -> Option<Url> {
    let host = url.host_str()?;
    let google = host == "google.com" || host.ends_with(".google.com");
    if !google || url.path() != "/url" {
        return None;
    }
    let target = url.query_pairs().find(|(name, _)| name == "url" || name == "q")?.1;
    Url::parse(&target).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_redirects_are_unwrapped_and_trackers_removed() {
        assert_eq!(
            canonical_url("https://www.google.com/url?rct=j&sa=t&url=https://www.Example.com/a/b%3Fx%3D1&ct=ga&cd=CAIyGmQ&usg=AFQjCNE").as_deref(),
            Some("https://www.example.com/a/b?x=1")
        );
        assert_eq!(
            canonical_url("HTTPS://News.EXAMPLE.com:443/story?id=7&utm_source=tw&UTM_Medium=x&fbclid=abc&gclid=1#comments").as_deref(),
            Some("https://news.example.com/story?id=7")
        );
        assert_eq!(
            canonical_url("http://example.com/?utm_campaign=a").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            canonical_url("http://example.com:8080/p?b=2&a=1").as_deref(),
            Some("http://example.com:8080/p?b=2&a=1")
        );
    }

    #[test]
    fn only_absolute_web_urls_are_canonical() {
        assert_eq!(canonical_url("/relative/path"), None);
        assert_eq!(canonical_url("mailto:someone@example.com"), None);
        assert_eq!(canonical_url("not a url"), None);
    }
}

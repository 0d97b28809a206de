//! URL canonicalization (one article, one URL, whatever alert or campaign linked it),
//! and the redaction of the credentials a configured URL may carry.

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

/// Query parameter names (and `_`-separated suffixes: `client_secret`, `x-api-key`)
/// whose values are credentials.
const SECRET_PARAMETERS: &[&str] =
    &["token", "key", "apikey", "api_key", "secret", "password", "sig", "signature", "auth", "access_token"];

/// What a redacted value reads as.
const REDACTED: &str = "***";

/// Returns true when the query parameter `name` carries a credential.
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    SECRET_PARAMETERS.iter().any(|secret| {
        name == *secret || name.strip_suffix(secret).is_some_and(|prefix| prefix.ends_with('_'))
    })
}

/// Returns `raw` fit for a log line, an error, a metric label or a dead-letter header:
/// the password of its userinfo and the values of query parameters that look like
/// credentials (`token`, `key`, `api_key`, `sig`, ...) replaced by `***`
/// (`https://user:pass@host/feed?token=t&page=2` is
/// `https://user:***@host/feed?token=***&page=2`). Text that does not parse as a URL is
/// cut where credentials could start: at a `:` after `://`, or an `@` or a `?`.
pub fn redacted(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        let authority = raw.find("://").map_or(0, |scheme| scheme + 3);
        return match raw[authority..].find([':', '@', '?']) {
            Some(end) => format!("{}{REDACTED}", &raw[..authority + end]),
            None => raw.to_string(),
        };
    };
    if url.password().is_some() {
        // Only URLs that cannot have a password refuse one.
        let _ = url.set_password(Some(REDACTED));
    }
    if url.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) { REDACTED.into() } else { value.into_owned() };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// Returns `raw` without its userinfo (`user:pass@`), or as it is when it is not a URL.
pub(crate) fn without_userinfo(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            // Only URLs that cannot have userinfo refuse to lose it.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.into()
        }
        Err(_) => raw.to_string(),
    }
}

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
    fn credentials_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redacted("https://user:pass@host.example/feed?token=t0k&page=2&API-Key=k&client_secret=s&sig=x"),
            "https://user:***@host.example/feed?token=***&page=2&API-Key=***&client_secret=***&sig=***"
        );
        assert_eq!(
            redacted("https://host.example/feed?monkey=1&keys=2"),
            "https://host.example/feed?monkey=1&keys=2"
        );
        assert_eq!(redacted("https://user@host.example/feed"), "https://user@host.example/feed");
        assert_eq!(redacted("not a url://user:pass@host?token=t"), "not a url://user***");
        assert_eq!(redacted("host?token=t"), "host***");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn only_absolute_web_urls_are_canonical() {
        assert_eq!(canonical_url("/relative/path"), None);
        assert_eq!(canonical_url("mailto:someone@example.com"), None);
        assert_eq!(canonical_url("not a url"), None);
    }
}

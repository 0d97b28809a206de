//! Which mentions are about one post: the thread key a ticket groups by.
//!
//! A ticket stands for one real issue, and the mentions of one issue must reach the
//! one process that owns its ticket. So the grouping key is decided once, at ingest,
//! and travels with the mention (`meta.thread`): the matcher keys its verdict by it,
//! so every mention of a thread lands in one partition of the verdicts topic, and one
//! ticketing stage replica sees them all, in order.
//!
//! The key, in order of precedence:
//! 1. what ingest wrote in `meta.thread`: a near-duplicate (a retweet, a syndicated
//!    copy) takes the thread of the first copy, whatever its author or URL;
//! 2. for a retweet written as such (`RT @handle: …`), `author:handle`: it joins the
//!    ticket of the post it repeats, even when the original never reached cull;
//! 3. `author:<author>` (lowercased, without a leading `@`): one author writing about
//!    one rule is one ticket per window;
//! 4. `url:<canonical URL>`: the copies of one item under one address;
//! 5. `mention:<id>`: a mention that says nothing else stands alone.

use crate::Mention;

/// The `meta` key ingest writes the thread key to.
pub const THREAD: &str = "thread";

/// The `meta` key of a near-duplicate's first copy (written at ingest).
pub const NEAR_DUPLICATE_OF: &str = "near_duplicate_of";

/// Query parameters that track a click rather than name the page.
const TRACKING_PARAMETERS: [&str; 7] = ["fbclid", "gclid", "mc_cid", "mc_eid", "igshid", "ref_src", "cmpid"];

/// Returns the thread key of `mention` (see the module documentation).
pub fn thread_key(mention: &Mention) -> String {
    if let Some(thread) = mention.meta.get(THREAD).filter(|t| !t.is_empty()) {
        return thread.clone();
    }
    if let Some(original) = retweeted_author(&mention.text) {
        return format!("author:{}", original.to_lowercase());
    }
    if let Some(author) = mention.author.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        return format!("author:{}", author.trim_start_matches('@').to_lowercase());
    }
    if let Some(url) = mention.url.as_deref().and_then(canonical_url) {
        return format!("url:{url}");
    }
    format!("mention:{}", mention.id)
}

/// Returns the handle a classic retweet (`RT @handle: text`, `RT @handle text`) repeats.
fn retweeted_author(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix("RT @")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Returns `url` in the form two copies of one item share: scheme and host
/// lowercased, no default port, no fragment, no tracking parameters (`utm_*`,
/// `fbclid`, …), remaining parameters sorted, no trailing slash; `None` when it is not
/// an absolute http(s) URL.
pub fn canonical_url(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return None;
    }
    parsed.set_fragment(None);
    let mut kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            !name.starts_with("utm_") && !TRACKING_PARAMETERS.contains(&name.as_str())
        })
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    kept.sort();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let host = parsed.host_str()?.trim_start_matches("www.").to_string();
    let path = parsed.path().trim_end_matches('/');
    let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{host}{port}{path}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mention(author: Option<&str>, url: Option<&str>) -> Mention {
        let mut m = Mention::new("m-1", "text");
        m.author = author.map(str::to_string);
        m.url = url.map(str::to_string);
        m
    }

    #[test]
    fn copies_of_one_address_share_a_canonical_url() {
        let same = [
            "https://www.Example.com/news/story/?utm_source=x&b=2&a=1#top",
            "http://example.com/news/story?a=1&b=2&fbclid=abc",
            "https://example.com:443/news/story?b=2&a=1",
        ];
        let canonical: Vec<String> = same.iter().filter_map(|u| canonical_url(u)).collect();
        assert_eq!(canonical, ["example.com/news/story?a=1&b=2"; 3]);
        assert_ne!(canonical_url("https://example.com/news/other"), canonical_url(same[0]));
        assert_eq!(canonical_url("not a url"), None);
        assert_eq!(canonical_url("mailto:a@example.com"), None);
    }

    #[test]
    fn the_thread_is_ingests_then_the_author_then_the_url_then_the_mention() {
        let mut m = mention(Some(" @Angry "), Some("https://x.example/1"));
        assert_eq!(thread_key(&m), "author:angry");
        m.meta.insert(THREAD.into(), "author:@original".into());
        assert_eq!(thread_key(&m), "author:@original");
        assert_eq!(thread_key(&mention(None, Some("https://www.x.example/1/"))), "url:x.example/1");
        assert_eq!(thread_key(&mention(Some(""), None)), "mention:m-1");
        let mut retweet = mention(Some("@someone"), Some("https://x.example/2"));
        retweet.text = "RT @Brand_Fan: Slack is down again".into();
        assert_eq!(thread_key(&retweet), "author:brand_fan", "a retweet joins the post it repeats");
        retweet.text = "RT @ is not a retweet".into();
        assert_eq!(thread_key(&retweet), "author:someone");
    }
}

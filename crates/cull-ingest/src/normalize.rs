//! Every source's input becomes a [`Mention`] the same way: a [`Draft`] is normalized
//! ([`normalize`]: plain text, canonical URL, language, stable id), then screened by a
//! [`Screen`]: exact duplicates within the window are dropped, syndicated copies (the
//! same text at another URL) are kept and marked.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use cull_model::thread::{thread_key, THREAD};
use cull_model::{mention_id, short_hash, Channel, Mention, MENTION_SCHEMA, UNDETERMINED_LANGUAGE};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::html::{collapse_whitespace, html_to_text, looks_like_html};
use crate::simhash::{simhash, NearIndex, SimHash};
use crate::url::canonical_url;

pub use cull_model::thread::NEAR_DUPLICATE_OF;

/// Whether a draft's title and text are HTML.
///
/// Plain text is never run through the HTML converter: `Write a <script> to call the
/// Slack API` and `if a<b and b>c` are what someone wrote, and an HTML parser would
/// delete the brand with the "tags". A source says which it delivers
/// (`markup = "plain" | "html"`, plain by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markup {
    /// HTML (mail bodies, a source configured as HTML): always converted to text.
    Html,
    /// Plain text: only whitespace is collapsed and control characters removed.
    #[default]
    Plain,
    /// Feed text constructs, whose declared type feeds in the wild do not keep to:
    /// converted when they look like markup (a tag or an entity).
    #[serde(skip)]
    Detect,
}

/// An item as a source found it, before normalization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// The configured source name.
    pub source: String,
    /// A final mention id the input already carries (a `cull.mention/v1` record).
    pub id: Option<String>,
    /// The item's id in the tool it came from (a feed entry id, a tweet id).
    pub external_id: Option<String>,
    /// See [`Mention::client`].
    pub client: Option<String>,
    /// See [`Mention::channel`].
    pub channel: Option<Channel>,
    /// The URL as found (redirects and trackers are removed by [`normalize`]).
    pub url: Option<String>,
    /// See [`Mention::author`].
    pub author: Option<String>,
    /// The title, possibly HTML.
    pub title: Option<String>,
    /// The body, possibly HTML.
    pub text: String,
    /// The language when the source knows it.
    pub lang: Option<String>,
    /// When the item was published.
    pub published_at: Option<String>,
    /// When it was fetched; [`normalize`] fills it in when missing.
    pub fetched_at: Option<String>,
    /// See [`Mention::meta`].
    pub meta: BTreeMap<String, String>,
    /// Whether `title` and `text` are HTML.
    pub markup: Markup,
}

impl Draft {
    /// Returns the draft of a mention received in the `cull.mention/v1` shape: its id is
    /// kept, its title and text are read as `markup`, and its `source` becomes the
    /// configured name, so that no sender can pass its mentions off as another source's.
    pub fn from_mention(source: &str, mention: Mention, markup: Markup) -> Draft {
        Draft {
            source: source.to_string(),
            id: Some(mention.id),
            external_id: None,
            client: mention.client,
            channel: mention.channel,
            url: mention.url,
            author: mention.author,
            title: mention.title,
            text: mention.text,
            lang: mention.lang,
            published_at: mention.published_at,
            fetched_at: mention.fetched_at,
            meta: mention.meta,
            markup,
        }
    }
}

/// Returns the mention a draft becomes: HTML turned into text, whitespace collapsed,
/// the URL canonical, the language detected when not given, the id derived from the
/// source and the canonical URL (else the external id, else the content) unless the
/// draft carries one, and `fetched_at` set to `now` when missing.
pub fn normalize(draft: Draft, now: OffsetDateTime) -> Mention {
    let clean = |value: &str| {
        let html = match draft.markup {
            Markup::Html => true,
            Markup::Plain => false,
            Markup::Detect => looks_like_html(value),
        };
        if html {
            html_to_text(value)
        } else {
            collapse_whitespace(value)
        }
    };
    let title = draft.title.as_deref().map(clean).filter(|t| !t.is_empty());
    let text = clean(&draft.text);
    let url = draft.url.as_deref().map(|raw| canonical_url(raw).unwrap_or_else(|| raw.trim().to_string()));
    let url = url.filter(|u| !u.is_empty());
    let author = draft.author.as_deref().map(collapse_whitespace).filter(|a| !a.is_empty());
    // A client's source keeps the ids its input carries under the client's name, so
    // that two clients fed the same post (with the same id) each get their own
    // mention; the prefix is not added twice to a mention fed back in.
    let carried = draft.id.map(|id| match &draft.client {
        Some(client) if !id.starts_with(&format!("{client}:")) => format!("{client}:{id}"),
        _ => id,
    });
    let id = carried.unwrap_or_else(|| {
        let key = match (&url, &draft.external_id) {
            (Some(url), _) => url.clone(),
            (None, Some(external)) => format!("id:{external}"),
            (None, None) => format!("content:{}", short_hash(&[title.as_deref().unwrap_or(""), &text], 32)),
        };
        mention_id(&draft.source, &key)
    });
    let lang = draft
        .lang
        .or_else(|| detect_language(title.as_deref().unwrap_or(""), &text))
        .or_else(|| Some(UNDETERMINED_LANGUAGE.to_string()));
    let fetched_at = draft.fetched_at.or_else(|| now.format(&Rfc3339).ok());
    Mention {
        schema: MENTION_SCHEMA.to_string(),
        id,
        client: draft.client,
        source: Some(draft.source),
        channel: draft.channel,
        url,
        author,
        title,
        text,
        lang,
        published_at: draft.published_at,
        fetched_at,
        meta: draft.meta,
    }
}

/// Returns the ISO 639-1 code of the language of `title` and `text` when whatlang is
/// confident, else `None` (a wrong language would let a `langs` filter cull a true
/// match; a missing one never culls).
pub fn detect_language(title: &str, text: &str) -> Option<String> {
    let text = prefix(text, LANGUAGE_SAMPLE_BYTES);
    let sample = if title.is_empty() { text.to_string() } else { format!("{title}. {text}") };
    let info = whatlang::detect(&sample)?;
    if !info.is_reliable() {
        return None;
    }
    Some(iso639_1(info.lang()).to_string())
}

/// The text whatlang looks at: about a hundred words settle its trigram statistics, and
/// its cost grows with the length (it was two thirds of the normalization time with
/// 2 KiB samples).
const LANGUAGE_SAMPLE_BYTES: usize = 600;

/// Returns the longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Returns the ISO 639-1 code of a language whatlang names by its ISO 639-3 code:
/// mentions and rules use the two-letter codes.
fn iso639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    }
}

/// How the [`Screen`] decides what is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenConfig {
    /// How long a mention id is remembered: a repeat within it is dropped.
    pub window: Duration,
    /// Mentions remembered at most (the oldest are forgotten first), bounding memory.
    pub capacity: usize,
    /// Near-duplicates differ in at most this many of the 64 SimHash bits (at most 3,
    /// which the four-band index guarantees to find).
    pub max_distance: u32,
    /// Texts with fewer words are never near-duplicates: short texts ("great product!")
    /// coincide without being copies.
    pub min_words: usize,
}

impl Default for ScreenConfig {
    fn default() -> ScreenConfig {
        ScreenConfig {
            window: Duration::from_secs(24 * 3600),
            capacity: 200_000,
            max_distance: 3,
            min_words: 12,
        }
    }
}

/// What [`Screen::screen`] did with a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Screened {
    /// The mentions to hand to the bus, near-duplicates marked.
    pub fresh: Vec<Mention>,
    /// Exact duplicates dropped.
    pub duplicates: u64,
    /// Near-duplicates marked (included in `fresh`).
    pub near_duplicates: u64,
}

/// The duplicate window: drops exact repeats, marks syndicated copies.
///
/// One per process, shared by its sources, so that the same article from a feed and a
/// mail digest is seen once. Mentions are remembered when screened; a source whose
/// handoff to the bus fails calls [`Screen::forget`], so the retry is not mistaken for
/// a duplicate of something that never arrived.
///
/// Each client has a window of its own: the same post fed to two clients is news to
/// both, and a near-duplicate is marked with the first copy of its own client only,
/// so that no mention carries the id or the thread of another client's. (Clients come
/// from the configured sources, so the windows are few.)
#[derive(Debug)]
pub struct Screen {
    config: ScreenConfig,
    windows: HashMap<Option<String>, Window>,
}

impl Screen {
    /// Returns an empty screen.
    pub fn new(config: ScreenConfig) -> Screen {
        Screen { config, windows: HashMap::new() }
    }

    /// Drops the mentions seen within the window of their client (or earlier in
    /// `mentions`), marks near-duplicates with [`NEAR_DUPLICATE_OF`], and remembers the
    /// rest.
    pub fn screen(&mut self, mentions: Vec<Mention>, now: Instant) -> Screened {
        let mut screened = Screened::default();
        for window in self.windows.values_mut() {
            window.expire(now);
        }
        for mention in mentions {
            let config = self.config;
            let window = self.windows.entry(mention.client.clone()).or_insert_with(|| Window::new(config));
            window.screen(mention, now, &mut screened);
        }
        for window in self.windows.values_mut() {
            window.expire(now);
        }
        screened
    }

    /// Returns the SimHash comparisons made so far: the screen's work, which stays
    /// proportional to the mentions screened however many copies of a text arrive.
    pub fn comparisons(&self) -> u64 {
        self.windows.values().map(|window| window.near.comparisons()).sum()
    }

    /// Forgets mentions that were screened but could not be handed to the bus.
    pub fn forget<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let ids: Vec<&str> = ids.into_iter().collect();
        for window in self.windows.values_mut() {
            window.forget(ids.iter().copied());
        }
    }
}

/// The window of one client.
#[derive(Debug)]
struct Window {
    config: ScreenConfig,
    next: u64,
    /// Sequence numbers in arrival order, with when they arrived; stale after `forget`.
    order: VecDeque<(u64, Instant)>,
    entries: HashMap<u64, Remembered>,
    by_id: HashMap<String, u64>,
    /// The SimHashes remembered, found again at a bounded cost per mention.
    near: NearIndex,
}

#[derive(Debug)]
struct Remembered {
    id: String,
    hash: Option<SimHash>,
    /// The first copy this mention is a near-duplicate of, or its own id.
    original: String,
    /// The thread key of that first copy, which its near-duplicates take.
    thread: String,
}

impl Window {
    fn new(config: ScreenConfig) -> Window {
        Window {
            config,
            next: 0,
            order: VecDeque::new(),
            entries: HashMap::new(),
            by_id: HashMap::new(),
            near: NearIndex::default(),
        }
    }

    /// Drops `mention` when seen within the window, else marks it when it is a
    /// near-duplicate, remembers it and adds it to `screened`.
    fn screen(&mut self, mut mention: Mention, now: Instant, screened: &mut Screened) {
        if self.by_id.contains_key(&mention.id) {
            screened.duplicates += 1;
            return;
        }
        let hash = simhash(&mention.text, self.config.min_words);
        let (original, thread) = match hash.and_then(|hash| self.nearest(hash)) {
            Some((original, thread)) => {
                mention.meta.insert(NEAR_DUPLICATE_OF.to_string(), original.clone());
                mention.meta.insert(THREAD.to_string(), thread.clone());
                screened.near_duplicates += 1;
                (original, thread)
            }
            None => (mention.id.clone(), thread_key(&mention)),
        };
        self.remember(Remembered { id: mention.id.clone(), hash, original, thread }, now);
        screened.fresh.push(mention);
    }

    fn forget<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            if let Some(seq) = self.by_id.remove(id) {
                self.remove(seq);
            }
        }
    }

    /// Returns the original of the earliest remembered mention within the distance.
    /// Returns the first copy and the thread of the nearest remembered mention.
    fn nearest(&mut self, hash: SimHash) -> Option<(String, String)> {
        let seq = self.near.nearest(hash, self.config.max_distance)?;
        let entry = &self.entries[&seq];
        Some((entry.original.clone(), entry.thread.clone()))
    }

    fn remember(&mut self, entry: Remembered, now: Instant) {
        let seq = self.next;
        self.next += 1;
        if let Some(hash) = entry.hash {
            self.near.insert(hash, seq);
        }
        self.by_id.insert(entry.id.clone(), seq);
        self.entries.insert(seq, entry);
        self.order.push_back((seq, now));
    }

    fn remove(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else { return };
        if self.by_id.get(&entry.id) == Some(&seq) {
            self.by_id.remove(&entry.id);
        }
        if let Some(hash) = entry.hash {
            self.near.remove(hash, seq);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(seq, at)) = self.order.front() {
            let expired = now.saturating_duration_since(at) > self.config.window;
            if !expired && self.entries.len() <= self.config.capacity && self.entries.contains_key(&seq) {
                break;
            }
            if !expired && !self.entries.contains_key(&seq) {
                self.order.pop_front();
                continue;
            }
            self.order.pop_front();
            self.remove(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(url: &str, title: &str, text: &str) -> Draft {
        Draft {
            source: "alerts".into(),
            url: Some(url.into()),
            title: Some(title.into()),
            text: text.into(),
            markup: Markup::Html,
            ..Draft::default()
        }
    }

    const STORY: &str = "Slack Technologies said on Tuesday that its workplace messaging service suffered \
        a global outage lasting several hours, leaving millions of office workers unable to send messages";

    #[test]
    fn a_draft_becomes_a_clean_mention_with_a_stable_id() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = normalize(
            draft(
                "https://www.google.com/url?rct=j&sa=t&url=https://news.example.com/slack%3Futm_source%3Dga&ct=ga",
                "<b>Slack</b> outage &amp; recovery",
                &format!("<p>{STORY}</p>"),
            ),
            now,
        );
        assert_eq!(a.url.as_deref(), Some("https://news.example.com/slack"));
        assert_eq!(a.title.as_deref(), Some("Slack outage & recovery"));
        assert_eq!(a.text, STORY.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(a.lang.as_deref(), Some("en"));
        assert_eq!(a.fetched_at.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(a.id, mention_id("alerts", "https://news.example.com/slack"));
        let b = normalize(draft("https://NEWS.example.com/slack#top", "other", "other"), now);
        assert_eq!(a.id, b.id, "the canonical URL decides the id");
    }

    #[test]
    fn plain_text_keeps_its_angle_brackets_and_loses_its_control_characters() {
        let normalized = |text: &str, markup: Markup| {
            let mut mention = Mention::new("m", text);
            mention.title = Some(format!("\u{FEFF}{text}"));
            let mention = normalize(Draft::from_mention("hook", mention, markup), OffsetDateTime::UNIX_EPOCH);
            (mention.title.unwrap(), mention.text)
        };
        for text in
            ["Write a <script> to call the Slack API", "<Slack> is down again", "if a<b and b>c", "AT&amp;T"]
        {
            assert_eq!(normalized(text, Markup::Plain), (text.to_string(), text.to_string()));
        }
        let hostile = "Sla\u{1}ck \u{1b}[2Jis\u{7}\u{85}down\u{9f}\r\n\tagain";
        assert_eq!(normalized(hostile, Markup::Plain).1, "Slack [2Jis down again");
        assert_eq!(normalized("\u{FEFF}Slack", Markup::Plain).1, "Slack");
        assert_eq!(normalized("<p>Great <b>support</b></p>", Markup::Html).1, "Great support");
    }

    #[test]
    fn a_given_language_and_id_are_kept() {
        let mut mention =
            Mention::new("m-given", "Bonjour tout le monde, quelle belle journée pour se promener");
        mention.lang = Some("fr".into());
        let normalized =
            normalize(Draft::from_mention("hook", mention, Markup::Plain), OffsetDateTime::UNIX_EPOCH);
        assert_eq!((normalized.id.as_str(), normalized.lang.as_deref()), ("m-given", Some("fr")));
        assert_eq!(normalized.source.as_deref(), Some("hook"));
    }

    #[test]
    fn exact_repeats_drop_and_syndicated_copies_are_marked() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut screen = Screen::new(ScreenConfig::default());
        let start = Instant::now();
        let first = normalize(draft("https://a.example/story", "t", STORY), now);
        let copy = normalize(draft("https://b.example/syndicated", "t", &format!("{STORY}.")), now);
        let other = normalize(draft("https://c.example/else", "t", "Completely different words about a keyboard launch event held in Berlin this week with many guests"), now);
        let screened = screen.screen(vec![first.clone(), first.clone(), copy.clone(), other.clone()], start);
        assert_eq!(screened.duplicates, 1);
        assert_eq!(screened.near_duplicates, 1);
        assert_eq!(screened.fresh.len(), 3);
        assert_eq!(screened.fresh[1].meta.get(NEAR_DUPLICATE_OF), Some(&first.id));
        assert_eq!(
            thread_key(&screened.fresh[1]),
            thread_key(&first),
            "a syndicated copy takes the thread of the first copy, so they make one ticket"
        );
        assert_eq!(thread_key(&first), "url:a.example/story");
        assert!(screened.fresh[2].meta.is_empty());

        let again = screen.screen(vec![first.clone()], start + Duration::from_secs(60));
        assert_eq!((again.duplicates, again.fresh.len()), (1, 0));
        let later = screen.screen(vec![first.clone()], start + Duration::from_secs(25 * 3600));
        assert_eq!(later.fresh.len(), 1, "a repeat after the window is new");
    }

    #[test]
    fn forgotten_mentions_are_not_duplicates_and_capacity_bounds_memory() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let config = ScreenConfig { capacity: 2, ..ScreenConfig::default() };
        let mut screen = Screen::new(config);
        let start = Instant::now();
        let mention = |n: usize| normalize(draft(&format!("https://a.example/{n}"), "t", "short"), now);
        assert_eq!(screen.screen(vec![mention(1)], start).fresh.len(), 1);
        screen.forget([mention(1).id.as_str()]);
        assert_eq!(screen.screen(vec![mention(1)], start).fresh.len(), 1, "a failed handoff is retried");
        screen.screen(vec![mention(2), mention(3)], start);
        assert!(screen.windows.values().map(|w| w.entries.len()).sum::<usize>() <= 2);
        assert_eq!(screen.screen(vec![mention(1)], start).fresh.len(), 1, "the oldest was forgotten");
    }

    #[test]
    fn each_client_has_its_own_window_and_its_own_ids() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let of = |client: Option<&str>, id: &str| {
            let mut mention = Mention::new(id, STORY);
            mention.url = Some(format!("https://{}.example/{id}", client.unwrap_or("house")));
            let draft = Draft {
                client: client.map(str::to_string),
                ..Draft::from_mention("hook", mention, Markup::Plain)
            };
            normalize(draft, now)
        };
        let acme = of(Some("acme"), "tw-1");
        let globex = of(Some("globex"), "tw-1");
        let house = of(None, "tw-1");
        assert_eq!(
            (acme.id.as_str(), globex.id.as_str(), house.id.as_str()),
            ("acme:tw-1", "globex:tw-1", "tw-1")
        );
        assert_eq!(of(Some("acme"), "acme:tw-1").id, "acme:tw-1", "an id fed back in keeps one prefix");
        let mut screen = Screen::new(ScreenConfig::default());
        let start = Instant::now();
        let screened = screen.screen(vec![acme.clone(), globex.clone(), house.clone()], start);
        assert_eq!(screened.fresh.len(), 3, "one post fed to two clients is news to both");
        assert_eq!(screened.near_duplicates, 0, "no mention is marked with another client's copy");
        assert!(screened.fresh.iter().all(|m| !m.meta.contains_key(NEAR_DUPLICATE_OF)));
        let copy = of(Some("globex"), "tw-2");
        let screened = screen.screen(vec![copy], start);
        assert_eq!(screened.fresh[0].meta.get(NEAR_DUPLICATE_OF).map(String::as_str), Some("globex:tw-1"));
        screen.forget(["globex:tw-1"]);
        assert_eq!(screen.screen(vec![globex], start).fresh.len(), 1, "forgotten in its client's window");
        assert_eq!(screen.screen(vec![acme], start).duplicates, 1, "still remembered in acme's");
    }

    #[test]
    fn identical_copies_cost_a_bounded_number_of_comparisons_each() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut screen = Screen::new(ScreenConfig::default());
        let start = Instant::now();
        let copies: Vec<Mention> = (0..5_000)
            .map(|n| normalize(draft(&format!("https://copy.example/{n}"), "t", STORY), now))
            .collect();
        let first = copies[0].id.clone();
        let screened = screen.screen(copies, start);
        assert_eq!(screened.near_duplicates, 4_999);
        assert!(screened.fresh.iter().skip(1).all(|m| m.meta.get(NEAR_DUPLICATE_OF) == Some(&first)));
        let comparisons = screen.comparisons();
        assert!(comparisons <= 4 * 5_000, "{comparisons} comparisons for 5,000 copies");
        screen.forget([first.as_str()]);
        let late = normalize(draft("https://copy.example/late", "t", STORY), now);
        let screened = screen.screen(vec![late], start);
        assert_eq!(
            screened.fresh[0].meta.get(NEAR_DUPLICATE_OF).map(|o| o.as_str()),
            Some(first.as_str()),
            "the copies keep naming the first one even after it was forgotten"
        );
    }
}

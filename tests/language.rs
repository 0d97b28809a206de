//! Language detection on real English text: a rule's `langs` may cull only a language
//! ingest is sure of, so the rate at which English is taken for another language is the
//! rate at which `langs = ["en"]` would cull true matches.

use cull_ingest::{normalize, Draft, Markup};
use cull_match::RuleSet;
use cull_model::{Channel, Mention, UNDETERMINED_LANGUAGE};
use time::OffsetDateTime;

use crate::corpus::{news_category, uci_headlines, vader};

/// Returns `mention` as ingest makes it when its source does not state a language.
fn ingested(mut mention: Mention) -> Mention {
    mention.lang = None;
    normalize(Draft::from_mention("test", mention, Markup::Plain), OffsetDateTime::UNIX_EPOCH)
}

/// Words nearly every English mention has.
const WORDS: &str = "the OR a OR of OR to OR in OR is OR and OR for OR on OR it OR i";

/// The README's table: every real English corpus, how many mentions ingest tags `en`,
/// another language, or undetermined. The bound is the README's stated false-cull rate.
#[test]
fn english_is_rarely_taken_for_another_language_and_always_gets_a_language() {
    let corpora = [
        ("tweets", vader("tweets_GroundTruth.txt", Channel::Twitter, usize::MAX)),
        ("amazon reviews", vader("amazonReviewSnippets_GroundTruth.txt", Channel::Review, usize::MAX)),
        ("movie reviews", vader("movieReviewSnippets_GroundTruth.txt", Channel::Review, usize::MAX)),
        ("NYT editorials", vader("nytEditorialSnippets_GroundTruth.txt", Channel::News, usize::MAX)),
        ("HuffPost news", news_category(usize::MAX)),
        ("UCI headlines", uci_headlines(usize::MAX)),
    ];
    let rules = cull_rules::load_files([(
        std::path::Path::new("en.toml"),
        format!("[[rule]]\nid = 'english-only'\nquery = '{WORDS}'\nlangs = ['en']\n[[rule]]\nid = 'any-language'\nquery = '{WORDS}'\n")
            .as_bytes(),
    )]);
    let set = RuleSet::new(rules.rules).unwrap();
    let (mut total, mut total_other) = (0, 0);
    for (name, mentions) in corpora {
        assert!(mentions.len() > 1000, "{name}: the real corpus is missing");
        let mentions: Vec<Mention> = mentions.into_iter().map(ingested).collect();
        let count = |pred: &dyn Fn(&str) -> bool| {
            mentions.iter().filter(|m| pred(m.lang.as_deref().unwrap())).count()
        };
        let (en, undetermined) = (count(&|l| l == "en"), count(&|l| l == UNDETERMINED_LANGUAGE));
        let other = mentions.len() - en - undetermined;
        // Matching every mention costs minutes in a debug build; the sample holds every
        // mention tagged another language and the first few hundred of the rest.
        let sample: Vec<Mention> = mentions
            .iter()
            .enumerate()
            .filter(|(i, m)| *i < 300 || !matches!(m.lang.as_deref(), Some("en" | UNDETERMINED_LANGUAGE)))
            .map(|(_, m)| m.clone())
            .collect();
        for (mention, verdict) in sample.iter().zip(set.verdicts(&sample)) {
            let lang = mention.lang.as_deref().unwrap();
            let confident_other = lang != "en" && lang != UNDETERMINED_LANGUAGE;
            let matches = verdict.matched.iter().any(|m| m.rule_id == "any-language");
            let culled = verdict.culled.iter().any(|c| c.rule_id == "english-only");
            assert_eq!(
                culled,
                matches && confident_other,
                "{name}: tagged {lang}: {:?} {verdict:?}",
                mention.text
            );
        }
        println!("{name:16} {:6} en {en:6} other {other:3} und {undetermined:6}", mentions.len());
        assert!(
            other * 1000 <= mentions.len() * 2,
            "{name}: {other} of {} English mentions tagged another language",
            mentions.len()
        );
        assert!(en * 2 > mentions.len() / 10, "{name}: detection found almost no English ({en})");
        total += mentions.len();
        total_other += other;
    }
    assert!(
        total_other * 10_000 <= total * 5,
        "{total_other} of {total} English mentions tagged another language"
    );
}

/// Detection still names other languages when they are plain to see.
#[test]
fn plain_other_languages_are_detected() {
    for (lang, text) in [
        ("fr", "Bonjour, le service client de Slack ne répond plus depuis ce matin, c'est inadmissible"),
        ("de", "Der Kundendienst von Slack antwortet seit heute Morgen nicht mehr, das ist unglaublich"),
        ("es", "El servicio de atención al cliente de Slack no responde desde esta mañana"),
        ("pt", "O atendimento ao cliente do Slack não responde desde hoje de manhã"),
    ] {
        assert_eq!(ingested(Mention::new("m", text)).lang.as_deref(), Some(lang), "{text}");
    }
    assert_eq!(ingested(Mention::new("m", "Slack down")).lang.as_deref(), Some(UNDETERMINED_LANGUAGE));
}

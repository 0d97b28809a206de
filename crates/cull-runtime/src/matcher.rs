//! The matcher stage: mentions in, one verdict per mention out.
//!
//! A batch is decoded, matched on the rayon pool against the rule set in use (a hot
//! reload swaps it between batches; each verdict names the version it was made with),
//! and every verdict goes to the verdicts topic carrying its mention, so that the
//! stages after it (tickets, the index, a file) need no second topic to join with. A
//! record that is not a mention is dead-lettered with the reason.

use std::sync::Arc;

use cull_bus::dead_letter::Reason;
use cull_bus::{Message, Record};
use cull_match::Matcher;
use cull_model::Mention;
use rayon::prelude::*;

use crate::metrics::{MatchStats, Metrics, Outcome};
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "match";

/// Matches mentions against the rule set of a [`Matcher`].
#[derive(Debug)]
pub struct MatchStage {
    matcher: Arc<Matcher>,
    verdicts_topic: String,
    max_mention_bytes: usize,
    metrics: Arc<Metrics>,
    summary: Arc<Summary>,
}

impl MatchStage {
    /// Returns the stage matching with `matcher` and producing to `verdicts_topic`;
    /// mentions larger than `max_mention_bytes` are dead-lettered.
    pub fn new(
        matcher: Arc<Matcher>,
        verdicts_topic: &str,
        max_mention_bytes: usize,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
    ) -> MatchStage {
        MatchStage {
            matcher,
            verdicts_topic: verdicts_topic.to_string(),
            max_mention_bytes,
            metrics,
            summary,
        }
    }
}

impl Stage for MatchStage {
    fn name(&self) -> &str {
        NAME
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let mut stats = MatchStats::default();
        for record in records {
            crate::fault::record(NAME, record);
        }
        // Decoded, and encoded below, on all threads of the pool, as the batch is
        // matched: at a thousand rules a mention's JSON costs more than its matching,
        // and on one thread it would leave the other cores waiting.
        let decoded: Vec<_> = records
            .par_iter()
            .map(|record| Mention::from_json_limited(&record.payload, self.max_mention_bytes))
            .collect();
        let mut mentions = Vec::with_capacity(records.len());
        for (record, decoded) in records.iter().zip(decoded) {
            match decoded {
                Ok(mention) => mentions.push(mention),
                Err(error) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "dead-lettering a record");
                    stats.record(Outcome::DeadLetter);
                    out.dead_letter(record, &error, Reason::from(&error));
                }
            }
        }
        let rules = self.matcher.current();
        let verdicts = rules.verdicts(&mentions);
        let encoded: Vec<_> = mentions
            .into_par_iter()
            .zip(verdicts)
            .map(|(mention, mut verdict)| {
                // Keyed by thread, so that every mention of one issue reaches the one
                // ticketing replica that owns its partition (see `cull_model::thread`).
                let key = cull_model::thread::thread_key(&mention).into_bytes();
                verdict.mention = Some(mention);
                let payload = serde_json::to_vec(&verdict);
                let mention = verdict.mention.take();
                (mention, verdict, key, payload)
            })
            .collect();
        // Mentions are kept for the decision table only while it wants rows; the
        // totals count every decision.
        let (keeps_decisions, wants_rows) =
            (self.summary.keeps_decisions(), self.summary.wants_decision_rows());
        let (mut decided, mut decision_totals) = (Vec::new(), (0, 0));
        for (mention, verdict, key, payload) in encoded {
            let outcome = match (verdict.matched.is_empty(), verdict.culled.is_empty()) {
                (false, _) => Outcome::Matched,
                (true, false) => Outcome::Culled,
                (true, true) => Outcome::Unmatched,
            };
            stats.record(outcome);
            stats.verdict(&verdict, |rule| rules.measures(verdict.client.as_deref(), rule));
            if keeps_decisions {
                decision_totals.0 += verdict.matched.len() as u64;
                decision_totals.1 += verdict.culled.len() as u64;
            }
            let payload = payload.map_err(|e| StageError::new(NAME, e))?;
            out.send(self.verdicts_topic.as_str(), Message { key: Some(key), payload, headers: Vec::new() });
            if let Some(mention) = mention.filter(|_| wants_rows && outcome != Outcome::Unmatched) {
                decided.push((mention, verdict));
            }
        }
        // Counted last, so that a batch that panicked halfway (and is then processed
        // one record at a time) is not counted twice.
        self.summary.add_matches(
            records.len() as u64,
            stats.count(Outcome::Matched),
            stats.count(Outcome::Culled),
            stats.count(Outcome::Unmatched),
        );
        self.summary
            .add_decisions(decided.iter().map(|(mention, verdict)| (mention, verdict)), decision_totals);
        self.metrics.record_matches(&stats);
        Ok(())
    }

    fn panicked_on(&mut self, _record: &Record) {
        let mut stats = MatchStats::default();
        stats.record(Outcome::DeadLetter);
        self.summary.add_matches(1, 0, 0, 0);
        self.metrics.record_matches(&stats);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cull_match::RuleSet;
    use cull_model::Verdict;

    use super::*;

    fn record(offset: usize, payload: Vec<u8>) -> Record {
        Record { topic: "cull.mentions".into(), offset: offset as i64, payload, ..Record::default() }
    }

    #[test]
    fn a_batch_decoded_and_encoded_in_parallel_keeps_its_order_and_measures_only_the_rules_that_opt_in() {
        let loaded = cull_rules::load_files([(
            Path::new("r.toml"),
            b"[[rule]]\nid = 'measured'\nquery = 'slack'\nmetrics = true\n\n\
              [[rule]]\nid = 'quiet'\nquery = 'slack'\n\n\
              [[rule]]\nid = 'culled'\nquery = 'slack'\nexclude = 'adjuster'\nmetrics = true\n"
                .as_slice(),
        )]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let matcher = Arc::new(Matcher::new(RuleSet::new(loaded.rules).unwrap()));
        let metrics = Arc::new(Metrics::new());
        let mut stage =
            MatchStage::new(matcher, "cull.verdicts", 1 << 20, Arc::clone(&metrics), Arc::default());
        // Enough records for the pool to split them, every seventh not a mention.
        let texts = ["slack is down", "slack adjuster", "nothing here"];
        let records: Vec<Record> = (0..700)
            .map(|i| match i % 7 {
                6 => record(i, b"{not json".to_vec()),
                _ => record(i, serde_json::to_vec(&Mention::new(format!("m{i}"), texts[i % 3])).unwrap()),
            })
            .collect();
        let mut out = Output::new(NAME);
        stage.process(&records, &mut out).unwrap();

        assert_eq!(out.dead_letters().len(), 100);
        let verdicts: Vec<Verdict> =
            out.records().iter().map(|(_, m)| serde_json::from_slice(&m.payload).unwrap()).collect();
        let expected: Vec<String> = (0..700).filter(|i| i % 7 != 6).map(|i| format!("m{i}")).collect();
        let ids: Vec<&String> = verdicts.iter().map(|v| &v.mention_id).collect();
        assert_eq!(ids, expected.iter().collect::<Vec<_>>(), "in input order");
        for ((_, message), verdict) in out.records().iter().zip(&verdicts) {
            let mention = verdict.mention.as_ref().expect("the verdict carries its mention");
            assert_eq!(mention.id, verdict.mention_id);
            assert_eq!(message.key.as_deref(), Some(cull_model::thread::thread_key(mention).as_bytes()));
        }

        let slack = (0..700).filter(|i| i % 7 != 6 && i % 3 != 2).count();
        let adjusters = (0..700).filter(|i| i % 7 != 6 && i % 3 == 1).count();
        let text = metrics.render();
        let series = |rule: &str, outcome: &str| {
            let name = format!("cull_rule_mentions_total{{outcome=\"{outcome}\",rule=\"{rule}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(&name)).map(|v| v.parse::<usize>().unwrap())
        };
        assert_eq!(series("measured", "matched"), Some(slack));
        assert_eq!(series("culled", "matched"), Some(slack - adjusters));
        assert_eq!(series("culled", "exclude"), Some(adjusters));
        assert!(!text.contains("rule=\"quiet\""), "a rule that did not opt in has no series:\n{text}");
    }
}

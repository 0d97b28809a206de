//! Bringing an index written by an earlier version of cull up to the current schema.
//!
//! Tantivy opens an index only with the schema it was written with, and a field
//! cannot be added to an index in place. But every document stores its whole record
//! (the verdict with its mention, and its tickets) and its time, which is everything
//! a document is built from; so an index of an earlier schema is rebuilt from its own
//! stored records into a new directory beside it, with the payload of its last commit
//! (the checkpoint and the tombstones of erased mentions), and then put in its place. Nothing is read from the bus again, and nothing
//! an analyst could find before is lost.
//!
//! The swap is two renames of directories, each atomic; [`recover`] finishes or undoes
//! a swap that a crash interrupted, so that a migration killed at any point is either
//! done or done again at the next start.

use std::path::{Path, PathBuf};

use tantivy::directory::MmapDirectory;
use tantivy::schema::Value;
use tantivy::{DocAddress, Index, TantivyDocument};
use time::OffsetDateTime;

use crate::error::IndexError;
use crate::schema::{tickets_of, verdict_of, IndexSchema};

/// Memory for the rebuilding writer: Tantivy wants at least 15 MB per thread.
const MIGRATION_BUDGET: usize = 64_000_000;

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Finishes or undoes a migration of `dir` that a crash interrupted.
pub(crate) fn recover(dir: &Path) -> Result<(), IndexError> {
    let error = |message: String| IndexError::Open { path: dir.to_path_buf(), message };
    let (building, replaced) = (sibling(dir, ".migrating"), sibling(dir, ".replaced"));
    if building.exists() && !dir.exists() {
        // Killed between the two renames: the rebuilt index is complete.
        std::fs::rename(&building, dir).map_err(|e| error(format!("finishing a migration: {e}")))?;
    }
    if building.exists() {
        // Killed while rebuilding: the old index is still in place.
        std::fs::remove_dir_all(&building)
            .map_err(|e| error(format!("removing a partial migration: {e}")))?;
    }
    if replaced.exists() {
        std::fs::remove_dir_all(&replaced).map_err(|e| error(format!("removing a migrated index: {e}")))?;
    }
    Ok(())
}

/// Rebuilds the index in `dir`, written with another schema, with `schema`; returns
/// the number of documents carried over.
pub(crate) fn migrate(dir: &Path, old: Index, schema: &IndexSchema) -> Result<u64, IndexError> {
    let error = |message: String| IndexError::Open { path: dir.to_path_buf(), message };
    // Holding the old index's writer lock keeps a process writing it from writing
    // documents the rebuild would not see; a process holding it is asked to do this.
    let _lock = old.writer_with_num_threads::<TantivyDocument>(1, 15_000_000).map_err(|e| {
        error(format!(
            "it was written by an earlier version of cull and must be rebuilt, but another process writes it \
             ({e}); the process that writes it (cull run) rebuilds it when it starts"
        ))
    })?;
    let old_schema = old.schema();
    let [record, at, id] = ["record", "at", "id"].map(|name| old_schema.get_field(name).ok());
    let (Some(record), Some(id)) = (record, id) else {
        return Err(error("it has no stored records to rebuild from: remove it to start a new one".into()));
    };
    let payload = old.load_metas()?.payload;
    let building = sibling(dir, ".migrating");
    std::fs::create_dir_all(&building).map_err(|e| error(e.to_string()))?;
    let new = Index::create_in_dir(&building, schema.schema().clone())?;
    schema.mention.register_tokenizers(&new);
    let mut writer = new.writer_with_num_threads::<TantivyDocument>(1, MIGRATION_BUDGET)?;
    let searcher = old.reader()?.searcher();
    let mut carried = 0u64;
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        for doc in segment.doc_ids_alive() {
            let stored: TantivyDocument = searcher.doc(DocAddress::new(ordinal as u32, doc))?;
            let stored_time = at
                .and_then(|field| stored.get_first(field)?.as_datetime())
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.into_timestamp_secs()).ok());
            let json = stored.get_first(record).and_then(|v| v.as_str()).unwrap_or("{}");
            let tickets = tickets_of(json);
            let at = stored_time.unwrap_or_else(OffsetDateTime::now_utc);
            let document = match verdict_of(json) {
                Some(verdict) => schema.document(&verdict, &tickets, at),
                None => stored
                    .get_first(id)
                    .and_then(|v| v.as_str())
                    .map(|mention_id| schema.tickets_document(mention_id, &tickets, at)),
            };
            if let Some(document) = document {
                writer.add_document(document)?;
                carried += 1;
            }
        }
    }
    let mut prepared = writer.prepare_commit()?;
    if let Some(payload) = &payload {
        prepared.set_payload(payload);
    }
    prepared.commit()?;
    writer.wait_merging_threads()?;
    drop((searcher, old));
    let replaced = sibling(dir, ".replaced");
    std::fs::rename(dir, &replaced).map_err(|e| error(format!("setting the old index aside: {e}")))?;
    std::fs::rename(&building, dir).map_err(|e| error(format!("putting the rebuilt index in place: {e}")))?;
    std::fs::remove_dir_all(&replaced).map_err(|e| error(format!("removing the old index: {e}")))?;
    Ok(carried)
}

/// Opens the index in `dir` with whatever schema it was written with, if there is one.
pub(crate) fn open_existing(dir: &Path) -> Result<Option<Index>, IndexError> {
    let error = |message: String| IndexError::Open { path: dir.to_path_buf(), message };
    let directory = MmapDirectory::open(dir).map_err(|e| error(e.to_string()))?;
    if !Index::exists(&directory).map_err(|e| error(e.to_string()))? {
        return Ok(None);
    }
    Ok(Some(Index::open(directory)?))
}

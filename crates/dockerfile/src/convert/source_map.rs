//! The Definition's source map, as BuildKit's `llb.SourceMap` and its collector write it.
//!
//! Ops that come from an instruction (FROM image sources, RUN execs, COPY/ADD/WORKDIR file
//! ops, COPY --link merges) carry the instruction's lines. Every op of the definition gets a
//! `locations` entry, empty when it has none, because BuildKit's marshaller adds one for each
//! vertex it visits. Ranges are BuildKit's parser ranges: one per line, 1-based lines,
//! character 0.

use kiln_llb::{Output, Vertex, pb};
use std::collections::HashMap;
use std::sync::Arc;

/// The instruction lines recorded for the vertices a conversion made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    // The Arc keeps the vertex alive, so its address names it for the whole conversion.
    entries: Vec<(Arc<Vertex>, usize, usize)>,
}

impl Recorded {
    /// `out` came from the instruction on lines `start..=end`.
    pub fn add(&mut self, out: &Output, start: usize, end: usize) {
        self.entries.push((out.vertex.clone(), start, end));
    }

    pub fn extend(&mut self, other: &Recorded) {
        self.entries.extend(other.entries.iter().cloned());
    }
}

/// The Dockerfile a source map points into.
pub(crate) struct SourceFile<'a> {
    pub filename: &'a str,
    pub data: &'a [u8],
}

/// `pb::Source` for the vertices in BuildKit's visiting order (one entry per vertex object,
/// so ops that share a digest list each object's location). With no file, as BuildKit with no
/// `SourceMap`, every op gets an empty entry and there are no infos.
pub(crate) fn build(
    visited: &[Arc<Vertex>],
    recorded: &Recorded,
    file: Option<SourceFile>,
) -> pb::Source {
    let lines: HashMap<*const Vertex, (usize, usize)> = recorded
        .entries
        .iter()
        .map(|(v, s, e)| (Arc::as_ptr(v), (*s, *e)))
        .collect();
    let mut source = pb::Source::default();
    for v in visited {
        let entry = source.locations.entry(v.digest().to_string()).or_default();
        if file.is_none() {
            continue;
        }
        if let Some(&(start, end)) = lines.get(&Arc::as_ptr(v)) {
            entry.locations.push(pb::Location {
                source_index: 0,
                ranges: ranges(start, end),
            });
        }
    }
    if let Some(f) = file {
        source.infos.push(pb::SourceInfo {
            filename: f.filename.to_string(),
            data: f.data.to_vec(),
            // Kiln reads the Dockerfile itself rather than through an LLB source, so there is
            // no definition of the Dockerfile's own source to name.
            definition: None,
            language: "Dockerfile".into(),
        });
    }
    source
}

/// BuildKit's `toRanges`: one range per line from `start` to `end` (at least one).
fn ranges(start: usize, end: usize) -> Vec<pb::Range> {
    let pos = |line: usize| pb::Position {
        line: i32::try_from(line).unwrap_or(i32::MAX),
        character: 0,
    };
    (start..=end.max(start))
        .map(|l| pb::Range {
            start: Some(pos(l)),
            end: Some(pos(l)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_op(id: &str) -> Output {
        let op = pb::Op {
            op: Some(pb::op::Op::Source(pb::SourceOp {
                identifier: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        Vertex::output(op, vec![], pb::OpMetadata::default())
    }

    #[test]
    fn one_range_per_line_and_shared_digests_list_each_location() {
        let (a, b, c) = (
            source_op("docker-image://x"),
            source_op("docker-image://x"),
            source_op("local://context"),
        );
        let mut rec = Recorded::default();
        rec.add(&a, 2, 2);
        rec.add(&b, 5, 7);
        let visited = [a.vertex.clone(), c.vertex.clone(), b.vertex.clone()];
        let file = SourceFile {
            filename: "Dockerfile",
            data: b"FROM x\n",
        };
        let s = build(&visited, &rec, Some(file));
        let locs = &s.locations[a.vertex.digest()].locations;
        assert_eq!(locs.len(), 2);
        assert_eq!(locs[0].ranges.len(), 1);
        let lines: Vec<i32> = locs[1]
            .ranges
            .iter()
            .filter_map(|r| r.start.as_ref().map(|p| p.line))
            .collect();
        assert_eq!(lines, [5, 6, 7]);
        assert!(s.locations[c.vertex.digest()].locations.is_empty());
        assert_eq!(s.infos.len(), 1);
        assert_eq!(s.infos[0].language, "Dockerfile");

        let bare = build(&visited, &rec, None);
        assert!(bare.infos.is_empty());
        assert!(bare.locations.values().all(|l| l.locations.is_empty()));
        assert_eq!(bare.locations.len(), 2);
    }
}

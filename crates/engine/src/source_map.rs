//! Failed steps reported with the Dockerfile line they came from (the Definition's source map).

use crate::EngineError;
use kiln_llb::LoadedGraph;
use kiln_solver::SolveError;

pub fn step_error(graph: &LoadedGraph, error: &SolveError) -> EngineError {
    let Some((vertex, name, source)) = error.failed_vertex() else {
        return EngineError::Step {
            location: None,
            message: error.to_string(),
        };
    };
    EngineError::Step {
        location: location(graph, vertex),
        message: format!("{name}: {source}"),
    }
}

/// `Dockerfile:12` (or `Dockerfile:12-14`) for an op that the source map places.
fn location(graph: &LoadedGraph, vertex: &str) -> Option<String> {
    let source = graph.source.as_ref()?;
    let locations = source.locations.get(vertex)?;
    let loc = locations.locations.first()?;
    let info = source.infos.get(loc.source_index as usize)?;
    // BuildKit's Dockerfile frontend writes one range per line of a multi-line instruction,
    // so the span runs from the first range's start to the last one's end.
    let start = loc.ranges.first()?.start.as_ref()?.line;
    let end = loc
        .ranges
        .iter()
        .filter_map(|r| r.end.as_ref().map(|p| p.line))
        .max()
        .unwrap_or(start);
    Some(if end > start {
        format!("{}:{start}-{end}", info.filename)
    } else {
        format!("{}:{start}", info.filename)
    })
}

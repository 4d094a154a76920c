//! Filters for a local source, from its LLB attributes: exclude patterns (.dockerignore rules),
//! include patterns and follow paths.

use kiln_fileop::ContextFilter;
use kiln_pattern::PatternMatcher;
use kiln_solver::OpError;

pub fn filter(
    excludes: &[String],
    includes: &[String],
    follow_paths: Vec<String>,
) -> Result<ContextFilter, OpError> {
    let mut filter = ContextFilter {
        follow_paths,
        ..Default::default()
    };
    if !excludes.is_empty() {
        let matcher = std::sync::Arc::new(
            PatternMatcher::new(excludes).map_err(|e| format!("exclude patterns: {e}"))?,
        );
        let m2 = matcher.clone();
        filter.exclude = Some(Box::new(move |path: &str, _is_dir: bool| {
            matcher.matches(path)
        }));
        filter.may_skip_dir = Some(Box::new(move |dir: &str| !m2.may_reinclude_under(dir)));
    }
    if !includes.is_empty() {
        let matcher =
            PatternMatcher::new(includes).map_err(|e| format!("include patterns: {e}"))?;
        let prev = filter.exclude.take();
        filter.exclude = Some(Box::new(move |path: &str, is_dir: bool| {
            // Directories stay so that included files below them can be reached.
            (!is_dir && !matcher.matches(path)) || prev.as_ref().is_some_and(|f| f(path, is_dir))
        }));
    }
    Ok(filter)
}

//! Generic DAG scheduler: cache keys, deduplication, parallelism, cancellation, progress

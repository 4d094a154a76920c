//! LLB ops as solver ops over the store, snapshots, runtime and sources

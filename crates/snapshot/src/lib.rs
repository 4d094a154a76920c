//! Overlayfs snapshots: layer directories, mounts, and layer diffs

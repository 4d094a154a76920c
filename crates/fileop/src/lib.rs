//! LLB file operations (mkdir, mkfile, rm, symlink, copy) and content checksums on directories

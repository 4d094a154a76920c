//! Dockerfile parser, shell-word expansion, .dockerignore matching and conversion to LLB.
//! Pure: no I/O. Image configs of base images reach the converter through a trait.

pub mod ast;
pub mod convert;
pub mod dockerignore;
pub mod instructions;
pub mod lint;
pub mod parser;
pub mod shell;

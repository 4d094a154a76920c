//! Loading a Definition written by anyone: every op decodes, every input names an op of the
//! same Definition that comes earlier or later (order is not trusted), and the graph is acyclic.
//! Digests are taken over the bytes received, never over a re-encoding (prost drops unknown fields).

use kiln_proto::Message;
use kiln_proto::pb;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("definition is not valid protobuf: {0}")]
    Decode(#[source] kiln_proto::prost::DecodeError),
    #[error("op {index} of the definition is not valid protobuf: {source}")]
    DecodeOp {
        index: usize,
        #[source]
        source: kiln_proto::prost::DecodeError,
    },
    #[error("definition has no ops")]
    Empty,
    #[error("op {digest} reads input {input}, which is not in the definition")]
    MissingInput { digest: String, input: String },
    #[error("op {digest} reads output {index} of {input}, which has no such output")]
    BadOutputIndex {
        digest: String,
        input: String,
        index: i64,
    },
    #[error("the terminal op must have exactly one input and no body, it has {0} inputs")]
    BadTerminal(usize),
    #[error("the graph has a cycle through op {0}")]
    Cycle(String),
    #[error("op {0} has no body")]
    NoBody(String),
}

/// One decoded op with the digest of its received bytes.
#[derive(Debug, Clone)]
pub struct LoadedOp {
    pub digest: String,
    pub op: pb::Op,
    pub metadata: pb::OpMetadata,
}

/// A validated graph: ops by digest, and the output that is the build's result.
#[derive(Debug, Clone)]
pub struct LoadedGraph {
    pub ops: BTreeMap<String, LoadedOp>,
    /// `None` when the definition's result is empty (scratch).
    pub result: Option<pb::Input>,
    pub source: Option<pb::Source>,
}

/// Decodes and validates a serialized `pb::Definition`.
pub fn load(bytes: &[u8]) -> Result<LoadedGraph, LoadError> {
    let def = pb::Definition::decode(bytes).map_err(LoadError::Decode)?;
    load_definition(def)
}

fn load_definition(def: pb::Definition) -> Result<LoadedGraph, LoadError> {
    // An empty definition is an empty result (a build of scratch), as in BuildKit.
    if def.def.is_empty() {
        return Ok(LoadedGraph {
            ops: BTreeMap::new(),
            result: None,
            source: def.source,
        });
    }
    let mut ops = BTreeMap::new();
    let mut last = None;
    for (index, raw) in def.def.iter().enumerate() {
        let op =
            pb::Op::decode(&raw[..]).map_err(|source| LoadError::DecodeOp { index, source })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(raw)));
        let metadata = def.metadata.get(&digest).cloned().unwrap_or_default();
        last = Some(digest.clone());
        ops.insert(
            digest.clone(),
            LoadedOp {
                digest,
                op,
                metadata,
            },
        );
    }
    // The terminal op is the last one: no body, one input.
    let last = last.ok_or(LoadError::Empty)?;
    let terminal = ops.remove(&last).ok_or(LoadError::Empty)?;
    if terminal.op.op.is_some() || terminal.op.inputs.len() != 1 {
        if terminal.op.op.is_some() {
            return Err(LoadError::BadTerminal(terminal.op.inputs.len()));
        }
        if terminal.op.inputs.is_empty() {
            return Ok(LoadedGraph {
                ops,
                result: None,
                source: def.source,
            });
        }
        return Err(LoadError::BadTerminal(terminal.op.inputs.len()));
    }
    let result = terminal.op.inputs[0].clone();
    for op in ops.values() {
        if op.op.op.is_none() {
            return Err(LoadError::NoBody(op.digest.clone()));
        }
        for input in &op.op.inputs {
            check_input(&ops, &op.digest, input)?;
        }
    }
    check_input(&ops, &terminal.digest, &result)?;
    check_acyclic(&ops)?;
    Ok(LoadedGraph {
        ops,
        result: Some(result),
        source: def.source,
    })
}

fn check_input(
    ops: &BTreeMap<String, LoadedOp>,
    digest: &str,
    input: &pb::Input,
) -> Result<(), LoadError> {
    let target = ops
        .get(&input.digest)
        .ok_or_else(|| LoadError::MissingInput {
            digest: digest.to_string(),
            input: input.digest.clone(),
        })?;
    let outputs = output_count(&target.op);
    if input.index < 0 || input.index >= outputs {
        return Err(LoadError::BadOutputIndex {
            digest: digest.to_string(),
            input: input.digest.clone(),
            index: input.index,
        });
    }
    Ok(())
}

/// How many outputs an op has: exec ops have one per mount with an output index, file ops one
/// per distinct action output, everything else one.
pub fn output_count(op: &pb::Op) -> i64 {
    match &op.op {
        Some(pb::op::Op::Exec(e)) => e
            .mounts
            .iter()
            .map(|m| m.output + 1)
            .max()
            .unwrap_or(0)
            .max(1),
        Some(pb::op::Op::File(f)) => f
            .actions
            .iter()
            .map(|a| a.output + 1)
            .max()
            .unwrap_or(0)
            .max(1),
        _ => 1,
    }
}

fn check_acyclic(ops: &BTreeMap<String, LoadedOp>) -> Result<(), LoadError> {
    // 0 = unvisited, 1 = on stack, 2 = done; iterative to survive deep graphs.
    let mut state: HashMap<&str, u8> = HashMap::new();
    for start in ops.keys() {
        if state.get(start.as_str()) == Some(&2) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        state.insert(start, 1);
        while let Some((node, next)) = stack.pop() {
            let inputs = &ops[node].op.inputs;
            if next < inputs.len() {
                stack.push((node, next + 1));
                let child = inputs[next].digest.as_str();
                match state.get(child) {
                    Some(1) => return Err(LoadError::Cycle(child.to_string())),
                    Some(2) => {}
                    _ => {
                        state.insert(child, 1);
                        stack.push((child, 0));
                    }
                }
            } else {
                state.insert(node, 2);
            }
        }
    }
    Ok(())
}

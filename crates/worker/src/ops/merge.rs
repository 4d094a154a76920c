//! MergeOp: the inputs' layers stacked in order. Layers are diffs already, so stacking them is
//! the merge, and nothing is copied (BuildKit's merge on overlay works the same way).

use crate::store::Ref;
use async_trait::async_trait;
use kiln_proto::pb;
use kiln_solver::{ExecContext, Inputs, OpError, Operation};
use std::sync::Arc;

pub struct MergeOperation {
    pub op: pb::Op,
    pub merge: pb::MergeOp,
}

#[async_trait]
impl Operation<Ref> for MergeOperation {
    async fn cache_key(&self, inputs: &Inputs<'_, Ref>) -> Result<String, OpError> {
        super::default_cache_key(&self.op, inputs).await
    }

    async fn execute(
        &self,
        inputs: &Inputs<'_, Ref>,
        _: &ExecContext,
    ) -> Result<Vec<Ref>, OpError> {
        let mut layers = Vec::new();
        for m in &self.merge.inputs {
            let index = usize::try_from(m.input)
                .map_err(|_| format!("merge input {} is negative", m.input))?;
            if index >= inputs.len() {
                return Err(format!("merge input {index} does not exist").into());
            }
            let r = inputs.result(index).await?;
            for l in r.layers.iter() {
                // A layer already in the stack adds nothing the second time.
                if !layers.contains(l) {
                    layers.push(l.clone());
                }
            }
        }
        Ok(vec![Ref {
            layers: Arc::new(layers),
        }])
    }
}

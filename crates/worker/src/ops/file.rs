//! FileOp: mkdir/mkfile/rm/symlink/copy on writable layers over the op's inputs.
//!
//! The cache key reads inputs the way BuildKit's does: an input used only as a copy source
//! contributes the content checksum of the copied paths, not its own key, so changing or
//! touching a file no COPY reads does not invalidate the step.

use crate::Worker;
use crate::mounts::{View, Writable, read_only};
use crate::store::{Ref, Store};
use async_trait::async_trait;
use kiln_fileop::{ChecksumOpts, FileOpBackend, FileOpError};
use kiln_proto::pb;
use kiln_solver::{ExecContext, Inputs, OpError, Operation};
use std::path::PathBuf;
use std::sync::Arc;

pub struct FileOperation {
    pub worker: Arc<Worker>,
    pub op: pb::Op,
    pub file: pb::FileOp,
}

impl FileOperation {
    /// What input `i` contributes to the key when it is only copied from: the content
    /// checksums of the paths the copies select.
    async fn content_key(&self, inputs: &Inputs<'_, Ref>, i: usize) -> Result<String, OpError> {
        let r = inputs.result(i).await?;
        let selectors: Vec<(String, ChecksumOpts)> = self
            .file
            .actions
            .iter()
            .filter(|a| a.secondary_input == i as i64)
            .filter_map(|a| match &a.action {
                Some(pb::file_action::Action::Copy(c)) => Some((
                    c.src.clone(),
                    ChecksumOpts {
                        follow_links: c.follow_symlink,
                        wildcard: c.allow_wildcard,
                        include_patterns: c.include_patterns.clone(),
                        exclude_patterns: c.exclude_patterns.clone(),
                        required_paths: c.required_paths.clone(),
                    },
                )),
                _ => None,
            })
            .collect();
        let store = self.worker.store.clone();
        let sums = tokio::task::spawn_blocking(move || -> Result<String, String> {
            // Layers never change, so a checksum once computed on this stack is remembered;
            // the stack is mounted only when one is not.
            let mut view = None;
            let mut all = String::new();
            for (path, opts) in &selectors {
                let memo = memo_opts(opts);
                let sum = match store.checksum_memo(&r.layers, path, &memo) {
                    Some(sum) => sum,
                    None => {
                        let v = match &view {
                            Some(v) => v,
                            None => view.insert(read_only(&store, &r)?),
                        };
                        let sum = kiln_fileop::checksum(&v.path, path, opts)
                            .map_err(|e| e.to_string())?;
                        store.remember_checksum(&r.layers, path, &memo, &sum);
                        sum
                    }
                };
                all.push_str(&format!("{path}={sum};"));
            }
            Ok(all)
        })
        .await??;
        Ok(format!("content:{sums}"))
    }

    /// Inputs that the op reads only through copy sources.
    fn source_only_inputs(&self) -> Vec<bool> {
        let n = self.op.inputs.len();
        let mut as_base = vec![false; n];
        let mut as_source = vec![false; n];
        for a in &self.file.actions {
            if a.input >= 0 && (a.input as usize) < n {
                as_base[a.input as usize] = true;
            }
            let copy = matches!(a.action, Some(pb::file_action::Action::Copy(_)));
            if a.secondary_input >= 0 && (a.secondary_input as usize) < n {
                if copy {
                    as_source[a.secondary_input as usize] = true;
                } else {
                    as_base[a.secondary_input as usize] = true;
                }
            }
            // Owners named by user may read /etc/passwd of any input: that input counts whole.
            if let Some(owner) = owners(a) {
                for u in [&owner.user, &owner.group].into_iter().flatten() {
                    if let Some(pb::user_opt::User::ByName(n2)) = &u.user
                        && n2.input >= 0
                        && (n2.input as usize) < n
                    {
                        as_base[n2.input as usize] = true;
                    }
                }
            }
        }
        (0..n).map(|i| as_source[i] && !as_base[i]).collect()
    }
}

/// Checksum options as the remembered checksum's key spells them (every field: a new one
/// fails to compile here until it is part of the key).
fn memo_opts(o: &ChecksumOpts) -> String {
    let ChecksumOpts {
        follow_links,
        wildcard,
        include_patterns,
        exclude_patterns,
        required_paths,
    } = o;
    serde_json::json!([
        follow_links,
        wildcard,
        include_patterns,
        exclude_patterns,
        required_paths
    ])
    .to_string()
}

fn owners(a: &pb::FileAction) -> Option<&pb::ChownOpt> {
    match &a.action {
        Some(pb::file_action::Action::Copy(c)) => c.owner.as_ref(),
        Some(pb::file_action::Action::Mkdir(c)) => c.owner.as_ref(),
        Some(pb::file_action::Action::Mkfile(c)) => c.owner.as_ref(),
        Some(pb::file_action::Action::Symlink(c)) => c.owner.as_ref(),
        _ => None,
    }
}

#[async_trait]
impl Operation<Ref> for FileOperation {
    async fn cache_key(&self, inputs: &Inputs<'_, Ref>) -> Result<String, OpError> {
        let source_only = self.source_only_inputs();
        // Concurrently: a content key builds its input, and independent inputs (two stages
        // copied from) must build in parallel.
        let keys = futures::future::try_join_all(source_only.iter().enumerate().map(
            |(i, only_source)| async move {
                if *only_source {
                    self.content_key(inputs, i).await
                } else {
                    inputs.key(i).await
                }
            },
        ))
        .await?;
        Ok(super::op_key(&self.op, &keys))
    }

    async fn execute(
        &self,
        inputs: &Inputs<'_, Ref>,
        _ctx: &ExecContext,
    ) -> Result<Vec<Ref>, OpError> {
        let mut refs = Vec::with_capacity(inputs.len());
        for i in 0..inputs.len() {
            refs.push(inputs.result(i).await?);
        }
        let store = self.worker.store.clone();
        let file = self.file.clone();
        let outputs = tokio::task::spawn_blocking(move || run(&store, &file, refs)).await??;
        Ok(outputs)
    }
}

struct Backend<'a> {
    store: &'a Store,
    inputs: Vec<Ref>,
    views: Vec<Option<View>>,
    writables: Vec<Writable>,
}

impl FileOpBackend for Backend<'_> {
    fn input_root(&self, index: usize) -> Result<Option<PathBuf>, FileOpError> {
        Ok(self
            .views
            .get(index)
            .and_then(|v| v.as_ref())
            .map(|v| v.path.clone()))
    }

    fn writable(&mut self, base: Option<usize>) -> Result<PathBuf, FileOpError> {
        let index = base.unwrap_or(usize::MAX);
        let base = match base {
            Some(i) => self.inputs.get(i).cloned().unwrap_or_default(),
            None => Ref::scratch(),
        };
        let w = Writable::new(self.store, &base).map_err(|e| FileOpError::Backend {
            index,
            source: e.into(),
        })?;
        let path = w.path.clone();
        self.writables.push(w);
        Ok(path)
    }
}

fn run(store: &Store, file: &pb::FileOp, inputs: Vec<Ref>) -> Result<Vec<Ref>, OpError> {
    let mut views = Vec::with_capacity(inputs.len());
    for r in &inputs {
        views.push(Some(read_only(store, r)?));
    }
    let mut backend = Backend {
        store,
        inputs: inputs.clone(),
        views,
        writables: Vec::new(),
    };
    let produced = kiln_fileop::run_file_op(file, inputs.len(), &mut backend);
    let Backend {
        writables, views, ..
    } = backend;
    drop(views);
    // Unmount every writable layer, whatever happened, before reporting.
    let mut finished = Vec::new();
    let mut first_err = None;
    for w in writables {
        let path = w.path.clone();
        match w.finish(store) {
            Ok(r) => finished.push((path, r)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let produced = produced?;
    if let Some(e) = first_err {
        return Err(e.into());
    }
    let count = produced
        .iter()
        .map(|(i, _)| *i + 1)
        .max()
        .unwrap_or(1)
        .max(1) as usize;
    let mut outputs = vec![Ref::scratch(); count];
    for (index, path) in produced {
        let r = finished
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, r)| r.clone())
            .ok_or_else(|| format!("file op output {index} is not a writable layer"))?;
        if index >= 0 {
            outputs[index as usize] = r;
        }
    }
    Ok(outputs)
}

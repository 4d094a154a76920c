//! Running a whole FileOp: wiring action inputs and outputs the way
//! BuildKit's `FileOpSolver` does. An action's result that feeds exactly one
//! later action (and is no output) is modified in place by it; a result used
//! more than once is copied for each action that modifies it.

use std::path::PathBuf;

use kiln_proto::pb::{FileAction, FileOp, file_action::Action};

use crate::chown::resolve_owner;
use crate::copy::{clone_tree, copy_action};
use crate::error::{FileOpError, Result};
use crate::{actions, chown};

/// Where the roots of a FileOp come from; implemented by the worker.
pub trait FileOpBackend {
    /// Read-only root of op input `index`, or None for a scratch (empty) input.
    fn input_root(&self, index: usize) -> Result<Option<PathBuf>, FileOpError>;
    /// A fresh writable root initialised with input `index`'s content (None = empty).
    fn writable(&mut self, base: Option<usize>) -> Result<PathBuf, FileOpError>;
}

#[derive(Clone)]
enum Slot {
    Pending,
    Running,
    Done(PathBuf),
    /// Modified in place by a later action; nobody else may read it.
    Consumed,
}

struct Solver<'a> {
    actions: &'a [FileAction],
    n: usize,
    slots: Vec<Slot>,
    shared: Vec<bool>,
    backend: &'a mut dyn FileOpBackend,
    empty: Option<PathBuf>,
}

/// Runs `op` whose vertex has `input_count` inputs. Returns, per op output
/// index (ascending), the writable root holding it.
pub fn run_file_op(
    op: &FileOp,
    input_count: usize,
    backend: &mut dyn FileOpBackend,
) -> Result<Vec<(i64, PathBuf)>, FileOpError> {
    let actions = &op.actions;
    let n = input_count;
    let total = (n + actions.len()) as i64;
    let mut uses = vec![0usize; n + actions.len()];
    let mut outputs: Vec<Option<usize>> = Vec::new();
    for (k, a) in actions.iter().enumerate() {
        for idx in [a.input, a.secondary_input] {
            if idx < -1 || idx >= total {
                return Err(FileOpError::InvalidOp(format!(
                    "invalid input index {idx}, {total} provided"
                )));
            }
            if idx >= 0 {
                uses[idx as usize] += 1;
            }
        }
        if a.output != -1 {
            let o = usize::try_from(a.output).map_err(|_| {
                FileOpError::InvalidOp(format!("invalid output index {}", a.output))
            })?;
            if outputs.len() <= o {
                outputs.resize(o + 1, None);
            }
            if outputs[o].is_some() {
                return Err(FileOpError::InvalidOp(format!("duplicate output {o}")));
            }
            outputs[o] = Some(k);
        }
    }
    if outputs.is_empty() {
        return Err(FileOpError::InvalidOp("no outputs specified".to_string()));
    }
    validate(actions, n, &outputs)?;
    let mut shared: Vec<bool> = uses.iter().map(|u| *u > 1).collect();
    for k in outputs.iter().flatten() {
        shared[n + k] = true;
    }
    let mut s = Solver {
        actions,
        n,
        slots: vec![Slot::Pending; actions.len()],
        shared,
        backend,
        empty: None,
    };
    let mut result = Vec::with_capacity(outputs.len());
    for (o, k) in outputs.iter().enumerate() {
        let k = k.ok_or_else(|| FileOpError::InvalidOp(format!("missing output index {o}")))?;
        let root = s.run(k)?;
        result.push((o as i64, root));
    }
    Ok(result)
}

/// Rejects dependency loops between actions before anything runs.
fn validate(actions: &[FileAction], n: usize, outputs: &[Option<usize>]) -> Result<()> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(k: usize, actions: &[FileAction], n: usize, state: &mut [u8]) -> Result<()> {
        match state[k] {
            1 => {
                return Err(FileOpError::InvalidOp(format!("loop from index {}", n + k)));
            }
            2 => return Ok(()),
            _ => {}
        }
        state[k] = 1;
        let a = &actions[k];
        let users = match &a.action {
            Some(Action::Copy(c)) => c.owner.as_ref(),
            Some(Action::Mkdir(c)) => c.owner.as_ref(),
            Some(Action::Mkfile(c)) => c.owner.as_ref(),
            Some(Action::Symlink(c)) => c.owner.as_ref(),
            _ => None,
        };
        let named = users
            .into_iter()
            .flat_map(|o| [&o.user, &o.group])
            .filter_map(|u| match u.as_ref().and_then(|u| u.user.as_ref()) {
                Some(kiln_proto::pb::user_opt::User::ByName(n)) => Some(n.input),
                _ => None,
            });
        let deps: Vec<i64> = [a.input, a.secondary_input]
            .into_iter()
            .chain(named)
            .collect();
        for d in deps {
            if d >= n as i64 {
                let j = (d as usize) - n;
                if j >= actions.len() {
                    return Err(FileOpError::InvalidOp(format!("invalid user index {d}")));
                }
                visit(j, actions, n, state)?;
            }
        }
        state[k] = 2;
        Ok(())
    }
    let mut state = vec![0u8; actions.len()];
    for k in outputs.iter().flatten() {
        visit(*k, actions, n, &mut state)?;
    }
    Ok(())
}

impl Solver<'_> {
    /// Runs action `k` (once) and returns the root holding its result.
    fn run(&mut self, k: usize) -> Result<PathBuf> {
        match &self.slots[k] {
            Slot::Done(p) => return Ok(p.clone()),
            Slot::Running => {
                return Err(FileOpError::InvalidOp(format!(
                    "loop from index {}",
                    self.n + k
                )));
            }
            Slot::Consumed => {
                return Err(FileOpError::InvalidOp(format!(
                    "result of action {k} was already modified by another action"
                )));
            }
            Slot::Pending => {}
        }
        self.slots[k] = Slot::Running;
        let a = &self.actions[k];
        let kind = match &a.action {
            Some(Action::Copy(_)) => "copy",
            Some(Action::Mkdir(_)) => "mkdir",
            Some(Action::Mkfile(_)) => "mkfile",
            Some(Action::Rm(_)) => "rm",
            Some(Action::Symlink(_)) => "symlink",
            None => "unknown",
        };
        let wrap = |e: FileOpError| FileOpError::Action {
            index: k,
            kind,
            source: Box::new(e),
        };
        let root = self.execute(a).map_err(wrap)?;
        self.slots[k] = Slot::Done(root.clone());
        Ok(root)
    }

    fn execute(&mut self, a: &FileAction) -> Result<PathBuf> {
        // Resolve the secondary input first: it may be an action result
        // that the primary input chain must not have consumed yet.
        let secondary = match &a.action {
            Some(Action::Copy(_)) => Some(match self.readable(a.secondary_input)? {
                Some(p) => p,
                None => self.empty_root()?,
            }),
            _ => None,
        };
        let owner_opt = match &a.action {
            Some(Action::Copy(c)) => c.owner.as_ref(),
            Some(Action::Mkdir(c)) => c.owner.as_ref(),
            Some(Action::Mkfile(c)) => c.owner.as_ref(),
            Some(Action::Symlink(c)) => c.owner.as_ref(),
            _ => None,
        };
        let owner: Option<chown::Owner> = {
            let mut root_of = |idx: i64| self.readable(idx);
            resolve_owner(owner_opt, &mut root_of)?
        };
        let root = self.writable(a.input)?;
        match &a.action {
            Some(Action::Copy(c)) => {
                let src = secondary.unwrap_or_else(|| root.clone());
                copy_action(&src, &root, c, owner)?;
            }
            Some(Action::Mkdir(m)) => actions::mkdir(&root, m, owner)?,
            Some(Action::Mkfile(m)) => actions::mkfile(&root, m, owner)?,
            Some(Action::Rm(r)) => actions::rm(&root, r)?,
            Some(Action::Symlink(l)) => actions::symlink(&root, l, owner)?,
            None => return Err(FileOpError::InvalidOp("action without a type".to_string())),
        }
        Ok(root)
    }

    /// A root to read from (None = scratch).
    fn readable(&mut self, idx: i64) -> Result<Option<PathBuf>> {
        if idx < 0 {
            return Ok(None);
        }
        let idx = idx as usize;
        if idx < self.n {
            return self.backend.input_root(idx);
        }
        self.run(idx - self.n).map(Some)
    }

    /// A root to modify: a fresh one from an op input, or an action's result
    /// (in place when nothing else uses it, otherwise a copy).
    fn writable(&mut self, idx: i64) -> Result<PathBuf> {
        if idx < 0 {
            return self.backend.writable(None);
        }
        let idx = idx as usize;
        if idx < self.n {
            return self.backend.writable(Some(idx));
        }
        let k = idx - self.n;
        let src = self.run(k)?;
        if !self.shared[idx] {
            self.slots[k] = Slot::Consumed;
            return Ok(src);
        }
        let dst = self.backend.writable(None)?;
        clone_tree(&src, &dst)?;
        Ok(dst)
    }

    fn empty_root(&mut self) -> Result<PathBuf> {
        if let Some(p) = &self.empty {
            return Ok(p.clone());
        }
        let p = self.backend.writable(None)?;
        self.empty = Some(p.clone());
        Ok(p)
    }
}

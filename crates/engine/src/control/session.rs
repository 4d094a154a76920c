//! In-process client sessions: what BuildKit's client would serve over its session (filesync).
//!
//! A BuildKit client attaches a session to each build and serves its local directories and
//! export targets over it; the Solve request names that session. Kiln has no session tunnel
//! yet, so a daemonless client that shares the engine's process registers the same facts here
//! and the Control service looks them up by the request's `Session` field. A remote session
//! (filesync over the `Session` RPC's tunnel) replaces this for kilnd; the service keeps
//! resolving by id, so only the lookup changes.

use crate::ExportDest;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// What one client session offers: local directories by name and one destination per exporter.
#[derive(Debug, Clone, Default)]
pub struct LocalSession {
    /// `--local NAME=DIR`: what `local://NAME` sources read.
    pub locals: BTreeMap<String, PathBuf>,
    /// The destination of the request's exporter at the same index (BuildKit's exporter id).
    pub exports: Vec<ExportDest>,
    /// `--secret`: what the session's secrets provider serves.
    pub secrets: kiln_worker::Secrets,
}

/// Sessions by id, shared between an in-process client and the Control service.
#[derive(Debug, Clone, Default)]
pub struct SessionRegistry {
    inner: Arc<Mutex<HashMap<String, Arc<LocalSession>>>>,
}

impl SessionRegistry {
    pub fn new() -> SessionRegistry {
        SessionRegistry::default()
    }

    /// Registers a session under a fresh random id; it is removed when the guard drops.
    pub fn register(&self, session: LocalSession) -> SessionGuard {
        let id = format!("{:025x}", rand::random::<u128>() >> 28);
        self.lock().insert(id.clone(), Arc::new(session));
        SessionGuard {
            id,
            registry: self.clone(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<LocalSession>> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<LocalSession>>> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a session registered; its id goes into the Solve request's `Session` field.
#[derive(Debug)]
pub struct SessionGuard {
    id: String,
    registry: SessionRegistry,
}

impl SessionGuard {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_as_long_as_their_guard() {
        let reg = SessionRegistry::new();
        let mut s = LocalSession::default();
        s.locals.insert("context".into(), PathBuf::from("/ctx"));
        let guard = reg.register(s);
        let id = guard.id().to_string();
        assert_eq!(
            reg.get(&id).unwrap().locals["context"],
            PathBuf::from("/ctx")
        );
        let other = reg.register(LocalSession::default());
        assert_ne!(other.id(), id);
        drop(guard);
        assert!(reg.get(&id).is_none());
        assert!(reg.get(other.id()).is_some());
    }
}

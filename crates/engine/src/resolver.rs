//! Base images for the Dockerfile frontend: resolved through the registry client, from the
//! frontend's blocking thread.

use kiln_dockerfile::convert::{ImageResolver, ResolvedImage};
use kiln_llb::pb;
use kiln_solver::Progress;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct RegistryResolver {
    pub registry: Arc<kiln_registry::Client>,
    pub handle: tokio::runtime::Handle,
    pub progress: Progress,
    /// Answers already given in this build: the converter asks again for an image several
    /// stages use, and a tag must resolve to one digest within one build anyway.
    pub resolved: Mutex<HashMap<(String, String), ResolvedImage>>,
}

impl ImageResolver for RegistryResolver {
    fn resolve(&self, reference: &str, platform: &pb::Platform) -> Result<ResolvedImage, String> {
        let parsed = kiln_registry::Reference::parse(reference).map_err(|e| e.to_string())?;
        let key = (
            parsed.to_string(),
            format!(
                "{}/{}/{}",
                platform.os, platform.architecture, platform.variant
            ),
        );
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        self.progress
            .info(format!("[internal] load metadata for {}", parsed));
        let platform = kiln_registry::Platform {
            os: platform.os.clone(),
            architecture: platform.architecture.clone(),
            variant: Some(platform.variant.clone()).filter(|v| !v.is_empty()),
        };
        let resolved = self
            .handle
            .block_on(self.registry.resolve(&parsed, &platform))
            .map_err(|e| e.to_string())?;
        let config: kiln_oci::Image = serde_json::from_slice(&resolved.config)
            .map_err(|e| format!("image config of {parsed}: {e}"))?;
        let image = ResolvedImage {
            reference: resolved.reference.to_string(),
            digest: resolved.digest.clone(),
            config,
        };
        self.lock().insert(key, image.clone());
        Ok(image)
    }
}

impl RegistryResolver {
    /// A resolver for one build.
    pub fn new(
        registry: Arc<kiln_registry::Client>,
        handle: tokio::runtime::Handle,
        progress: Progress,
    ) -> RegistryResolver {
        RegistryResolver {
            registry,
            handle,
            progress,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), ResolvedImage>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A resolver with its own registry client, for callers outside a build (debug tools).
    pub fn standalone(handle: tokio::runtime::Handle) -> Result<RegistryResolver, String> {
        Ok(RegistryResolver::new(
            Arc::new(kiln_registry::Client::new().map_err(|e| e.to_string())?),
            handle,
            Progress::discard(),
        ))
    }
}

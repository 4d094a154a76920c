//! Base images for the Dockerfile frontend: resolved through the registry client, from the
//! frontend's blocking thread.

use kiln_dockerfile::convert::{ImageResolver, ResolvedImage};
use kiln_llb::pb;
use kiln_solver::Progress;
use std::sync::Arc;

pub struct RegistryResolver {
    pub registry: Arc<kiln_registry::Client>,
    pub handle: tokio::runtime::Handle,
    pub progress: Progress,
}

impl ImageResolver for RegistryResolver {
    fn resolve(&self, reference: &str, platform: &pb::Platform) -> Result<ResolvedImage, String> {
        let parsed = kiln_registry::Reference::parse(reference).map_err(|e| e.to_string())?;
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
        Ok(ResolvedImage {
            reference: resolved.reference.to_string(),
            digest: resolved.digest.clone(),
            config,
        })
    }
}

impl RegistryResolver {
    /// A resolver with its own registry client, for callers outside a build (debug tools).
    pub fn standalone(handle: tokio::runtime::Handle) -> Result<RegistryResolver, String> {
        Ok(RegistryResolver {
            registry: Arc::new(kiln_registry::Client::new().map_err(|e| e.to_string())?),
            handle,
            progress: Progress::discard(),
        })
    }
}

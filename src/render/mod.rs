//! Templates: `engine` is the minijinja environment (built-in templates from `templates/`,
//! overridable per file, strict undefined variables) and knows minijinja only; `gitlab` builds
//! the typed contexts of the GitLab templates from the inventory and renders them.

pub mod engine;
pub mod gitlab;

pub use engine::{RenderError, Renderer};

use crate::inventory::Inventory;

/// The renderer with the inventory's `[gitlab] templates_dir` overrides, for `render`, `up` and
/// `upgrade` alike. The folder was resolved against the inventory's folder once, at load, so it
/// is used as it is here.
pub fn renderer_for(inventory: &Inventory) -> Result<Renderer, RenderError> {
    // `[cluster] templates_dir` wins over `[gitlab] templates_dir` (which predates it).
    let dir = inventory
        .cluster
        .extras
        .templates_dir
        .as_deref()
        .or_else(|| {
            inventory
                .gitlab
                .as_ref()
                .and_then(|gitlab| gitlab.templates_dir.as_deref())
        });
    match dir {
        Some(dir) => Renderer::with_overrides(dir),
        None => Ok(Renderer::builtin()),
    }
}

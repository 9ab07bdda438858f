//! Templates: `engine` is the minijinja environment (built-in templates from `templates/`,
//! overridable per file, strict undefined variables) and knows minijinja only; `gitlab` builds
//! the typed contexts of the GitLab templates from the inventory and renders them.

pub mod engine;
pub mod gitlab;

pub use engine::{RenderError, Renderer};

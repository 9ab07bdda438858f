//! The `[ci]` table: the cluster's settings for the pipeline `edgeops ci` writes (the tag of the
//! site's own runner), checked like every other table so `edgeops check` catches a bad tag.

use toml::Spanned;

use super::diagnostics::Ctx;
use super::error::ErrorKind;
use super::model::CiSettings;
use super::raw::RawCi;

/// GitLab keeps tag names up to this length (`ci_runner_taggings`, 255-character names).
const MAX_TAG_LEN: usize = 255;

pub(super) fn settings(ctx: &mut Ctx, raw: Option<Spanned<RawCi>>) -> CiSettings {
    let Some(raw) = raw else {
        return CiSettings::default();
    };
    let raw = raw.into_inner();
    let runner_tag = raw.runner_tag.and_then(|tag| {
        let span = tag.span();
        let value = tag.into_inner();
        match tag_problem(&value) {
            None => Some(value),
            Some(problem) => {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(span),
                    format!("`[ci]` `runner_tag` {problem}"),
                    "the tag of the GitLab runner inside this site's network, as set on the runner: \
                     `runner_tag = \"site-berlin\"` (leave it out to let any runner of the project take the jobs)",
                );
                None
            }
        }
    });
    CiSettings { runner_tag }
}

/// Why a runner tag cannot be used in the pipeline, if it cannot. A comma would split it into
/// two tags in GitLab's settings; a `$` would be read as a CI/CD variable in `tags:`.
fn tag_problem(tag: &str) -> Option<&'static str> {
    if tag.trim().is_empty() {
        Some("is empty")
    } else if tag.trim() != tag {
        Some("has leading or trailing spaces")
    } else if tag.len() > MAX_TAG_LEN {
        Some("is longer than 255 characters")
    } else if tag.contains([',', '$', '\n', '"', '\'']) {
        Some("contains `,`, `$`, a quote or a line break")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::tag_problem;

    #[test]
    fn tags_runners_can_carry_are_accepted() {
        assert_eq!(tag_problem("site-berlin"), None);
        assert_eq!(tag_problem("arm64 pi"), None);
    }

    #[test]
    fn tags_that_would_break_the_pipeline_are_refused() {
        assert_eq!(tag_problem(""), Some("is empty"));
        assert_eq!(tag_problem(" a"), Some("has leading or trailing spaces"));
        assert!(tag_problem("a,b").is_some());
        assert!(tag_problem("$SITE").is_some());
        assert!(tag_problem(&"x".repeat(256)).is_some());
    }
}

//! Unit tests of the pipeline's inputs and text (the schema and a real run are in
//! tests/ci_pipeline.rs).

use super::*;

fn site(name: &str, tag: Option<&str>, vars: &[&str]) -> Site {
    Site {
        name: name.to_owned(),
        inventory: format!("sites/{name}.toml"),
        runner_tag: tag.map(str::to_owned),
        secret_variables: vars.iter().map(|v| (*v).to_owned()).collect(),
        secret_uses: vars
            .iter()
            .map(|v| ((*v).to_owned(), "join token".to_owned()))
            .collect(),
        secret_files: Vec::new(),
        changes: vec![format!("sites/{name}.toml"), "common.toml".to_owned()],
    }
}

#[test]
fn tagged_and_untagged_clusters_get_their_own_up_jobs_of_at_most_200() {
    let mut sites: Vec<Site> = (0..201)
        .map(|i| site(&format!("s{i}"), Some("t"), &[]))
        .collect();
    sites.push(site("free", None, &[]));
    let jobs = up_jobs(&sites);
    let shape: Vec<(&str, bool, usize)> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.tagged, j.sites.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("up", true, 200),
            ("up-2", true, 1),
            ("up:any-runner", false, 1)
        ]
    );
}

#[test]
fn the_pipeline_names_variables_not_values_and_quotes_what_yaml_would_misread() {
    let sites = vec![
        site("on", Some("site-a"), &["SITE_A_TOKEN"]),
        site("b", None, &[]),
    ];
    let text = render(
        &sites,
        &Options {
            manual: true,
            inventories_arg: "sites".into(),
        },
    )
    .unwrap();
    // `on` would be a boolean in YAML 1.1 unquoted.
    assert!(text.contains("EDGEOPS_CLUSTER: \"on\""), "{text}");
    assert!(text.contains("\"plan:on\":"), "{text}");
    assert!(text.contains("      when: manual"), "{text}");
    assert!(text.contains("EDGEOPS_SECRET_VARIABLES: \"SITE_A_TOKEN\""));
    assert!(text.contains("#   SITE_A_TOKEN"), "{text}");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let up = &doc["up"];
    assert_eq!(up["resource_group"], "edgeops/$EDGEOPS_CLUSTER");
    assert_eq!(up["tags"][0], "$EDGEOPS_RUNNER_TAG");
    assert_eq!(up["parallel"]["matrix"][0]["EDGEOPS_RUNNER_TAG"], "site-a");
    let free = &doc["up:any-runner"];
    assert!(
        free["tags"].is_null(),
        "an untagged cluster takes any runner"
    );
    assert_eq!(free["parallel"]["matrix"][0]["EDGEOPS_CLUSTER"], "b");
    let changes = &doc["plan:b"]["rules"][0]["changes"]["paths"];
    assert_eq!(changes[1], "common.toml");
}

#[test]
fn shell_words_are_quoted_only_when_needed() {
    assert_eq!(shell_word("sites/a.toml".into()), "sites/a.toml");
    assert_eq!(shell_word("my site's.toml".into()), r"'my site'\''s.toml'");
}

#[test]
fn variable_names_follow_gitlab() {
    assert!(is_variable_name("SITE_A_TOKEN"));
    assert!(!is_variable_name("1A"));
    assert!(!is_variable_name("A-B"));
}

//! Projects and their repository files: the default branch, reading a file's checksum, and
//! committing a file only when its content differs, so a re-run makes no empty commits.
//!
//! Fields follow GitLab's Repository files API,
//! <https://docs.gitlab.com/ee/api/repository_files.html>: `GET /projects/:id/repository/files/
//! :file_path?ref=BRANCH` → `content` (base64), `content_sha256`, `last_commit_id`; `POST`
//! (create) and `PUT` (update) with `branch`, `content`, `commit_message`; `DELETE` with `branch`,
//! `commit_message` (204; 400 "A file with this name doesn't exist" when absent); and the Projects API,
//! <https://docs.gitlab.com/ee/api/projects.html>: `GET /projects/:id` → `id`, `default_branch`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::{Call, GitLabClient, ProjectRef, encode_component};
use super::error::{ErrorContext, GitLabError};

/// What edgeops needs to know about a project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: u64,
    #[serde(default)]
    pub path_with_namespace: Option<String>,
    /// `None` for a project with an empty repository.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// One file committed on a branch: where, what, and the commit's message.
#[derive(Debug, Clone, Copy)]
pub struct FileCommit<'a> {
    pub project: &'a ProjectRef,
    pub path: &'a str,
    pub branch: &'a str,
    pub content: &'a str,
    pub message: &'a str,
}

/// A repository file's identity on a branch, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoFile {
    pub file_path: String,
    /// Hex SHA-256 of the file's bytes.
    pub content_sha256: String,
    #[serde(default)]
    pub last_commit_id: Option<String>,
}

/// What `put_file_if_changed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange {
    Created,
    Updated,
    Unchanged,
}

impl FileChange {
    /// Whether a commit was made.
    pub fn changed(self) -> bool {
        self != Self::Unchanged
    }
}

/// Hex SHA-256, the form GitLab's `content_sha256` uses.
pub fn sha256_hex(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

fn project_context(project: &ProjectRef, action: &str, scopes: &str, role: &str) -> ErrorContext {
    ErrorContext {
        subject: format!("project {project}"),
        needs: format!(
            "{action} needs a token with {scopes} whose user has at least the {role} role on \
             project {project} (and may push to the branch if it is protected)"
        ),
    }
}

impl GitLabClient {
    /// The project's id, path and default branch.
    pub async fn get_project(&self, project: &ProjectRef) -> Result<Project, GitLabError> {
        let context = project_context(
            project,
            "reading the project",
            "scope `api` or `read_api`",
            "Guest",
        );
        let path = format!("/projects/{}", project.url_segment());
        self.send_json(Call::new(Method::GET, path, context)).await
    }

    /// The numeric id of `project`.
    pub async fn project_id(&self, project: &ProjectRef) -> Result<u64, GitLabError> {
        match project {
            ProjectRef::Id(id) => Ok(*id),
            ProjectRef::Path(_) => Ok(self.get_project(project).await?.id),
        }
    }

    /// The project's default branch, `None` while its repository is empty.
    pub async fn default_branch(
        &self,
        project: &ProjectRef,
    ) -> Result<Option<String>, GitLabError> {
        Ok(self.get_project(project).await?.default_branch)
    }

    /// The file at `file_path` on `branch`, or `None` if there is none (GitLab's
    /// "404 File Not Found"; a missing project or branch is still an error).
    pub async fn get_file(
        &self,
        project: &ProjectRef,
        file_path: &str,
        branch: &str,
    ) -> Result<Option<RepoFile>, GitLabError> {
        let context = project_context(
            project,
            "reading a repository file",
            "scope `api`, `read_api` or `read_repository`",
            "Reporter",
        );
        let call =
            Call::new(Method::GET, files_path(project, file_path), context).query("ref", branch);
        match self.send_json(call).await {
            Ok(file) => Ok(Some(file)),
            Err(GitLabError::NotFound { answer, .. }) if is_missing_file(&answer) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Create the file, as one commit.
    pub async fn create_file(&self, file: &FileCommit<'_>) -> Result<(), GitLabError> {
        self.write_file(Method::POST, file).await
    }

    /// Make the file on its branch hold its content: create it, update it, or, when GitLab's
    /// checksum already matches, leave it alone without a commit.
    pub async fn put_file_if_changed(
        &self,
        file: &FileCommit<'_>,
    ) -> Result<FileChange, GitLabError> {
        let (method, change) = match self.get_file(file.project, file.path, file.branch).await? {
            None => (Method::POST, FileChange::Created),
            Some(existing)
                if existing
                    .content_sha256
                    .eq_ignore_ascii_case(&sha256_hex(file.content.as_bytes())) =>
            {
                return Ok(FileChange::Unchanged);
            }
            Some(_) => (Method::PUT, FileChange::Updated),
        };
        self.write_file(method, file).await?;
        Ok(change)
    }

    /// Delete `file_path` on `branch` as one commit. `Ok(false)` when there was no such file
    /// (looked up first, so an absent file makes no commit; a file deleted in between is taken as
    /// gone too).
    pub async fn delete_file(
        &self,
        project: &ProjectRef,
        file_path: &str,
        branch: &str,
        commit_message: &str,
    ) -> Result<bool, GitLabError> {
        if self.get_file(project, file_path, branch).await?.is_none() {
            return Ok(false);
        }
        let context = project_context(
            project,
            "deleting a repository file",
            "scope `api`",
            "Developer",
        );
        let call = Call::new(Method::DELETE, files_path(project, file_path), context).body(json!({
            "branch": branch,
            "commit_message": commit_message,
        }));
        match self.send(&call).await {
            Ok(_) => Ok(true),
            Err(GitLabError::Rejected { answer, .. }) if is_absent_on_write(&answer) => Ok(false),
            Err(GitLabError::NotFound { answer, .. }) if is_missing_file(&answer) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn write_file(&self, method: Method, file: &FileCommit<'_>) -> Result<(), GitLabError> {
        let context = project_context(
            file.project,
            "committing a repository file",
            "scope `api`",
            "Developer",
        );
        // Text content needs no `encoding`; GitLab's default is text.
        let call = Call::new(method, files_path(file.project, file.path), context).body(json!({
            "branch": file.branch,
            "content": file.content,
            "commit_message": file.message,
        }));
        self.send(&call).await?;
        Ok(())
    }
}

fn files_path(project: &ProjectRef, file_path: &str) -> String {
    format!(
        "/projects/{}/repository/files/{}",
        project.url_segment(),
        encode_component(file_path.trim_start_matches('/'))
    )
}

/// GitLab says "404 File Not Found" for a missing file and "404 Project Not Found" or
/// "404 Branch Not Found"/"404 Commit Not Found" otherwise; only the first means "create it".
fn is_missing_file(answer: &str) -> bool {
    answer.to_ascii_lowercase().contains("file not found")
}

/// GitLab's 400 for a write to a file that is not there.
fn is_absent_on_write(answer: &str) -> bool {
    answer.to_ascii_lowercase().contains("doesn't exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn file_paths_are_one_segment() {
        assert_eq!(
            files_path(
                &ProjectRef::parse("g/p"),
                ".gitlab/agents/pi-lab/config.yaml"
            ),
            "/projects/g%2Fp/repository/files/.gitlab%2Fagents%2Fpi-lab%2Fconfig.yaml"
        );
    }

    #[test]
    fn only_a_missing_file_means_create() {
        assert!(is_missing_file("404 File Not Found"));
        assert!(!is_missing_file("404 Project Not Found"));
    }
}

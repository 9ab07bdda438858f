//! `edgeops kubeconfig INVENTORY`: fetch the first server's kubeconfig, point it at the API
//! endpoint, and merge it into the user's kubeconfig under a context named after the cluster
//! (0600), or write it alone with `--out`. Touches nothing on hosts; one round trip.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{GlobalArgs, KubeconfigArgs};
use crate::phases::{self, KubeconfigTarget};

use super::run_setup::{default_kubeconfig_path, first_server_only};

pub fn run(global: &GlobalArgs, args: &KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let _ = global;
    let first = first_server_only(&args.inventory)?;
    let inventory = &first.inventory;
    let merge_into = KubeconfigTarget {
        path: match &args.merge_into {
            Some(path) => path.clone(),
            None => default_kubeconfig_path()?,
        },
        context: args
            .context
            .clone()
            .unwrap_or_else(|| inventory.cluster.name.clone()),
    };
    let runtime = super::runtime()?;
    let message = runtime.block_on(async {
        let engine = first.connect().await;
        phases::fetch_kubeconfig(engine, inventory, merge_into, args.out.clone()).await
    })?;
    writeln!(std::io::stdout().lock(), "{message}")?;
    Ok(ExitCode::SUCCESS)
}

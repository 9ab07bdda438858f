//! `edgeops kubeconfig INVENTORY`: fetch the first server's kubeconfig, point it at the API
//! endpoint, and merge it into the user's kubeconfig under a context named after the cluster
//! (0600), or write it alone with `--out`. Touches nothing on hosts; one round trip.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{GlobalArgs, KubeconfigArgs};
use crate::exit::Failure;
use crate::inventory;
use crate::k3s::install::first_server;
use crate::phases::{self, KubeconfigTarget};

pub fn run(global: &GlobalArgs, args: &KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let _ = global;
    let inventory = inventory::load(&args.inventory)?;
    let first = first_server(&inventory).map_err(|e| Failure::Usage(e.to_string()))?;
    let setup = super::exec::ssh_setup(&[first], true)?;
    let target = setup
        .targets
        .into_iter()
        .next()
        .expect("one target per host");
    let merge_into = KubeconfigTarget {
        path: match &args.merge_into {
            Some(path) => path.clone(),
            None => super::run_setup::default_kubeconfig_path()?,
        },
        context: args
            .context
            .clone()
            .unwrap_or_else(|| inventory.cluster.name.clone()),
    };
    let runtime = super::runtime()?;
    let message = runtime.block_on(phases::fetch_kubeconfig(
        &inventory,
        target,
        setup.ctx,
        merge_into,
        args.out.clone(),
    ))?;
    writeln!(std::io::stdout().lock(), "{message}")?;
    Ok(ExitCode::SUCCESS)
}

//! `edgeops ci INVENTORIES...`: write the `.gitlab-ci.yml` of a repository of site inventories
//! (see `crate::ci` for what is in it).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::CiArgs;
use crate::exit::Failure;

pub fn run(args: &CiArgs) -> anyhow::Result<ExitCode> {
    let files =
        crate::sites::expand(&args.inventories).map_err(|e| Failure::Usage(e.to_string()))?;
    let inventories = crate::ci::load_all(&files).map_err(|mut errors| {
        // Every inventory's problems are shown; the exit code comes from the last one.
        let last = errors
            .pop()
            .expect("load_all fails with at least one error");
        for e in errors {
            eprintln!("error: {e:#}");
        }
        last
    })?;
    let sites =
        crate::ci::sites(&args.repo, &inventories).map_err(|e| Failure::Usage(e.to_string()))?;
    let options = crate::ci::Options {
        manual: args.manual,
        inventories_arg: args.inventories.join(" "),
    };
    let text = crate::ci::render(&sites, &options)?;
    if args.out.as_os_str() == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = if args.out.is_relative() {
        args.repo.join(&args.out)
    } else {
        args.out.clone()
    };
    let tmp = out.with_extension("yml.edgeops-tmp");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    let tagged = sites.iter().filter(|s| s.runner_tag.is_some()).count();
    eprintln!(
        "wrote {}: {} cluster(s) ({tagged} pinned to a site runner), check + {} plan job(s) + {} up job(s){}",
        out.display(),
        sites.len(),
        sites.len(),
        crate::ci::up_jobs(&sites).len(),
        if args.manual {
            ", up started by hand"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

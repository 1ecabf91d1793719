//! `shipgate-example`: what an integrator's build does for the demo's sample app (`examples/orders`):
//! pushes its image to the source account's registry and writes the release zips
//! (`shipgate_example::build`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Push the sample image and write the sample release zips")]
struct Args {
    /// The sample app's folder (release.json, templates/, checks.json).
    #[arg(long, default_value = "examples/orders")]
    app: PathBuf,
    /// The release version to build.
    #[arg(long, default_value = "1.4.0")]
    version: String,
    /// Where to write the zips.
    #[arg(long, default_value = ".local/demo")]
    out: PathBuf,
    /// Instead of building: create this stack of the app (e.g. `notifier`) at `--version` with
    /// CloudFormation in each `--in` environment, as it ran before shipgate deployed the app.
    #[arg(long)]
    install_previous: Option<String>,
    /// `ENV=ROLE_ARN`: an environment for `--install-previous` and the role to act in it with.
    #[arg(long = "in", value_name = "ENV=ROLE_ARN")]
    environments: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sdk = shipgate::aws::load_sdk_config().await;
    if let Some(stack) = &args.install_previous {
        let environments = args
            .environments
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map(|(env, role)| (env.to_owned(), role.to_owned()))
                    .with_context(|| format!("--in {e}: expected ENV=ROLE_ARN"))
            })
            .collect::<Result<Vec<_>>>()?;
        let created = shipgate_example::install_previous(
            &sdk,
            &args.app,
            stack,
            &args.version,
            &environments,
        )
        .await?;
        for stack in created {
            println!("installed {stack}");
        }
        return Ok(());
    }
    let env = shipgate::config::Env::from_process();
    let built = shipgate_example::build(
        &sdk,
        &env.map("SHIPGATE_REGISTRY_ENDPOINTS")?,
        &args.app,
        &args.version,
        &args.out,
    )
    .await?;
    for reference in &built.pushed {
        println!("pushed {reference} (tag {})", args.version);
    }
    println!("wrote {}", built.good.display());
    println!("wrote {}", built.broken.display());
    Ok(())
}

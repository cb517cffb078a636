use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plexus_cli::convert;

/// The Plexus service mesh's command-line tool.
#[derive(Parser)]
#[command(name = "plexus", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Converts Istio (networking, security, telemetry), Linkerd ServiceProfile,
    /// SMI TrafficSplit and EnvoyFilter local rate-limit manifests into Plexus
    /// ones, printed on standard output. What cannot be translated is reported
    /// on standard error, and the exit code is then 1.
    Convert {
        /// Files of (multi-document) YAML; standard input when none, or `-`.
        files: Vec<PathBuf>,
    },
    /// Adds the Plexus proxy to the workloads in YAML files (Pods,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs),
    /// as the webhook would, and prints every document; other documents pass
    /// through. Pipe it to `kubectl apply -f -`.
    Inject {
        /// Files of (multi-document) YAML; standard input when none, or `-`.
        files: Vec<PathBuf>,
        /// The proxy image (the Mesh's default when the webhook injects).
        #[arg(long, default_value_t = plexus_crds::mesh::ProxyDefaults::default().image)]
        proxy_image: String,
        /// Inject the proxy as a native sidecar (Kubernetes 1.29 or later).
        #[arg(long)]
        native_sidecars: bool,
    },
    /// Prints the CRDs of the Plexus API, or writes them into a directory.
    Crds {
        /// Writes one file per CRD here (the Helm chart's `crds/`), instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Convert { files } => run_convert(files),
        Command::Inject {
            files,
            proxy_image,
            native_sidecars,
        } => run_inject(files, proxy_image, native_sidecars),
        Command::Crds { output_dir } => match run_crds(output_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    match output_dir {
        Some(dir) => {
            for path in plexus_cli::crds::write_all(&dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => print!("{}", plexus_cli::crds::render_all()?),
    }
    Ok(())
}

fn run_convert(files: Vec<PathBuf>) -> ExitCode {
    let sources = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files
    };
    let (mut converted, mut failed) = (0, 0);
    let mut stdout = std::io::stdout().lock();
    for source in &sources {
        let name = if source.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            source.display().to_string()
        };
        let input = match read(source) {
            Ok(input) => input,
            Err(error) => {
                eprintln!("error: {name}: reading: {error}");
                failed += 1;
                continue;
            }
        };
        let conversion = match convert::convert(&input) {
            Ok(conversion) => conversion,
            Err(error) => {
                eprintln!("error: {name}: {error}");
                failed += 1;
                continue;
            }
        };
        for document in &conversion.converted {
            for note in &document.notes {
                eprintln!("note: {name}: {}: {note}", document.origin);
            }
        }
        for problem in &conversion.untranslatable {
            eprintln!(
                "error: {name}: {}: not translated: {}",
                problem.origin, problem.reason
            );
        }
        match convert::to_yaml(&conversion.converted) {
            Ok(yaml) => {
                if let Err(error) = stdout.write_all(yaml.as_bytes()) {
                    eprintln!("error: writing the output: {error}");
                    return ExitCode::FAILURE;
                }
            }
            Err(error) => {
                eprintln!("error: {name}: rendering YAML: {error}");
                failed += conversion.converted.len();
                continue;
            }
        }
        converted += conversion.converted.len();
        failed += conversion.untranslatable.len();
    }
    if failed > 0 {
        eprintln!("{converted} converted, {failed} not translated");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_inject(files: Vec<PathBuf>, proxy_image: String, native_sidecars: bool) -> ExitCode {
    let sources = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files
    };
    let proxy = plexus_crds::mesh::ProxyDefaults {
        image: proxy_image,
        ..Default::default()
    };
    let config = plexus_webhook::inject::InjectConfig::new(
        proxy,
        native_sidecars,
        plexus_crds::keys::DEFAULT_MESH_NAMESPACE,
    );
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    for source in &sources {
        let name = source.display();
        let rendered = read(source)
            .map_err(anyhow::Error::from)
            .and_then(|input| Ok(plexus_cli::inject::inject_documents(&input, &config)?))
            .and_then(|(documents, reports)| {
                Ok((plexus_cli::inject::to_yaml(&documents)?, reports))
            });
        match rendered {
            Ok((yaml, reports)) => {
                for report in reports {
                    match report.skipped {
                        None => eprintln!("{name}: {} injected", report.origin),
                        Some(why) => eprintln!("{name}: {} skipped ({why})", report.origin),
                    }
                }
                if let Err(error) = stdout.write_all(yaml.as_bytes()) {
                    eprintln!("error: writing the output: {error}");
                    return ExitCode::FAILURE;
                }
            }
            Err(error) => {
                eprintln!("error: {name}: {error:#}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn read(source: &PathBuf) -> std::io::Result<String> {
    if source.as_os_str() == "-" {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        Ok(input)
    } else {
        std::fs::read_to_string(source)
    }
}

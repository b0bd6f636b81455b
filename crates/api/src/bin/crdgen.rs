//! `crdgen`: prints the CustomResourceDefinitions derived from the Rust types.
//! `crdgen --write crds/` writes one file per CRD; `make crds` does that.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            print!("{}", datajob_api::crds::all_yaml());
            ExitCode::SUCCESS
        }
        [flag] if flag == "--api-doc" => {
            print!("{}", datajob_api::crds::api_markdown());
            ExitCode::SUCCESS
        }
        [flag, dir] if flag == "--write" => {
            match datajob_api::crds::write(std::path::Path::new(dir)) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("crdgen: writing {dir}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        [flag, chart] if flag == "--chart-readme" => {
            let dir = std::path::Path::new(chart);
            let read = |f: &str| std::fs::read_to_string(dir.join(f));
            match (read("Chart.yaml"), read("values.yaml")) {
                (Ok(c), Ok(v)) => match datajob_api::chart_readme::render(&c, &v) {
                    Ok(md) => {
                        print!("{md}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("crdgen: {chart}: {e}");
                        ExitCode::FAILURE
                    }
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("crdgen: reading {chart}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: crdgen [--write DIR | --api-doc | --chart-readme CHART_DIR]");
            ExitCode::from(2)
        }
    }
}

//! Writes `crds/` from the resource types: `vireo-gen-crds DIR` (scripts/gen-crds.sh).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: vireo-gen-crds DIR   (writes one CRD per file; scripts/gen-crds.sh)");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("vireo-gen-crds: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (file, yaml) in vireo_k8s_api::crds::render() {
        let path = dir.join(&file);
        if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("vireo-gen-crds: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

//! Writes every target's seed corpus: `write_seeds <dir>` creates `<dir>/<target>/seed-<n>`.
//! The seeds are built by the broker's own encoders (`sluice_broker::fuzzing::seeds`), so
//! they follow its formats without binary files in the repository.

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: write_seeds <dir>");
        std::process::exit(2);
    };
    let scratch = sluice_fuzz::scratch();
    for name in sluice_broker::fuzzing::TARGETS {
        let dir = out.join(name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{}: {e}", dir.display());
            std::process::exit(1);
        }
        let seeds = sluice_broker::fuzzing::seeds(name, scratch);
        for (i, s) in seeds.iter().enumerate() {
            if let Err(e) = std::fs::write(dir.join(format!("seed-{i}")), s) {
                eprintln!("{}: {e}", dir.display());
                std::process::exit(1);
            }
        }
        println!("{name}: {} seeds", seeds.len());
    }
    let _ = std::fs::remove_dir_all(scratch);
}

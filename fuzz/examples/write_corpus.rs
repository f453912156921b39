//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example write_corpus`
//! (from the repository root; files go to fuzz/corpus/<target>/seed_<name>).

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in vserv_core::fuzzing::corpus_seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed_{name}")), bytes)?;
    }
    Ok(())
}

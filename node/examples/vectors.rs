//! Writes the test vectors of docs/PROTOCOL.md:
//! `cargo run -p tinyweb-node --example vectors -- docs/vectors`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "docs/vectors".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for (name, value) in tinyweb_node::vectors::all() {
        let mut text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(dir.join(name), text)?;
        eprintln!("wrote {}", dir.join(name).display());
    }
    Ok(())
}

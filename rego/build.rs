//! Embeds `policies/*.rego` (not the `_test` files) and `lib/*.rego`.

use std::fmt::Write as _;
use std::path::Path;

fn rego_files(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    for (konst, dir) in [("POLICY_FILES", "policies"), ("LIBRARY_FILES", "lib")] {
        println!("cargo:rerun-if-changed={dir}");
        writeln!(out, "pub(crate) const {konst}: &[RegoFile] = &[")?;
        for name in rego_files(&root.join(dir))? {
            println!("cargo:rerun-if-changed={dir}/{name}");
            writeln!(
                out,
                "    RegoFile {{ path: \"{dir}/{name}\", source: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{dir}/{name}\")) }},"
            )?;
        }
        writeln!(out, "];")?;
    }
    let dest = Path::new(&std::env::var("OUT_DIR")?).join("embedded.rs");
    std::fs::write(dest, out)?;
    Ok(())
}

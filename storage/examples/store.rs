//! A small driver over rbox-storage for checking interop by hand (podman, skopeo), without
//! the rbox binary: `cargo run -p rbox-storage --example store -- ROOT COMMAND ...`.
//!
//! Commands: `load FILE`, `save IMAGE FILE docker-archive|oci-archive`, `import FILE [NAME]`,
//! `apply LAYER`, `images`, `rmi IMAGE`, `ls IMAGE` (top-level entries of each layer dir).

use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

use rbox_storage::{Format, IdMap, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(125)
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [root, cmd, rest @ ..] = args else {
        return Err("usage: store ROOT load|save|import|images|rmi|ls ...".into());
    };
    let ids = if nix::unistd::geteuid().is_root() {
        IdMap::full()
    } else {
        IdMap {
            uid_count: 1,
            gid_count: 1,
        }
    };
    let s = Store::open(Path::new(root), ids)?;
    match (cmd.as_str(), rest) {
        ("load", [file]) => {
            for img in s.load_archive(Path::new(file))? {
                println!("Loaded {} {:?}", img.id, img.names);
            }
        }
        ("save", [image, file, fmt]) => {
            let fmt = match fmt.as_str() {
                "docker-archive" => Format::DockerArchive,
                "oci-archive" => Format::OciArchive,
                f => return Err(format!("unknown format {f}").into()),
            };
            let img = s.lookup_image(image)?;
            s.save_archive(
                &[img],
                File::create(file)?,
                fmt,
                rbox_storage::SaveLayers::AsStored,
            )?;
        }
        ("import", [file, name @ ..]) => {
            let img = s.import_rootfs(File::open(file)?, name.first().map(String::as_str), &[])?;
            println!("{}", img.id);
        }
        ("apply", [file]) => {
            let info = s.apply_layer(std::io::BufReader::new(File::open(file)?), None)?;
            println!("{} {} warnings", info.diff_id, info.warnings.len());
        }
        ("images", []) => {
            for img in s.images()? {
                println!(
                    "{} {:?} {} {}",
                    &img.id.hex()[..12],
                    img.names,
                    img.size,
                    img.manifest_media_type
                );
            }
        }
        ("rmi", [image]) => {
            let img = s.lookup_image(image)?;
            s.remove_image(&img.id, false)?;
        }
        ("ls", [image]) => {
            let img = s.lookup_image(image)?;
            for l in &img.layers {
                let mut names: Vec<_> = std::fs::read_dir(s.layer_path(&l.diff_id))?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                println!("{}: {}", l.diff_id, names.join(" "));
            }
        }
        _ => return Err(format!("bad command {cmd} {rest:?}").into()),
    }
    Ok(())
}

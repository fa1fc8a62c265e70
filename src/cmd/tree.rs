//! `rbox image tree IMAGE`: an image's layers, bottom-most first, as Podman 4.3 draws them:
//! the image's id, names and size, then one line per layer, the top one naming the images it
//! tops. rbox identifies a layer by its diff id (Podman by its storage layer id).
//! `--whatrequires` draws instead the image's top layer and, beside it, the layers of the
//! images built on it (those whose layers start with all of this image's), each child
//! nested under its parent, oldest image first, as Podman 4.3 draws them.

use std::process::ExitCode;

use anyhow::Result;
use rbox_storage::{Digest, ImageRecord};

use super::common::{image_not_known_bare, read_store, short_id};
use super::system::df_size;
use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct TreeArgs {
    /// The image (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
    /// Show the images built on this one (their layers, nested under the layer they add to)
    #[arg(long)]
    pub whatrequires: bool,
}

/// A layer in the `--whatrequires` tree: the names of the images it is the top of (`None`
/// when it tops none) and the layers that images add on top of it.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    diff_id: Digest,
    tops: Option<Vec<String>>,
    children: Vec<Node>,
}

fn diff_ids(rec: &ImageRecord) -> Vec<&Digest> {
    rec.layers.iter().map(|l| &l.diff_id).collect()
}

/// The names of the images whose layers are exactly `chain`, `None` when there are none.
fn tops_of(chain: &[&Digest], images: &[ImageRecord]) -> Option<Vec<String>> {
    let mut tops = images.iter().filter(|r| diff_ids(r) == chain).peekable();
    tops.peek()?;
    Some(tops.flat_map(|r| r.names.iter().cloned()).collect())
}

/// The layers images (oldest first) add right after `chain`, each with its own descendants.
fn children_of(chain: &[&Digest], images: &[ImageRecord]) -> Vec<Node> {
    let mut next: Vec<&Digest> = Vec::new();
    for r in images {
        let ids = diff_ids(r);
        if ids.len() > chain.len() && ids[..chain.len()] == *chain {
            let d = ids[chain.len()];
            if !next.contains(&d) {
                next.push(d);
            }
        }
    }
    next.into_iter()
        .map(|d| {
            let mut c = chain.to_vec();
            c.push(d);
            Node {
                diff_id: d.clone(),
                tops: tops_of(&c, images),
                children: children_of(&c, images),
            }
        })
        .collect()
}

/// Podman's top level for `--whatrequires`: the image's top layer, then the layers built on
/// it (not nested under it). `images` oldest first.
fn whatrequires(rec: &ImageRecord, images: &[ImageRecord]) -> Vec<Node> {
    let chain = diff_ids(rec);
    let Some(top) = chain.last() else {
        return Vec::new();
    };
    let mut nodes = vec![Node {
        diff_id: (*top).clone(),
        tops: tops_of(&chain, images),
        children: Vec::new(),
    }];
    nodes.extend(children_of(&chain, images));
    nodes
}

/// Draws `nodes` with the box characters of Podman's trees, `prefix` before each line.
fn draw(nodes: &[Node], prefix: &str, size: &dyn Fn(&Digest) -> u64, out: &mut String) {
    for (i, n) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let branch = if last { "└──" } else { "├──" };
        let top = match &n.tops {
            Some(names) => format!(" Top Layer of: [{}]", names.join(" ")),
            None => String::new(),
        };
        out.push_str(&format!(
            "{prefix}{branch} ID: {} Size: {}{top}\n",
            short_id(n.diff_id.hex()),
            df_size(size(&n.diff_id))
        ));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        draw(&n.children, &deeper, size, out);
    }
}

pub fn run(g: &Context, a: TreeArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    let rec = store
        .lookup_image(&a.image)
        .map_err(|e| image_not_known_bare(e.into()))?;
    let names = format!("[{}]", rec.names.join(" "));
    let mut out = format!(
        "Image ID: {}\nTags:     {names}\nSize:     {}\nImage Layers\n",
        short_id(rec.id.hex()),
        df_size(rec.size)
    );
    if a.whatrequires {
        let mut images = store.images()?;
        images.reverse();
        let size = |d: &Digest| store.layer_size(d).unwrap_or(0);
        draw(&whatrequires(&rec, &images), "", &size, &mut out);
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let last = rec.layers.len().saturating_sub(1);
    for (i, l) in rec.layers.iter().enumerate() {
        let size = store.layer_size(&l.diff_id).unwrap_or(0);
        let (branch, top) = if i == last {
            ("└──", format!(" Top Layer of: {names}"))
        } else {
            ("├──", String::new())
        };
        out.push_str(&format!(
            "{branch} ID: {} Size: {}{top}\n",
            short_id(l.diff_id.hex()),
            df_size(size)
        ));
    }
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbox_storage::LayerRef;

    fn img(name: &str, layers: &[&str]) -> ImageRecord {
        let d = Digest::of(name.as_bytes());
        ImageRecord {
            id: d.clone(),
            names: vec![format!("localhost/{name}:latest")],
            digest: d,
            manifest_media_type: String::new(),
            layers: layers
                .iter()
                .map(|l| LayerRef {
                    diff_id: Digest::of(l.as_bytes()),
                    blob: Digest::of(l.as_bytes()),
                    media_type: String::new(),
                    size: 0,
                })
                .collect(),
            created: None,
            size: 0,
            read_only_store: None,
        }
    }

    #[test]
    fn whatrequires_nests_children_under_the_layer_they_add_to() {
        let images = [
            img("base", &["a", "b"]),
            img("child", &["a", "b", "c"]),
            img("grand", &["a", "b", "c", "d"]),
            img("sib", &["a", "b", "e", "f"]),
            img("other", &["x"]),
        ];
        let mut out = String::new();
        draw(&whatrequires(&images[0], &images), "", &|_| 0, &mut out);
        let id = |l: &str| short_id(Digest::of(l.as_bytes()).hex()).to_string();
        let expected = format!(
            "├── ID: {} Size: 0B Top Layer of: [localhost/base:latest]\n\
             ├── ID: {} Size: 0B Top Layer of: [localhost/child:latest]\n\
             │   └── ID: {} Size: 0B Top Layer of: [localhost/grand:latest]\n\
             └── ID: {} Size: 0B\n    \
                 └── ID: {} Size: 0B Top Layer of: [localhost/sib:latest]\n",
            id("b"),
            id("c"),
            id("d"),
            id("e"),
            id("f"),
        );
        assert_eq!(out, expected);
        // A leaf: its top layer alone.
        let mut out = String::new();
        draw(&whatrequires(&images[2], &images), "", &|_| 0, &mut out);
        assert_eq!(
            out,
            format!(
                "└── ID: {} Size: 0B Top Layer of: [localhost/grand:latest]\n",
                id("d")
            )
        );
    }
}

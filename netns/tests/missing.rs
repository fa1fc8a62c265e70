//! A missing helper names what to install. Its own test binary, because it empties `$PATH`
//! for the whole process.

use rbox_netns::{installed, start, Error};

#[test]
fn missing_helper_says_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    // Edition 2021: set_var is safe; this binary has no other test and no other thread.
    std::env::set_var("PATH", empty.path());
    let found = installed();
    for (name, package) in [("slirp4netns", "slirp4netns"), ("pasta", "passt")] {
        if found.get(name).is_some() {
            // Found in Podman's helper directories despite the empty PATH: nothing to check.
            eprintln!("{name} found outside $PATH at {:?}", found.get(name));
            continue;
        }
        let err = start(1, &name.parse().unwrap(), &[], empty.path()).unwrap_err();
        assert!(matches!(err, Error::HelperMissing { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{name} is not installed: install the `{package}` package or put `{name}` on $PATH \
                 (or run with --network=none or --network=host)"
            )
        );
    }
}

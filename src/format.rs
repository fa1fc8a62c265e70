//! PLACEHOLDER (being written): `--format` rendering (json and Go-template placeholders).

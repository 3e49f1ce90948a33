//! What a packager or a company's licence review looks for first: the licence (`MIT OR
//! Apache-2.0`, the Rust convention) in `Cargo.toml`, both texts, the same terms in the Debian
//! package's machine-readable copyright file, a maintainer who can be reached, and one path for
//! the systemd unit in every document. The installed package is checked by
//! `deb_installs_runs_as_its_own_user_and_purges`.

use std::path::Path;

use super::{read, repo};

/// `[package]` and `[package.metadata.deb]` of Cargo.toml.
fn manifest() -> (toml::Table, toml::Table) {
    let cargo: toml::Table = read(&repo("Cargo.toml")).parse().expect("Cargo.toml");
    let package = cargo["package"].as_table().unwrap().clone();
    let deb = package["metadata"]["deb"].as_table().unwrap().clone();
    (package, deb)
}

/// The paragraph text of a licence, whitespace and line breaks aside.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_licence_is_mit_or_apache_2_0_everywhere() {
    let (package, deb) = manifest();
    assert_eq!(
        package.get("license").and_then(|l| l.as_str()),
        Some("MIT OR Apache-2.0")
    );

    // The Apache text is the standard one: Debian ships it too.
    let apache = read(&repo("LICENSE-APACHE"));
    assert!(
        apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"),
        "LICENSE-APACHE is not the Apache License 2.0"
    );
    let debian_copy = Path::new("/usr/share/common-licenses/Apache-2.0");
    if debian_copy.exists() {
        assert_eq!(
            words(&apache),
            words(&read(debian_copy)),
            "LICENSE-APACHE differs from {}",
            debian_copy.display()
        );
    }
    let mit = read(&repo("LICENSE-MIT"));
    assert!(
        mit.lines()
            .any(|l| l.trim() == "Copyright (c) The pgvigil developers"),
        "LICENSE-MIT should name the copyright holders"
    );
    let mit_terms = &mit[mit
        .find("Permission is hereby granted")
        .expect("the MIT grant")..];
    assert!(mit_terms.contains("THE SOFTWARE IS PROVIDED \"AS IS\""));

    // The Debian copyright file, machine-readable (DEP-5), is what cargo-deb installs.
    assert_eq!(
        deb.get("license-file").and_then(|f| f.as_str()),
        Some("packaging/deb/copyright")
    );
    let copyright = read(&repo("packaging/deb/copyright"));
    let paragraphs: Vec<&str> = copyright.split("\n\n").collect();
    assert!(
        paragraphs[0].starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ),
        "{copyright}"
    );
    let field = |paragraph: &str, name: &str| -> Option<String> {
        paragraph
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
    };
    let files = paragraphs
        .iter()
        .find(|p| field(p, "Files").as_deref() == Some("*"))
        .expect("a Files: * paragraph");
    assert_eq!(
        field(files, "License").as_deref(),
        Some("MIT or Apache-2.0")
    );
    assert_eq!(
        field(files, "Copyright").as_deref(),
        Some("The pgvigil developers")
    );
    let licence = |name: &str| -> String {
        let paragraph = paragraphs
            .iter()
            .find(|p| p.starts_with(&format!("License: {name}\n")))
            .unwrap_or_else(|| panic!("no stand-alone License: {name} paragraph"));
        // Continuation lines: one leading space, " ." for an empty line.
        paragraph
            .lines()
            .skip(1)
            .map(|l| if l == " ." { "" } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        words(&licence("MIT")),
        words(mit_terms),
        "the MIT terms differ between LICENSE-MIT and packaging/deb/copyright"
    );
    assert!(licence("Apache-2.0").contains("/usr/share/common-licenses/Apache-2.0"));

    // The README says so.
    let readme = read(&repo("README.md"));
    assert!(
        readme.contains("](LICENSE-APACHE)")
            && readme.contains("](LICENSE-MIT)")
            && readme.contains("MIT OR Apache-2.0"),
        "README.md should state the licence and link both texts"
    );
}

#[test]
fn the_package_has_a_maintainer_who_can_be_reached() {
    let (_, deb) = manifest();
    let maintainer = deb["maintainer"].as_str().expect("maintainer");
    // Debian policy 5.6.2: a name and an RFC 822 address, here at a real domain.
    let (name, rest) = maintainer.split_once(" <").expect("Name <address>");
    let address = rest.strip_suffix('>').expect("Name <address>");
    let (local, domain) = address.split_once('@').expect("an email address");
    assert!(!name.trim().is_empty() && !local.is_empty(), "{maintainer}");
    assert!(
        domain.contains('.')
            && !["localhost", "example.com", "example.org", "invalid"]
                .iter()
                .any(|d| domain == *d || domain.ends_with(&format!(".{d}"))),
        "{maintainer}: not an address anyone can write to"
    );
    let copyright = read(&repo("packaging/deb/copyright"));
    assert!(
        copyright.contains(&format!("Upstream-Contact: {maintainer}\n")),
        "packaging/deb/copyright should name the same contact"
    );
}

#[test]
fn every_document_names_the_unit_where_the_package_installs_it() {
    // cargo-deb installs units under /usr/lib/systemd/system (merged /usr); the by-hand
    // installation's /etc/systemd/system is the administrator's directory, also right.
    const INSTALLED: &str = "/usr/lib/systemd/system/pgvigil.service";
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = vec![repo("README.md")];
    for dir in ["docs", "packaging", "alerts", "dashboards", "scripts"] {
        walk(&repo(dir), &mut files);
    }
    let mut wrong = Vec::new();
    let mut named = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (at, _) in text.match_indices("systemd/system/pgvigil.service") {
            let start = text[..at]
                .rfind(|c: char| c.is_whitespace() || c == '`')
                .map_or(0, |i| i + 1);
            let path = &text[start..at + "systemd/system/pgvigil.service".len()];
            match path {
                INSTALLED => named += 1,
                "/etc/systemd/system/pgvigil.service" => {}
                other => wrong.push(format!("{}: {other}", file.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the package installs {INSTALLED}, not: {wrong:#?}"
    );
    assert!(
        named >= 2,
        "the unit file and the packaging README should name {INSTALLED}"
    );
}

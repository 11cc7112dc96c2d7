//! docs/vectors/ is what the code produces: a wire change that forgets the spec fails here.

use std::path::Path;

#[test]
fn docs_vectors_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors");
    let regenerate =
        "regenerate with `cargo run -p tinyweb-node --example vectors -- docs/vectors` \
                      and update docs/PROTOCOL.md to match";
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut expected: Vec<(&str, serde_json::Value)> = tinyweb_node::vectors::all();
    expected.sort_by_key(|(name, _)| *name);
    let names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(files, names, "the vector files; {regenerate}");
    for (name, value) in expected {
        let text = std::fs::read_to_string(dir.join(name)).expect("readable");
        let on_disk: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            on_disk == value,
            "docs/vectors/{name} differs from the code; {regenerate}"
        );
    }
}

#[test]
fn the_vector_chain_verifies_and_a_flipped_byte_names_its_height() {
    let (_, chain) = tinyweb_node::vectors::all()
        .into_iter()
        .find(|(name, _)| *name == "chain.json")
        .expect("chain vector");
    let export: tinyweb_node::export::ChainExport =
        serde_json::from_value(chain["export"].clone()).expect("an export");
    let replay = tinyweb_node::export::replay(&export, None);
    assert_eq!(replay.error, None);
    assert_eq!(replay.verified.tip, 3);
    assert_eq!(replay.verified.transactions, 3);

    let mut bad = export.clone();
    let sig = bad.blocks[1]["commit"]["signatures"][2]["signature"]
        .as_str()
        .expect("signature")
        .to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { '1' } else { '0' },
        &sig[1..]
    );
    bad.blocks[1]["commit"]["signatures"][2]["signature"] = flipped.into();
    let replay = tinyweb_node::export::replay(&bad, None);
    let error = replay.error.expect("refused");
    assert_eq!(error.height(), Some(2), "{error}");
    assert_eq!(replay.verified.tip, 1);

    // A genesis no node would start from (ids out of list order) is refused up front.
    let mut odd = export.clone();
    odd.genesis.validators.swap(0, 1);
    let replay = tinyweb_node::export::replay(&odd, None);
    assert!(
        matches!(
            replay.error,
            Some(tinyweb_node::export::VerifyError::BadGenesis(_))
        ),
        "{:?}",
        replay.error
    );
}

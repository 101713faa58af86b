//! The image store is held by one opener at a time: a second open of the same root fails with a message
//! saying why, and succeeds once the first is dropped.

use skiff_runtime::image::ImageStore;

#[test]
fn a_store_in_use_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let first = ImageStore::open(&root).unwrap();
    let err = ImageStore::open(&root).unwrap_err().to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(first);
    ImageStore::open(&root).unwrap();
}

//! The disk tree's server-wide budget for transfer buffers: transfers opened once it is
//! spent run unbuffered, with the same results, and every reservation comes back.

use vserv_core::transfer::FileHasher;
use vserv_service::accounts::UserName;
use vserv_service::files::budget::{DOWNLOAD_BUFFERS, UPLOAD_BUFFERS};
use vserv_service::files::{DiskTree, FileTree, FilesConfig, UserPath};

fn alice() -> UserName {
    UserName::parse("alice").expect("name")
}

fn path(name: &str) -> UserPath {
    UserPath::from_names(vec![name.to_owned()]).expect("path")
}

fn sha(data: &[u8]) -> [u8; 32] {
    let mut h = FileHasher::new();
    h.update(data);
    h.finish()
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect()
}

#[test]
fn uploads_beyond_the_budget_run_unbuffered_and_store_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(dir.path(), FilesConfig::default())
        .expect("tree")
        .with_buffer_budget(2 * UPLOAD_BUFFERS);
    let names = ["a", "b", "c", "d"];
    let datas: Vec<Vec<u8>> = (0..names.len())
        .map(|i| content(i as u8 + 3, 600_000 + i * 1000))
        .collect();
    let mut open = Vec::new();
    for (name, data) in names.iter().zip(&datas) {
        let opened = tree
            .open_partial(&alice(), &path(name), data.len() as u64, false)
            .expect("open");
        open.push(opened.file);
    }
    // Two got buffers; the other two run without.
    assert_eq!(tree.buffers_in_use(), 2 * UPLOAD_BUFFERS);
    // Interleaved chunks, as uploads on one connection send them.
    for at in (0..610_000).step_by(16_348) {
        for (file, data) in open.iter_mut().zip(&datas) {
            if at < data.len() {
                let end = (at + 16_348).min(data.len());
                file.write_at(at as u64, &data[at..end]).expect("write");
            }
        }
    }
    for ((name, data), mut file) in names.iter().zip(&datas).zip(open) {
        let sha = sha(data);
        tree.commit_partial(&alice(), &path(name), file.as_mut(), &sha)
            .expect("commit");
    }
    assert_eq!(tree.buffers_in_use(), 0, "every reservation came back");
    for (name, data) in names.iter().zip(&datas) {
        let stored = tree.read_file(&alice(), &path(name)).expect("read");
        assert!(stored == *data, "{name} differs");
    }
}

#[test]
fn downloads_beyond_the_budget_read_unbuffered_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(dir.path(), FilesConfig::default())
        .expect("tree")
        .with_buffer_budget(DOWNLOAD_BUFFERS);
    let data = content(7, 900_001);
    let mut upload = tree
        .open_partial(&alice(), &path("f"), data.len() as u64, false)
        .expect("open")
        .file;
    upload.write_at(0, &data).expect("write");
    let sha = sha(&data);
    tree.commit_partial(&alice(), &path("f"), upload.as_mut(), &sha)
        .expect("commit");
    drop(upload);
    let first = tree.open_read(&alice(), &path("f")).expect("open read");
    let second = tree.open_read(&alice(), &path("f")).expect("open read");
    assert_eq!(
        tree.buffers_in_use(),
        DOWNLOAD_BUFFERS,
        "only the first reads ahead"
    );
    for reader in [&first.reader, &second.reader] {
        let mut got = vec![0u8; data.len()];
        for (i, piece) in got.chunks_mut(16_372).enumerate() {
            reader
                .read_exact_at((i * 16_372) as u64, piece)
                .expect("read");
        }
        assert!(got == data);
    }
    drop((first, second));
    assert_eq!(tree.buffers_in_use(), 0);
}

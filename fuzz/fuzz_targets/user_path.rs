#![no_main]
//! The file commands' path resolution on arbitrary input (a working directory line, then a
//! path): never panics, and whatever it accepts stays inside a home, names by names that
//! pass the name rules, no deeper than the limit.

use vserv_core::names::UserName;
use vserv_core::paths::{MAX_PATH_DEPTH, Target, UserPath, check_name, resolve};

fn check(t: &Target) {
    assert!(t.path.names().len() <= MAX_PATH_DEPTH, "too deep: {t:?}");
    for name in t.path.names() {
        assert!(check_name(name).is_ok(), "accepted a bad name {name:?}");
        assert!(
            name != ".." && name != "." && !name.contains(['/', '\\', '\0']),
            "escaping name {name:?}"
        );
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(me) = UserName::parse("alice") else {
        return;
    };
    let home = Target {
        owner: me.clone(),
        path: UserPath::root(),
    };
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(cwd) = resolve(&me, &home, first) else {
        return;
    };
    check(&cwd);
    if let Ok(t) = resolve(&me, &cwd, second) {
        check(&t);
    }
});

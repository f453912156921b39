//! Property tests of the user name and client path parsers.
//!
//! Both never panic on arbitrary text. A user name's normal form parses to itself, whatever
//! the case it was given in. Whatever path `resolve` accepts stays within the limits, names
//! only by names `check_name` accepts, and resolves back to itself from the form shown to
//! the client.

use proptest::prelude::*;
use vserv_core::names::{MAX_NAME_LEN, UserName};
use vserv_core::paths::{MAX_PATH_BYTES, MAX_PATH_DEPTH, Target, UserPath, check_name, resolve};

/// Text biased towards the characters the parsers care about, plus arbitrary text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._~/ -]{0,60}",
        "[a-c./~:\\\\\u{0}\u{202e} ]{0,20}",
        "\\PC{0,60}",
        any::<String>(),
    ]
}

fn user(raw: &str) -> UserName {
    UserName::parse(raw).unwrap_or_else(|e| unreachable!("{raw}: {e}"))
}

proptest! {
    #[test]
    fn user_names_round_trip_through_their_normal_form(raw in text()) {
        if let Ok(name) = UserName::parse(&raw) {
            let normal = name.as_str();
            prop_assert!(!normal.is_empty() && normal.len() <= MAX_NAME_LEN);
            prop_assert_eq!(normal, raw.to_ascii_lowercase());
            prop_assert_eq!(UserName::parse(normal), Ok(name.clone()));
            prop_assert_eq!(UserName::parse(&normal.to_ascii_uppercase()), Ok(name.clone()));
            prop_assert_eq!(name.to_string(), normal);
        }
    }

    #[test]
    fn accepted_names_cannot_escape(name in text()) {
        if check_name(&name).is_ok() {
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.contains(['/', '\\', '\0', ':']));
        }
    }

    #[test]
    fn resolved_paths_stay_in_bounds_and_round_trip(cwd in text(), input in text()) {
        let me = user("alice");
        let home = Target { owner: me.clone(), path: UserPath::root() };
        let Ok(cwd) = resolve(&me, &home, &cwd) else { return Ok(()) };
        let Ok(target) = resolve(&me, &cwd, &input) else { return Ok(()) };
        let names = target.path.names();
        prop_assert!(names.len() <= MAX_PATH_DEPTH);
        prop_assert!(target.path.to_string().len() <= MAX_PATH_BYTES);
        for name in names {
            prop_assert_eq!(check_name(name), Ok(()));
            prop_assert!(!name.contains('/'));
        }
        prop_assert_eq!(UserPath::from_names(names.to_vec()), Ok(target.path.clone()));
        // The client's view resolves back to the same target from anywhere in `me`'s home.
        let shown = target.display_for(&me);
        prop_assert_eq!(resolve(&me, &home, &shown), Ok(target.clone()));
        if cwd.owner == me {
            prop_assert_eq!(resolve(&me, &cwd, &shown), Ok(target.clone()));
        }
        // The path alone resolves to it from inside the same home.
        prop_assert_eq!(resolve(&me, &target, &target.path.to_string()), Ok(target.clone()));
    }
}

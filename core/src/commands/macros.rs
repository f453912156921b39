//! `command_table!`: the macro that turns the one table of commands (in `mod.rs`) into the
//! [`Command`](super::Command) enum, the [`CommandKind`](super::CommandKind) enum, the
//! documentation table [`COMMANDS`](super::COMMANDS) and the name lookups, so that each
//! command's variant, wire name, access, arity and help are written once.
//!
//! Each row is: the variant's doc comment and definition (unit, struct or one-field tuple),
//! then `=> "name", Access, Domain, MIN..=MAX, "usage", "summary";`. The generated
//! `Command::kind` matches every variant, so a variant without a row, or a row without a
//! variant, does not compile.

macro_rules! command_table {
    ($(
        $(#[$doc:meta])*
        $kind:ident $({ $($fields:tt)* })? $(( $($tuple:tt)* ))?
            => $name:literal, $access:ident, $domain:ident, $min:literal ..= $max:literal,
            $usage:literal, $summary:literal;
    )*) => {
        /// A parsed request: one variant per row of the command table.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Command {
            $(
                $(#[$doc])*
                $kind $({ $($fields)* })? $(( $($tuple)* ))?,
            )*
        }

        /// What a command is, without its arguments: the typed name servers dispatch on
        /// (one variant per [`Command`] variant, same order as [`COMMANDS`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum CommandKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $kind,
            )*
        }

        /// Every command of this protocol version, in help order (the order of
        /// [`CommandKind`]).
        pub const COMMANDS: &[CommandInfo] = &[
            $(
                CommandInfo {
                    kind: CommandKind::$kind,
                    name: $name,
                    usage: $usage,
                    summary: $summary,
                    access: Access::$access,
                    min_args: $min,
                    max_args: $max,
                },
            )*
        ];

        impl CommandKind {
            /// Every kind, in table order.
            pub const ALL: &[CommandKind] = &[$(CommandKind::$kind),*];

            /// The kind whose wire name is `name`; `None` for an unknown name.
            pub fn from_name(name: &str) -> Option<CommandKind> {
                match name {
                    $($name => Some(CommandKind::$kind),)*
                    _ => None,
                }
            }

            /// The wire name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(CommandKind::$kind => $name,)*
                }
            }

            /// The domain module that parses and encodes this command.
            const fn domain(self) -> Domain {
                match self {
                    $(CommandKind::$kind => Domain::$domain,)*
                }
            }
        }

        impl Command {
            /// What this command is.
            pub const fn kind(&self) -> CommandKind {
                match self {
                    $(Command::$kind { .. } => CommandKind::$kind,)*
                }
            }
        }
    };
}

/// Calls the function `$f` of the domain module that `$domain` names.
macro_rules! in_domain {
    ($domain:expr, $f:ident ( $($arg:expr),* )) => {
        match $domain {
            Domain::Session => session::$f($($arg),*),
            Domain::Accounts => accounts::$f($($arg),*),
            Domain::Ledger => ledger::$f($($arg),*),
            Domain::Files => files::$f($($arg),*),
            Domain::Transfers => transfers::$f($($arg),*),
            Domain::Delivery => delivery::$f($($arg),*),
            Domain::Replication => replication::$f($($arg),*),
            Domain::Messages => messages::$f($($arg),*),
            Domain::Tables => tables::$f($($arg),*),
            Domain::Transit => transit::$f($($arg),*),
        }
    };
}

//! Argument and reply codecs of the transfer commands (spec/files.md §2).
//!
//! Numbers are fixed-width big-endian binary (`ID` u32, `OFFSET`/`SIZE` u64, `LEN` u32) and
//! hashes are 32 raw bytes, so the largest chunk is a constant and parsing a chunk costs a
//! few loads. Servers parse arguments with `parse` (failures are typed [`ErrorReply`]s, never
//! connection errors); clients decode replies with `from_fields` (failures are
//! [`Error::Malformed`], as for every other reply).

use super::{MAX_FILE_SIZE, MAX_FPUT_DATA, MAX_FREAD_LEN, MAX_PATH};
use crate::Error;
use crate::wire::{ErrorCode, ErrorReply};

const FOPEN_USAGE: &str = "fopen PATH SIZE [resume]";
const FPUT_USAGE: &str = "fput ID OFFSET DATA";
const FDONE_USAGE: &str = "fdone ID SHA256";
const FGET_USAGE: &str = "fget PATH";
const FREAD_USAGE: &str = "fread ID OFFSET LEN";
const FCLOSE_USAGE: &str = "fclose ID";

fn usage(usage: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadArguments, format!("usage: {usage}"))
}

fn fixed<const N: usize>(arg: &[u8], what: &str, usage: &str) -> Result<[u8; N], ErrorReply> {
    <[u8; N]>::try_from(arg).map_err(|_| {
        ErrorReply::new(
            ErrorCode::BadArguments,
            format!("{what} must be {N} bytes; usage: {usage}"),
        )
    })
}

fn id_arg(arg: &[u8], usage: &str) -> Result<u32, ErrorReply> {
    fixed::<4>(arg, "ID", usage).map(u32::from_be_bytes)
}

fn u64_arg(arg: &[u8], what: &str, usage: &str) -> Result<u64, ErrorReply> {
    fixed::<8>(arg, what, usage).map(u64::from_be_bytes)
}

fn path_arg(arg: &[u8]) -> Result<String, ErrorReply> {
    if arg.is_empty() {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "a path cannot be empty",
        ));
    }
    if arg.len() > MAX_PATH {
        return Err(ErrorReply::new(
            ErrorCode::TooLarge,
            format!("a path is at most {MAX_PATH} bytes"),
        ));
    }
    std::str::from_utf8(arg)
        .map(str::to_owned)
        .map_err(|_| ErrorReply::new(ErrorCode::BadArguments, "a path must be UTF-8"))
}

fn field<const N: usize>(f: &[u8], what: &'static str) -> Result<[u8; N], Error> {
    <[u8; N]>::try_from(f).map_err(|_| Error::Malformed(what))
}

/// `fopen PATH SIZE [resume]`: start (or resume) an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FopenArgs {
    /// Destination path (UTF-8, 1 to [`MAX_PATH`] bytes; resolved by the server).
    pub path: String,
    /// Exact size of the file to upload, at most [`MAX_FILE_SIZE`] when parsed.
    pub size: u64,
    /// Continue a partial upload of the same path and size if the server kept one.
    pub resume: bool,
}

impl FopenArgs {
    /// Parses the arguments of an `fopen` request.
    pub fn parse(args: &[Vec<u8>]) -> Result<Self, ErrorReply> {
        let (path, size, resume) = match args {
            [p, s] => (p, s, false),
            [p, s, r] if r.as_slice() == b"resume" => (p, s, true),
            _ => return Err(usage(FOPEN_USAGE)),
        };
        let path = path_arg(path)?;
        let size = u64_arg(size, "SIZE", FOPEN_USAGE)?;
        if size > MAX_FILE_SIZE {
            return Err(ErrorReply::new(
                ErrorCode::BadArguments,
                format!("SIZE must be at most {MAX_FILE_SIZE} bytes"),
            ));
        }
        Ok(FopenArgs { path, size, resume })
    }

    /// The request arguments.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![
            self.path.as_bytes().to_vec(),
            self.size.to_be_bytes().to_vec(),
        ];
        if self.resume {
            args.push(b"resume".to_vec());
        }
        args
    }
}

/// Reply to `fopen`: the transfer id, the offset to continue from and the SHA-256 of the
/// server's bytes before that offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FopenReply {
    /// Transfer id for `fput` / `fdone` / `fclose` on this connection.
    pub id: u32,
    /// First offset the server needs (0 unless a partial upload is resumed).
    pub offset: u64,
    /// SHA-256 of the server's partial bytes `0..offset` (of the empty string at 0).
    pub prefix_sha256: [u8; 32],
}

impl FopenReply {
    /// Reply fields: `ID` (4), `OFFSET` (8), `PREFIX_SHA256` (32).
    pub fn to_fields(&self) -> Vec<Vec<u8>> {
        vec![
            self.id.to_be_bytes().to_vec(),
            self.offset.to_be_bytes().to_vec(),
            self.prefix_sha256.to_vec(),
        ]
    }

    /// Decodes the reply fields.
    pub fn from_fields(fields: &[Vec<u8>]) -> Result<Self, Error> {
        const W: &str = "fopen reply";
        match fields {
            [id, off, sha] => Ok(FopenReply {
                id: u32::from_be_bytes(field(id, W)?),
                offset: u64::from_be_bytes(field(off, W)?),
                prefix_sha256: field(sha, W)?,
            }),
            _ => Err(Error::Malformed(W)),
        }
    }
}

/// `fput ID OFFSET DATA`: one upload chunk (borrows its data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FputArgs<'a> {
    /// Transfer id from `fopen`.
    pub id: u32,
    /// Offset of the first data byte in the file.
    pub offset: u64,
    /// 1 to [`MAX_FPUT_DATA`] bytes.
    pub data: &'a [u8],
}

impl<'a> FputArgs<'a> {
    /// Parses the arguments of an `fput` request.
    pub fn parse(args: &'a [Vec<u8>]) -> Result<Self, ErrorReply> {
        let [id, offset, data] = args else {
            return Err(usage(FPUT_USAGE));
        };
        // The fixed-width fields first: with them right, a DATA over MAX_FPUT_DATA cannot
        // arrive (the request would not fit in one record), so error 4 below is unreachable
        // from the wire (files.md §2).
        let id = id_arg(id, FPUT_USAGE)?;
        let offset = u64_arg(offset, "OFFSET", FPUT_USAGE)?;
        if data.len() > MAX_FPUT_DATA {
            return Err(ErrorReply::new(
                ErrorCode::TooLarge,
                format!("DATA is at most {MAX_FPUT_DATA} bytes"),
            ));
        }
        if data.is_empty() {
            return Err(ErrorReply::new(
                ErrorCode::BadArguments,
                "DATA cannot be empty",
            ));
        }
        Ok(FputArgs { id, offset, data })
    }

    /// The request arguments (copies the data once).
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        vec![
            self.id.to_be_bytes().to_vec(),
            self.offset.to_be_bytes().to_vec(),
            self.data.to_vec(),
        ]
    }
}

/// The fields of an acknowledgement (`fput`, `fclose`): none.
pub fn ack_fields() -> Vec<Vec<u8>> {
    Vec::new()
}

/// Checks that an `fput` / `fclose` reply is an acknowledgement (zero fields).
pub fn parse_ack(fields: &[Vec<u8>]) -> Result<(), Error> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Error::Malformed("transfer ack"))
    }
}

/// `fdone ID SHA256`: finish an upload; the server checks the whole file's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdoneArgs {
    /// Transfer id from `fopen`.
    pub id: u32,
    /// SHA-256 of the whole file, as the client computed it.
    pub sha256: [u8; 32],
}

impl FdoneArgs {
    /// Parses the arguments of an `fdone` request.
    pub fn parse(args: &[Vec<u8>]) -> Result<Self, ErrorReply> {
        let [id, sha] = args else {
            return Err(usage(FDONE_USAGE));
        };
        Ok(FdoneArgs {
            id: id_arg(id, FDONE_USAGE)?,
            sha256: fixed::<32>(sha, "SHA256", FDONE_USAGE)?,
        })
    }

    /// The request arguments.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        vec![self.id.to_be_bytes().to_vec(), self.sha256.to_vec()]
    }
}

/// Reply to `fdone` (and the verified result of an upload): the file is visible under its
/// name with this size and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdoneReply {
    /// Size of the file.
    pub size: u64,
    /// Its SHA-256, checked by the server.
    pub sha256: [u8; 32],
}

impl FdoneReply {
    /// Reply fields: `SIZE` (8), `SHA256` (32).
    pub fn to_fields(&self) -> Vec<Vec<u8>> {
        vec![self.size.to_be_bytes().to_vec(), self.sha256.to_vec()]
    }

    /// Decodes the reply fields.
    pub fn from_fields(fields: &[Vec<u8>]) -> Result<Self, Error> {
        const W: &str = "fdone reply";
        match fields {
            [size, sha] => Ok(FdoneReply {
                size: u64::from_be_bytes(field(size, W)?),
                sha256: field(sha, W)?,
            }),
            _ => Err(Error::Malformed(W)),
        }
    }
}

/// `fget PATH`: open a file for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FgetArgs {
    /// The file (UTF-8, 1 to [`MAX_PATH`] bytes; resolved by the server).
    pub path: String,
}

impl FgetArgs {
    /// Parses the arguments of an `fget` request.
    pub fn parse(args: &[Vec<u8>]) -> Result<Self, ErrorReply> {
        let [path] = args else {
            return Err(usage(FGET_USAGE));
        };
        Ok(FgetArgs {
            path: path_arg(path)?,
        })
    }

    /// The request arguments.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        vec![self.path.as_bytes().to_vec()]
    }
}

/// Reply to `fget`: the transfer id and the file's size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FgetReply {
    /// Transfer id for `fread` / `fclose` on this connection.
    pub id: u32,
    /// Size of the file (of the version being read).
    pub size: u64,
    /// SHA-256 of the whole file, recorded when its upload was verified.
    pub sha256: [u8; 32],
}

impl FgetReply {
    /// Reply fields: `ID` (4), `SIZE` (8), `SHA256` (32).
    pub fn to_fields(&self) -> Vec<Vec<u8>> {
        vec![
            self.id.to_be_bytes().to_vec(),
            self.size.to_be_bytes().to_vec(),
            self.sha256.to_vec(),
        ]
    }

    /// Decodes the reply fields.
    pub fn from_fields(fields: &[Vec<u8>]) -> Result<Self, Error> {
        const W: &str = "fget reply";
        match fields {
            [id, size, sha] => Ok(FgetReply {
                id: u32::from_be_bytes(field(id, W)?),
                size: u64::from_be_bytes(field(size, W)?),
                sha256: field(sha, W)?,
            }),
            _ => Err(Error::Malformed(W)),
        }
    }
}

/// `fread ID OFFSET LEN`: read one chunk of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreadArgs {
    /// Transfer id from `fget`.
    pub id: u32,
    /// Offset of the first byte wanted.
    pub offset: u64,
    /// Bytes wanted: 1 to [`MAX_FREAD_LEN`].
    pub len: u32,
}

impl FreadArgs {
    /// Parses the arguments of an `fread` request.
    pub fn parse(args: &[Vec<u8>]) -> Result<Self, ErrorReply> {
        let [id, offset, len] = args else {
            return Err(usage(FREAD_USAGE));
        };
        let len = fixed::<4>(len, "LEN", FREAD_USAGE).map(u32::from_be_bytes)?;
        if len == 0 {
            return Err(ErrorReply::new(
                ErrorCode::BadArguments,
                format!("LEN must be 1 to {MAX_FREAD_LEN}"),
            ));
        }
        if len as usize > MAX_FREAD_LEN {
            return Err(ErrorReply::new(
                ErrorCode::TooLarge,
                format!("LEN must be 1 to {MAX_FREAD_LEN}"),
            ));
        }
        Ok(FreadArgs {
            id: id_arg(id, FREAD_USAGE)?,
            offset: u64_arg(offset, "OFFSET", FREAD_USAGE)?,
            len,
        })
    }

    /// The request arguments.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        vec![
            self.id.to_be_bytes().to_vec(),
            self.offset.to_be_bytes().to_vec(),
            self.len.to_be_bytes().to_vec(),
        ]
    }
}

/// Reply to `fread`: exactly the bytes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreadReply {
    /// The data, 1 to [`MAX_FREAD_LEN`] bytes.
    pub data: Vec<u8>,
}

impl FreadReply {
    /// Reply fields: `DATA` (consumes the reply, no copy).
    pub fn into_fields(self) -> Vec<Vec<u8>> {
        vec![self.data]
    }

    /// Decodes the reply fields (takes them, no copy).
    pub fn from_fields(fields: Vec<Vec<u8>>) -> Result<Self, Error> {
        const W: &str = "fread reply";
        let mut it = fields.into_iter();
        match (it.next(), it.next()) {
            (Some(data), None) if !data.is_empty() && data.len() <= MAX_FREAD_LEN => {
                Ok(FreadReply { data })
            }
            _ => Err(Error::Malformed(W)),
        }
    }
}

/// `fclose ID`: forget a transfer. For an upload the partial file is kept for a later
/// `fopen ... resume`; for a download it ends the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcloseArgs {
    /// Transfer id.
    pub id: u32,
}

impl FcloseArgs {
    /// Parses the arguments of an `fclose` request.
    pub fn parse(args: &[Vec<u8>]) -> Result<Self, ErrorReply> {
        let [id] = args else {
            return Err(usage(FCLOSE_USAGE));
        };
        Ok(FcloseArgs {
            id: id_arg(id, FCLOSE_USAGE)?,
        })
    }

    /// The request arguments.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        vec![self.id.to_be_bytes().to_vec()]
    }
}

//! Command-layer messages carried in application records.
//!
//! Request:  `0x01 | id:u32 | name:u8-prefixed ASCII | argc:u16 | argc × (len:u32 | bytes)`
//! Response: `0x02 | id:u32 | 0x00 | fieldc:u16 | fieldc × (len:u32 | bytes)`   (ok)
//!           `0x02 | id:u32 | 0x01 | code:u16 | message:u16-prefixed UTF-8`       (error)

use super::codec::{Reader, put_bytes16, put_bytes32};
use crate::Error;

const REQUEST: u8 = 0x01;
const RESPONSE: u8 = 0x02;
/// Longest command name.
pub const MAX_NAME: usize = 32;

/// A request as it travels: an id chosen by the client, a command name and raw arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Client-chosen id, echoed in the response.
    pub id: u32,
    /// Command name: 1-32 bytes of `[a-z0-9_-]`.
    pub name: String,
    /// Arguments, opaque at this layer.
    pub args: Vec<Vec<u8>>,
}

/// Numeric error codes of error responses. [`ErrorCode::from_u16`] never makes an
/// [`ErrorCode::Other`] of a known number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No command of that name.
    UnknownCommand,
    /// Wrong number or shape of arguments.
    BadArguments,
    /// Not allowed for this session.
    Forbidden,
    /// The request or its reply is too large.
    TooLarge,
    /// The server failed internally; the request had no effect.
    Internal,
    /// The named user, key or object does not exist.
    NotFound,
    /// The name or key is already taken.
    Conflict,
    /// Login refused (unknown user or wrong credentials; deliberately not which), or a wrong
    /// current password.
    LoginFailed,
    /// Integrity failure: the data does not hash to the expected SHA-256 (an upload's
    /// `fdone`, spec/files.md §7); the upload was discarded and must start again from 0.
    Integrity,
    /// The login's credential was right, but the account has two-factor login: the session
    /// is not logged in until `otp CODE` gives a current code.
    CodeNeeded,
    /// A code this implementation does not know.
    Other(u16),
}

impl ErrorCode {
    /// Wire number.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnknownCommand => 1,
            ErrorCode::BadArguments => 2,
            ErrorCode::Forbidden => 3,
            ErrorCode::TooLarge => 4,
            ErrorCode::Internal => 5,
            ErrorCode::NotFound => 6,
            ErrorCode::Conflict => 7,
            ErrorCode::LoginFailed => 8,
            ErrorCode::Integrity => 9,
            ErrorCode::CodeNeeded => 10,
            ErrorCode::Other(n) => n,
        }
    }

    /// Code for a wire number (unknown numbers kept as [`ErrorCode::Other`]).
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::UnknownCommand,
            2 => ErrorCode::BadArguments,
            3 => ErrorCode::Forbidden,
            4 => ErrorCode::TooLarge,
            5 => ErrorCode::Internal,
            6 => ErrorCode::NotFound,
            7 => ErrorCode::Conflict,
            8 => ErrorCode::LoginFailed,
            9 => ErrorCode::Integrity,
            10 => ErrorCode::CodeNeeded,
            n => ErrorCode::Other(n),
        }
    }
}

/// A typed failure answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {})", code.to_u16())]
pub struct ErrorReply {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message (at most 1024 bytes).
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

/// A response: the request's id and either result fields or a typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Id of the request answered.
    pub id: u32,
    /// Fields on success, typed error otherwise.
    pub result: Result<Vec<Vec<u8>>, ErrorReply>,
}

/// Longest error message carried in a response.
pub const MAX_ERROR_MESSAGE: usize = 1024;

fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn put_fields<F: AsRef<[u8]>>(out: &mut Vec<u8>, fields: &[F]) {
    out.extend_from_slice(&(fields.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for f in fields.iter().take(u16::MAX as usize) {
        put_bytes32(out, f.as_ref());
    }
}

/// Appends the encoding of a request given by parts, with borrowed arguments: byte for byte
/// what [`Request::encode`] appends for the same id, name and arguments, without building
/// (and copying the arguments into) a [`Request`] first.
pub fn encode_request<A: AsRef<[u8]>>(id: u32, name: &str, args: &[A], out: &mut Vec<u8>) {
    out.push(REQUEST);
    out.extend_from_slice(&id.to_be_bytes());
    let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    put_fields(out, args);
}

/// Size of what [`encode_request`] appends (that of [`Request::encoded_len`]).
pub fn request_len<A: AsRef<[u8]>>(name: &str, args: &[A]) -> usize {
    1 + 4
        + 1
        + name.len().min(MAX_NAME)
        + 2
        + args.iter().map(|a| 4 + a.as_ref().len()).sum::<usize>()
}

fn get_fields(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let n = r.u16()? as usize;
    // Each field costs at least 4 bytes on the wire, so `n` is bounded by the input.
    let mut fields = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        fields.push(r.bytes32()?.to_vec());
    }
    Ok(fields)
}

impl Request {
    /// Whether `name` is a legal command name.
    pub fn is_valid_name(name: &str) -> bool {
        valid_name(name.as_bytes())
    }

    /// Appends the encoding. An invalid name is encoded as-is and rejected by the decoder;
    /// the connection checks names before sending.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_request(self.id, &self.name, &self.args, out);
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        request_len(&self.name, &self.args)
    }

    /// Decodes an application payload holding a request.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "request");
        if r.u8()? != REQUEST {
            return Err(Error::Malformed("request"));
        }
        let id = r.u32()?;
        let name = r.bytes8()?;
        if !valid_name(name) {
            return Err(Error::Malformed("request name"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let args = get_fields(&mut r)?;
        r.finish()?;
        Ok(Request { id, name, args })
    }
}

impl Response {
    /// Appends the encoding (an error message is cut to [`MAX_ERROR_MESSAGE`] bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RESPONSE);
        out.extend_from_slice(&self.id.to_be_bytes());
        match &self.result {
            Ok(fields) => {
                out.push(0);
                put_fields(out, fields);
            }
            Err(e) => {
                out.push(1);
                out.extend_from_slice(&e.code.to_u16().to_be_bytes());
                let mut end = e.message.len().min(MAX_ERROR_MESSAGE);
                while !e.message.is_char_boundary(end) {
                    end -= 1;
                }
                put_bytes16(out, &e.message.as_bytes()[..end]);
            }
        }
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        match &self.result {
            Ok(fields) => 1 + 4 + 1 + 2 + fields.iter().map(|f| 4 + f.len()).sum::<usize>(),
            Err(_) => {
                self.encode(&mut v);
                v.len()
            }
        }
    }

    /// Decodes an application payload holding a response.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "response");
        if r.u8()? != RESPONSE {
            return Err(Error::Malformed("response"));
        }
        let id = r.u32()?;
        let result = match r.u8()? {
            0 => Ok(get_fields(&mut r)?),
            1 => {
                let code = ErrorCode::from_u16(r.u16()?);
                let message = r.str16()?;
                if message.len() > MAX_ERROR_MESSAGE {
                    return Err(Error::Malformed("response"));
                }
                Err(ErrorReply {
                    code,
                    message: message.to_owned(),
                })
            }
            _ => return Err(Error::Malformed("response status")),
        };
        r.finish()?;
        Ok(Response { id, result })
    }
}

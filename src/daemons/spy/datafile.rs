//! Spy data files: events saved with their numbers, as the buffer's records hold them, so that
//! the spy library can read a file instead of a buffer (KLOE's extended library could), `spycat
//! --save FILE` can write one and `ybosspydaemon` can replay one into a local buffer.
//!
//! The format (docs/operations.md, "Data files"): a 16-byte header, the bytes `KSpyData`, the
//! version (u32 little-endian, 1) and 4 zero bytes; then events back to back, each its number
//! (u64 LE), its length `L` (u32 LE) and its `L` bytes. The file ends after the last event.
//! Everything read is checked: a file that is not one, a truncated event or an absurd length
//! is an error naming the file and the offset, never a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// First bytes of a spy data file.
pub const FILE_MAGIC: [u8; 8] = *b"KSpyData";
/// Format version written here.
pub const FILE_VERSION: u32 = 1;
/// Size of the file header.
pub const FILE_HEADER_SIZE: u64 = 16;
/// Size of the header of each event.
pub const FILE_EVENT_HEADER: usize = 12;
/// Largest event a reader accepts (a larger length means a damaged file).
pub const MAX_FILE_EVENT: usize = 256 << 20;

/// Reading or writing a data file failed.
#[derive(Debug, Error)]
pub enum DataFileError {
    /// A system call failed.
    #[error("data file {}: cannot {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The file is not a spy data file.
    #[error("{} is not a spy data file ({why}; spycat --save FILE writes one)", path.display())]
    NotADataFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A version this code does not read.
    #[error("data file {}: format version {version}, this program reads version {FILE_VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// The file ends inside an event.
    #[error("data file {} is truncated: it ends inside the event at byte {offset} (the events before it are good)", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the cut event starts.
        offset: u64,
    },
    /// An event length no writer produces.
    #[error("data file {} is damaged: the event at byte {offset} claims {len} bytes (at most {MAX_FILE_EVENT})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Where the event starts.
        offset: u64,
        /// The length it claims.
        len: u64,
    },
}

/// Writes a data file.
#[derive(Debug)]
pub struct DataFileWriter {
    w: BufWriter<File>,
    path: PathBuf,
    events: u64,
}

/// The error maker for a failed system call on `path` while doing `what`.
fn io_error<'a>(path: &'a Path, what: &'static str) -> impl Fn(io::Error) -> DataFileError + 'a {
    move |source| DataFileError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

impl DataFileWriter {
    /// Creates (or truncates) the file at `path` and writes the header.
    ///
    /// # Errors
    /// [`DataFileError::Io`].
    pub fn create(path: &Path) -> Result<DataFileWriter, DataFileError> {
        let io = |what| io_error(path, what);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(io("create it"))?;
        let mut w = BufWriter::with_capacity(1 << 16, f);
        let mut h = [0u8; FILE_HEADER_SIZE as usize];
        h[..8].copy_from_slice(&FILE_MAGIC);
        h[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
        w.write_all(&h).map_err(io("write its header"))?;
        Ok(DataFileWriter {
            w,
            path: path.to_owned(),
            events: 0,
        })
    }

    /// Appends one event.
    ///
    /// # Errors
    /// [`DataFileError::Io`].
    pub fn write_event(&mut self, evnr: u64, data: &[u8]) -> Result<(), DataFileError> {
        let mut h = [0u8; FILE_EVENT_HEADER];
        h[..8].copy_from_slice(&evnr.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.w
            .write_all(&h)
            .and_then(|()| self.w.write_all(data))
            .map_err(|source| DataFileError::Io {
                path: self.path.clone(),
                what: "write an event",
                source,
            })?;
        self.events += 1;
        Ok(())
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Flushes what is buffered to the file.
    ///
    /// # Errors
    /// [`DataFileError::Io`].
    pub fn flush(&mut self) -> Result<(), DataFileError> {
        self.w.flush().map_err(|source| DataFileError::Io {
            path: self.path.clone(),
            what: "write",
            source,
        })
    }
}

/// Reads a data file, event after event.
#[derive(Debug)]
pub struct DataFileReader {
    r: BufReader<File>,
    path: PathBuf,
    buf: Vec<u8>,
    offset: u64,
}

impl DataFileReader {
    /// Opens the file at `path` (without blocking: a FIFO there is refused) and checks its
    /// header.
    ///
    /// # Errors
    /// [`DataFileError`] saying what is wrong.
    pub fn open(path: &Path) -> Result<DataFileReader, DataFileError> {
        let io = |what| io_error(path, what);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(io("open it"))?;
        let meta = f.metadata().map_err(io("stat it"))?;
        if !meta.is_file() {
            return Err(DataFileError::NotADataFile {
                path: path.to_owned(),
                why: "not a regular file".into(),
            });
        }
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut h = [0u8; FILE_HEADER_SIZE as usize];
        if let Err(e) = r.read_exact(&mut h) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                DataFileError::NotADataFile {
                    path: path.to_owned(),
                    why: format!("only {} bytes", meta.len()),
                }
            } else {
                io("read its header")(e)
            });
        }
        if h[..8] != FILE_MAGIC {
            return Err(DataFileError::NotADataFile {
                path: path.to_owned(),
                why: "it does not start with KSpyData".into(),
            });
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if version != FILE_VERSION {
            return Err(DataFileError::Version {
                path: path.to_owned(),
                version,
            });
        }
        Ok(DataFileReader {
            r,
            path: path.to_owned(),
            buf: Vec::new(),
            offset: FILE_HEADER_SIZE,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next event: its number and bytes (valid until the next call), `None` at the end.
    ///
    /// # Errors
    /// [`DataFileError::Truncated`], [`DataFileError::TooLarge`] or [`DataFileError::Io`].
    pub fn next_event(&mut self) -> Result<Option<(u64, &[u8])>, DataFileError> {
        let mut h = [0u8; FILE_EVENT_HEADER];
        let at = self.offset;
        let got = read_full(&mut self.r, &mut h).map_err(|source| DataFileError::Io {
            path: self.path.clone(),
            what: "read",
            source,
        })?;
        if got == 0 {
            return Ok(None);
        }
        if got < h.len() {
            return Err(DataFileError::Truncated {
                path: self.path.clone(),
                offset: at,
            });
        }
        let evnr = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) as usize;
        if len > MAX_FILE_EVENT {
            return Err(DataFileError::TooLarge {
                path: self.path.clone(),
                offset: at,
                len: len as u64,
            });
        }
        self.buf.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.buf).map_err(|source| DataFileError::Io {
            path: self.path.clone(),
            what: "read",
            source,
        })?;
        if got < len {
            return Err(DataFileError::Truncated {
                path: self.path.clone(),
                offset: at,
            });
        }
        self.offset += (FILE_EVENT_HEADER + len) as u64;
        Ok(Some((evnr, &self.buf)))
    }

    /// Goes back to the first event.
    ///
    /// # Errors
    /// [`DataFileError::Io`].
    pub fn rewind(&mut self) -> Result<(), DataFileError> {
        self.r
            .seek(SeekFrom::Start(FILE_HEADER_SIZE))
            .map_err(|source| DataFileError::Io {
                path: self.path.clone(),
                what: "seek",
                source,
            })?;
        self.offset = FILE_HEADER_SIZE;
        Ok(())
    }
}

/// Reads until `buf` is full or the end of the file; returns how many bytes came.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_truncation_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.spy");
        let mut w = DataFileWriter::create(&p).unwrap();
        for n in 1..=3u64 {
            w.write_event(n * 10, &vec![n as u8; n as usize * 5])
                .unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let mut r = DataFileReader::open(&p).unwrap();
        let mut seen = Vec::new();
        while let Some((evnr, data)) = r.next_event().unwrap() {
            seen.push((evnr, data.len()));
        }
        assert_eq!(seen, vec![(10, 5), (20, 10), (30, 15)]);
        r.rewind().unwrap();
        assert_eq!(r.next_event().unwrap().unwrap().0, 10);
        // Cut inside the last event.
        let len = std::fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 3).unwrap();
        let mut r = DataFileReader::open(&p).unwrap();
        r.next_event().unwrap();
        r.next_event().unwrap();
        let e = r.next_event().unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("byte 55"), "{e}");
        std::fs::write(&p, b"hello, world, this is text").unwrap();
        let e = DataFileReader::open(&p).unwrap_err().to_string();
        assert!(e.contains("is not a spy data file"), "{e}");
    }
}

//! A spy data file as a source (`file:PATH`): its events in order, then the end (with or
//! without --follow: a file does not grow).

use std::path::Path;
use std::time::Duration;

use daqproc::daemons::spy::datafile::DataFileReader;

use crate::report::Losses;
use crate::source::{Next, Source};

/// Reads a data file.
pub struct FileSource {
    r: DataFileReader,
}

impl FileSource {
    /// Opens `path`.
    ///
    /// # Errors
    /// The file is not a readable spy data file.
    pub fn open(path: &Path) -> anyhow::Result<FileSource> {
        Ok(FileSource {
            r: DataFileReader::open(path)?,
        })
    }
}

impl Source for FileSource {
    fn next_event(&mut self, _wait: Duration) -> anyhow::Result<Next<'_>> {
        Ok(match self.r.next_event()? {
            Some((evnr, data)) => Next::Event(evnr, data),
            None => Next::End,
        })
    }

    fn losses(&self) -> Losses {
        Losses::default()
    }
}

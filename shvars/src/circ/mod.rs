//! The circular event buffer (being written).

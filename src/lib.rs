//! daqproc

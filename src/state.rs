//! Container records (being written).

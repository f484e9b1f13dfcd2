//! The `primepool` command line (placeholder; see issue 5).

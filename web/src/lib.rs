//! primepool in the browser (placeholder until the web issue lands).

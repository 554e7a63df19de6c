//! GGUF v2/v3 reader, dequantization and import into an HF-layout directory.

//! safetensors through memmap2: single file and sharded (model.safetensors.index.json).

//! Weight loading from an HF directory (config.json + safetensors) into [`super::Model`].

//! Layer streaming: models larger than the GPU's memory. Under a device-memory budget the
//! first layers stay resident; the others live in page-locked host memory and cross the bus
//! into one of two device buffers, layer by layer, while the layer before computes (the copy
//! runs on its own stream, see [`crate::backend::cuda::CudaDevice`]'s seam). A forward computes
//! every variant of the step in its one pass over the layers, so each streamed layer crosses
//! once per forward, and the adapter families' columns are packed into the buffer after it
//! lands. Weights change on the host copy only through [`super::weights::DeviceModel::edit_groups`]
//! (the lowrank merge, on the GPU as the layer passes through), so streamed and resident runs
//! agree bit for bit.

use super::buffer::Arena;
use super::device::{Arrival, CudaDevice, Pinned};
use crate::{Error, Result};

/// Which layers stay on the device under a budget, from the bytes of the tensors that always
/// stay (embeddings, head, final norm, OPT's projections) and of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    pub layers: usize,
    /// Layers `0..resident` stay on the device; the rest stream.
    pub resident: usize,
    pub fixed_bytes: usize,
    /// One layer's tensors as laid out in a stream buffer (an upper bound for resident ones).
    pub layer_bytes: usize,
    pub budget: Option<usize>,
}

/// Device buffers a streamed layer lands in: one computing, one filling.
pub const STREAM_BUFFERS: usize = 2;

impl Residency {
    /// Everything resident when the budget allows it (or there is none); otherwise as many
    /// leading layers as fit beside the fixed tensors and the two stream buffers. Resident
    /// layers come first so that the first streamed layers' copies overlap their compute.
    pub fn plan(
        fixed_bytes: usize,
        layer_bytes: usize,
        layers: usize,
        budget: Option<usize>,
    ) -> Result<Residency> {
        let all = fixed_bytes + layers * layer_bytes;
        let resident = match budget {
            None => layers,
            Some(b) if b >= all => layers,
            Some(b) => {
                let least = fixed_bytes + STREAM_BUFFERS * layer_bytes;
                if b < least {
                    return Err(Error::Config(format!(
                        "--gpu-memory-budget {b} bytes ({}) is too small: the embeddings and head \
                         take {} and streaming needs two layer buffers of {} each, so the least \
                         budget for this model is {least} bytes ({}); the whole model takes {}",
                        gib(b),
                        gib(fixed_bytes),
                        gib(layer_bytes),
                        gib(least),
                        gib(all)
                    )));
                }
                ((b - least) / layer_bytes).min(layers)
            }
        };
        Ok(Residency {
            layers,
            resident,
            fixed_bytes,
            layer_bytes,
            budget,
        })
    }

    pub fn streamed(&self) -> usize {
        self.layers - self.resident
    }

    /// Weight bytes on the device: fixed tensors, resident layers and the stream buffers.
    pub fn device_bytes(&self) -> usize {
        let buffers = if self.streamed() > 0 {
            STREAM_BUFFERS
        } else {
            0
        };
        self.fixed_bytes + (self.resident + buffers) * self.layer_bytes
    }

    /// Weight bytes that cross the bus per forward.
    pub fn streamed_bytes(&self) -> usize {
        self.streamed() * self.layer_bytes
    }
}

/// What a model takes on the GPU under a budget, from the layout the backend would build: the
/// weights (exactly as [`Residency::plan`] places them), the adapter state, and the
/// activations of one scoring forward over `tokens` tokens in `seqs` sequences.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    pub budget: Option<usize>,
    pub layers: usize,
    pub resident_layers: usize,
    pub streamed_layers: usize,
    pub fixed_bytes: usize,
    pub layer_bytes: usize,
    pub weight_bytes_on_gpu: usize,
    /// Weight bytes that cross the bus per forward.
    pub streamed_bytes_per_forward: usize,
    pub adapter_state_bytes: usize,
    pub tokens: usize,
    pub seqs: usize,
    pub workspace_bytes: usize,
    pub total_bytes: usize,
}

impl MemoryPlan {
    pub fn new(
        config: &crate::model::ModelConfig,
        dtype: super::DType,
        family: Option<&crate::perturb::FamilyConfig>,
        directions: usize,
        budget: Option<usize>,
        tokens: usize,
        seqs: usize,
    ) -> Result<MemoryPlan> {
        use super::weights::{adapter_state_bytes, fixed_bytes, layer_bytes, layer_shapes};
        let (aug, adapter) = super::backend::adapter_layout(family, config, directions)?;
        let r = Residency::plan(
            fixed_bytes(config, dtype),
            layer_bytes(config, dtype, aug, &adapter),
            config.num_layers,
            budget,
        )?;
        let shapes = layer_shapes(config, aug, &adapter);
        let workspace_bytes = super::forward::workspace_bytes(config, dtype, shapes, tokens, seqs);
        let adapter_state_bytes = adapter_state_bytes(config, aug, &adapter);
        Ok(MemoryPlan {
            budget,
            layers: r.layers,
            resident_layers: r.resident,
            streamed_layers: r.streamed(),
            fixed_bytes: r.fixed_bytes,
            layer_bytes: r.layer_bytes,
            weight_bytes_on_gpu: r.device_bytes(),
            streamed_bytes_per_forward: r.streamed_bytes(),
            adapter_state_bytes,
            tokens,
            seqs,
            workspace_bytes,
            total_bytes: r.device_bytes() + adapter_state_bytes + workspace_bytes,
        })
    }
}

/// `bytes` as GiB with two decimals.
pub fn gib(bytes: usize) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The streamed layers `first..`: their host copies and the two buffers they land in (layer
/// `first + i` in buffer `i % 2`, whose tensors the layer's [`super::weights::DLayer`] points
/// at).
pub(crate) struct LayerStream {
    pub first: usize,
    buffers: [Arena; STREAM_BUFFERS],
    /// Layer `first + i`'s bytes, exactly as its buffer holds them.
    host: Vec<Pinned>,
}

impl LayerStream {
    pub fn new(dev: &CudaDevice, first: usize, layer_bytes: usize) -> Result<LayerStream> {
        Ok(LayerStream {
            first,
            buffers: [Arena::new(dev, layer_bytes)?, Arena::new(dev, layer_bytes)?],
            host: Vec::new(),
        })
    }

    /// The buffer layer `li` is built in and lands in.
    pub fn buffer(&self, li: usize) -> &Arena {
        &self.buffers[(li - self.first) % STREAM_BUFFERS]
    }

    /// Keeps layer `li`'s bytes, just built in its buffer, on the host. Layers are added in
    /// order.
    pub fn keep(&mut self, dev: &CudaDevice, li: usize) -> Result<()> {
        debug_assert_eq!(li, self.first + self.host.len());
        let buf = self.buffer(li);
        let mut host = dev.api().pinned(buf.used())?;
        // SAFETY: the first `used` bytes of the buffer are the layer's tensors.
        unsafe { dev.api().download(buf.ptr(), host.as_mut_slice())? };
        self.host.push(host);
        Ok(())
    }

    pub fn holds(&self, li: usize) -> bool {
        li >= self.first && li - self.first < self.host.len()
    }

    /// Starts layer `li`'s copy into its buffer, after the compute queued so far (which may
    /// still read the layer that buffer held).
    pub fn fetch(&self, dev: &CudaDevice, li: usize) -> Result<Arrival> {
        let host = self.host(li)?;
        // SAFETY: the buffer holds the layer's bytes; the host copy lives as long as `self`
        // and is written only by `store`, which synchronises first.
        unsafe { dev.api().stream_in(self.buffer(li).ptr(), host.as_slice()) }
    }

    /// Layer `li` in its buffer before any later operation (fetch and wait).
    pub fn load(&self, dev: &CudaDevice, li: usize) -> Result<()> {
        let a = self.fetch(dev, li)?;
        dev.api().arrive(a)
    }

    /// Writes layer `li`'s buffer back to its host copy (after its weights changed there).
    pub fn store(&mut self, dev: &CudaDevice, li: usize) -> Result<()> {
        let ptr = self.buffer(li).ptr();
        let i = li - self.first;
        let host = self.host[i].as_mut_slice();
        // SAFETY: the host copy is the buffer's first `host.len()` bytes; download waits for
        // every queued copy and kernel first.
        unsafe { dev.api().download(ptr, host) }
    }

    fn host(&self, li: usize) -> Result<&Pinned> {
        li.checked_sub(self.first)
            .and_then(|i| self.host.get(i))
            .ok_or_else(|| Error::Cuda(format!("layer {li} is not a streamed layer")))
    }

    /// Device bytes of the two buffers.
    pub fn device_bytes(&self) -> usize {
        self.buffers.iter().map(Arena::capacity).sum()
    }

    /// Bytes that cross the bus per pass over the layers.
    pub fn streamed_bytes(&self) -> usize {
        self.host.iter().map(|h| h.as_slice().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_chooses_the_resident_layers() {
        // No budget, or one that holds everything: all resident, no stream buffers.
        for b in [None, Some(100 + 10 * 30)] {
            let r = Residency::plan(100, 30, 10, b).unwrap();
            assert_eq!((r.resident, r.streamed(), r.device_bytes()), (10, 0, 400));
        }
        // One byte short of everything: two buffers replace three layers.
        let r = Residency::plan(100, 30, 10, Some(399)).unwrap();
        assert_eq!((r.resident, r.streamed()), (7, 3));
        assert!(r.device_bytes() <= 399, "{r:?}");
        assert_eq!(r.streamed_bytes(), 90);
        // The least budget streams every layer through the two buffers.
        let r = Residency::plan(100, 30, 10, Some(160)).unwrap();
        assert_eq!((r.resident, r.device_bytes()), (0, 160));
        let r = Residency::plan(100, 30, 10, Some(189)).unwrap();
        assert_eq!(r.resident, 0);
        let r = Residency::plan(100, 30, 10, Some(190)).unwrap();
        assert_eq!(r.resident, 1);
    }

    #[test]
    fn a_budget_below_two_layers_is_refused_with_the_least_that_works() {
        let e = Residency::plan(100, 30, 10, Some(159))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--gpu-memory-budget 159"), "{e}");
        assert!(
            e.contains("least budget for this model is 160 bytes"),
            "{e}"
        );
    }
}

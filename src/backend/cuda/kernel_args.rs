//! Device-pointer arguments of a kernel launch, taken from any cudarc slice or view.
//!
//! Kernels of the row-op families accept `CudaSlice`, `CudaView` and `CudaViewMut` alike
//! (through cudarc's `DevicePtr`/`DevicePtrMut`), and some pointers are optional (null). The
//! launch builder only takes concrete types, so the pointers are collected here first; the
//! guards that record the stream's use of each buffer live until the launch is queued.

use cudarc::driver::{
    CudaFunction, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
    SyncOnDrop,
};

use super::device::cuda_err;
use crate::{Error, Result};

pub(crate) struct KernelArgs<'a> {
    stream: &'a CudaStream,
    ptrs: Vec<u64>,
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> KernelArgs<'a> {
    pub(crate) fn new(stream: &'a CudaStream) -> Self {
        KernelArgs {
            stream,
            ptrs: Vec::new(),
            guards: Vec::new(),
        }
    }

    /// A buffer the kernel reads, whose elements the kernel accesses `align` bytes at a time.
    pub(crate) fn read<T, D: DevicePtr<T> + ?Sized>(
        &mut self,
        what: &str,
        buf: &'a D,
        align: usize,
    ) -> Result<&mut Self> {
        let (ptr, guard) = buf.device_ptr(self.stream);
        self.guards.push(guard);
        self.push(what, ptr, align)
    }

    /// A buffer the kernel writes (or reads and writes).
    pub(crate) fn write<T, D: DevicePtrMut<T> + ?Sized>(
        &mut self,
        what: &str,
        buf: &'a mut D,
        align: usize,
    ) -> Result<&mut Self> {
        let (ptr, guard) = buf.device_ptr_mut(self.stream);
        self.guards.push(guard);
        self.push(what, ptr, align)
    }

    /// An optional read-only buffer: null when absent.
    pub(crate) fn read_opt<T, D: DevicePtr<T> + ?Sized>(
        &mut self,
        what: &str,
        buf: Option<&'a D>,
        align: usize,
    ) -> Result<&mut Self> {
        match buf {
            Some(b) => self.read(what, b, align),
            None => {
                self.ptrs.push(0);
                Ok(self)
            }
        }
    }

    /// An optional written buffer: null when absent.
    pub(crate) fn write_opt<T, D: DevicePtrMut<T> + ?Sized>(
        &mut self,
        what: &str,
        buf: Option<&'a mut D>,
        align: usize,
    ) -> Result<&mut Self> {
        match buf {
            Some(b) => self.write(what, b, align),
            None => {
                self.ptrs.push(0);
                Ok(self)
            }
        }
    }

    fn push(&mut self, what: &str, ptr: u64, align: usize) -> Result<&mut Self> {
        if !ptr.is_multiple_of(align as u64) {
            return Err(Error::Data(format!(
                "{what}: device address {ptr:#x} is not aligned to its {align}-byte elements"
            )));
        }
        self.ptrs.push(ptr);
        Ok(self)
    }

    /// Launches `func(params, pointers...)` on the stream.
    ///
    /// # Safety
    /// The kernel's signature must be (P by value, one pointer per collected buffer, in order),
    /// and every access the kernel makes under `cfg` must fall inside those buffers.
    pub(crate) unsafe fn launch<P: DeviceRepr>(
        self,
        func: &CudaFunction,
        name: &str,
        params: &P,
        cfg: LaunchConfig,
    ) -> Result<()> {
        let mut b = self.stream.launch_builder(func);
        b.arg(params);
        for p in &self.ptrs {
            b.arg(p);
        }
        // SAFETY: upheld by the caller.
        unsafe { b.launch(cfg) }.map_err(cuda_err(format!("launching {name}")))?;
        drop(self.guards);
        Ok(())
    }
}

//! Host buffers whose last element is followed by an inaccessible page.

use std::ffi::c_void;
use std::fmt;
use std::ops::{Deref, DerefMut};

extern "C" {
    fn zo_emu_guarded_alloc(bytes: usize, map: *mut *mut c_void, map_len: *mut usize) -> *mut u8;
    fn zo_emu_guarded_free(map: *mut c_void, map_len: usize);
}

/// A fixed-length buffer that ends exactly at a guard page, so a kernel indexing one element
/// past it faults at once (a crash in the test) instead of corrupting the heap. Use it for
/// the buffers of emulated launches; it dereferences to a slice. Elements must be
/// 16-byte-aligned or less (every kernel buffer type is).
pub struct GuardedVec<T: Copy> {
    ptr: *mut T,
    len: usize,
    map: *mut c_void,
    map_len: usize,
}

// SAFETY: GuardedVec owns its memory like a Vec.
unsafe impl<T: Copy + Send> Send for GuardedVec<T> {}
// SAFETY: shared access only reads, like &[T].
unsafe impl<T: Copy + Sync> Sync for GuardedVec<T> {}

impl<T: Copy> GuardedVec<T> {
    /// Room for `len` elements, not yet initialised.
    fn alloc(len: usize) -> Self {
        assert!(
            std::mem::align_of::<T>() <= 16,
            "element alignment above 16"
        );
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("buffer size overflows");
        let (mut map, mut map_len) = (std::ptr::null_mut(), 0);
        // SAFETY: the allocator writes the two out-parameters and returns `bytes` writable
        // bytes ending at a page boundary, hence aligned to any alignment dividing the size
        // of T (which every alignment up to 16 of a Rust type does).
        let ptr = unsafe { zo_emu_guarded_alloc(bytes, &mut map, &mut map_len) } as *mut T;
        GuardedVec {
            ptr,
            len,
            map,
            map_len,
        }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Self {
        let g = Self::alloc(len);
        for i in 0..len {
            // SAFETY: i < len, inside the allocation.
            unsafe { g.ptr.add(i).write(value) };
        }
        g
    }

    /// A copy of `v`.
    pub fn from_slice(v: &[T]) -> Self {
        let g = Self::alloc(v.len());
        // SAFETY: the allocation holds v.len() elements and does not overlap v.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), g.ptr, v.len()) };
        g
    }
}

impl<T: Copy> Deref for GuardedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr is valid, aligned and initialised for len elements.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Copy> DerefMut for GuardedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref; &mut self is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Copy> Drop for GuardedVec<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping came from zo_emu_guarded_alloc and is freed once.
        unsafe { zo_emu_guarded_free(self.map, self.map_len) }
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for GuardedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

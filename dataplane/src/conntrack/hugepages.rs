//! Memory for the session tables from transparent huge pages where the
//! kernel allows them (madvise mode is common, this machine's included).
//! A million sessions span about 124 MB; in 4 KiB pages nearly every
//! lookup also misses the TLB, and the page walk costs as much as the
//! lookup (measured with `conntrack/established_1m_sessions`).
use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};
use std::ptr::{self, NonNull};

/// Huge-page size on x86-64 and arm64 (4 KiB base pages).
const HUGE: usize = 2 << 20;

/// Allocations of 2 MiB or more are mmap'd, 2 MiB-aligned, advised
/// MADV_HUGEPAGE and populated up front; smaller ones come from the global
/// allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < HUGE || layout.align() > HUGE {
            return Global.allocate(layout);
        }
        let size = layout.size().next_multiple_of(HUGE);
        // Map one huge page more than needed, then trim to a 2 MiB
        // boundary at both ends.
        // SAFETY: an anonymous private mapping, checked for failure.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size + HUGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE);
        // SAFETY: unmapping the unaligned head and the tail of our own
        // mapping; advising the aligned middle, which we keep.
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let tail = start + size + HUGE - (aligned + size);
            if tail > 0 {
                libc::munmap((aligned + size) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            // Fault it all in now: a page fault on the packet path would
            // be an allocation (and a 2 MiB clear) in the middle of a batch.
            libc::madvise(
                aligned as *mut libc::c_void,
                size,
                libc::MADV_POPULATE_WRITE,
            );
        }
        let ptr = NonNull::new(aligned as *mut u8).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, size))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() < HUGE || layout.align() > HUGE {
            // SAFETY: it came from Global.allocate with this layout.
            return unsafe { Global.deallocate(ptr, layout) };
        }
        let size = layout.size().next_multiple_of(HUGE);
        // SAFETY: the mapping made by `allocate` for this layout.
        unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
    }
}

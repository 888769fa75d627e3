//! The few Linux system calls std does not offer, each behind a safe
//! function: opening a name relative to a directory handle (`openat2`,
//! `openat`), renaming (also without replacing, `renameat2`) and unlinking
//! relative to directory handles, random bytes (`getrandom`), the mount
//! a descriptor is on (`statx`) and its file system's type (`fstatfs`),
//! creating a directory relative to one, listing a directory from its
//! handle, whole or a batch at a time (`getdents64`), and describing its
//! entries (`fstatat`), starting or awaiting
//! write-back of part of a file (`sync_file_range`), sending part of a
//! file straight to a socket (`sendfile`), a listener's backlog
//! (`listen`), taking over a listening socket a service manager passed
//! (`getsockopt`, `fcntl`), the monotonic clock's value
//! (`clock_gettime`), raising the open-file limit (`getrlimit`,
//! `setrlimit`), and probing a file system from a child process
//! (`fork`, `waitpid`, `kill`).
//!
//! This is the one module of the crate allowed to contain `unsafe`. Every
//! function takes borrowed descriptors and C strings, so the kernel only
//! ever sees valid descriptors and NUL-terminated names; results come back
//! as `OwnedFd` or `io::Error`.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

/// `struct open_how` of `linux/openat2.h`. libc's own is `non_exhaustive`,
/// so it cannot be built outside libc; the kernel's layout is fixed (its
/// size is passed along, which is how the kernel versions it).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Whether `openat2` works here: not yet known, yes, or no (an old kernel,
/// or a sandbox that filters it).
static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const AVAILABLE: u8 = 1;
const MISSING: u8 = 2;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens `name` relative to `dir` without ever following a symlink in it
/// and without ever leaving `dir`: `openat2` with `RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS` where the kernel has it, otherwise `openat` with
/// `O_NOFOLLOW` (enough for the single path components ferry uses: there
/// is no intermediate component to follow). `O_CLOEXEC` is always added.
/// A symlink is `ELOOP` either way, except with `O_PATH`, where both open
/// the link itself (never its target), which the caller's check on the
/// descriptor then refuses.
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    if OPENAT2.load(Ordering::Relaxed) != MISSING {
        match openat2(dir, name, flags, mode) {
            Ok(fd) => {
                OPENAT2.store(AVAILABLE, Ordering::Relaxed);
                return Ok(fd);
            }
            Err(err) if openat2_missing(&err) => {
                log::info!("openat2 is not available ({err}); using openat with O_NOFOLLOW");
                OPENAT2.store(MISSING, Ordering::Relaxed);
            }
            Err(err) => return Err(err),
        }
    }
    openat_nofollow(dir, name, flags, mode)
}

/// ENOSYS: kernel before 5.6. EPERM straight away on the first call: a
/// seccomp filter that does not know the call.
fn openat2_missing(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOSYS)
        || (err.raw_os_error() == Some(libc::EPERM) && OPENAT2.load(Ordering::Relaxed) == UNKNOWN)
}

/// `openat2(dir, name, {flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS})`.
pub fn openat2(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let mut flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    if flags & libc::O_PATH != 0 {
        // openat2 refuses the flags that plain open silently drops.
        flags &= libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_DIRECTORY;
    }
    // O_TMPFILE shares its bits with O_DIRECTORY: all of them must be set.
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let how = OpenHow {
        flags: flags as u32 as u64,
        // openat2 insists on a zero mode unless a file is created.
        mode: if creates { u64::from(mode) } else { 0 },
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `dir` is a live descriptor for the duration of the call,
    // `name` is NUL-terminated, and `how` is a properly laid out
    // `open_how` whose exact size is passed; the kernel only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::other("openat2: bad fd"))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the relative path `path` (names joined by `/`, none of them
/// `.`, `..` or empty: checked by the caller) beneath `dir`, never
/// following a symlink in any component and never leaving `dir`: one
/// `openat2` where the kernel has it, otherwise a walk of one `openat`
/// with `O_NOFOLLOW | O_DIRECTORY` per folder and `flags` for the last
/// name, each relative to the handle the step before opened (so nothing
/// swapped in between two steps redirects the walk). A symlink anywhere
/// is `ELOOP`, a component that is not a folder `ENOTDIR`.
pub fn open_beneath_path(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let whole = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if !path.contains(&b'/') {
        return open_beneath(dir, &whole, flags, mode);
    }
    if OPENAT2.load(Ordering::Relaxed) != MISSING {
        match openat2(dir, &whole, flags, mode) {
            Ok(fd) => {
                OPENAT2.store(AVAILABLE, Ordering::Relaxed);
                return Ok(fd);
            }
            Err(err) if openat2_missing(&err) => {
                log::info!("openat2 is not available ({err}); walking paths with O_NOFOLLOW");
                OPENAT2.store(MISSING, Ordering::Relaxed);
            }
            Err(err) => return Err(err),
        }
    }
    walk_beneath(dir, path, flags, mode)
}

/// The fallback of [`open_beneath_path`], on its own so that it is
/// tested on kernels that have `openat2`: one `openat(O_NOFOLLOW)` per
/// name, each relative to the handle the step before opened.
pub fn walk_beneath(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let mut parts = path.split(|&b| b == b'/').peekable();
    let mut held: Option<OwnedFd> = None;
    while let Some(part) = parts.next() {
        let name = CString::new(part).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
        let next = if parts.peek().is_some() {
            openat_nofollow(at, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?
        } else {
            openat_nofollow(at, &name, flags, mode)?
        };
        held = Some(next);
    }
    held.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `unlinkat(dir, name, AT_REMOVEDIR)`: removes an empty directory (never
/// a symlink to one: that is `ENOTDIR`).
pub fn rmdirat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
}

/// `copy_file_range(from, &from_offset, to, &to_offset, len, 0)`: copies
/// up to `len` bytes inside the kernel (a reflink or a server-side copy
/// where the file system can); returns how many (0 at the end of `from`).
pub fn copy_file_range(
    from: BorrowedFd<'_>,
    from_offset: u64,
    to: BorrowedFd<'_>,
    to_offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut off_in = libc::loff_t::try_from(from_offset).map_err(io::Error::other)?;
    let mut off_out = libc::loff_t::try_from(to_offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are live for the call, and the offsets
    // point at local integers the kernel updates.
    let ret = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &raw mut off_in,
            to.as_raw_fd(),
            &raw mut off_out,
            len,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`: the fallback
/// where `openat2` is missing.
pub fn openat_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `dir` is live, `name` is NUL-terminated; the mode is passed
    // as the variadic argument open expects (an unsigned int).
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name, mode)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `renameat(from_dir, from, to_dir, to)`: atomically replaces `to` (never
/// following a symlink there: a symlink is replaced, not written through).
pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both descriptors are live and both names NUL-terminated.
    cvt(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
        )
    })
    .map(drop)
}

/// `renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE)`: moves `from`
/// to `to` only if `to` does not exist (`AlreadyExists` otherwise), in one
/// atomic step, so a rename can never replace a file someone else holds.
/// File systems without the flag (`EINVAL`) and kernels without the call
/// (`ENOSYS`) get `linkat` + `unlinkat`, which is just as exclusive (a
/// link never replaces a name); only a crash between the two calls leaves
/// the file under both names.
pub fn renameat_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both descriptors are live, both names NUL-terminated, and
    // the flag is a plain integer; the raw syscall is used because not
    // every libc wraps it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(err);
    }
    linkat(from_dir, from, to_dir, to)?;
    unlinkat(from_dir, from)
}

/// `linkat(from_dir, from, to_dir, to, 0)`: a second name for the file
/// `from` names (a symlink there is linked itself, never followed); never
/// replaces `to`.
pub fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both descriptors are live, both names NUL-terminated; flags
    // 0 never follows a symlink at `from`.
    cvt(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// Whether `file` is open nowhere else, in this process or any other:
/// a write lease (`F_SETLEASE`, `F_WRLCK`) is granted only then, and is
/// given back at once. `Ok(false)` when someone else has it open
/// (`EAGAIN`); an error where the file system has no leases (NFS, say)
/// or they are turned off (`fs.leases-enable`).
pub fn open_nowhere_else(file: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `file` is live; F_SETLEASE takes an integer argument.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    if ret != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(false),
            _ => Err(err),
        };
    }
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) })?;
    Ok(true)
}

/// The type of the file system `fd` is on (`f_type` of `fstatfs`: one of
/// the `*_MAGIC` numbers of `linux/magic.h`).
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `fd` is live and `buf` is writable memory the size of the
    // `statfs` the kernel fills in.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded, so the kernel filled in the struct (and
    // it was zeroed before besides).
    let buf = unsafe { buf.assume_init() };
    // `__fsword_t`: i64 here, narrower on some architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(buf.f_type as i64)
}

/// Which mount `fd` is on: its mount id (`statx` with `STATX_MNT_ID`,
/// Linux 5.8), or where the kernel does not say, its device number. A
/// rename works only within one mount, and a bind mount of a directory of
/// the same file system has the same device but another mount id.
pub fn mount_of(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `fd` is live, the empty name is NUL-terminated (with
    // AT_EMPTY_PATH it means `fd` itself), and `stx` points at writable
    // memory the size of a `struct statx`.
    cvt(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded and the struct was zeroed before, so every
    // field holds a value.
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        Ok(stx.stx_mnt_id)
    } else {
        Ok(libc::makedev(stx.stx_dev_major, stx.stx_dev_minor))
    }
}

/// Fills `buf` with random bytes from the kernel (`getrandom`, blocking
/// only until the pool is first initialised, early at boot).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is writable memory of exactly `rest.len()` bytes.
        let ret = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += ret as usize;
    }
    Ok(())
}

/// `unlinkat(dir, name, 0)`: removes one name of a non-directory (a
/// symlink itself, never its target; other hard links keep the data).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// The status of the entry `name` of `dir` itself: `fstatat` with
/// `AT_SYMLINK_NOFOLLOW`, so a symlink is described, never followed. One
/// call and no descriptor, for listings that need only sizes and kinds.
pub fn stat_entry(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is live, `name` is NUL-terminated, and `stat` points
    // at writable memory the size of a `struct stat`.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so the kernel filled in the whole struct.
    Ok(unsafe { stat.assume_init() })
}

/// The names in the directory `dir` (without `.` and `..`), read through a
/// fresh descriptor of it so that `dir`'s own offset is left alone.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let own = openat_nofollow(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(own);
    // SAFETY: `raw` is an open directory descriptor we own; on success
    // fdopendir takes it over (closedir below closes it).
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(err);
    }
    let mut names = Vec::new();
    let result = loop {
        // readdir reports the end and an error both as NULL; errno tells
        // them apart, so it is cleared first.
        // SAFETY: __errno_location returns this thread's errno.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid DIR* until closedir below.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            break match err.raw_os_error() {
                Some(0) => Ok(()),
                _ => Err(err),
            };
        }
        // SAFETY: a non-NULL entry points at a dirent64 valid until the
        // next readdir on this stream; d_name is NUL-terminated. The name
        // is copied out before the next call.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: `stream` came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

/// Reads the next entries of the directory `dir` into `buf` as the
/// kernel's `struct linux_dirent64` records (`getdents64`), continuing
/// where the last read on this descriptor stopped; 0 at the end. Read
/// them with [`next_dirent`]. A caller that reads a directory a batch at a
/// time holds only `buf`, however many entries there are.
pub fn read_dirents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `dir` is a live descriptor and `buf` is writable for
        // `buf.len()` bytes; the kernel writes at most that many.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The name of the record at `pos` of what [`read_dirents`] put in
/// `records`, and where the next record starts; `None` for a record that
/// does not fit the kernel's layout (which the kernel never writes).
pub fn next_dirent(records: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    // struct linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type,
    // then the NUL-terminated name, padded to d_reclen.
    const NAME_AT: usize = 19;
    let header = records.get(pos..pos + NAME_AT)?;
    let reclen = usize::from(u16::from_ne_bytes([header[16], header[17]]));
    let record = records.get(pos..pos.checked_add(reclen)?)?;
    let name = record.get(NAME_AT..)?;
    let len = name.iter().position(|&b| b == 0)?;
    Some((&name[..len], pos + reclen))
}

/// A descriptor of its own for the directory `dir` (`"."` opened from its
/// handle, never a path), so that reading its entries has a position of
/// its own.
pub fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    openat_nofollow(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// Asks the kernel to start writing the dirty pages of `file` in
/// `offset..offset + len` to the device, without waiting for it.
pub fn start_writeback(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Waits until the write-out already started for `offset..offset + len`
/// of `file` has reached the device (reporting its error, if any).
pub fn await_writeback(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WAIT_BEFORE)
}

fn sync_file_range(file: BorrowedFd<'_>, offset: u64, len: u64, flags: u32) -> io::Result<()> {
    let offset = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `file` is live; the call only takes plain integers.
    cvt(unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) }).map(drop)
}

/// `listen(socket, backlog)` again on a listening socket: sets how many
/// connections the kernel queues before they are accepted (capped by
/// `net.core.somaxconn`). std binds with 128.
pub fn set_listen_backlog(socket: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: `socket` is a live descriptor for the duration of the call;
    // listen reads no memory of ours.
    cvt(unsafe { libc::listen(socket.as_raw_fd(), backlog) }).map(drop)
}

/// `send(socket, buf, MSG_NOSIGNAL | MSG_MORE)`: like a write of `buf`,
/// but the kernel holds a short tail back for the bytes that follow at
/// once (a reply before the file `sendfile` sends), so both leave in one
/// packet and wake the client once. The next send without `MSG_MORE`
/// (every `sendfile` ends so) pushes it out.
pub fn send_more(socket: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `socket` is live for the duration of the call and the kernel
    // reads at most `buf.len()` bytes from `buf`, which is valid for them.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_MORE,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // Never negative here, and never more than `buf.len()`.
    Ok(sent as usize)
}

/// Most bytes one `sendfile` call moves on Linux, whatever it is asked.
const SENDFILE_MAX: usize = 0x7fff_f000;

/// `sendfile(socket, file, &offset, count)`: the kernel copies up to
/// `count` bytes of `file`, starting at `offset`, to `socket`, without
/// them passing through user space and without moving `file`'s own
/// offset. Returns how many bytes went out: fewer than `count` when the
/// socket buffer filled up or the file ends sooner (0 at its end). A
/// non-blocking socket that takes nothing is `WouldBlock`; `EINVAL` or
/// `ENOSYS` mean this pair of descriptors cannot be used with it (the
/// caller then copies the bytes itself). Unlike `send`, `sendfile` has no
/// `MSG_NOSIGNAL`: a peer that is gone raises `SIGPIPE`, which Rust
/// programs ignore from the start (std sets it to `SIG_IGN` before
/// `main`), so the call fails with `EPIPE` instead.
pub fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let count = count.min(SENDFILE_MAX);
    // SAFETY: both descriptors are live for the duration of the call and
    // `offset` is a valid `off_t` the kernel reads and updates; no other
    // memory is touched.
    let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // Never negative here, and never more than `count`.
    Ok(sent as usize)
}

/// Takes ownership of descriptor `fd`, which the service manager handed
/// to this process at start (socket activation), after checking that it
/// is an open, listening TCP socket; it is made close-on-exec and
/// non-blocking, as the reactor wants its listeners. The caller takes
/// each such descriptor once (see `systemd::take_listeners`).
pub fn inherited_listener(fd: libc::c_int) -> io::Result<std::net::TcpListener> {
    let int_option = |level, name| -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of the sizes
        // given; a descriptor that is not open or not a socket only makes
        // the call fail (EBADF, ENOTSOCK).
        cvt(unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) })?;
        Ok(value)
    };
    let not = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("not {what}"));
    if int_option(libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(not("a stream socket"));
    }
    if !matches!(
        int_option(libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        libc::AF_INET | libc::AF_INET6
    ) {
        return Err(not("a TCP socket (IPv4 or IPv6)"));
    }
    if int_option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err(not("listening"));
    }
    // SAFETY: the descriptor is open (getsockopt succeeded on it) and was
    // passed to this process to own; nothing else in the process holds it,
    // since the caller takes the handed-over descriptors only once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::net::TcpListener::from(owned);
    // SAFETY: `fd` is live (owned by `listener`); F_SETFD takes a plain int.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What [`spawn_write_probe`]'s child reports through its pipe: four
/// native-endian words, `errno` (0: the file was written, synced and
/// removed), the step that failed (1 open, 2 write, 3 fsync, 4 fstat,
/// 5 unlink), and the file's modification time (seconds, nanoseconds).
pub const PROBE_REPORT_LEN: usize = 24;

/// A probe of a file system in a child process of its own: the child
/// creates `name` in `dir`, writes a line, `fsync`s it, reads its
/// modification time (the file system's clock), removes it, reports
/// through a pipe and exits. The caller gets the child's pid and the
/// pipe's read end (non-blocking), and never waits on the file system
/// itself: a dead mount (an NFS server gone, a FUSE daemon killed) hangs
/// the child, not the event loop.
///
/// A child and not a thread: the server runs one thread by design, and a
/// thread stuck in the kernel on a dead mount cannot be abandoned, while a
/// process can (and is reaped when the call returns). The child calls only
/// async-signal-safe functions, so this is sound even in an embedder's
/// multi-threaded process; it closes every descriptor but the two it uses,
/// so a child stuck in the kernel holds no client socket or listener open.
pub fn spawn_write_probe(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<(libc::pid_t, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are new descriptors this process
    // owns and nothing else holds.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (dir_fd, out_fd, name_ptr) = (dir.as_raw_fd(), write.as_raw_fd(), name.as_ptr());
    // SAFETY: fork has no memory-safety preconditions; the child below
    // runs only async-signal-safe calls on values prepared before the
    // fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child; `dir_fd`, `out_fd` are live (inherited),
        // `name_ptr` points into the caller's CStr (copied with the
        // address space).
        unsafe { write_probe_child(dir_fd, name_ptr, out_fd) }
    }
    drop(write);
    // SAFETY: `read` is a live descriptor; F_SETFL takes a plain int.
    cvt(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((pid, read))
}

/// The child's side of [`spawn_write_probe`]. Async-signal-safe calls
/// only; ends in `_exit`.
///
/// # Safety
/// Only in a freshly forked child, with `dir` and `out` open and `name` a
/// NUL-terminated string.
unsafe fn write_probe_child(dir: libc::c_int, name: *const libc::c_char, out: libc::c_int) -> ! {
    let (lo, hi) = (dir.min(out), dir.max(out));
    for (first, last) in [(3, lo - 1), (lo + 1, hi - 1), (hi + 1, libc::c_int::MAX)] {
        if first <= last {
            // SAFETY: closes descriptors this child does not use; failure
            // (an old kernel without close_range) leaves them open, which
            // is harmless while the child is not stuck.
            unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
        }
    }
    let mut report = [0u8; PROBE_REPORT_LEN];
    let failed = |step: i32, report: &mut [u8; PROBE_REPORT_LEN]| {
        // SAFETY: errno is thread-local and always readable.
        let errno = unsafe { *libc::__errno_location() };
        report[..4].copy_from_slice(&errno.max(1).to_ne_bytes());
        report[4..8].copy_from_slice(&step.to_ne_bytes());
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated, `dir` open (the caller's contract).
    let fd = unsafe { libc::openat(dir, name, flags, 0o600 as libc::c_uint) };
    const LINE: &[u8] = b"ferry health probe\n";
    if fd < 0 {
        failed(1, &mut report);
    // SAFETY: `fd` is open; LINE is valid for its length.
    } else if unsafe { libc::write(fd, LINE.as_ptr().cast(), LINE.len()) } != LINE.len() as isize {
        failed(2, &mut report);
    // SAFETY: `fd` is open.
    } else if unsafe { libc::fsync(fd) } != 0 {
        failed(3, &mut report);
    } else {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open and `st` writable.
        if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
            failed(4, &mut report);
        // SAFETY: as for openat.
        } else if unsafe { libc::unlinkat(dir, name, 0) } != 0 {
            failed(5, &mut report);
        } else {
            report[8..16].copy_from_slice(&(st.st_mtime as i64).to_ne_bytes());
            report[16..24].copy_from_slice(&(st.st_mtime_nsec as i64).to_ne_bytes());
        }
    }
    // SAFETY: `out` is the pipe's open write end; `report` is valid for
    // its length. Nothing to do about a failure but exit.
    unsafe {
        libc::write(out, report.as_ptr().cast(), report.len());
        libc::_exit(0)
    }
}

/// Reaps the child `pid` if it has exited (without waiting); true when it
/// is gone.
pub fn reap(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: `status` is writable; WNOHANG never blocks.
    let ret = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
    ret == pid || ret == -1
}

/// Sends SIGKILL to the child `pid` (a probe past its deadline).
pub fn kill_child(pid: libc::pid_t) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own
    // child, not yet reaped, so the pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's notifications
/// are stamped with (std's `Instant` does not say its value).
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// The open-file limit (`RLIMIT_NOFILE`) before and after raising its soft
/// value to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub was: u64,
    pub now: u64,
}

/// Raises the soft open-file limit to the hard limit, as Go's runtime and
/// nginx's `worker_rlimit_nofile` do: the soft limit's usual default (1024
/// under systemd, whose hard limit is 524288) exists for programs that
/// still use `select(2)`, and ferry uses epoll. Where the raise is refused
/// the limit stays as it was and `now` says so.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) })?;
    let was = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit the kernel only reads.
        if cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) }).is_ok() {
            limit = raised;
        }
    }
    Ok(OpenFileLimit {
        was,
        now: limit.rlim_cur,
    })
}

/// The process or the system has no descriptor left (`EMFILE`,
/// `ENFILE`): a temporary refusal, not a failure of the request.
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn dir_fd(path: &std::path::Path) -> OwnedFd {
        File::open(path).unwrap().into()
    }

    #[test]
    fn both_opens_refuse_symlinks_and_stay_beneath() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("file", tmp.path().join("link")).unwrap();
        let dir = dir_fd(tmp.path());
        for open in [openat_nofollow, openat2] {
            match open(dir.as_fd(), c"file", libc::O_RDONLY, 0) {
                Ok(_) => {}
                // A sandbox without openat2: the fallback is what runs.
                Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => continue,
                Err(err) => panic!("{err}"),
            }
            let err = open(dir.as_fd(), c"link", libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        }
        // Only openat2 can refuse a way out by itself; ferry's names never
        // hold a '/' or '..', so the fallback does not need to.
        if let Err(err) = openat2(dir.as_fd(), c"../x", libc::O_RDONLY, 0) {
            assert!(matches!(
                err.raw_os_error(),
                Some(libc::EXDEV) | Some(libc::ENOSYS)
            ));
        }
        let path = open_beneath(dir.as_fd(), c"link", libc::O_PATH, 0);
        if let Ok(fd) = path {
            // The fallback opens the link itself; never its target.
            let meta = File::from(fd).metadata().unwrap();
            assert!(meta.file_type().is_symlink());
        }
    }

    #[test]
    fn rename_unlink_mkdir_and_list_relative_to_a_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_fd(tmp.path());
        mkdirat(dir.as_fd(), c"sub", 0o700).unwrap();
        let fd = open_beneath(
            dir.as_fd(),
            c"a",
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .unwrap();
        let mut file = File::from(fd);
        file.write_all(&[7u8; 100_000]).unwrap();
        start_writeback(file.as_fd(), 0, 100_000).unwrap();
        await_writeback(file.as_fd(), 0, 100_000).unwrap();
        renameat(dir.as_fd(), c"a", dir.as_fd(), c"b").unwrap();
        let mut names = read_dir(dir.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, vec![c"b".to_owned(), c"sub".to_owned()]);
        unlinkat(dir.as_fd(), c"b").unwrap();
        assert_eq!(
            unlinkat(dir.as_fd(), c"sub").unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
        assert_eq!(read_dir(dir.as_fd()).unwrap(), vec![c"sub".to_owned()]);
    }

    #[test]
    fn dirents_come_a_buffer_at_a_time_from_a_descriptor_of_their_own() {
        let tmp = tempfile::tempdir().unwrap();
        let mut want: Vec<Vec<u8>> = (0..500).map(|i| format!("f{i:03}").into_bytes()).collect();
        for name in &want {
            File::create(tmp.path().join(std::str::from_utf8(name).unwrap())).unwrap();
        }
        want.push(b".".to_vec());
        want.push(b"..".to_vec());
        want.sort();
        let dir = dir_fd(tmp.path());
        let own = reopen_dir(dir.as_fd()).unwrap();
        // Small enough that the names take many reads.
        let mut buf = [0u8; 512];
        let mut names = Vec::new();
        let mut reads = 0;
        loop {
            let n = read_dirents(own.as_fd(), &mut buf).unwrap();
            if n == 0 {
                break;
            }
            reads += 1;
            let mut pos = 0;
            while pos < n {
                let (name, next) = next_dirent(&buf[..n], pos).unwrap();
                names.push(name.to_vec());
                pos = next;
            }
        }
        assert!(reads > 10, "{reads} reads");
        names.sort();
        assert_eq!(names, want);
        assert_eq!(next_dirent(&buf[..10], 0), None, "a cut record");
    }

    #[test]
    fn sendfile_sends_a_range_and_stops_at_the_end() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let (tx, mut rx) = UnixStream::pair().unwrap();
        assert_eq!(sendfile(tx.as_fd(), file.as_fd(), 100, 900).unwrap(), 900);
        // Past the end it sends what is left, then nothing.
        assert_eq!(sendfile(tx.as_fd(), file.as_fd(), 9_500, 900).unwrap(), 500);
        assert_eq!(sendfile(tx.as_fd(), file.as_fd(), 10_000, 900).unwrap(), 0);
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..900], &data[100..1000]);
        assert_eq!(&got[900..], &data[9_500..]);
        // The file's own offset did not move.
        let mut first = [0u8; 4];
        (&file).read_exact(&mut first).unwrap();
        assert_eq!(first, data[..4]);
    }
}

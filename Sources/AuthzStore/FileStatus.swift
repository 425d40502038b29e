// File checks the store needs before handing a path to SQLite (which, asked to open a
// missing file read-only, only says "unable to open database file").

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What is at a path.
enum FileStatus: Equatable {
    /// Nothing: the path (or a directory on it) does not exist.
    case missing
    /// A regular file, identified by device and inode.
    case file(device: UInt64, inode: UInt64)
    /// A directory.
    case directory
    /// Something that is neither a regular file nor a directory: a FIFO (whose `open` blocks
    /// until a writer appears: it would hang the reloader), a socket, a device. `kind` names it.
    case notRegular(kind: String)
    /// `stat` failed for another reason (permissions, I/O); `errno` and its message.
    case unavailable(errno: Int32, message: String)

    init(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR {
                self = .missing
            } else {
                self = .unavailable(errno: code, message: String(cString: strerror(code)))
            }
            return
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: self = .file(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        case S_IFDIR: self = .directory
        case S_IFIFO: self = .notRegular(kind: "a FIFO")
        case S_IFSOCK: self = .notRegular(kind: "a socket")
        case S_IFCHR: self = .notRegular(kind: "a character device")
        case S_IFBLK: self = .notRegular(kind: "a block device")
        default: self = .notRegular(kind: "an unknown kind of file")
        }
    }

    /// Throws `.notFound` for a missing path and `.io` for a directory, anything else that is
    /// not a regular file, or an unreadable path.
    static func requireFile(_ path: String) throws(StoreError) -> FileStatus {
        let status = FileStatus(path: path)
        if case .missing = status { throw StoreError(code: .notFound, message: "no database at \(path)") }
        try status.requireNotOther(path)
        return status
    }

    /// Throws `.io` unless this is a regular file or nothing (the cases every opener handles
    /// its own way).
    func requireNotOther(_ path: String) throws(StoreError) {
        switch self {
        case .file, .missing:
            return
        case .directory:
            throw StoreError(code: .io, message: "\(path) is a directory, not a database file")
        case .notRegular(let kind):
            throw StoreError(code: .io, message: "\(path) is \(kind), not a database file")
        case .unavailable(let code, let message):
            throw StoreError(code: .io, message: "cannot access \(path): \(message) (errno \(code))")
        }
    }
}

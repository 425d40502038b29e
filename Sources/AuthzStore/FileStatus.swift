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
    /// A file (or something else that is not a directory), identified by device and inode.
    case file(device: UInt64, inode: UInt64)
    /// A directory.
    case directory
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
        if (info.st_mode & S_IFMT) == S_IFDIR {
            self = .directory
        } else {
            self = .file(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
    }

    /// Throws `.notFound` for a missing path and `.io` for a directory or an unreadable one.
    static func requireFile(_ path: String) throws(StoreError) -> FileStatus {
        let status = FileStatus(path: path)
        switch status {
        case .file:
            return status
        case .missing:
            throw StoreError(code: .notFound, message: "no database at \(path)")
        case .directory:
            throw StoreError(code: .io, message: "\(path) is a directory, not a database file")
        case .unavailable(let code, let message):
            throw StoreError(code: .io, message: "cannot access \(path): \(message) (errno \(code))")
        }
    }
}

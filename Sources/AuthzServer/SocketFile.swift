// The socket file's life: freeing the path before bind (a stale socket from a crashed run
// is replaced, a live one is never stolen, anything that is not a socket is never
// deleted), permissions after bind, and removal on shutdown (only if the file is still
// the one this process bound).

import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error that stops the server from starting or serving.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable, CustomStringConvertible {
        /// Another process accepts connections on the socket path.
        case socketInUse
        /// Something that is not a socket exists at the socket path.
        case notASocket
        /// The socket path cannot be used (too long, unreadable, its directory missing).
        case socketPath
        /// The socket file's mode or group could not be set.
        case permissions
        /// bind/listen failed.
        case bind
        /// The listening socket failed while serving.
        case listener

        public var description: String {
            switch self {
            case .socketInUse: "socketInUse"
            case .notASocket: "notASocket"
            case .socketPath: "socketPath"
            case .permissions: "permissions"
            case .bind: "bind"
            case .listener: "listener"
            }
        }
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        var text = message
        if let cause { text += " (\(cause))" }
        return text
    }
}

/// The identity of a file, to recognise "our" socket at removal time.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
}

enum SocketFile {
    /// The longest path `sockaddr_un` holds (its array less the terminating NUL).
    static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// What a connect(2) probe of an existing socket file found.
    enum Probe: Equatable {
        /// Someone accepted (or queued) the connection.
        case live
        /// ECONNREFUSED: a socket file nobody listens on.
        case stale
        /// The file disappeared meanwhile.
        case gone
        case failed(errno: Int32)
    }

    /// Makes `path` free for bind. Throws when the path holds a live socket, something
    /// that is not a socket, or cannot be inspected; unlinks a stale socket.
    /// Returns whether a stale socket was removed.
    @discardableResult
    static func prepareForBind(_ path: String) throws(ServerError) -> Bool {
        guard path.utf8.count <= maxPathLength else {
            throw ServerError(
                .socketPath, "socket path \(path) is \(path.utf8.count) bytes; the limit is \(maxPathLength)")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT { return false }
            throw ServerError(.socketPath, "cannot inspect socket path \(path): \(errorText(code))")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw ServerError(
                .notASocket,
                "\(path) exists and is not a socket; refusing to replace it (remove it or choose another --socket path)")
        }
        switch probe(path) {
        case .live:
            throw ServerError(
                .socketInUse,
                "another process is already serving on \(path) (a connection to it succeeded); stop it or choose another --socket path")
        case .gone:
            return false
        case .stale:
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ServerError(.socketPath, "cannot remove stale socket \(path): \(errorText(errno))")
            }
            return true
        case .failed(let code):
            throw ServerError(.socketPath, "cannot probe existing socket \(path): \(errorText(code))")
        }
    }

    /// Where to bind before the socket is ready: a name beside `path` (same directory, so
    /// the socket can be linked into place), or nil when it would not fit `sun_path`.
    static func stagingPath(for path: String) -> String? {
        let (directory, name): (String, String)
        if let slash = path.lastIndex(of: "/") {
            directory = String(path[...slash])
            name = String(path[path.index(after: slash)...])
        } else {
            directory = ""
            name = path
        }
        let staged = "\(directory).\(name).\(getpid()).bind"
        return staged.utf8.count <= maxPathLength ? staged : nil
    }

    /// Puts the socket bound, listening and with its permissions at `staged` in place at
    /// `path`, so clients never find a socket that is not accepting or not yet restricted.
    /// Refuses to replace anything that appeared at `path` meanwhile (another server).
    static func publish(_ staged: String, at path: String) throws(ServerError) {
        defer { unlink(staged) }
        if link(staged, path) == 0 { return }
        let code = errno
        if code == EEXIST {
            throw ServerError(
                .socketInUse, "\(path) appeared while this server was starting (another server?); not replacing it")
        }
        // A file system without hard links: an atomic rename (which would replace).
        guard rename(staged, path) == 0 else {
            throw ServerError(.socketPath, "cannot move the socket into place at \(path): \(errorText(errno))")
        }
    }

    /// Connects to `path` without blocking to learn whether a server is behind it.
    static func probe(_ path: String) -> Probe {
        #if canImport(Darwin)
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        #endif
        guard fd >= 0 else { return .failed(errno: errno) }
        defer { close(fd) }
        #if canImport(Darwin)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        #endif
        let result = withSocketAddress(path) { address, length in connect(fd, address, length) }
        guard let result else { return .failed(errno: ENAMETOOLONG) }
        if result == 0 { return .live }
        switch errno {
        case ECONNREFUSED: return .stale
        // A full backlog (EAGAIN) or a connect in progress: someone is listening.
        case EAGAIN, EINPROGRESS: return .live
        case ENOENT: return .gone
        case let code: return .failed(errno: code)
        }
    }

    /// Runs `body` with a `sockaddr_un` for `path`; nil when the path does not fit.
    static func withSocketAddress<R>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// chown (when a group is given) then chmod the freshly bound socket file.
    static func applyPermissions(_ path: String, mode: UInt32, group: SocketGroup?) throws(ServerError) {
        if let group {
            let gid = try groupID(group)
            guard chown(path, uid_t.max, gid) == 0 else {
                throw ServerError(.permissions, "cannot give socket \(path) group \(group): \(errorText(errno))")
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw ServerError(
                .permissions, "cannot set mode \(String(mode, radix: 8)) on socket \(path): \(errorText(errno))")
        }
    }

    static func groupID(_ socketGroup: SocketGroup) throws(ServerError) -> gid_t {
        switch socketGroup {
        case .id(let id):
            return gid_t(id)
        case .name(let name):
            var entry = group()
            var result: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: 16 * 1024)
            let status = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
            guard status == 0, let found = result else {
                let reason = status == 0 ? "no such group" : errorText(status)
                throw ServerError(.permissions, "cannot look up socket group '\(name)': \(reason)")
            }
            return found.pointee.gr_gid
        }
    }

    static func identity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Unlinks `path` if it is still the file with `identity` (not a socket another
    /// server bound there since). Returns whether it was removed.
    @discardableResult
    static func remove(_ path: String, ifIdentity identity: FileIdentity?) -> Bool {
        guard let identity, self.identity(path) == identity else { return false }
        return unlink(path) == 0
    }

    static func errorText(_ code: Int32) -> String {
        "\(String(cString: strerror(code))) (errno \(code))"
    }
}

/// The wall clock, for the Unix-ms timestamps of Status.
enum WallClock {
    static func nowUnixMs() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(max(0, time.tv_sec)) * 1000 + UInt64(max(0, time.tv_nsec)) / 1_000_000
    }
}

/// The credentials of a Unix socket's peer (SO_PEERCRED: `struct ucred`), taken when it
/// connected.
struct PeerCredentials: Sendable, Equatable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    /// Reads them from a connected Unix socket; nil when they cannot be read.
    static func of(fd: Int32) -> PeerCredentials? {
        var credentials = PeerCredentials(pid: 0, uid: 0, gid: 0)
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
            Int(length) == MemoryLayout<PeerCredentials>.size
        else { return nil }
        return credentials
    }

    /// Bytes written to the connected Unix socket `fd` that its peer has not read yet, or
    /// nil when the kernel does not say.
    static func unreadByPeer(fd: Int32) -> Int? {
        var count: Int32 = 0
        guard ioctl(fd, UInt(TIOCOUTQ), &count) == 0 else { return nil }
        return Int(count)
    }

    /// The same for a channel, read on its event loop: what SwiftNIO still buffers plus
    /// what its socket queued at the peer (SO_MEMINFO's write allocation); nil when unknown.
    static func unreadByPeer(of channel: any Channel) -> Int? {
        guard let provider = channel as? any SocketOptionProvider, channel.eventLoop.inEventLoop,
            let buffered = try? channel.syncOptions?.getOption(.bufferedWritableBytes)
        else { return nil }
        var result: Int?
        let future: EventLoopFuture<SocketMemoryInfo> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SocketMemoryInfo.option))
        future.assumeIsolated().whenSuccess { result = Int($0.writeAllocation) + buffered }
        return result
    }

    /// Reads them from `channel`'s socket on its event loop; nil when they cannot be read.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { Optional($0) }.recover { _ in nil }
    }
}

/// Linux's `SO_MEMINFO` answer (`SK_MEMINFO_*`, nine 32-bit counters).
struct SocketMemoryInfo: Sendable {
    static let option: Int32 = 55  // SO_MEMINFO
    var receiveAllocation: UInt32 = 0
    var receiveBuffer: UInt32 = 0
    /// Bytes this socket sent that sit unread in the peer's queue.
    var writeAllocation: UInt32 = 0
    var sendBuffer: UInt32 = 0
    var forwardAllocation: UInt32 = 0
    var writeQueued: UInt32 = 0
    var optionMemory: UInt32 = 0
    var backlog: UInt32 = 0
    var drops: UInt32 = 0
}

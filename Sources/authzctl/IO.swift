#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Plain POSIX I/O for the CLI: whole-file reads, buffered writes, line splitting.
enum IO {
    /// Whether something exists at `path`.
    static func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: String(cString: strerror(errno))) }
        defer { close(fd) }
        return try readAll(fd: fd)
    }

    static func readAll(fd: Int32) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: String(cString: strerror(errno)))
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0 ..< count])
        }
    }

    static func printError(_ message: String) {
        var line = Array(message.utf8)
        line.append(UInt8(ascii: "\n"))
        writeAll(fd: 2, line[...])
    }

    static func writeAll(fd: Int32, _ bytes: ArraySlice<UInt8>) {
        var remaining = bytes
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                return  // stdout closed (e.g. `| head`): nothing useful left to do
            }
            remaining = remaining.dropFirst(written)
        }
    }

    /// A write buffer flushed explicitly (once per input chunk, so interactive use sees
    /// answers immediately and bulk use makes few system calls).
    struct Output {
        let fd: Int32
        var buffer: [UInt8] = []

        init(fd: Int32) {
            self.fd = fd
            buffer.reserveCapacity(1 << 16)
        }

        mutating func flush() {
            guard !buffer.isEmpty else { return }
            IO.writeAll(fd: fd, buffer[...])
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Reads `fd` in chunks and hands out the complete, non-blank lines of each chunk
    /// (without their newline or a trailing CR); a final line without a newline counts.
    struct LineReader {
        let fd: Int32
        private var pending: [UInt8] = []
        private var chunk = [UInt8](repeating: 0, count: 1 << 16)
        private var finished = false

        init(fd: Int32) { self.fd = fd }

        /// The next chunk's lines, or nil at end of input.
        mutating func nextChunk() -> [ArraySlice<UInt8>]? {
            while !finished {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 {
                    finished = true
                    let rest = pending
                    pending.removeAll()
                    return Self.blankFiltered([rest[...]])
                }
                pending.append(contentsOf: chunk[0 ..< count])
                var lines: [ArraySlice<UInt8>] = []
                var start = pending.startIndex
                while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(Array(pending[start ..< newline])[...])
                    start = newline + 1
                }
                pending.removeFirst(start)
                if !lines.isEmpty { return Self.blankFiltered(lines) }
            }
            return nil
        }

        private static func blankFiltered(_ lines: [ArraySlice<UInt8>]) -> [ArraySlice<UInt8>] {
            lines.compactMap { line in
                var line = line
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                return line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) ? line : nil
            }
        }
    }
}

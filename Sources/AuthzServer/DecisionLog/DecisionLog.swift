// The decision log: JSON Lines of the decisions answered, for audits (authzd --decision-log).
//
// The request path only copies a decision into its loop's ring (DecisionRing): no
// formatting, allocation, lock or system call. One writer thread drains the rings every
// `flushInterval`, formats the records as JSON and appends them to the file with one
// write(2) per drain, rotating it by size. A full ring drops new decisions (counted); a
// failed write (disk full, a closed pipe) is logged once, counted, and the decisions in it
// are lost (counted): serving goes on.

import AuthzEngine
import AuthzWire
import Dispatch
public import Logging
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class DecisionLog: Sendable {
    /// What the log has done so far.
    public struct Statistics: Sendable, Equatable {
        /// Decisions written to the log.
        public var written: UInt64
        /// Decisions dropped because a loop's buffer was full.
        public var dropped: UInt64
        /// Decisions lost to failed writes.
        public var lost: UInt64
        /// Failed writes (and failed attempts to open the file).
        public var writeErrors: UInt64
        /// Rotations of the file.
        public var rotations: UInt64
    }

    public let configuration: DecisionLogConfiguration
    private let ringList: RingList
    private let writer: DecisionLogWriter
    private let pool: NIOThreadPool
    private let state = Mutex(RunState.idle)
    /// Decisions whose sampling draw is at most this are recorded (UInt64.max: all).
    private let sampleThreshold: UInt64
    /// Bit `m` set: method `m` is recorded.
    private let methodMask: UInt32

    private enum RunState { case idle, running, stopped }

    /// Every loop's ring; the writer drains them all.
    final class RingList: Sendable {
        private struct Rings {
            var all: [DecisionRing] = []
            var byLoop: [ObjectIdentifier: DecisionRing] = [:]
            var seed: UInt64
        }
        private let rings: Mutex<Rings>
        private let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            rings = Mutex(Rings(seed: UInt64(truncatingIfNeeded: getpid()) &* 0x9E37_79B9_7F4A_7C15))
        }

        var all: [DecisionRing] { rings.withLock { $0.all } }

        func make(forLoop loop: ObjectIdentifier? = nil) -> DecisionRing {
            rings.withLock { rings in
                if let loop, let ring = rings.byLoop[loop] { return ring }
                rings.seed = rings.seed &+ 0xBF58_476D_1CE4_E5B9
                let ring = DecisionRing(capacity: capacity, seed: rings.seed)
                rings.all.append(ring)
                if let loop { rings.byLoop[loop] = ring }
                return ring
            }
        }
    }

    /// Opens the log (so a path that cannot be written fails at start). `loops` rings are
    /// made at once (tests); servers make one per event loop with `makeRing` or
    /// `ring(forLoop:)`.
    public init(configuration: DecisionLogConfiguration, loops: Int = 0, logger: Logger) throws(ConfigurationError) {
        let problems = configuration.problems
        guard problems.isEmpty else { throw ConfigurationError(problems.map { "--decision-log: \($0)" }) }
        self.configuration = configuration
        ringList = RingList(capacity: configuration.bufferSize)
        for _ in 0..<loops { _ = ringList.make() }
        sampleThreshold =
            configuration.sampleRate >= 1
            ? .max : UInt64(max(0, configuration.sampleRate) * 18_446_744_073_709_549_568.0)
        methodMask = (configuration.methods ?? Set(DecisionMethod.allCases)).reduce(0) { $0 | 1 << UInt32($1.rawValue) }
        writer = try DecisionLogWriter(configuration: configuration, rings: ringList, logger: logger)
        pool = NIOThreadPool(numberOfThreads: 1)
    }

    /// The rings made so far.
    var rings: [DecisionRing] { ringList.all }

    /// A new ring, for one event loop (epoll).
    func makeRing() -> DecisionRing { ringList.make() }

    /// The ring of the event loop `loop` (NIO), made on first use.
    func ring(forLoop loop: ObjectIdentifier) -> DecisionRing { ringList.make(forLoop: loop) }

    /// Starts the writer thread.
    public func start() {
        let start = state.withLock { state -> Bool in
            guard case .idle = state else { return false }
            state = .running
            return true
        }
        guard start else { return }
        pool.start()
        let writer = self.writer
        pool.submit { _ in writer.run() }
    }

    /// Stops the writer after it has written everything recorded so far, and closes the file.
    /// Call after the loops stopped recording.
    public func stop() async {
        let wasRunning = state.withLock { state -> Bool in
            defer { state = .stopped }
            if case .running = state { return true }
            return false
        }
        guard wasRunning else {
            writer.closeFile()
            return
        }
        writer.requestStop()
        try? await pool.shutdownGracefully()
    }

    /// The writer, for tests that drain by hand instead of starting its thread.
    var writerForTests: DecisionLogWriter { writer }

    public var statistics: Statistics {
        var statistics = writer.statistics
        statistics.dropped = ringList.all.reduce(0) { $0 &+ $1.dropped }
        return statistics
    }

    /// Whether a decision of `method` is recorded on `ring` (the method filter, then the
    /// sampling draw). The denials filter needs the outcome: `record` applies it.
    @inline(__always)
    func wants(_ method: DecisionMethod, on ring: DecisionRing) -> Bool {
        guard methodMask & (1 << UInt32(method.rawValue)) != 0 else { return false }
        return sampleThreshold == .max || ring.nextRandom() <= sampleThreshold
    }

    /// Records a decision on `ring` (the loop's own), unless only denials are logged and this
    /// is none.
    @inline(__always)
    func record(
        _ record: DecisionRecord, ids: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?),
        on ring: DecisionRing
    ) {
        if configuration.denialsOnly && !record.outcome.isDenial { return }
        ring.record(record, ids: ids)
    }

    /// The wall clock, nanoseconds since the Unix epoch.
    static func unixNanos() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// The writer thread's side: drains, formats, writes, rotates.
final class DecisionLogWriter: @unchecked Sendable {
    private let configuration: DecisionLogConfiguration
    private let rings: DecisionLog.RingList
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    /// Signalled by a stop, so the writer does not sleep out its interval.
    private let wakeup = DispatchSemaphore(value: 0)
    private let counters = Mutex(DecisionLog.Statistics(written: 0, dropped: 0, lost: 0, writeErrors: 0, rotations: 0))

    // Writer thread only (and `init` / `closeFile` before or after it runs).
    private var fd: Int32 = -1
    private var fileBytes = 0
    private var buffer = LineBuffer(capacity: DecisionLogWriter.chunkBytes + 8192)
    private var failing = false
    private let format = DecisionLogFormat()

    init(configuration: DecisionLogConfiguration, rings: DecisionLog.RingList, logger: Logger) throws(ConfigurationError) {
        self.configuration = configuration
        self.rings = rings
        self.logger = logger
        if let error = openFile() {
            throw ConfigurationError("--decision-log: cannot open \(path): \(error)")
        }
    }

    private var path: String {
        switch configuration.destination {
        case .file(let path): path
        case .standardOutput: "standard output"
        }
    }

    var statistics: DecisionLog.Statistics { counters.withLock { $0 } }

    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        wakeup.signal()
    }

    /// The writer thread's loop: drain, write, wait for the flush interval (or a stop);
    /// after a stop, one last drain.
    func run() {
        let nanos = max(1_000_000, configuration.flushInterval.wholeNanoseconds)
        while !stopRequested.load(ordering: .acquiring) {
            flush()
            _ = wakeup.wait(timeout: .now() + .nanoseconds(Int(clamping: nanos)))
        }
        flush()
        closeFile()
    }

    /// What is formatted before it is written: small enough that write(2) copies it out of
    /// the CPU's cache (formatting a whole drain first, megabytes at full logging, made the
    /// kernel's copy into the page cache read it back from memory).
    static let chunkBytes = 64 << 10

    /// Drains every ring and writes what they held. Writer thread only.
    func flush() {
        var lines = 0
        for ring in rings.all {
            _ = ring.drain { slot in
                format.append(slot, to: &buffer)
                lines += 1
                if buffer.count >= Self.chunkBytes {
                    write(lines: lines)
                    buffer.removeAll()
                    lines = 0
                }
            }
        }
        guard lines > 0 else { return }
        write(lines: lines)
        buffer.removeAll()
    }

    private func write(lines: Int) {
        if fd < 0, let error = openFile() {
            fail(lines: lines, "cannot open \(path): \(error)")
            return
        }
        if let limit = configuration.maxFileBytes, case .file = configuration.destination,
            fileBytes > 0, fileBytes + buffer.count > limit
        {
            rotate()
            if fd < 0, let error = openFile() {
                fail(lines: lines, "cannot open \(path) after rotating it: \(error)")
                return
            }
        }
        var written = 0
        let failure: Int32? = buffer.withBytes { bytes in
            while written < bytes.count {
                let n = systemWrite(fd, bytes.baseAddress! + written, bytes.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += n
            }
            return nil
        }
        fileBytes += written
        if let failure {
            // Part of a line may be in the file; the lines of this write count as lost.
            fail(lines: lines, "cannot write \(path): \(String(cString: strerror(failure)))")
            return
        }
        counters.withLock { $0.written &+= UInt64(lines) }
        if failing {
            failing = false
            logger.notice("the decision log is written again", metadata: ["path": "\(path)"])
        }
    }

    private func fail(lines: Int, _ message: String) {
        counters.withLock {
            $0.writeErrors &+= 1
            $0.lost &+= UInt64(lines)
        }
        if !failing {
            failing = true
            logger.error(
                "decision log: \(message); decisions are lost until it can be written (counted in the metrics), serving goes on")
        }
    }

    /// Opens (or creates) the file for appending; the error text when it cannot.
    private func openFile() -> String? {
        switch configuration.destination {
        case .standardOutput:
            fd = STDOUT_FILENO
            fileBytes = 0
            return nil
        case .file(let path):
            let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard opened >= 0 else { return String(cString: strerror(errno)) }
            var status = stat()
            guard fstat(opened, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG || (status.st_mode & S_IFMT) == S_IFIFO || (status.st_mode & S_IFMT) == S_IFCHR else {
                close(opened)
                return "not a regular file"
            }
            fd = opened
            fileBytes = Int(status.st_size)
            return nil
        }
    }

    /// PATH → PATH.1 → … → PATH.N (the oldest dropped), then a new PATH on the next write.
    private func rotate() {
        guard case .file(let path) = configuration.destination else { return }
        closeFile()
        let keep = configuration.keepFiles
        if keep == 0 {
            unlink(path)
        } else {
            unlink("\(path).\(keep)")
            if keep > 1 {
                for index in stride(from: keep - 1, through: 1, by: -1) {
                    rename("\(path).\(index)", "\(path).\(index + 1)")
                }
            }
            rename(path, "\(path).1")
        }
        counters.withLock { $0.rotations &+= 1 }
    }

    func closeFile() {
        if fd >= 0, fd != STDOUT_FILENO { close(fd) }
        fd = -1
    }
}

private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, bytes, count)
}

// Reading a database that Litestream's follower (`litestream restore -f`) keeps up to date.
//
// The follower does not commit through SQLite: it writes the pages of each replicated
// transaction straight into the file (`pwrite`, then `fsync` and `ftruncate`), holding
// the locks an SQLite writer holds for that, taken with fcntl on SQLite's own lock bytes:
// a write lock on the PENDING byte, then on the SHARED range, waiting (F_SETLKW) until
// every reader has let go (litestream 0.5.x, internal/lock_unix.go, replica.go
// applyLTXFile). The restored file keeps the primary's WAL flag in its header until a
// replicated transaction rewrites page 1, which the follower stamps "rollback journal".
//
// So a reader is consistent only if it takes SQLite's locks for the whole of its read, and
// it must not hold them between reads: a WAL-mode connection keeps its SHARED lock on the
// database file for as long as it is open, and the follower then waits for it forever.
// (The version probe recognises such a file by the `-txid` file Litestream writes beside
// it; the tests write one.)
//
// These tests play the follower in-process with open-file-description locks (F_OFD_*):
// unlike classic fcntl locks they conflict with the locks SQLite takes in this same
// process, exactly as Litestream's locks conflict with authzd's across processes.

import AuthzEngine
import AuthzStore
import AuthzWorkloads
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("A Litestream follower's file")
struct FollowerFileTests {
    @Test func anIdleVersionProbeDoesNotBlockTheFollower() throws {
        let directory = try StoreScratchDirectory()
        let states = try DatabaseStates(directory)
        let path = directory.path("follower.db")
        try states.first.bytes.write(to: URL(fileURLWithPath: path))
        try markAsFollower(path)
        #expect(states.first.bytes[18] == 2, "a restored follower's file starts in WAL mode")

        let probe = VersionProbe(path: path)
        #expect(try probe.current() == states.first.version)
        // Between checks the probe holds no lock: the follower gets its lock at once.
        let follower = try FollowerWriter(path: path)
        #expect(follower.tryLock(), "an idle probe still holds a lock on the database file")
        follower.unlock()

        // And a change the follower writes without touching page 1 (no change counter
        // moves, so a connection's page cache would not notice) is seen at the next check.
        try #require(states.first.page(1) == states.second.page(1), "the second state must keep page 1")
        follower.apply(states.second.bytes, pageSize: states.pageSize, stampPageOne: false)
        #expect(try probe.current() == states.second.version)
        #expect(try SnapshotLoader.readWorkspace(path: path).version == states.second.version)
    }

    @Test(arguments: [false, true])
    func loadsWhileTheFollowerWritesPagesAreNeverTorn(rollbackHeader: Bool) throws {
        let directory = try StoreScratchDirectory()
        let states = try DatabaseStates(directory)
        let path = directory.path("follower.db")
        var initial = states.first.bytes
        if rollbackHeader { (initial[18], initial[19]) = (1, 1) }
        try initial.write(to: URL(fileURLWithPath: path))
        try markAsFollower(path)
        let expected: [UInt64: Workspace] = [
            states.first.version: states.first.workspace, states.third.version: states.third.workspace,
        ]
        #expect(states.first.version != states.third.version)
        #expect(states.first.workspace != states.third.workspace)

        // The follower on a thread of its own (it blocks in fcntl, as Litestream does),
        // swapping the two states until the loads on this thread have had their turn.
        let minimumSwaps = 4
        let minimumLoads = 16
        let pageSize = states.pageSize
        let (first, third) = (states.first.bytes, states.third.bytes)
        let progress = WriterProgress()
        Thread {
            defer { progress.finish() }
            guard let follower = try? FollowerWriter(path: path) else { return }
            var swap = 0
            while swap < minimumSwaps || swap % 2 == 1 || !progress.readerIsDone {
                // Slowly (a pause after each page), so that a reader not excluded by the
                // locks would meet a half-written file; then a short pause with the lock
                // free, so that readers see each state.
                follower.apply(swap % 2 == 0 ? third : first, pageSize: pageSize, stampPageOne: true, pause: 200)
                swap += 1
                progress.swapped()
                usleep(2_000)
            }
        }.start()
        var loads = 0
        var versions = Set<UInt64>()
        var wrong: [String] = []
        let probe = VersionProbe(path: path)
        while !progress.isFinished {
            let (workspace, version) = try SnapshotLoader.readWorkspace(path: path)
            loads += 1
            versions.insert(version)
            if expected[version] != workspace { wrong.append("load \(loads): version \(version), other rows") }
            let probed = try probe.current()
            if expected[probed] == nil { wrong.append("probe: unknown version \(probed)") }
            if loads >= minimumLoads { progress.readerDone() }
            // authzd loads after a change, not back to back.
            usleep(1_000)
        }
        #expect(progress.swaps >= minimumSwaps)
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect(loads >= minimumLoads)
        #expect(versions == Set(expected.keys), "the reader saw versions \(versions.sorted())")
        // An even number of swaps: the file ends in the first state.
        #expect(try SnapshotLoader.readWorkspace(path: path).version == states.first.version)
    }

    /// The check the test above relies on does catch a torn file: the same writer without
    /// its locks, stopped half-way (the new state's first half of pages over the old file),
    /// leaves a file whose load fails or does not match either state.
    @Test func theCheckCatchesAFileWrittenHalfWayWithoutLocks() throws {
        let directory = try StoreScratchDirectory()
        let states = try DatabaseStates(directory)
        let path = directory.path("follower.db")
        var torn = states.first.bytes
        let pages = states.third.bytes.count / states.pageSize
        for page in 0..<(pages / 2) {
            let range = page * states.pageSize..<(page + 1) * states.pageSize
            if range.upperBound <= torn.count {
                torn.replaceSubrange(range, with: states.third.bytes[range])
            } else {
                torn.append(contentsOf: states.third.bytes[range])
            }
        }
        #expect(torn != states.first.bytes && torn != states.third.bytes)
        try torn.write(to: URL(fileURLWithPath: path))
        let matches: Bool
        do {
            let (workspace, version) = try SnapshotLoader.readWorkspace(path: path)
            matches =
                (version == states.first.version && workspace == states.first.workspace)
                || (version == states.third.version && workspace == states.third.workspace)
        } catch {
            matches = false  // an error (corrupt) also tells the file is not whole
        }
        #expect(!matches, "a half-written file passed the consistency check")
    }
}

/// What `litestream restore -f` writes beside the database it keeps: the last transaction
/// it applied (16 hex digits and a newline).
private func markAsFollower(_ path: String) throws {
    try Data("0000000000000001\n".utf8).write(to: URL(fileURLWithPath: path + "-txid"))
}

/// How far the follower thread got.
private final class WriterProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var count = 0
    private var enoughLoads = false

    func swapped() { lock.withLock { count += 1 } }
    func finish() { lock.withLock { done = true } }
    func readerDone() { lock.withLock { enoughLoads = true } }
    var isFinished: Bool { lock.withLock { done } }
    var readerIsDone: Bool { lock.withLock { enoughLoads } }
    var swaps: Int { lock.withLock { count } }
}

/// Three committed states of one store, each as the bytes of a checkpointed database file:
/// the sample workspace; the same after one in-place rename (a change within one page, page
/// 1 untouched); a large synthetic workspace (most pages differ, the file grows).
private struct DatabaseStates {
    struct State {
        var bytes: Data
        var version: UInt64
        var workspace: Workspace

        func page(_ number: Int, size: Int = 4096) -> Data {
            bytes[(number - 1) * size..<number * size]
        }
    }

    let first: State
    let second: State
    let third: State
    let pageSize = 4096

    init(_ directory: StoreScratchDirectory) throws {
        let path = directory.path("primary.db")
        func capture() throws -> State {
            // Closed: the WAL is checkpointed into the file; read back as a reader would.
            let (workspace, version) = try SnapshotLoader.readWorkspace(path: path)
            return State(bytes: try Data(contentsOf: URL(fileURLWithPath: path)), version: version, workspace: workspace)
        }
        do {
            let store = try WorkspaceStore.open(path: path)
            try store.importWorkspace(sampleWorkspace())
        }
        first = try capture()
        do {
            let store = try WorkspaceStore.open(path: path)
            let group = sampleWorkspace().groups[2].id
            try apply(store, #"{"op":"rename_group","group":"\#(group)","name":"Data Team (renamed)"}"#)
        }
        second = try capture()
        do {
            let store = try WorkspaceStore.open(path: path)
            let large = SyntheticWorkspace.generate(
                SyntheticWorkspace.Parameters(users: 300, groups: 20, projects: 60, grantsPerProject: 4, seed: 7))
            try store.importChanges(large, mode: .replace)
        }
        third = try capture()
        precondition(Int(first.bytes[16]) << 8 | Int(first.bytes[17]) == pageSize)
    }
}

/// Writes database pages into a file the way Litestream's follower applies a transaction,
/// with its locks (as open-file-description locks).
private final class FollowerWriter {
    let descriptor: Int32
    // SQLite's lock bytes (os_unix.c) and the order Litestream takes them in.
    static let pendingByte: off_t = 0x4000_0000
    static let sharedFirst: off_t = pendingByte + 2
    static let sharedSize: off_t = 510
    // <fcntl.h> (Linux): not imported into Swift.
    static let ofdSetLock: Int32 = 37
    static let ofdSetLockWait: Int32 = 38

    init(path: String) throws {
        descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(descriptor) }

    private func lock(_ type: Int32, start: off_t, length: off_t, wait: Bool) -> Bool {
        var request = flock()
        request.l_type = Int16(type)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = start
        request.l_len = length
        request.l_pid = 0
        return fcntl(descriptor, wait ? Self.ofdSetLockWait : Self.ofdSetLock, &request) == 0
    }

    /// Litestream's LockFileExclusive without waiting: true when both locks were taken.
    func tryLock() -> Bool {
        guard lock(F_WRLCK, start: Self.pendingByte, length: 1, wait: false) else { return false }
        guard lock(F_WRLCK, start: Self.sharedFirst, length: Self.sharedSize, wait: false) else {
            _ = lock(F_UNLCK, start: Self.pendingByte, length: 1, wait: false)
            return false
        }
        return true
    }

    func unlock() {
        _ = lock(F_UNLCK, start: Self.sharedFirst, length: Self.sharedSize, wait: false)
        _ = lock(F_UNLCK, start: Self.pendingByte, length: 1, wait: false)
    }

    /// Litestream's applyLTXFile: lock (waiting for readers), write every page that
    /// differs, stamping page 1 "rollback journal" with a random change counter, sync,
    /// truncate to the new size, unlock.
    func apply(_ target: Data, pageSize: Int, stampPageOne: Bool, pause microseconds: UInt32 = 0) {
        precondition(lock(F_WRLCK, start: Self.pendingByte, length: 1, wait: true))
        precondition(lock(F_WRLCK, start: Self.sharedFirst, length: Self.sharedSize, wait: true))
        defer { unlock() }
        var current = [UInt8](repeating: 0, count: pageSize)
        for page in 0..<(target.count / pageSize) {
            var data = [UInt8](target[page * pageSize..<(page + 1) * pageSize])
            if page == 0 && stampPageOne {
                (data[18], data[19]) = (1, 1)
                for index in 24..<28 { data[index] = UInt8.random(in: 0...255) }
            }
            let offset = off_t(page * pageSize)
            let read = pread(descriptor, &current, pageSize, offset)
            if read == pageSize && current == data { continue }
            precondition(pwrite(descriptor, data, pageSize, offset) == pageSize)
            if microseconds > 0 { usleep(microseconds) }
        }
        precondition(fsync(descriptor) == 0)
        precondition(ftruncate(descriptor, off_t(target.count)) == 0)
        precondition(fsync(descriptor) == 0)
    }
}

// The snapshot in service. Requests read the reference (one short uncontended lock per
// read batch); a loader swaps it atomically. A request that got the old snapshot finishes
// on it: `Snapshot` is immutable and reference-counted.

public import AuthzEngine
public import AuthzStore
import Synchronization

/// Holds the current `Snapshot` (or none) and the outcome of the last load attempt.
///
/// Thread-safe. `snapshot` is what the request path reads; `install(_:)` and
/// `load(databasePath:)` are what a (future) reloader calls.
public final class SnapshotHolder: Sendable {
    /// The holder's whole state, as Status reports it.
    public struct State: Sendable {
        /// The snapshot in service; nil until one was loaded.
        public var snapshot: Snapshot?
        /// When `snapshot` was installed (Unix ms); 0 without one.
        public var loadedAtUnixMs: UInt64 = 0
        /// Why the last load attempt failed; nil when it succeeded (or none was made).
        public var lastLoadError: String?
        /// When the last load was attempted (Unix ms); 0 before any.
        public var lastLoadAttemptUnixMs: UInt64 = 0
        /// The first failed attempt since the last success (Unix ms); nil when the last
        /// attempt succeeded.
        public var failingSinceUnixMs: UInt64?

        /// How long loads have been failing while an older snapshot stays in service, in ms
        /// at `now`; 0 when the last load succeeded or no snapshot is served.
        public func staleForMs(now: UInt64) -> UInt64 {
            guard snapshot != nil, let since = failingSinceUnixMs, now > since else { return 0 }
            return now - since
        }
    }

    private let state: Mutex<State>

    /// A holder serving `snapshot` (none by default).
    public init(snapshot: Snapshot? = nil) {
        var initial = State()
        if let snapshot {
            let now = WallClock.nowUnixMs()
            initial.snapshot = snapshot
            initial.loadedAtUnixMs = now
            initial.lastLoadAttemptUnixMs = now
        }
        state = Mutex(initial)
    }

    /// The snapshot in service, or nil.
    public var snapshot: Snapshot? {
        state.withLock { $0.snapshot }
    }

    /// A copy of the whole state.
    public var current: State {
        state.withLock { $0 }
    }

    /// Puts `snapshot` in service (atomically for every later read) and records a
    /// successful load. Returns the snapshot it replaced.
    @discardableResult
    public func install(_ snapshot: Snapshot) -> Snapshot? {
        let now = WallClock.nowUnixMs()
        return state.withLock { state in
            let previous = state.snapshot
            state.snapshot = snapshot
            state.loadedAtUnixMs = now
            state.lastLoadAttemptUnixMs = now
            state.lastLoadError = nil
            state.failingSinceUnixMs = nil
            return previous
        }
    }

    /// Records a failed load attempt; the snapshot in service (if any) stays.
    public func recordLoadFailure(_ message: String) {
        let now = WallClock.nowUnixMs()
        state.withLock { state in
            state.lastLoadError = message
            state.lastLoadAttemptUnixMs = now
            if state.failingSinceUnixMs == nil { state.failingSinceUnixMs = now }
        }
    }

    /// Loads the database read-only and installs the snapshot, or records why it could not.
    @discardableResult
    public func load(databasePath: String) -> Result<Snapshot, StoreError> {
        do throws(StoreError) {
            let snapshot = try SnapshotLoader.load(path: databasePath)
            install(snapshot)
            return .success(snapshot)
        } catch {
            recordLoadFailure(error.description)
            return .failure(error)
        }
    }
}

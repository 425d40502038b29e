// The lookups of RULES.md §8: which projects a user can open, who can open a project,
// which assets a user can use. Each is defined by the single decisions: a page lists, in id
// order, every candidate whose `effectivePermission` / `canUse` reaches the minimum, with
// that decision's level or access and reason, so a lookup can never disagree with them.
//
// What keeps a page cheap is the candidate set, never the decision: a candidate is anything
// that can reach the minimum, found by walking sorted index lists (index order is id order,
// Snapshot.swift) from the page's starting id:
// - ListProjects(user): a step-2 source can only raise the level up to its own level, and
//   steps 3-6 only lower it except the admin floor, so the candidates are the projects the
//   user owns or holds a direct grant on, the projects granting one of the user's groups at
//   least the minimum (one list per group and level), the projects shared with the
//   workspace at least at the minimum and the publicly shared ones; an admin listing at most
//   `can_explore` gets every project (the admin floor), walked in order. A viewer asking for
//   more than `can_view` (a role cap) gets nothing without a walk.
// - ListProjectAccess(project): the owner, the users granted directly, the members of the
//   groups granted at least the minimum, and the admins (admin floor); when the workspace or
//   public share reaches the minimum, every user is a candidate and the walk is over all
//   users in order, which is what pages must stay cheap for.
// - ListAssets(user, project?): every asset (a workspace has few), in order; the project's
//   EffectivePermission is computed once per page, not once per asset.
// Several lists are merged with a binary heap of run heads in stack memory: no allocation
// per item. A page stops after `pageSize` entries or after visiting a budget of candidates
// (so a page's work is bounded whatever the data); its token then names the last candidate
// visited, and the next page continues after that id, on whatever snapshot serves it.

/// The limits on a lookup page.
public enum LookupLimits {
    /// The page size when a request names none.
    public static let defaultPageSize = 100
    /// The largest page; a larger request is clamped to it (and the page says so).
    public static let maxPageSize = 1_000

    /// The page size applied for a requested one (0 or less: the default), and whether it was
    /// clamped.
    public static func pageSize(_ requested: Int) -> (size: Int, clamped: Bool) {
        if requested <= 0 { return (defaultPageSize, false) }
        if requested > maxPageSize { return (maxPageSize, true) }
        return (requested, false)
    }

    /// The most candidates one page visits: enough never to cut a page short when most
    /// candidates qualify, few enough to bound one page's work (a few hundred µs).
    static func visitBudget(_ pageSize: Int) -> Int { max(4_096, 8 * pageSize) }
}

/// The three listings; the raw value is the listing's byte in page tokens.
public enum LookupKind: UInt8, Sendable, CaseIterable {
    case projects = 1, projectAccess, assets

    /// The query operation's name (`authzctl check`, the conformance files).
    public var name: String {
        switch self {
        case .projects: "list_projects"
        case .projectAccess: "list_project_access"
        case .assets: "list_assets"
        }
    }
}

/// An entry of a listing: an index into the snapshot's ids of the listed kind, and the
/// reason of its decision.
public protocol LookupEntry: Sendable, Equatable {
    var index: Int32 { get }
    var reason: Reason { get }
}

/// One listed project (ListProjects) or user (ListProjectAccess): its index in the snapshot
/// (`projectIds` / `userIds`) and the `effectivePermission` decision's level and reason.
public struct LevelEntry: LookupEntry {
    public var index: Int32
    public var level: Level
    public var reason: Reason

    @inlinable public init(index: Int32, level: Level, reason: Reason) {
        self.index = index
        self.level = level
        self.reason = reason
    }
}

/// One listed asset: its index (`assetIds`) and the `canUse` decision's access and reason.
public struct AccessEntry: LookupEntry {
    public var index: Int32
    public var access: Access
    public var reason: Reason

    @inlinable public init(index: Int32, access: Access, reason: Reason) {
        self.index = index
        self.access = access
        self.reason = reason
    }
}

/// One page of a listing.
public struct LookupPage<Entry: Sendable & Equatable>: Sendable, Equatable {
    /// In id order; possibly fewer than the page size even when more follow.
    public var entries: [Entry]
    /// The token of the next page; empty when the listing is complete.
    public var nextPageToken: String
    /// The snapshot this page was computed from.
    public var snapshotVersion: UInt64
    /// The request's token was issued at another snapshot version: this page continues the
    /// listing by id on this snapshot, so the listing as a whole spans two snapshots.
    public var snapshotChanged: Bool
    /// The page size applied (the default for none, the maximum for a larger one).
    public var pageSize: Int
    /// The requested page size was over the maximum and was clamped to it.
    public var pageSizeClamped: Bool
    /// Why the listing is empty whatever the pages: its user is unknown (`unknown_user`) or
    /// inactive (`user_inactive`), or its project is unknown (`unknown_project`), as the single
    /// decision would answer; nil otherwise.
    public var reason: Reason?

    public init(
        entries: [Entry], nextPageToken: String, snapshotVersion: UInt64, snapshotChanged: Bool = false,
        pageSize: Int, pageSizeClamped: Bool = false, reason: Reason? = nil
    ) {
        self.entries = entries
        self.nextPageToken = nextPageToken
        self.snapshotVersion = snapshotVersion
        self.snapshotChanged = snapshotChanged
        self.pageSize = pageSize
        self.pageSizeClamped = pageSizeClamped
        self.reason = reason
    }
}

/// A lookup request that cannot be answered: the field at fault and why.
public struct LookupError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Field: String, Sendable {
        case pageToken = "page_token"
        case minLevel = "min_level"
        case minAccess = "min_access"
    }

    public var field: Field
    public var message: String

    public init(_ field: Field, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field.rawValue): \(message)" }
}

// MARK: - Pages

extension Snapshot {
    /// `ListProjects(user, minLevel)` (RULES.md §8): one page of the projects `user` (empty:
    /// the anonymous web viewer) can open at `minLevel` or more, in id order.
    /// `pageSize` 0 is the default; `pageToken` "" starts the listing.
    public func listProjects(
        user: String, minLevel: Level = .canViewApp, pageSize: Int = 0, pageToken: String = ""
    ) throws(LookupError) -> LookupPage<LevelEntry> {
        try Self.checkMinimum(minLevel)
        let fingerprint = PageToken.fingerprint(.projects, user, nil, minLevel.rawValue)
        let (size, clamped) = LookupLimits.pageSize(pageSize)
        let resume = try resumePoint(pageToken, .projects, fingerprint, in: projectIds)
        let key = userKey(user)
        var entries: [LevelEntry] = []
        entries.reserveCapacity(min(size + 1, projectCount))
        let visited = scanProjects(key, minLevel: minLevel, from: resume.start, limit: size + 1, into: &entries)
        let last = finish(&entries, size, visited)
        return LookupPage(
            entries: entries, nextPageToken: nextToken(.projects, fingerprint, last, in: projectIds),
            snapshotVersion: version, snapshotChanged: resume.changed, pageSize: size, pageSizeClamped: clamped,
            reason: subjectReason(key))
    }

    /// `ListProjectAccess(project, minLevel)` (RULES.md §8): one page of the known, active
    /// users who can open `project` at `minLevel` or more, in id order.
    public func listProjectAccess(
        project: String, minLevel: Level = .canViewApp, pageSize: Int = 0, pageToken: String = ""
    ) throws(LookupError) -> LookupPage<LevelEntry> {
        try Self.checkMinimum(minLevel)
        let fingerprint = PageToken.fingerprint(.projectAccess, project, nil, minLevel.rawValue)
        let (size, clamped) = LookupLimits.pageSize(pageSize)
        let resume = try resumePoint(pageToken, .projectAccess, fingerprint, in: userIds)
        let key = projectKey(project)
        var entries: [LevelEntry] = []
        entries.reserveCapacity(min(size + 1, userCount))
        let visited = scanProjectAccess(key, minLevel: minLevel, from: resume.start, limit: size + 1, into: &entries)
        let last = finish(&entries, size, visited)
        return LookupPage(
            entries: entries, nextPageToken: nextToken(.projectAccess, fingerprint, last, in: userIds),
            snapshotVersion: version, snapshotChanged: resume.changed, pageSize: size, pageSizeClamped: clamped,
            reason: key.isKnown ? nil : .unknownProject)
    }

    /// `ListAssets(user, project?, minAccess)` (RULES.md §8): one page of the assets `user`
    /// can use (in `project`, if given) at `minAccess` or more, in id order.
    public func listAssets(
        user: String, project: String? = nil, minAccess: Access = .view, pageSize: Int = 0, pageToken: String = ""
    ) throws(LookupError) -> LookupPage<AccessEntry> {
        guard minAccess >= .view else {
            throw LookupError(.minAccess, "\(minAccess.name) is below view, the least a listing can ask for")
        }
        let fingerprint = PageToken.fingerprint(.assets, user, project, minAccess.rawValue)
        let (size, clamped) = LookupLimits.pageSize(pageSize)
        let resume = try resumePoint(pageToken, .assets, fingerprint, in: assetIds)
        let key = userKey(user)
        let projectKey = project.map { self.projectKey($0) }
        var entries: [AccessEntry] = []
        entries.reserveCapacity(min(size + 1, assetCount))
        let visited = scanAssets(key, project: projectKey, minAccess: minAccess, from: resume.start, limit: size + 1, into: &entries)
        let last = finish(&entries, size, visited)
        var reason = subjectReason(key)
        if let projectKey, !projectKey.isKnown { reason = .unknownProject }
        return LookupPage(
            entries: entries, nextPageToken: nextToken(.assets, fingerprint, last, in: assetIds),
            snapshotVersion: version, snapshotChanged: resume.changed, pageSize: size, pageSizeClamped: clamped,
            reason: reason)
    }

    /// A page is scanned for one entry more than its size, so that a page ends with a token
    /// only when something follows: the extra entry is dropped (the next page decides it
    /// again) and the token names the last entry kept. Otherwise the token names the last
    /// candidate the scan visited, if it stopped before the end (its visit budget).
    private func finish<Entry: LookupEntry>(_ entries: inout [Entry], _ size: Int, _ lastVisited: Int32?) -> Int32? {
        guard entries.count > size else { return lastVisited }
        entries.removeLast()
        return entries[size - 1].index
    }

    private static func checkMinimum(_ minLevel: Level) throws(LookupError) {
        guard minLevel >= .canViewApp else {
            throw LookupError(.minLevel, "\(minLevel.name) is below can_view_app, the least a listing can ask for")
        }
    }

    private func subjectReason(_ user: UserKey) -> Reason? {
        if user == .unknown { return .unknownUser }
        if user.isKnownUser, !users[Int(user.raw)].active { return .userInactive }
        return nil
    }

    /// Where a page starts: index 0 without a token, else the first index after the token's
    /// id (found by binary search, on whatever snapshot this is).
    private func resumePoint(
        _ token: String, _ kind: LookupKind, _ fingerprint: UInt64, in ids: IdIndex
    ) throws(LookupError) -> (start: Int32, changed: Bool) {
        if token.isEmpty { return (0, false) }
        let decoded = try PageToken(decoding: token)
        guard decoded.kind == kind else {
            throw LookupError(
                .pageToken,
                "the page token belongs to a \(decoded.kind.name) listing, not \(kind.name); start the listing again without a token")
        }
        guard decoded.fingerprint == fingerprint else {
            throw LookupError(
                .pageToken,
                "the page token belongs to another \(kind.name) listing (\(Self.parameters(kind))); start the listing again without a token")
        }
        let start = decoded.lastId.withUnsafeBytes { ids.firstIndex(after: $0) }
        return (start, decoded.snapshotVersion != version)
    }

    /// What tells two listings of a kind apart, for error messages.
    private static func parameters(_ kind: LookupKind) -> String {
        switch kind {
        case .projects: "another user or min_level"
        case .projectAccess: "another project or min_level"
        case .assets: "another user, project or min_access"
        }
    }

    private func nextToken(_ kind: LookupKind, _ fingerprint: UInt64, _ last: Int32?, in ids: IdIndex) -> String {
        guard let last else { return "" }
        let lastId = ids.withUTF8(at: last) { Array($0.prefix(PageToken.maxIdLength)) }
        return PageToken(kind: kind, snapshotVersion: version, fingerprint: fingerprint, lastId: lastId).encoded()
    }
}

// MARK: - Scans (allocation-free: entries go into the caller's reserved array)

extension Snapshot {
    /// ListProjects from project index `start`: appends at most `limit` entries and returns
    /// the last project visited if candidates remain after it, nil when the listing is
    /// complete.
    func scanProjects(
        _ user: UserKey, minLevel: Level, from start: Int32, limit: Int, into entries: inout [LevelEntry]
    ) -> Int32? {
        if user == .unknown { return nil }
        if user == .anonymous {
            func decide(_ p: Int32) -> Bool {
                let decision = effectivePermission(user, EntityKey(raw: p))
                guard decision.level >= minLevel else { return false }
                entries.append(LevelEntry(index: p, level: decision.level, reason: decision.reason))
                return true
            }
            // The public share is all the anonymous viewer gets.
            guard minLevel <= .canViewApp else { return nil }
            return withRuns(capacity: 1) { runs in
                runs.append(Run(publicShared, 0, publicShared.count))
                return scan(runs, from: start, limit: limit, decide)
            }
        }
        let member = users[Int(user.raw)]
        // Steps 3-6 never raise a level above the role's cap.
        guard member.active, minLevel <= member.role.levelCap else { return nil }
        return withUserMemo(user) { memo in
            scanProjects(user, member, memo, minLevel: minLevel, from: start, limit: limit, into: &entries)
        }
    }

    /// ListProjects for a known, active user, deciding with the user's memo.
    private func scanProjects(
        _ user: UserKey, _ member: UserRecord, _ memo: UserMemo, minLevel: Level, from start: Int32, limit: Int,
        into entries: inout [LevelEntry]
    ) -> Int32? {
        func decide(_ p: Int32) -> Bool {
            let decision = effectivePermission(user, EntityKey(raw: p), memo: memo)
            guard decision.level >= minLevel else { return false }
            entries.append(LevelEntry(index: p, level: decision.level, reason: decision.reason))
            return true
        }
        if member.role == .admin, minLevel <= .canExplore {
            // The admin floor: every project.
            return scan(start ..< Int32(projectCount), limit: limit, decide)
        }
        let guest = member.role == .guest
        let levels = 6 - Int(minLevel.rawValue)
        let groupCount = Int(member.groupEnd - member.groupStart)
        return withRuns(capacity: 3 + (guest ? 0 : groupCount * levels)) { runs in
            runs.append(
                Run(packed: userProjects, Int(userProjectStart[Int(user.raw)]), Int(userProjectStart[Int(user.raw) + 1]),
                    minLevel: minLevel))
            if minLevel <= .canViewApp { runs.append(Run(publicShared, 0, publicShared.count)) }
            if !guest {
                let level = Int(minLevel.rawValue)
                runs.append(Run(workspaceShared, Int(workspaceSharedStart[level - 1]), Int(workspaceSharedStart[level])))
                for k in Int(member.groupStart) ..< Int(member.groupEnd) {
                    let slot = Int(userGroups[k]) * 5
                    for level in Int(minLevel.rawValue) ... 5 {
                        runs.append(
                            Run(groupProjects, Int(groupProjectStart[slot + level - 1]), Int(groupProjectStart[slot + level])))
                    }
                }
            }
            return scan(runs, from: start, limit: limit, decide)
        }
    }

    /// ListProjectAccess from user index `start` (see `scanProjects`).
    func scanProjectAccess(
        _ project: EntityKey, minLevel: Level, from start: Int32, limit: Int, into entries: inout [LevelEntry]
    ) -> Int32? {
        guard project.isKnown else { return nil }
        func decide(_ u: Int32) -> Bool {
            let decision = effectivePermission(UserKey(raw: u), project)
            guard decision.level >= minLevel else { return false }
            entries.append(LevelEntry(index: u, level: decision.level, reason: decision.reason))
            return true
        }
        let p = Int(project.raw)
        let record = projects[p]
        if record.workspaceAccess >= minLevel || record.publicAccess >= minLevel {
            // Shared with (nearly) everyone: every user is a candidate.
            return scan(start ..< Int32(userCount), limit: limit, decide)
        }
        let grantedGroups = Int(record.groupGrantEnd - record.groupGrantStart)
        return withRuns(capacity: 3 + grantedGroups) { runs in
            if record.owner >= 0 {
                // The owner, as a one-element run over the record's own field.
                let owner = UnsafeRawPointer(projects.pointer(p)) + MemoryLayout<ProjectRecord>.offset(of: \.owner)!
                let word = owner.assumingMemoryBound(to: UInt32.self)
                runs.append(Run(position: word, end: word + 1, minLevel: 0))
            }
            runs.append(Run(packed: userGrants, Int(record.userGrantStart), Int(record.userGrantEnd), minLevel: minLevel))
            for k in Int(record.groupGrantStart) ..< Int(record.groupGrantEnd) where groupGrants[k] & 7 >= UInt32(minLevel.rawValue) {
                let g = Int(groupGrants[k] >> 3)
                runs.append(Run(groupMembers, Int(groupMemberStart[g]), Int(groupMemberStart[g + 1])))
            }
            if minLevel <= .canExplore { runs.append(Run(admins, 0, admins.count)) }
            return scan(runs, from: start, limit: limit, decide)
        }
    }

    /// ListAssets from asset index `start` (see `scanProjects`). `project` nil: no project.
    func scanAssets(
        _ user: UserKey, project: EntityKey?, minAccess: Access, from start: Int32, limit: Int,
        into entries: inout [AccessEntry]
    ) -> Int32? {
        if let project, !project.isKnown { return nil }
        if user == .unknown { return nil }
        if user.isKnownUser, !users[Int(user.raw)].active { return nil }
        var projectLevel: Level? = nil
        return scan(start ..< Int32(assetCount), limit: limit) { a in
            let decision = canUse(user, knownAsset: Int(a), inProject: project != nil) {
                if let projectLevel { return projectLevel }
                let level = effectivePermission(user, project ?? .unknown).level
                projectLevel = level
                return level
            }
            guard decision.access >= minAccess else { return false }
            entries.append(AccessEntry(index: a, access: decision.access, reason: decision.reason))
            return true
        }
    }

    /// Visits `range` in order until `limit` candidates were listed (`decide` returns true) or
    /// the visit budget is spent; returns the last index visited if the range goes on.
    private func scan(_ range: Range<Int32>, limit: Int, _ decide: (Int32) -> Bool) -> Int32? {
        var budget = LookupLimits.visitBudget(limit)
        var listed = 0
        var index = range.lowerBound
        while index < range.upperBound {
            if decide(index) { listed += 1 }
            budget -= 1
            if listed == limit || budget == 0 {
                return index + 1 < range.upperBound ? index : nil
            }
            index += 1
        }
        return nil
    }

    /// The same over the union of sorted runs: each value at least `start` is visited once,
    /// in ascending order, by merging the runs with a binary heap of their heads.
    private func scan(_ runs: RunList, from start: Int32, limit: Int, _ decide: (Int32) -> Bool) -> Int32? {
        let count = runs.count
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: max(1, count)) { heap in
            // Heap entries: head value << 32 | run number, so ties break by run.
            var size = 0
            for r in 0 ..< count {
                runs.buffer[r].seek(to: UInt32(max(0, start)))
                if let head = runs.buffer[r].head {
                    heap[size] = UInt64(head) << 32 | UInt64(r)
                    size += 1
                }
            }
            // Heapify.
            var node = size / 2
            while node > 0 {
                node -= 1
                Self.siftDown(heap, size, node)
            }
            var budget = LookupLimits.visitBudget(limit)
            var listed = 0
            var previous: Int64 = -1
            while size > 0 {
                let top = heap[0]
                let value = UInt32(truncatingIfNeeded: top >> 32)
                let r = Int(truncatingIfNeeded: top & 0xffff_ffff)
                runs.buffer[r].advance()
                if let head = runs.buffer[r].head {
                    heap[0] = UInt64(head) << 32 | UInt64(r)
                } else {
                    size -= 1
                    heap[0] = heap[size]
                }
                if size > 1 { Self.siftDown(heap, size, 0) }
                if Int64(value) == previous { continue }
                previous = Int64(value)
                if decide(Int32(value)) { listed += 1 }
                budget -= 1
                if listed == limit || budget == 0 {
                    // More candidates remain if any head is past this value.
                    while size > 0, heap[0] >> 32 == UInt64(value) {
                        let r = Int(truncatingIfNeeded: heap[0] & 0xffff_ffff)
                        runs.buffer[r].advance()
                        if let head = runs.buffer[r].head {
                            heap[0] = UInt64(head) << 32 | UInt64(r)
                        } else {
                            size -= 1
                            heap[0] = heap[size]
                        }
                        if size > 1 { Self.siftDown(heap, size, 0) }
                    }
                    return size > 0 ? Int32(value) : nil
                }
            }
            return nil
        }
    }

    @inline(__always)
    private static func siftDown(_ heap: UnsafeMutableBufferPointer<UInt64>, _ size: Int, _ node: Int) {
        var node = node
        let item = heap[node]
        while true {
            var child = 2 * node + 1
            guard child < size else { break }
            if child + 1 < size, heap[child + 1] < heap[child] { child += 1 }
            guard heap[child] < item else { break }
            heap[node] = heap[child]
            node = child
        }
        heap[node] = item
    }

    /// Runs `body` with an empty run list of `capacity` (stack memory when small).
    private func withRuns<R>(capacity: Int, _ body: (inout RunList) -> R) -> R {
        withUnsafeTemporaryAllocation(of: Run.self, capacity: max(1, capacity)) { buffer in
            var runs = RunList(buffer: buffer, count: 0)
            return body(&runs)
        }
    }
}

/// A sorted list of indexes being merged: plain (`Int32` indexes) or packed (`index << 3 |
/// level` words, whose entries below `minLevel` are skipped). The memory belongs to the
/// snapshot's tables, which outlive any scan.
struct Run {
    var position: UnsafePointer<UInt32>
    let end: UnsafePointer<UInt32>
    /// 0 for a plain list; else the list is packed and entries below this level are skipped.
    let minLevel: UInt32

    init(position: UnsafePointer<UInt32>, end: UnsafePointer<UInt32>, minLevel: UInt32) {
        self.position = position
        self.end = end
        self.minLevel = minLevel
    }

    /// `table[start ..< end]`, a plain list.
    init(_ table: FlatTable<Int32>, _ start: Int, _ end: Int) {
        precondition(0 <= start && start <= end && end <= table.count, "run out of range")
        let base = UnsafeRawPointer(table.base).assumingMemoryBound(to: UInt32.self)
        self.init(position: base + start, end: base + end, minLevel: 0)
    }

    /// `table[start ..< end]`, a packed list of which entries below `minLevel` are skipped.
    init(packed table: FlatTable<UInt32>, _ start: Int, _ end: Int, minLevel: Level) {
        precondition(0 <= start && start <= end && end <= table.count, "run out of range")
        self.init(position: UnsafePointer(table.base) + start, end: UnsafePointer(table.base) + end, minLevel: UInt32(minLevel.rawValue))
        skipBelowMinimum()
    }

    /// The current value, nil when the run is exhausted.
    @inline(__always) var head: UInt32? {
        guard position < end else { return nil }
        return minLevel == 0 ? position.pointee : position.pointee >> 3
    }

    @inline(__always) mutating func advance() {
        position += 1
        skipBelowMinimum()
    }

    @inline(__always) private mutating func skipBelowMinimum() {
        guard minLevel != 0 else { return }
        while position < end, position.pointee & 7 < minLevel { position += 1 }
    }

    /// Skips to the first value at least `value` (binary search).
    mutating func seek(to value: UInt32) {
        var low = 0
        var high = end - position
        let shift: UInt32 = minLevel == 0 ? 0 : 3
        while low < high {
            let mid = (low + high) >> 1
            if position[mid] >> shift < value { low = mid + 1 } else { high = mid }
        }
        position += low
        skipBelowMinimum()
    }
}

/// The runs of one scan, in temporary memory.
struct RunList {
    let buffer: UnsafeMutableBufferPointer<Run>
    var count: Int

    mutating func append(_ run: Run) {
        guard run.position < run.end else { return }
        precondition(count < buffer.count, "run list overflow")
        (buffer.baseAddress! + count).initialize(to: run)
        count += 1
    }
}

// MARK: - Page tokens

/// A page token: where a listing continues, opaque to clients (base64url text).
///
/// It holds a format byte, the listing kind, the snapshot version it was issued at, a
/// fingerprint of the listing's parameters (so a token cannot continue another listing), the
/// id of the last candidate visited (the next page starts after it, by id, on any snapshot),
/// and a checksum over all of that. A token carries no authority: the request's own
/// parameters say what is listed, the token only where to continue, so a token that is
/// forged well enough to pass the checks can at most skip ahead. Decoding reads a bounded
/// number of bytes and the id is only ever compared, by binary search.
struct PageToken: Equatable {
    static let format: UInt8 = 1
    static let maxIdLength = 255
    /// format, kind, version, fingerprint, id length.
    static let headerLength = 1 + 1 + 8 + 8 + 1
    static let checksumLength = 8
    static let maxEncodedLength = (headerLength + maxIdLength + checksumLength + 2) / 3 * 4

    var kind: LookupKind
    var snapshotVersion: UInt64
    var fingerprint: UInt64
    var lastId: [UInt8]

    init(kind: LookupKind, snapshotVersion: UInt64, fingerprint: UInt64, lastId: [UInt8]) {
        self.kind = kind
        self.snapshotVersion = snapshotVersion
        self.fingerprint = fingerprint
        self.lastId = lastId
    }

    func encoded() -> String {
        let length = Self.headerLength + lastId.count + Self.checksumLength
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { bytes in
            bytes[0] = Self.format
            bytes[1] = kind.rawValue
            Self.store(snapshotVersion, in: bytes, at: 2)
            Self.store(fingerprint, in: bytes, at: 10)
            bytes[Self.headerLength - 1] = UInt8(lastId.count)
            lastId.withUnsafeBufferPointer { id in
                _ = UnsafeMutableBufferPointer(rebasing: bytes[Self.headerLength...]).initialize(from: id)
            }
            let body = UnsafeBufferPointer(rebasing: bytes[..<(length - Self.checksumLength)])
            Self.store(Self.checksum(body), in: bytes, at: length - Self.checksumLength)
            return Base64URL.encode(UnsafeBufferPointer(bytes))
        }
    }

    init(decoding text: String) throws(LookupError) {
        var text = text
        let count = text.utf8.count
        guard count <= Self.maxEncodedLength else {
            throw LookupError(.pageToken, "malformed page token: \(count) characters, more than any token (\(Self.maxEncodedLength))")
        }
        let decoded: Result<PageToken, LookupError> = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.maxEncodedLength) { buffer in
            guard let length = text.withUTF8({ Base64URL.decode($0, into: buffer) }) else {
                return .failure(LookupError(.pageToken, "malformed page token: not base64url text"))
            }
            let bytes = UnsafeBufferPointer(rebasing: buffer[..<length])
            guard length >= Self.headerLength + Self.checksumLength, bytes[0] == Self.format else {
                return .failure(LookupError(.pageToken, "malformed page token: not a page token of this server"))
            }
            let idLength = Int(bytes[Self.headerLength - 1])
            guard length == Self.headerLength + idLength + Self.checksumLength else {
                return .failure(LookupError(.pageToken, "malformed page token: its length does not match its content"))
            }
            let bodyLength = length - Self.checksumLength
            guard Self.load(bytes, at: bodyLength) == Self.checksum(UnsafeBufferPointer(rebasing: bytes[..<bodyLength])) else {
                return .failure(LookupError(.pageToken, "the page token is damaged or forged (its checksum does not match)"))
            }
            guard let kind = LookupKind(rawValue: bytes[1]) else {
                return .failure(LookupError(.pageToken, "malformed page token: unknown listing kind \(bytes[1])"))
            }
            return .success(
                PageToken(
                    kind: kind, snapshotVersion: Self.load(bytes, at: 2), fingerprint: Self.load(bytes, at: 10),
                    lastId: Array(bytes[Self.headerLength ..< Self.headerLength + idLength])))
        }
        self = try decoded.get()
    }

    /// A hash of a listing's parameters (length-prefixed, so no two parameter lists collide
    /// by concatenation).
    static func fingerprint(_ kind: LookupKind, _ subject: String, _ project: String?, _ minimum: UInt8) -> UInt64 {
        var hash = Hash(seed: 0x6c69_7374_696e_6773)
        hash.add(kind.rawValue)
        hash.add(subject)
        if let project {
            hash.add(1)
            hash.add(project)
        } else {
            hash.add(0)
        }
        hash.add(minimum)
        return hash.value
    }

    private static func checksum(_ body: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash = Hash(seed: 0x7061_6765_746f_6b6e)
        for byte in body { hash.add(byte) }
        return hash.value
    }

    private static func store(_ value: UInt64, in bytes: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        for i in 0 ..< 8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    private static func load(_ bytes: UnsafeBufferPointer<UInt8>, at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0 ..< 8 { value |= UInt64(bytes[offset + i]) << UInt64(8 * i) }
        return value
    }

    /// FNV-1a, finished with a multiply-xorshift.
    private struct Hash {
        var state: UInt64
        init(seed: UInt64) { state = 0xcbf2_9ce4_8422_2325 ^ seed }
        mutating func add(_ byte: UInt8) { state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        mutating func add(_ text: String) {
            let count = text.utf8.count
            add(UInt8(truncatingIfNeeded: count))
            add(UInt8(truncatingIfNeeded: count >> 8))
            for byte in text.utf8 { add(byte) }
        }
        var value: UInt64 {
            var h = state
            h ^= h >> 33
            h = h &* 0xff51_afd7_ed55_8ccd
            h ^= h >> 33
            h = h &* 0xc4ce_b9fe_1a85_ec53
            h ^= h >> 33
            return h
        }
    }
}

/// base64url without padding (RFC 4648 §5).
enum Base64URL {
    @inline(__always)
    private static func character(_ value: UInt32) -> UInt8 {
        let v = UInt8(truncatingIfNeeded: value & 63)
        switch v {
        case 0 ..< 26: return UInt8(ascii: "A") + v
        case 26 ..< 52: return UInt8(ascii: "a") + v - 26
        case 52 ..< 62: return UInt8(ascii: "0") + v - 52
        case 62: return UInt8(ascii: "-")
        default: return UInt8(ascii: "_")
        }
    }

    static func encode(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        let length = bytes.count / 3 * 4 + (bytes.count % 3 == 0 ? 0 : bytes.count % 3 + 1)
        return String(unsafeUninitializedCapacity: length) { text in
            var i = 0
            var o = 0
            while i < bytes.count {
                let remaining = bytes.count - i
                let chunk = UInt32(bytes[i]) << 16 | (remaining > 1 ? UInt32(bytes[i + 1]) << 8 : 0)
                    | (remaining > 2 ? UInt32(bytes[i + 2]) : 0)
                text[o] = character(chunk >> 18)
                text[o + 1] = character(chunk >> 12)
                o += 2
                if remaining > 1 {
                    text[o] = character(chunk >> 6)
                    o += 1
                }
                if remaining > 2 {
                    text[o] = character(chunk)
                    o += 1
                }
                i += 3
            }
            return o
        }
    }

    /// Decodes `text` into `output` (at least `text.count * 3 / 4` bytes); returns the length,
    /// or nil unless `text` is base64url without padding.
    static func decode(_ text: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        var accumulator: UInt32 = 0
        var bits = 0
        var length = 0
        for character in text {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "a") ... UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "_"): value = 63
            default: return nil
            }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                guard length < output.count else { return nil }
                output[length] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                length += 1
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // A single leftover character (6 bits) is impossible; leftover bits must be zero.
        guard bits < 6, accumulator == 0 else { return nil }
        return length
    }
}

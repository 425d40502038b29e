// What the file watch watches for a database path (SnapshotReloader's WatchPlan): the
// database's directory, the directory of every symlink on the way, the nearest existing
// directory while one is missing.

import Foundation
import Testing

@testable import AuthzServer

#if canImport(Glibc)
import Glibc
#endif

@Suite("File watch: what a path is watched through")
struct WatchPlanTests {
    /// Directory → names as strings, for comparing.
    func plan(_ path: String) -> (watched: [String: [String: String]], missing: String?) {
        let plan = WatchPlan(resolving: path)
        var watched: [String: [String: String]] = [:]
        for (directory, names) in plan.directories {
            for (name, role) in names {
                watched[directory, default: [:]][String(decoding: name, as: UTF8.self)] = role == .link ? "link" : "file"
            }
        }
        return (watched, plan.missing)
    }

    /// The real path of a test directory (/tmp may itself be a link).
    func real(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    @Test func aPlainPathWatchesTheDatabasesDirectory() throws {
        let directory = try TestDirectory()
        let root = real(directory.path)
        let result = plan(root + "/authz.db")
        #expect(result.missing == nil)
        #expect(result.watched == [root: ["authz.db": "file", "authz.db-wal": "file", "authz.db-journal": "file"]])
        // The same through `.`, `..` and doubled slashes.
        try makeDirectory(root + "/sub")
        #expect(plan(root + "/sub/.././/authz.db").watched == result.watched)
    }

    @Test func theKubernetesLayoutWatchesEveryLinksDirectory() throws {
        let directory = try TestDirectory()
        let root = real(directory.path)
        try makeDirectory(root + "/..2026_01")
        try makeSymlink(root + "/..data", to: "..2026_01")
        try makeSymlink(root + "/authz.db", to: "..data/authz.db")
        let result = plan(root + "/authz.db")
        #expect(result.missing == nil)
        #expect(result.watched[root]?["authz.db"] == "link")
        #expect(result.watched[root]?["..data"] == "link")
        #expect(result.watched[root]?["authz.db-wal"] == "file")
        #expect(result.watched[root + "/..2026_01"] == ["authz.db": "file", "authz.db-wal": "file", "authz.db-journal": "file"])
        #expect(result.watched.count == 2)
        // An absolute link target, and a link to a directory in the middle of the path.
        try makeDirectory(root + "/elsewhere")
        try makeSymlink(root + "/conf", to: root + "/elsewhere")
        let middle = plan(root + "/conf/authz.db")
        #expect(middle.watched[root]?["conf"] == "link")
        #expect(middle.watched[root + "/elsewhere"]?["authz.db"] == "file")
    }

    @Test func aMissingDirectoryIsWatchedForFromItsParent() throws {
        let directory = try TestDirectory()
        let root = real(directory.path)
        let result = plan(root + "/not/yet/authz.db")
        #expect(result.missing == root + "/not")
        #expect(result.watched == [root: ["not": "link"]])
    }

    @Test func aLinkLoopEndsWithoutHanging() throws {
        let directory = try TestDirectory()
        let root = real(directory.path)
        try makeSymlink(root + "/a", to: "b")
        try makeSymlink(root + "/b", to: "a")
        let result = plan(root + "/a")
        #expect(result.watched[root]?["a"] == "link")
        #expect(result.watched[root]?["b"] == "link")
    }
}

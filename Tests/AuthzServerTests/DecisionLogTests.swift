// The decision log without a server: what a record becomes as JSON, the bounded buffer, the
// filters, rotation, and a destination that fails (disk full).

import AuthzEngine
import AuthzWire
import Foundation
import Logging
import Testing

@testable import AuthzServer

@Suite("Decision log")
struct DecisionLogTests {
    static func record(
        _ method: DecisionMethod = .canUse, callId: UInt64 = 1, outcome: DecisionRecord.Outcome, batchIndex: Int? = nil
    ) -> DecisionRecord {
        DecisionRecord(
            method: method, callId: callId, snapshotVersion: 7, unixNanos: 1_796_124_088_123_456_789,
            latencyNanos: 3_250, pid: 4242, uid: 1000, batchIndex: batchIndex, outcome: outcome)
    }

    @discardableResult
    static func withIds<R>(_ ids: [String?], _ body: ((UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?)) -> R) -> R {
        let arrays = ids.map { $0.map { Array($0.utf8) } }
        func at(_ index: Int) -> [UInt8]? { index < arrays.count ? arrays[index] : nil }
        let a = at(0) ?? [], b = at(1) ?? [], c = at(2) ?? []
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                c.withUnsafeBytes { pc in
                    body((at(0) == nil ? nil : pa, at(1) == nil ? nil : pb, at(2) == nil ? nil : pc))
                }
            }
        }
    }

    static func lines(_ path: String) throws -> [[String: Any]] {
        let text = String(decoding: try readFileBytes(path), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }

    static func format(_ record: DecisionRecord, ids: [String?]) -> String {
        let ring = DecisionRing(capacity: 16, seed: 1)
        withIds(ids) { ring.record(record, ids: $0) }
        var out: [UInt8] = []
        ring.drain { DecisionLogFormat.append($0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func aRecordIsOneJSONLineWithEveryField() throws {
        let line = Self.format(
            Self.record(outcome: .access(.view, .projectNeedsCanEdit, allowed: false), batchIndex: 3),
            ids: ["ada", "dc-payroll", "payroll-audit"])
        #expect(
            line
                == #"{"time":"2026-12-01T11:21:28.123456Z","call_id":1,"peer_pid":4242,"peer_uid":1000,"method":"can_use","batch_index":3,"user":"ada","asset":"dc-payroll","project":"payroll-audit","access":"view","allowed":false,"reason":"project_needs_can_edit","snapshot_version":7,"latency_us":3.2}"#
                + "\n")
        let seat = Self.format(Self.record(.seatType, outcome: .seat(.paidAuthor, paid: true, role: .editor)), ids: ["ada"])
        #expect(seat.contains(#""method":"seat_type","user":"ada","seat":"paid_author","paid":true,"role":"editor","#))
        let error = Self.format(Self.record(.effectivePermission, outcome: .error(.invalidArgument)), ids: ["a\"b\\c\u{1}", ""])
        #expect(error.contains(#""user":"a\u0022b\u005cc\u0001","project":"","error":"INVALID_ARGUMENT""#))
        let anonymous = Self.format(Self.record(.effectivePermission, outcome: .level(.canViewApp, .publicShare, allowed: nil)), ids: ["", "app"])
        #expect(anonymous.contains(#""user":"","project":"app","level":"can_view_app","reason":"public_share","#))
        #expect(!anonymous.contains("allowed"))
        let cut = Self.format(
            Self.record(.seatType, outcome: .error(.invalidArgument)), ids: [String(repeating: "x", count: 300)])
        #expect(cut.contains(#""user":"\#(String(repeating: "x", count: 128))","ids_cut":true"#))
    }

    @Test func numbersAreWrittenWhole() {
        var record = Self.record(.seatType, callId: .max, outcome: .capabilities(count: 0))
        record.snapshotVersion = 10_000_000_000
        record.latencyNanos = 0
        let line = Self.format(record, ids: ["u"])
        #expect(line.hasPrefix(#"{"time":"2026-12-01T11:21:28.123456Z","call_id":18446744073709551615,"#))
        #expect(line.hasSuffix(#""capabilities":0,"snapshot_version":10000000000,"latency_us":0.0}"# + "\n"))
    }

    @Test func theLineBufferGrowsKeepingWhatItHolds() {
        var buffer = LineBuffer(capacity: 8)
        var expected: [UInt8] = []
        for value in [0, 9, 10, 4_294_967_296, UInt64.max] as [UInt64] {
            buffer.append(decimal: value)
            buffer.append(",")
            expected += Array("\(value),".utf8)
        }
        let block = [UInt8](repeating: 7, count: 5000)
        block.withUnsafeBytes { buffer.append($0) }
        expected += block
        #expect(buffer.array == expected)
        buffer.removeAll()
        buffer.append("ok")
        #expect(buffer.array == Array("ok".utf8))
    }

    @Test func aFullRingDropsAndCountsWithoutWaiting() {
        let ring = DecisionRing(capacity: 16, seed: 1)
        let record = Self.record(outcome: .listing(items: 2))
        var accepted = 0
        for _ in 0..<40 where Self.withIds(["u"], { ring.record(record, ids: $0) }) { accepted += 1 }
        #expect(accepted == 16)
        #expect(ring.dropped == 24)
        #expect(ring.drain { _ in } == 16)
        #expect(Self.withIds(["u"], { ring.record(record, ids: $0) }))
        #expect(ring.drain { _ in } == 1)
    }

    @Test func theProducerAndTheWriterOnTwoThreadsLoseNothingTheyDoNotCount() async throws {
        let ring = DecisionRing(capacity: 64, seed: 1)
        let total = 200_000
        let producer = Task.detached {
            for index in 0..<total {
                _ = Self.withIds(["u"], { ring.record(Self.record(callId: UInt64(index), outcome: .listing(items: index)), ids: $0) })
            }
        }
        var drained = 0
        var lastCallId: UInt64?
        var ordered = true
        let started = ContinuousClock.now
        while drained + Int(ring.dropped) < total, ContinuousClock.now - started < .seconds(60) {
            drained += ring.drain { slot in
                let id = slot.load(fromByteOffset: DecisionSlot.callId, as: UInt64.self)
                if let last = lastCallId, id <= last { ordered = false }
                lastCallId = id
            }
            await Task.yield()
        }
        await producer.value
        drained += ring.drain { _ in }
        #expect(drained + Int(ring.dropped) == total)
        #expect(ordered)
    }

    @Test func theLogWritesEverythingRecordedBeforeStop() async throws {
        let directory = try TestDirectory()
        let path = directory.file("decisions.jsonl")
        let log = try DecisionLog(configuration: .init(destination: .file(path)), loops: 2, logger: Logger(label: "test"))
        log.start()
        for index in 0..<1000 {
            let ring = log.rings[index % 2]
            #expect(log.wants(.canUse, on: ring))
            Self.withIds(["u-\(index)", "a"]) { log.record(Self.record(callId: UInt64(index), outcome: .access(.use, .groupAccess, allowed: true)), ids: $0, on: ring) }
        }
        await log.stop()
        let lines = try Self.lines(path)
        #expect(lines.count == 1000)
        #expect(Set(lines.compactMap { $0["call_id"] as? Int }) == Set(0..<1000))
        #expect(log.statistics == .init(written: 1000, dropped: 0, lost: 0, writeErrors: 0, rotations: 0))
    }

    @Test func theFiltersChooseMethodsDenialsAndASample() throws {
        let directory = try TestDirectory()
        let methods = try DecisionLog(
            configuration: .init(destination: .file(directory.file("a")), methods: [.seatType]), loops: 1,
            logger: Logger(label: "test"))
        #expect(!methods.wants(.canUse, on: methods.rings[0]))
        #expect(methods.wants(.seatType, on: methods.rings[0]))

        let denials = try DecisionLog(
            configuration: .init(destination: .file(directory.file("b")), denialsOnly: true), loops: 1, logger: Logger(label: "test"))
        let outcomes: [(DecisionRecord.Outcome, Bool)] = [
            (.access(.use, .groupAccess, allowed: true), false), (.access(.view, .groupAccess, allowed: false), true),
            (.access(.none, .notInAssetGroups, allowed: nil), true), (.level(.canEdit, .userGrant, allowed: nil), false),
            (.seat(.none, paid: false, role: nil), true), (.error(.invalidArgument), true), (.listing(items: 0), false),
        ]
        for (outcome, _) in outcomes {
            Self.withIds(["u"]) { denials.record(Self.record(outcome: outcome), ids: $0, on: denials.rings[0]) }
        }
        #expect(denials.rings[0].drain { _ in } == outcomes.filter(\.1).count)

        let sampled = try DecisionLog(
            configuration: .init(destination: .file(directory.file("c")), sampleRate: 0.01), loops: 1, logger: Logger(label: "test"))
        let kept = (0..<100_000).filter { _ in sampled.wants(.canUse, on: sampled.rings[0]) }.count
        #expect(kept > 700 && kept < 1300, "1% of 100,000: \(kept)")
        let none = try DecisionLog(
            configuration: .init(destination: .file(directory.file("d")), sampleRate: 0), loops: 1, logger: Logger(label: "test"))
        #expect((0..<10_000).allSatisfy { _ in !none.wants(.canUse, on: none.rings[0]) })
    }

    @Test func theFileRotatesBySizeKeepingN() async throws {
        let directory = try TestDirectory()
        let path = directory.file("decisions.jsonl")
        let log = try DecisionLog(
            configuration: .init(destination: .file(path), maxFileBytes: 4096, keepFiles: 2), loops: 1, logger: Logger(label: "test"))
        // Drained by hand (no writer thread): each flush is one write.
        for round in 0..<12 {
            for index in 0..<10 {
                Self.withIds(["u", "a"]) {
                    log.record(Self.record(callId: UInt64(round * 10 + index), outcome: .access(.use, .groupAccess, allowed: true)), ids: $0, on: log.rings[0])
                }
            }
            log.writerForTests.flush()
        }
        await log.stop()
        #expect(fileExists(path) && fileExists(path + ".1") && fileExists(path + ".2") && !fileExists(path + ".3"))
        for file in [path, path + ".1", path + ".2"] {
            let size = try readFileBytes(file).count
            #expect(size <= 4096 && size > 0, "\(file): \(size) bytes")
        }
        let kept = try [path + ".2", path + ".1", path].flatMap { try Self.lines($0) }.compactMap { $0["call_id"] as? Int }
        #expect(kept == Array((120 - kept.count)..<120), "the newest decisions, in order")
        #expect(log.statistics.rotations >= 3)
    }

    @Test func aFullDiskIsCountedAndLoggedOnceAndRecordingGoesOn() async throws {
        let log = try DecisionLog(configuration: .init(destination: .file("/dev/full")), loops: 1, logger: Logger(label: "test"))
        for round in 0..<3 {
            for index in 0..<5 {
                Self.withIds(["u"]) { log.record(Self.record(callId: UInt64(round * 5 + index), outcome: .listing(items: 1)), ids: $0, on: log.rings[0]) }
            }
            log.writerForTests.flush()
        }
        await log.stop()
        #expect(log.statistics == .init(written: 0, dropped: 0, lost: 15, writeErrors: 3, rotations: 0))
    }

    @Test func badSettingsAndAnUnwritablePathFailAtStart() throws {
        #expect(throws: ConfigurationError.self) {
            try DecisionLog(configuration: .init(destination: .file("/nonexistent-dir/x.jsonl")), loops: 1, logger: Logger(label: "t"))
        }
        #expect(throws: ConfigurationError.self) {
            try DecisionLog(configuration: .init(destination: .file("/tmp/x"), sampleRate: 1.5), loops: 1, logger: Logger(label: "t"))
        }
        #expect(throws: ConfigurationError.self) { try DecisionLogConfiguration.methods("can_use,fly") }
        #expect(throws: ConfigurationError.self) { try DecisionLogConfiguration.methods("") }
        #expect(try DecisionLogConfiguration.methods("can_use, seat_type") == [.canUse, .seatType])
    }
}

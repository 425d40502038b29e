// The epoll transport's hot path (AuthzWire.FastPathDecoder/Encoder) must answer exactly as
// the general path (WireRequest decoding + RequestProcessor + WireResponse encoding) and
// decline everything it does not handle, so the general path can produce the exact error.

import AuthzEngine
import AuthzWire
import AuthzWorkloads
import Foundation
import Testing
import WireTestSupport

@testable import AuthzServer

@Suite("Fast path")
struct FastPathTests {
    var snapshot = Snapshot(workspace: sampleWorkspace(), version: 7)
    static let users = ["u-admin", "u-editor", "u-viewer", "u-explorer", "u-guest", "u-gone", "", "u-nobody"]
    static let projects = ["p-revenue", "p-secret", "p-none"]
    static let assets = ["a-warehouse", "a-open", "a-none"]

    /// The general path's framed answer to `payload`.
    func generalAnswer(_ payload: [UInt8]) -> [UInt8] {
        let decoded = payload.withUnsafeBytes { bytes in
            Result { () throws(WireRequestError) -> WireRequest in try WireRequest(decoding: bytes) }
        }
        let response: WireResponse =
            switch decoded {
            case .success(let request): RequestProcessor.answer(request, from: snapshot)
            case .failure(let error): WireResponse(replyingTo: error)
            }
        var bytes: [UInt8] = []
        response.append(to: &bytes)
        return bytes
    }

    /// The fast path's framed answer, or nil when it declines.
    func fastAnswer(_ payload: [UInt8], _ decoder: FastPathDecoder) -> [UInt8]? {
        payload.withUnsafeBytes { bytes -> [UInt8]? in
            guard let check = decoder.decode(bytes) else { return nil }
            let answer = RequestProcessor.answer(check, keys: FastKeys(check, in: snapshot), in: snapshot)
            var out = [UInt8](repeating: 0, count: FastPathEncoder.maxFrameLength)
            let count = out.withUnsafeMutableBytes {
                FastPathEncoder.encode(
                    callId: check.callId, snapshotVersion: snapshot.version, answer: answer, into: $0.baseAddress!)
            }
            return Array(out[..<count])
        }
    }

    @Test func everyPlainCheckIsAnsweredByteForByteLikeTheGeneralPath() {
        let decoder = FastPathDecoder()
        var count = 0
        for user in Self.users {
            for project in Self.projects {
                for level in [nil] + Level.allCases {
                    let request = WireRequest(
                        callId: UInt64(count), method: .check(.effectivePermission(.init(user: user, project: project, requiredLevel: level))))
                    check(request, decoder, expectFast: true)
                    count += 1
                }
            }
            for asset in Self.assets {
                for project in [nil] + Self.projects {
                    for access in [nil] + Access.allCases {
                        let request = WireRequest(
                            callId: UInt64.max - UInt64(count),
                            method: .check(.canUse(.init(user: user, asset: asset, project: project, requiredAccess: access))))
                        check(request, decoder, expectFast: true)
                        count += 1
                    }
                }
            }
            check(WireRequest(callId: 1 << 40, method: .check(.seatType(user: user))), decoder, expectFast: true)
        }
        #expect(count > 500)
    }

    /// A deadline only bounds waiting (for a consistency token, or behind a waiting request),
    /// which the fast path never does: checks that carry one are answered fast, alike.
    @Test func checksWithADeadlineAreAnsweredFast() {
        let decoder = FastPathDecoder()
        check(WireRequest(callId: 2, deadlineMs: 5, method: .check(.seatType(user: "u-admin"))), decoder, expectFast: true)
        check(
            WireRequest(
                callId: 3, minSnapshotVersion: 7, deadlineMs: 1,
                method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue", requiredLevel: .canEdit)))),
            decoder, expectFast: true)
        check(
            WireRequest(
                callId: 4, deadlineMs: .max, method: .check(.canUse(.init(user: "u-viewer", asset: "a-open", project: "p-revenue")))),
            decoder, expectFast: true)
    }

    @Test func everythingElseIsDeclined() {
        let decoder = FastPathDecoder()
        let declined: [WireRequest] = [
            WireRequest(callId: 1, explain: true, method: .check(.effectivePermission(.init(user: "u-admin", project: "p-secret")))),
            WireRequest(callId: 3, method: .check(.capabilities(user: "u-admin"))),
            WireRequest(callId: 4, method: .batch([.seatType(user: "u-admin")])),
            WireRequest(callId: 5, method: .status),
            WireRequest(callId: 6, method: .reload),
            // Invalid ids: the general path names the problem.
            WireRequest(callId: 7, method: .check(.effectivePermission(.init(user: "u admin", project: "p-secret")))),
            WireRequest(callId: 8, method: .check(.effectivePermission(.init(user: "u-admin", project: "")))),
            WireRequest(callId: 9, method: .check(.canUse(.init(user: "u-admin", asset: "")))),
            WireRequest(callId: 10, method: .check(.seatType(user: String(repeating: "x", count: 129)))),
            WireRequest(callId: 11, method: .check(.canUse(.init(user: "u-admin", asset: "a-open", project: "p/x")))),
        ]
        for request in declined { check(request, decoder, expectFast: false) }
        // Unknown enum values, garbage, an empty payload, a newer method.
        let raw: [[UInt8]] = [
            PB.varint(1, 3) + PB.bytes(11, PB.string(1, "u-admin") + PB.string(2, "p-secret") + PB.enumValue(3, 99)),
            PB.varint(1, 3) + PB.bytes(10, PB.string(1, "u-admin") + PB.string(2, "a-open") + PB.enumValue(4, 42)),
            [0xFF, 0xFF, 0x01],
            [],
            PB.varint(1, 3) + PB.bytes(20, []),
        ]
        for payload in raw {
            #expect(fastAnswer(payload, decoder) == nil, "\(payload)")
        }
    }

    @Test func theDecoderIsReusableAcrossManyRequests() {
        // The arena is reset per request: 100k decodes must not run out of room.
        let decoder = FastPathDecoder(arenaBytes: 4096)
        var payload: [UInt8] = []
        WireRequest(callId: 1, method: .check(.canUse(.init(user: "u-editor", asset: "a-warehouse", project: "p-revenue"))))
            .append(to: &payload)
        let body = Array(payload[FrameHeader.size...])
        for _ in 0..<100_000 {
            #expect(fastAnswer(body, decoder) != nil)
        }
        // A payload needing more than the arena is declined, not truncated.
        let big = PB.varint(1, 1) + PB.bytes(12, PB.string(1, String(repeating: "a", count: 6000)))
        #expect(fastAnswer(big, decoder) == nil)
    }

    @Test func pipelinedRunsOverTheSocketAnswerLikeTheGeneralPath() async throws {
        // Plain checks interleaved with requests the general path takes (explain, batch,
        // invalid ids, Status), all in one write: runs of plain checks are answered
        // together, and every answer must equal the general path's, in order.
        try await withServer { server in
            let served = try #require(server.snapshots.snapshot)
            var random = SplitMix64(seed: 42)
            var requests: [WireRequest] = []
            for index in 0..<600 {
                let user = Self.users[random.below(Self.users.count)]
                let callId = UInt64(index + 1)
                switch random.below(10) {
                case 0:
                    requests.append(WireRequest(callId: callId, explain: true, method: .check(.effectivePermission(.init(user: user, project: "p-revenue")))))
                case 1:
                    requests.append(WireRequest(callId: callId, method: .check(.seatType(user: "bad id"))))
                case 2:
                    requests.append(WireRequest(callId: callId, method: .batch([.seatType(user: user), .capabilities(user: user)])))
                case 3, 4, 5:
                    let project = Self.projects[random.below(Self.projects.count)]
                    requests.append(WireRequest(callId: callId, method: .check(.effectivePermission(.init(user: user, project: project, requiredLevel: .canView)))))
                case 6, 7, 8:
                    let asset = Self.assets[random.below(Self.assets.count)]
                    let project = random.below(2) == 0 ? nil : Self.projects[random.below(Self.projects.count)]
                    requests.append(WireRequest(callId: callId, method: .check(.canUse(.init(user: user, asset: asset, project: project)))))
                default:
                    requests.append(WireRequest(callId: callId, minSnapshotVersion: served.version, method: .check(.seatType(user: user))))
                }
            }
            var bytes: [UInt8] = []
            for request in requests { request.append(to: &bytes) }
            let connection = try RawConnection(path: server.socketPath)
            try connection.send(bytes)
            for request in requests {
                let response = try #require(try await connection.readResponse())
                var expected: [UInt8] = []
                RequestProcessor.answer(request, from: served).append(to: &expected)
                var got: [UInt8] = []
                response.append(to: &got)
                if case .check(.seatType(let user)) = request.method, user == "bad id" {
                    #expect(response.status.code == .invalidArgument)
                    #expect(response.callId == request.callId)
                    continue
                }
                #expect(got == expected, "\(request)")
            }
        }
    }

    /// The seed corpus of the `request` fuzz target (fuzz/corpus/request: every method,
    /// error cases, and the inputs of crashes it found) through the server's own answers:
    /// the fuzz target mirrors `RequestProcessor`'s mapping, this checks the real one.
    @Test func theRequestFuzzCorpusIsAnsweredAlikeOnBothPaths() throws {
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            let parent = root.deletingLastPathComponent()
            try #require(parent.path != root.path, "no Package.swift above \(#filePath)")
            root = parent
        }
        let corpus = root.appendingPathComponent("fuzz/corpus/request")
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted()
        #expect(names.count >= 40)
        let demo = FastPathTests(snapshot: Snapshot(workspace: DemoWorkspace.workspace, version: 7))
        let decoder = FastPathDecoder()
        var answeredFast = 0
        for name in names {
            let payload = try readFileBytes(corpus.appendingPathComponent(name).path)
            guard let fast = demo.fastAnswer(payload, decoder) else { continue }
            #expect(fast == demo.generalAnswer(payload), "\(name)")
            answeredFast += 1
        }
        #expect(answeredFast >= 15, "the corpus has plain checks of every kind")
    }

    private func check(_ request: WireRequest, _ decoder: FastPathDecoder, expectFast: Bool) {
        var framed: [UInt8] = []
        request.append(to: &framed)
        let payload = Array(framed[FrameHeader.size...])
        let fast = fastAnswer(payload, decoder)
        if expectFast {
            #expect(fast == generalAnswer(payload), "\(request)")
        } else {
            #expect(fast == nil, "\(request) should go the general way")
        }
    }
}

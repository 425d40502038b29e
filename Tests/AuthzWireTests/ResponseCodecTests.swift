import AuthzEngine
import AuthzWire
import AuthzWorkloads
import Testing
import WireTestSupport

@Suite("Response codec")
struct ResponseCodecTests {
    static let steps: [WireResponse.Step] = [
        .init(reason: .groupGrant, level: .canEdit, subject: "g-data"),
        .init(reason: .roleCap, level: .canView),
        .init(reason: .assetDowngrade, level: .canView, subject: "secret:prod"),
    ]

    static let responses: [WireResponse] = [
        WireResponse(
            callId: 1, snapshotVersion: 7,
            answer: .check(.canUse(.init(access: .use, reason: .groupAccess, allowed: true)))),
        WireResponse(
            callId: 2, snapshotVersion: 7, answer: .check(.canUse(.init(access: .none, reason: .notInAssetGroups)))),
        WireResponse(
            callId: 3, snapshotVersion: 1,
            answer: .check(.effectivePermission(.init(level: .canEdit, reason: .userGrant, allowed: true)))),
        WireResponse(
            callId: 4, snapshotVersion: .max,
            answer: .check(.effectivePermission(.init(level: .canView, reason: .assetDowngrade, steps: steps)))),
        WireResponse(
            callId: 5, snapshotVersion: 2,
            answer: .check(
                .seatType(.init(seat: .viewer, paid: true, role: .viewer, roleSource: .domainDefault, planDowngrade: true))
            )),
        WireResponse(
            callId: 6, snapshotVersion: 2,
            answer: .check(.seatType(.init(seat: .none, paid: false, role: nil, roleSource: nil)))),
        WireResponse(callId: 7, snapshotVersion: 2, answer: .check(.capabilities(Capability.allCases))),
        WireResponse(callId: 8, snapshotVersion: 2, answer: .check(.capabilities([]))),
        WireResponse(
            callId: 9, snapshotVersion: 3,
            answer: .batch([
                .canUse(.init(access: .view, reason: .roleCannotUse)),
                .effectivePermission(.init(level: .fullAccess, reason: .owner, steps: [.init(reason: .owner, level: .fullAccess)])),
                .seatType(.init(seat: .paidAuthor, paid: true, role: .admin, roleSource: .explicit)),
                .capabilities([.accessSharedProjects, .accessSharedApps]),
            ])),
        WireResponse(callId: 10, snapshotVersion: 3, answer: .batch([])),
        WireResponse(
            callId: 11, snapshotVersion: 12,
            answer: .status(
                .init(
                    snapshotVersion: 12, loadedAtUnixMs: 1_700_000_000_000, users: 1, groups: 2, assets: 3,
                    projects: 4, grants: 5, lastLoadError: "store: database is locked (attempt 3) — über",
                    lastLoadAttemptUnixMs: 1_700_000_000_500, staleForMs: 500, uptimeMs: 60_000,
                    connectionsOpen: 3, requestsServed: .max))),
        WireResponse(callId: 12, snapshotVersion: 0, answer: .status(.init())),
        WireResponse(callId: 13, snapshotVersion: 13, answer: .reload(.init(snapshotVersion: 13))),
        WireResponse(callId: 14, error: WireError(.invalidArgument, "can_use.asset: the id is empty")),
        WireResponse(callId: 15, error: WireError(.failedPrecondition, "snapshot 9 not loaded yet"), snapshotVersion: 8),
        WireResponse(callId: 0, error: WireError(.resourceExhausted, "frame too large")),
        WireResponse(callId: 16, status: WireStatus(code: .unavailable), snapshotVersion: 0, answer: nil),
    ]

    @Test(arguments: responses)
    func roundTrip(response: WireResponse) throws {
        let bytes = frame(response)
        #expect(bytes.count == response.encodedSize())
        var buffer = [UInt8](repeating: 0xEE, count: bytes.count + 1)
        let written = buffer.withUnsafeMutableBytes { response.encode(into: $0) }
        #expect(written == bytes.count)
        #expect(Array(buffer[..<written]) == bytes)
        let viaWriter = response.withFrameWriter { length, write in
            var out = [UInt8](repeating: 0, count: length)
            let count = out.withUnsafeMutableBytes { write($0) }
            return count == length ? out : []
        }
        #expect(viaWriter == bytes)

        let payload = try #require(framePayload(bytes))
        #expect(try decodeResponse(payload).get() == response)
    }

    @Test func everyEnumValueRoundTripsThroughAnswers() throws {
        var results: [WireResponse.CheckResult] = []
        for access in Access.allCases {
            for reason in Reason.allCases { results.append(.canUse(.init(access: access, reason: reason))) }
        }
        for level in Level.allCases {
            for reason in Reason.allCases {
                results.append(
                    .effectivePermission(.init(level: level, reason: reason, steps: [.init(reason: reason, level: level)])))
            }
        }
        for seat in Seat.allCases {
            for role in Role.allCases {
                for source in RoleSource.allCases {
                    results.append(.seatType(.init(seat: seat, paid: true, role: role, roleSource: source)))
                }
            }
        }
        results.append(.capabilities(Capability.allCases.reversed()))
        // Hundreds of results overflow the stack scratch into heap chunks.
        let response = WireResponse(callId: 99, snapshotVersion: 5, answer: .batch(results))
        let encoded = payload(of: response)
        #expect(try decodeResponse(encoded).get() == response)
    }

    @Test func largeAnswersSpanManyScratchChunks() throws {
        let subject = String(repeating: "s", count: 128)
        let steps = (0..<2000).map { _ in WireResponse.Step(reason: .groupGrant, level: .canEdit, subject: subject) }
        let response = WireResponse(
            callId: 1, snapshotVersion: 1,
            answer: .check(.effectivePermission(.init(level: .canEdit, reason: .groupGrant, steps: steps))))
        let bytes = frame(response)
        #expect(bytes.count > 64 * 1024)
        #expect(try decodeResponse(#require(framePayload(bytes))).get() == response)
    }

    @Test func nulsInTextAreReplacedNotTruncating() throws {
        let response = WireResponse(callId: 1, error: WireError(.internal, "a\u{0}b\u{0}"))
        let decoded = try decodeResponse(payload(of: response)).get()
        #expect(decoded.status.message == "a\u{FFFD}b\u{FFFD}")
    }

    @Test func appendAddsToWhatIsThere() throws {
        var bytes: [UInt8] = [1, 2, 3]
        Self.responses[0].append(to: &bytes)
        Self.responses[1].append(to: &bytes)
        #expect(Array(bytes[..<3]) == [1, 2, 3])
        #expect(bytes.count == 3 + Self.responses[0].encodedSize() + Self.responses[1].encodedSize())
    }

    @Test func errorResponsesFromDecodeFailures() throws {
        let failure = WireRequestError(callId: nil, error: WireError(.invalidArgument, "bad"))
        let response = WireResponse(replyingTo: failure)
        #expect(response.callId == 0)
        #expect(response.status == WireStatus(code: .invalidArgument, message: "bad"))
        #expect(response.answer == nil)
        #expect(WireResponse(replyingTo: WireRequestError(callId: 5, error: failure.error)).callId == 5)
    }

    @Test func theWireFormatIsTheDocumentedOne() throws {
        let response = WireResponse(
            callId: 3, snapshotVersion: 7, answer: .check(.canUse(.init(access: .use, reason: .admin, allowed: true))))
        let expected =
            PB.varint(1, 3) + PB.bytes(2, []) + PB.varint(3, 7)
            + PB.bytes(10, PB.varint(1, 3) + PB.varint(2, 15) + PB.varint(3, 1))
        #expect(payload(of: response) == expected)
    }

    @Test func clientDecodingIsStrictAboutAnswersAndLenientAboutStatus() throws {
        // No status at all: OK.
        let bare = try decodeResponse(PB.varint(1, 4) + PB.bytes(16, PB.varint(1, 2))).get()
        #expect(bare.status == .ok)
        #expect(bare.answer == .reload(.init(snapshotVersion: 2)))

        // A status code outside gRPC's range is UNKNOWN.
        let odd = try decodeResponse(PB.varint(1, 4) + PB.bytes(2, PB.varint(1, 99))).get()
        #expect(odd.status.code == .unknown)

        // UNSPECIFIED or unknown enum values in an answer are errors.
        for canUse in [PB.varint(1, 9) + PB.varint(2, 1), PB.varint(2, 1), PB.varint(1, 1)] {
            let error = decodeResponse(PB.varint(1, 4) + PB.bytes(10, canUse))
            guard case .failure(let error) = error else {
                Issue.record("accepted \(canUse)")
                continue
            }
            #expect(error.code == .internal)
        }
        let badCapability = PB.bytes(13, PB.bytes(1, PB.varint(1) + PB.varint(15)))
        guard case .failure = decodeResponse(badCapability) else {
            Issue.record("accepted an unknown capability")
            return
        }
        let badRole = PB.bytes(12, PB.varint(1, 2) + PB.varint(3, 77))
        guard case .failure = decodeResponse(badRole) else {
            Issue.record("accepted an unknown role")
            return
        }
    }

    @Test func randomResponsePayloadsNeverCrash() {
        var generator = SplitMix64(seed: 1)
        for _ in 0..<10_000 {
            let count = Int.random(in: 0...96, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if case .failure(let error) = decodeResponse(bytes) {
                #expect(error.code == .internal)
            }
        }
    }

    @Test func truncatedResponsesAreErrors() throws {
        for response in Self.responses {
            let encoded = payload(of: response)
            for cut in 0..<encoded.count {
                // A prefix ending on a field boundary is a valid (smaller) message; any
                // other prefix must be rejected, and none may crash.
                if case .success(let decoded) = decodeResponse(Array(encoded[..<cut])) {
                    #expect(decoded != response)
                }
            }
        }
    }
}

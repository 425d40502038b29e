import AuthzEngine
import CAuthzProto
import CProtobufC
import Testing

@testable import AuthzWire

@Suite("Enum mapping")
struct EnumMappingTests {
    /// Checks one mapping against the generated descriptor: every case round-trips, has
    /// the proto number `rawValue + 1` (RULES.md order after UNSPECIFIED = 0) and the name
    /// `PREFIX_` + its snake_case name; the proto enum has no value without a case.
    func check<E: ProtoMappedEnum & NamedEnum & RawRepresentable>(
        _: E.Type, _ descriptor: ProtobufCEnumDescriptor, prefix: String
    ) where E.RawValue == UInt8 {
        var descriptor = descriptor
        #expect(Int(descriptor.n_values) == E.allCases.count + 1, "\(prefix): proto and Swift value counts differ")
        let unspecified = protobuf_c_enum_descriptor_get_value(&descriptor, 0)
        #expect(unspecified.map { String(cString: $0.pointee.name) } == prefix + "UNSPECIFIED")
        #expect(E(proto: E.Proto(rawValue: 0)!) == nil)

        for value in E.allCases {
            let number = value.proto.rawValue
            #expect(E(proto: value.proto) == value, "\(value) does not round-trip")
            #expect(number == UInt32(value.rawValue) + 1, "\(value) is proto value \(number)")
            let name = protobuf_c_enum_descriptor_get_value(&descriptor, Int32(bitPattern: number))
            #expect(name.map { String(cString: $0.pointee.name) } == prefix + value.name.uppercased())
        }
        for unknown in [UInt32(E.allCases.count + 1), 100, UInt32.max] {
            #expect(E(proto: E.Proto(rawValue: unknown)!) == nil)
        }
    }

    @Test func level() { check(Level.self, authz__v1__level__descriptor, prefix: "LEVEL_") }
    @Test func access() { check(Access.self, authz__v1__access__descriptor, prefix: "ACCESS_") }
    @Test func seat() { check(Seat.self, authz__v1__seat__descriptor, prefix: "SEAT_") }
    @Test func role() { check(Role.self, authz__v1__role__descriptor, prefix: "ROLE_") }
    @Test func roleSource() { check(RoleSource.self, authz__v1__role_source__descriptor, prefix: "ROLE_SOURCE_") }
    @Test func capability() { check(Capability.self, authz__v1__capability__descriptor, prefix: "CAPABILITY_") }
    @Test func reason() { check(Reason.self, authz__v1__reason__descriptor, prefix: "REASON_") }

    @Test func rpcCodesHaveGRPCValues() {
        let expected: [(RPCCode, UInt32)] = [
            (.ok, 0), (.invalidArgument, 3), (.deadlineExceeded, 4), (.permissionDenied, 7),
            (.resourceExhausted, 8), (.failedPrecondition, 9), (.unimplemented, 12), (.internal, 13),
            (.unavailable, 14),
        ]
        for (code, value) in expected {
            #expect(code.rawValue == value)
            #expect(RPCCode(wireValue: value) == code)
        }
        #expect(RPCCode.allCases.map(\.rawValue) == Array(0...16))
        #expect(RPCCode(wireValue: 17) == .unknown)
        #expect(RPCCode.invalidArgument.name == "INVALID_ARGUMENT")
        #expect("\(WireError(.unavailable, "no snapshot"))" == "UNAVAILABLE: no snapshot")
    }
}

// A JSON (RFC 8259) value with order-preserving objects. No Foundation.
//
// Parsing lives in JSONParser.swift, serialization in JSONSerializer.swift.

/// One JSON value.
///
/// Numbers are stored as `Double`: every integer of magnitude up to 2^53 round-trips
/// exactly (parse → serialize prints it without a fraction). Objects keep their members in
/// document order, including repeated keys (see `JSONObject`).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

// MARK: - Accessors

extension JSONValue {
    /// Whether this is `null`.
    @inlinable public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The boolean, if this is one.
    @inlinable public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The number, if this is one.
    @inlinable public var double: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// The number as an `Int64`, if this is an integral number in `Int64`'s range.
    /// Integers above 2^53 in magnitude may have been rounded when parsed.
    @inlinable public var int64: Int64? {
        guard case .number(let value) = self, value == value.rounded(.towardZero),
            value >= -9_223_372_036_854_775_808.0, value < 9_223_372_036_854_775_808.0
        else { return nil }
        return Int64(value)
    }

    /// The number as a `UInt64`, if this is a non-negative integral number in `UInt64`'s
    /// range. Integers above 2^53 may have been rounded when parsed.
    @inlinable public var uint64: UInt64? {
        guard case .number(let value) = self, value == value.rounded(.towardZero),
            value >= 0, value < 18_446_744_073_709_551_616.0
        else { return nil }
        return UInt64(value)
    }

    /// The string, if this is one.
    @inlinable public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The elements, if this is an array.
    @inlinable public var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The object, if this is one.
    @inlinable public var object: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The first member named `key`, if this is an object that has one.
    @inlinable public subscript(key: String) -> JSONValue? {
        object?[key]
    }

    /// A short description of the value's type for error messages: "null", "a boolean",
    /// "a number", "a string", "an array" or "an object".
    public var typeDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact serialization.
    public var description: String { serialized() }
}

// MARK: - Literals

extension JSONValue: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Members keep the literal's order.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(elements.map { (key: $0.0, value: $0.1) }))
    }
}

// MARK: - JSONObject

/// The members of a JSON object, in document order.
///
/// Repeated keys are kept as separate members: the parser does not decide which one wins
/// (RFC 8259 leaves it open), so a caller that must reject them can (see
/// `duplicateKeyIndices` and `JSONValue.parse(_:maxDepth:rejectDuplicateKeys:)`). Key
/// lookup returns the first member with that key. Equality compares members in order.
public struct JSONObject: Sendable, Equatable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public typealias Member = (key: String, value: JSONValue)

    /// The members in order.
    public var members: [Member]

    public init() { members = [] }

    public init(_ members: [Member]) { self.members = members }

    /// Members keep the literal's order.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = elements.map { (key: $0.0, value: $0.1) }
    }

    // RandomAccessCollection
    @inlinable public var startIndex: Int { members.startIndex }
    @inlinable public var endIndex: Int { members.endIndex }
    @inlinable public subscript(position: Int) -> Member { members[position] }

    /// The position of the first member named `key`.
    @inlinable public func index(forKey key: String) -> Int? {
        members.firstIndex { $0.key == key }
    }

    /// The value of the first member named `key`. Setting replaces the first such
    /// member's value in place (or appends a member); setting `nil` removes every member
    /// named `key`.
    public subscript(key: String) -> JSONValue? {
        get {
            for member in members where member.key == key { return member.value }
            return nil
        }
        set {
            if let newValue {
                if let index = index(forKey: key) {
                    members[index].value = newValue
                } else {
                    members.append((key: key, value: newValue))
                }
            } else {
                members.removeAll { $0.key == key }
            }
        }
    }

    /// The keys in order (repeated keys repeated).
    public var keys: [String] { members.map(\.key) }

    /// Appends a member (even if `key` is already present).
    public mutating func append(_ key: String, _ value: JSONValue) {
        members.append((key: key, value: value))
    }

    /// Positions of members whose key already appeared earlier in the object.
    public var duplicateKeyIndices: [Int] {
        var seen = Set<String>()
        var result: [Int] = []
        for (index, member) in members.enumerated() where !seen.insert(member.key).inserted {
            result.append(index)
        }
        return result
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (left, right) in zip(lhs.members, rhs.members) where left.key != right.key || left.value != right.value {
            return false
        }
        return true
    }
}

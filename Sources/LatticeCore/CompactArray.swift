/// An array for the per-key histories the store holds a million of, most of them one element
/// long: a single element is held inline, in place of the array reference, so a key with one
/// version costs no allocation at all (an array of one is a 32-byte header and the element,
/// rounded up by glibc). Two or more elements are an ordinary `[Element]`; shrinking back to
/// one element holds it inline again.
///
/// The storage is an enum the element type declares (`CompactArrayElement`): a concrete enum
/// with a case for one element and one for an array packs its case into spare bits of the
/// element's references, so `CompactArray<E>` is exactly as large as `E` (40 bytes for the
/// index's version, 56 for the replica's). A generic enum would add a tag byte, which padding
/// turns into 8 bytes per entry of the maps that hold a million of them.
///
/// Value semantics as `[Element]`; appending to a uniquely held array appends in place.
public struct CompactArray<Element: CompactArrayElement>: RandomAccessCollection, MutableCollection, ExpressibleByArrayLiteral {
    public typealias Storage = Element.CompactStorage

    @usableFromInline var storage: Storage

    @inlinable public init() { storage = .empty }

    @inlinable public init(arrayLiteral elements: Element...) { self.init(elements) }

    /// One element (without the array a literal would build first).
    @inlinable public init(single element: Element) { storage = .one(element) }

    /// From any collection; an array of several elements is kept as it is (no copy).
    @inlinable public init<C: Collection>(_ elements: C) where C.Element == Element {
        switch elements.count {
        case 0: storage = .empty
        case 1: storage = .one(elements[elements.startIndex])
        default: storage = .many(Array(elements))
        }
    }

    @inlinable public var startIndex: Int { 0 }

    @inlinable public var endIndex: Int {
        switch storage.cases {
        case .empty: return 0
        case .one: return 1
        case .many(let a): return a.count
        }
    }

    @inlinable public var count: Int { endIndex }
    @inlinable public var isEmpty: Bool { if case .empty = storage.cases { return true } else { return false } }

    @inlinable public subscript(position: Int) -> Element {
        get {
            switch storage.cases {
            case .empty: preconditionFailure("index out of range")
            case .one(let element):
                precondition(position == 0, "index out of range")
                return element
            case .many(let a): return a[position]
            }
        }
        set {
            switch storage.cases {
            case .empty: preconditionFailure("index out of range")
            case .one:
                precondition(position == 0, "index out of range")
                storage = .one(newValue)
            case .many(var a):
                storage = .empty  // `a` is then the only reference: set in place
                a[position] = newValue
                storage = .many(a)
            }
        }
    }

    @inlinable public var first: Element? {
        switch storage.cases {
        case .empty: return nil
        case .one(let element): return element
        case .many(let a): return a.first
        }
    }

    @inlinable public var last: Element? {
        switch storage.cases {
        case .empty: return nil
        case .one(let element): return element
        case .many(let a): return a.last
        }
    }

    @inlinable public mutating func append(_ element: Element) {
        switch storage.cases {
        case .empty:
            storage = .one(element)
        case .one(let first):
            storage = .many([first, element])
        case .many(var a):
            storage = .empty  // `a` is then the only reference: append in place
            a.append(element)
            storage = .many(a)
        }
    }

    /// The elements as an array (no copy when there are several).
    @inlinable public var array: [Element] {
        switch storage.cases {
        case .empty: return []
        case .one(let element): return [element]
        case .many(let a): return a
        }
    }
}

extension CompactArray: Sendable where Element: Sendable, Element.CompactStorage: Sendable {}

/// An element type of `CompactArray`: it names the enum that holds none, one or several of it.
public protocol CompactArrayElement {
    associatedtype CompactStorage: CompactArrayStorage where CompactStorage.Element == Self
}

/// `enum { case empty; case one(Element); case many([Element]) }`, declared for each element
/// type (see `CompactArray` for why it is not generic), with `cases` returning its case.
public protocol CompactArrayStorage {
    associatedtype Element
    static var empty: Self { get }
    static func one(_ element: Element) -> Self
    /// Two or more elements.
    static func many(_ elements: [Element]) -> Self
    var cases: CompactArrayCases<Element> { get }
}

/// What a `CompactArrayStorage` holds, for `CompactArray`'s code to switch on.
public enum CompactArrayCases<Element> {
    case empty
    case one(Element)
    case many([Element])
}

extension CompactArray: Equatable where Element: Equatable {
    @inlinable public static func == (a: CompactArray, b: CompactArray) -> Bool { a.elementsEqual(b) }
}

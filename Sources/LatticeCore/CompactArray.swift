/// An array for the per-key histories the store holds a million of, most of them one element
/// long: a single element lives in a box with a 16-byte object header instead of an array
/// buffer's 32 bytes, which is what takes a key's history from a 96-byte allocation to an
/// 80-byte one (glibc rounds to 16 bytes, plus 8 of its own). Two or more elements are an
/// ordinary `[Element]`; shrinking back to one element boxes it again. The same size as an
/// array reference (8 bytes), so a dictionary of them is no larger.
///
/// Value semantics as `[Element]`: the box is immutable and replaced on change; appending to
/// a uniquely held array appends in place.
public struct CompactArray<Element>: RandomAccessCollection, MutableCollection, ExpressibleByArrayLiteral {
    @usableFromInline final class Box {
        @usableFromInline let element: Element
        @inlinable init(_ element: Element) { self.element = element }
    }

    @usableFromInline enum Storage {
        case empty
        case one(Box)
        /// Two or more elements.
        case many([Element])
    }

    @usableFromInline var storage: Storage

    @inlinable public init() { storage = .empty }

    @inlinable public init(arrayLiteral elements: Element...) { self.init(elements) }

    /// One element, boxed (without the array a literal would build first).
    @inlinable public init(single element: Element) { storage = .one(Box(element)) }

    /// From any collection; an array of several elements is kept as it is (no copy).
    @inlinable public init<C: Collection>(_ elements: C) where C.Element == Element {
        switch elements.count {
        case 0: storage = .empty
        case 1: storage = .one(Box(elements[elements.startIndex]))
        default: storage = .many(Array(elements))
        }
    }

    @inlinable public var startIndex: Int { 0 }

    @inlinable public var endIndex: Int {
        switch storage {
        case .empty: return 0
        case .one: return 1
        case .many(let a): return a.count
        }
    }

    @inlinable public var count: Int { endIndex }
    @inlinable public var isEmpty: Bool { if case .empty = storage { return true } else { return false } }

    @inlinable public subscript(position: Int) -> Element {
        get {
            switch storage {
            case .empty: preconditionFailure("index out of range")
            case .one(let box):
                precondition(position == 0, "index out of range")
                return box.element
            case .many(let a): return a[position]
            }
        }
        set {
            switch storage {
            case .empty: preconditionFailure("index out of range")
            case .one:
                precondition(position == 0, "index out of range")
                storage = .one(Box(newValue))
            case .many(var a):
                storage = .empty  // `a` is then the only reference: set in place
                a[position] = newValue
                storage = .many(a)
            }
        }
    }

    @inlinable public var first: Element? {
        switch storage {
        case .empty: return nil
        case .one(let box): return box.element
        case .many(let a): return a.first
        }
    }

    @inlinable public var last: Element? {
        switch storage {
        case .empty: return nil
        case .one(let box): return box.element
        case .many(let a): return a.last
        }
    }

    @inlinable public mutating func append(_ element: Element) {
        switch storage {
        case .empty:
            storage = .one(Box(element))
        case .one(let box):
            storage = .many([box.element, element])
        case .many(var a):
            storage = .empty  // `a` is then the only reference: append in place
            a.append(element)
            storage = .many(a)
        }
    }

    /// The elements as an array (no copy when there are several).
    @inlinable public var array: [Element] {
        switch storage {
        case .empty: return []
        case .one(let box): return [box.element]
        case .many(let a): return a
        }
    }
}

extension CompactArray: Sendable where Element: Sendable {}
extension CompactArray.Box: Sendable where Element: Sendable {}
extension CompactArray.Storage: Sendable where Element: Sendable {}

extension CompactArray: Equatable where Element: Equatable {
    @inlinable public static func == (a: CompactArray, b: CompactArray) -> Bool { a.elementsEqual(b) }
}

/// An error a client sees, with etcd's exact message and gRPC code.
public struct EtcdError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case invalidArgument, outOfRange, notFound, resourceExhausted, failedPrecondition, unavailable, alreadyExists, `internal`, unknown,
             cancelled, permissionDenied, unauthenticated
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static let emptyKey = EtcdError(.invalidArgument, "etcdserver: key is not provided")
    public static let keyNotFound = EtcdError(.invalidArgument, "etcdserver: key not found")
    public static let valueProvided = EtcdError(.invalidArgument, "etcdserver: value is provided")
    public static let leaseProvided = EtcdError(.invalidArgument, "etcdserver: lease is provided")
    public static let tooManyOps = EtcdError(.invalidArgument, "etcdserver: too many operations in txn request")
    public static let duplicateKey = EtcdError(.invalidArgument, "etcdserver: duplicate key given in txn request")
    public static let invalidSortOption = EtcdError(.invalidArgument, "etcdserver: invalid sort option")
    public static let requestTooLarge = EtcdError(.invalidArgument, "etcdserver: request is too large")
    /// A request whose change would not fit in one WAL record (e.g. a DeleteRange over millions
    /// of keys): refused alone, the store goes on.
    static func changeTooLarge(bytes: Int, limit: Int) -> EtcdError {
        EtcdError(.invalidArgument, "lattice: the request changes too much at once (about \(bytes >> 20) MiB, above the \(limit >> 20) MiB one change can hold); split it into smaller requests")
    }
    public static let compacted = EtcdError(.outOfRange, "etcdserver: mvcc: required revision has been compacted")
    public static let futureRevision = EtcdError(.outOfRange, "etcdserver: mvcc: required revision is a future revision")
    public static let leaseNotFound = EtcdError(.notFound, "etcdserver: requested lease not found")
    public static let noSpace = EtcdError(.resourceExhausted, "etcdserver: mvcc: database space exceeded")
}

extension EtcdError {
    public static let leaseExists = EtcdError(.failedPrecondition, "etcdserver: lease already exists")
    public static let leaseTTLTooLarge = EtcdError(.outOfRange, "etcdserver: too large lease TTL")
}

extension EtcdError {
    public static let tooManyRequests = EtcdError(.resourceExhausted, "etcdserver: too many requests")
    public static let stopped = EtcdError(.unavailable, "etcdserver: server stopped")
    /// The client gave up on a write before it was evaluated: it was not applied.
    public static let canceled = EtcdError(.cancelled, "context canceled")

    /// The write-ahead log failed: the outcome of the affected requests is unknown (they may be
    /// on disk), and the member takes no more writes until it is restarted and recovers.
    static func defragmentFailed(_ detail: String) -> EtcdError {
        EtcdError(.internal, "lattice: defragment failed (\(detail)); no data was lost")
    }

    static func storageFailed(_ detail: String) -> EtcdError {
        EtcdError(.unavailable, "lattice: write-ahead log failed (\(detail)); the request's outcome is unknown and the member accepts no writes until restarted")
    }
}

/// etcd's auth errors, with its messages and gRPC codes.
extension EtcdError {
    public static let authNotEnabled = EtcdError(.failedPrecondition, "etcdserver: authentication is not enabled")
    public static let authFailed = EtcdError(.invalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    public static let invalidAuthToken = EtcdError(.unauthenticated, "etcdserver: invalid auth token")
    public static let permissionDenied = EtcdError(.permissionDenied, "etcdserver: permission denied")
    /// The auth state changed between a request's permission check and its evaluation (etcd's
    /// clients take a new token and retry).
    public static let authOldRevision = EtcdError(.invalidArgument, "etcdserver: revision of auth store is old")
    public static let userEmpty = EtcdError(.invalidArgument, "etcdserver: user name is empty")
    public static let userAlreadyExists = EtcdError(.failedPrecondition, "etcdserver: user name already exists")
    public static let userNotFound = EtcdError(.failedPrecondition, "etcdserver: user name not found")
    public static let roleEmpty = EtcdError(.invalidArgument, "etcdserver: role name is empty")
    public static let roleAlreadyExists = EtcdError(.failedPrecondition, "etcdserver: role name already exists")
    public static let roleNotFound = EtcdError(.failedPrecondition, "etcdserver: role name not found")
    public static let rootUserNotExist = EtcdError(.failedPrecondition, "etcdserver: root user does not exist")
    public static let rootRoleNotExist = EtcdError(.failedPrecondition, "etcdserver: root user does not have root role")
    public static let roleNotGranted = EtcdError(.failedPrecondition, "etcdserver: role is not granted to the user")
    public static let permissionNotGranted = EtcdError(.failedPrecondition, "etcdserver: permission is not granted to the role")
    public static let invalidAuthManagement = EtcdError(.invalidArgument, "etcdserver: invalid auth management")
    public static let permissionNotGiven = EtcdError(.invalidArgument, "etcdserver: permission not given")
    /// etcd sends this one unmapped (code Unknown, its internal text).
    public static let noPasswordUser = EtcdError(.unknown, "auth: authentication failed, password was given for no password user")
    /// Authenticate on a member whose JWT key is a public key only (unmapped in etcd too).
    public static let verifyOnly = EtcdError(.unknown, "auth: token signing attempted with verify-only key")
}

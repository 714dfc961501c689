import LatticeCore
import LatticeTestSupport
import XCTest

/// Real Kubernetes objects (as kube-apiserver stores them with
/// `--storage-media-type=application/json`) edited concurrently at two sites the way
/// controllers and users do, merged through the replica (version DAG, merge base, field-level
/// merge). Each case states the merged object every member must show.
final class KubernetesMergeFixtureTests: XCTestCase {
    /// Site A writes `base`; B receives it; A writes `a` while B writes `b`; both exchange.
    /// Returns what each site shows (asserting they agree).
    private func concurrently(_ base: String?, _ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let clockA = TestClock(), clockB = TestClock(1_700_000_000_005)
        var siteA = Replica.test(1, clock: clockA)
        var siteB = Replica.test(2, clock: clockB)
        if let base {
            siteA.put("/registry/obj", base)
            try siteB.sync(from: siteA)
        }
        siteA.put("/registry/obj", a)
        siteB.put("/registry/obj", b)
        try siteA.sync(from: siteB)
        try siteB.sync(from: siteA)
        let shownA = try XCTUnwrap(siteA.get("/registry/obj"), file: file, line: line)
        XCTAssertEqual(shownA, siteB.get("/registry/obj"), "both sites show the same object", file: file, line: line)
        return canonical(shownA)
    }

    func testDeploymentLabelsAtBothSitesReplicasAtOneImageAtTheOther() throws {
        let base = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"10","generation":1,"labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}]}]}}},"status":{"replicas":2}}"#
        let a = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"10","generation":2,"labels":{"app":"web","team":"edge"}},"spec":{"replicas":5,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}]}]}}},"status":{"replicas":2}}"#
        let b = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"10","generation":2,"labels":{"app":"web","tier":"frontend"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80,"protocol":"TCP"}]}]}}},"status":{"replicas":2}}"#
        let expected = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"10","generation":2,"labels":{"app":"web","team":"edge","tier":"frontend"}},"spec":{"replicas":5,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80,"protocol":"TCP"}]}]}}},"status":{"replicas":2}}"#
        XCTAssertEqual(try concurrently(base, a, b), canonical(expected))
    }

    func testPodEnvAtOneSiteImageAndSidecarAtTheOther() throws {
        let base = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"app","image":"app:1","env":[{"name":"LOG","value":"info"}]}],"volumes":[{"name":"data","emptyDir":{}}]}}"#
        let a = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"app","image":"app:1","env":[{"name":"LOG","value":"info"},{"name":"A","value":"1"}]}],"volumes":[{"name":"data","emptyDir":{}}]}}"#
        let b = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"app","image":"app:2","env":[{"name":"LOG","value":"info"}]},{"name":"sidecar","image":"proxy:1"}],"volumes":[{"name":"data","emptyDir":{}},{"name":"certs","secret":{"secretName":"c"}}]}}"#
        let expected = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"app","image":"app:2","env":[{"name":"LOG","value":"info"},{"name":"A","value":"1"}]},{"name":"sidecar","image":"proxy:1"}],"volumes":[{"name":"data","emptyDir":{}},{"name":"certs","secret":{"secretName":"c"}}]}}"#
        XCTAssertEqual(try concurrently(base, a, b), canonical(expected))
        XCTAssertEqual(try concurrently(base, b, a), canonical(expected), "whichever site wins the clock")
    }

    func testNodeConditionsUpdatedByTwoControllers() throws {
        let base = #"{"kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"status":{"conditions":[{"type":"MemoryPressure","status":"False","lastHeartbeatTime":"2026-12-03T10:00:00Z","reason":"KubeletHasSufficientMemory"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-12-03T10:00:00Z","reason":"KubeletReady"}],"capacity":{"cpu":"2"}}}"#
        // The kubelet renews its heartbeat; a node controller marks memory pressure.
        let a = #"{"kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"status":{"conditions":[{"type":"MemoryPressure","status":"False","lastHeartbeatTime":"2026-12-03T10:00:00Z","reason":"KubeletHasSufficientMemory"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-12-03T10:00:40Z","reason":"KubeletReady"}],"capacity":{"cpu":"2"}}}"#
        let b = #"{"kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"status":{"conditions":[{"type":"MemoryPressure","status":"True","lastHeartbeatTime":"2026-12-03T10:00:20Z","reason":"KubeletHasInsufficientMemory"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-12-03T10:00:00Z","reason":"KubeletReady"}],"capacity":{"cpu":"2"}}}"#
        let expected = #"{"kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"status":{"conditions":[{"type":"MemoryPressure","status":"True","lastHeartbeatTime":"2026-12-03T10:00:20Z","reason":"KubeletHasInsufficientMemory"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-12-03T10:00:40Z","reason":"KubeletReady"}],"capacity":{"cpu":"2"}}}"#
        XCTAssertEqual(try concurrently(base, a, b), canonical(expected))
    }

    func testConfigMapAnnotationRemovedAtOneSiteAndChangedAtTheOther() throws {
        let base = #"{"kind":"ConfigMap","metadata":{"name":"cfg","annotations":{"owner":"ops","note":"v1"}},"data":{"a":"1"}}"#
        let a = #"{"kind":"ConfigMap","metadata":{"name":"cfg","annotations":{"owner":"ops"}},"data":{"a":"1","b":"2"}}"#
        let b = #"{"kind":"ConfigMap","metadata":{"name":"cfg","annotations":{"owner":"ops","note":"v2"}},"data":{"a":"1","c":"3"}}"#
        // The change survives the concurrent removal (as a put survives a concurrent delete).
        let expected = #"{"kind":"ConfigMap","metadata":{"name":"cfg","annotations":{"owner":"ops","note":"v2"}},"data":{"a":"1","b":"2","c":"3"}}"#
        XCTAssertEqual(try concurrently(base, a, b), canonical(expected))
        XCTAssertEqual(try concurrently(base, b, a), canonical(expected))
    }

    func testCustomResourceWithManagedFieldsEditedByTwoManagers() throws {
        let base = #"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","finalizers":["example.com/cleanup"],"managedFields":[{"manager":"ctl-a","operation":"Apply","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}},{"manager":"ctl-b","operation":"Update","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:color":{}}}}]},"spec":{"size":1,"color":"red"}}"#
        let a = #"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","finalizers":["example.com/cleanup"],"managedFields":[{"manager":"ctl-a","operation":"Apply","time":"2026-12-03T10:05:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}},{"manager":"ctl-b","operation":"Update","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:color":{}}}}]},"spec":{"size":3,"color":"red"}}"#
        let b = #"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","finalizers":["example.com/cleanup","example.com/audit"],"managedFields":[{"manager":"ctl-a","operation":"Apply","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}},{"manager":"ctl-b","operation":"Update","time":"2026-12-03T10:06:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:color":{}}}}]},"spec":{"size":1,"color":"blue"}}"#
        let expected = #"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","finalizers":["example.com/cleanup","example.com/audit"],"managedFields":[{"manager":"ctl-a","operation":"Apply","time":"2026-12-03T10:05:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}},{"manager":"ctl-b","operation":"Update","time":"2026-12-03T10:06:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:color":{}}}}]},"spec":{"size":3,"color":"blue"}}"#
        XCTAssertEqual(try concurrently(base, a, b), canonical(expected))
    }

    /// The same Pod created at two sites (no common ancestor): fields merge, lists are the
    /// winning site's whole — the containers are not glued together.
    func testAPodCreatedAtBothSitesKeepsOneSitesContainers() throws {
        let a = #"{"kind":"Pod","metadata":{"name":"p","labels":{"site":"a"}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}"#
        let b = #"{"kind":"Pod","metadata":{"name":"p","annotations":{"by":"b"}},"spec":{"containers":[{"name":"app","image":"app:2"},{"name":"extra","image":"x:1"}]}}"#
        // B's clock is ahead: B's version has priority.
        let expected = #"{"kind":"Pod","metadata":{"name":"p","labels":{"site":"a"},"annotations":{"by":"b"}},"spec":{"containers":[{"name":"app","image":"app:2"},{"name":"extra","image":"x:1"}]}}"#
        XCTAssertEqual(try concurrently(nil, a, b), canonical(expected))
    }
}

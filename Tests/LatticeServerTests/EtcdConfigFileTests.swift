import LatticeServer
import XCTest

/// etcd's YAML configuration file becomes the flags it stands for; what Lattice cannot honour
/// is reported or refused, never dropped in silence.
final class EtcdConfigFileTests: XCTestCase {
    func testAnEtcdConfigurationFileBecomesItsFlags() throws {
        let yaml = """
        # an edge site
        name: 'site-a'
        data-dir: /var/lib/lattice   # trailing comment
        wal-dir:
        snapshot-count: 10000
        heartbeat-interval: 100
        election-timeout: 1000
        quota-backend-bytes: 0
        listen-peer-urls: https://10.0.0.1:2380
        listen-client-urls: "https://10.0.0.1:2379,http://127.0.0.1:2379"
        initial-cluster: "site-a=https://10.0.0.1:2380,site-b=https://10.0.0.2:2380"
        initial-cluster-token: 'edge # 1'
        initial-cluster-state: 'new'
        force-new-cluster: false
        proxy: 'off'
        grpc-keepalive-min-time: 5000000000
        grpc-keepalive-interval: 2h
        client-transport-security:
          cert-file: /etc/lattice/server.crt
          key-file: /etc/lattice/server.key
          client-cert-auth: true
          trusted-ca-file: /etc/lattice/ca.crt
          auto-tls: false
        peer-transport-security:
          cert-file: /etc/lattice/peer.crt
          key-file: /etc/lattice/peer.key
          client-cert-auth: false
          trusted-ca-file:
        log-level: info
        logger: zap
        log-outputs: [stderr, /var/log/lattice.log]
        cipher-suites: [
          TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
          TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        ]
        listen-metrics-urls:
          - http://127.0.0.1:2381
        tls-min-version: 'TLS1.2'
        experimental-something-new: 3
        """
        let t = try EtcdConfigFile.translate(yaml)
        XCTAssertEqual(t.arguments, [
            "--name", "site-a", "--data-dir", "/var/lib/lattice", "--snapshot-count", "10000", "--quota-backend-bytes", "0",
            "--listen-peer-urls", "https://10.0.0.1:2380", "--listen-client-urls", "https://10.0.0.1:2379,http://127.0.0.1:2379",
            "--initial-cluster", "site-a=https://10.0.0.1:2380,site-b=https://10.0.0.2:2380",
            "--initial-cluster-token", "edge # 1", "--initial-cluster-state", "new",
            "--grpc-keepalive-min-time", "5000000000ns", "--grpc-keepalive-interval", "2h",
            "--cert-file", "/etc/lattice/server.crt", "--key-file", "/etc/lattice/server.key", "--client-cert-auth",
            "--trusted-ca-file", "/etc/lattice/ca.crt",
            "--peer-cert-file", "/etc/lattice/peer.crt", "--peer-key-file", "/etc/lattice/peer.key",
            "--log-level", "info", "--logger", "zap", "--log-outputs", "stderr,/var/log/lattice.log",
            "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "--listen-metrics-urls", "http://127.0.0.1:2381", "--tls-min-version", "TLS1.2",
        ])
        XCTAssertEqual(t.warnings, [
            "configuration key heartbeat-interval has no effect in Lattice (no leader election)",
            "configuration key election-timeout has no effect in Lattice (no leader election)",
            "unknown configuration key experimental-something-new (ignored)",
        ])
    }

    func testSettingsLatticeCannotHonourAreRefusedAndBadYAMLNamesItsLine() {
        let refused: [(String, String)] = [
            ("wal-dir: /wal", "configuration key wal-dir: the WAL lives in the data directory"),
            ("force-new-cluster: true", "configuration key force-new-cluster: force-new-cluster is not supported"),
            ("proxy: on", "configuration key proxy: proxy mode is not supported"),
            ("client-transport-security:\n  client-cert-auth: maybe", "client-transport-security.client-cert-auth: expected true or false, got \"maybe\""),
            ("name: a\n\tdata-dir: b", "line 2: tabs cannot indent YAML"),
            ("cipher-suites: [A,\n  B", "line 1: unterminated [ list"),
            ("name a", "line 1: expected \"key: value\""),
            ("name: &anchor a", "line 1: this YAML construct is not supported in a configuration file"),
            ("name: a\n   data-dir: b", "line 2: unexpected indentation"),
        ]
        for (yaml, message) in refused {
            XCTAssertThrowsError(try EtcdConfigFile.translate(yaml), yaml) { error in
                XCTAssertEqual((error as? ConfigFileError)?.description, message, yaml)
            }
        }
    }
}

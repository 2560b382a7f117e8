"""Real redis-server set-ups on loopback for the connection tests: a 3-master Redis Cluster, a Sentinel over
a master and a replica, a TLS-only server."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import _redis_server_binary, free_port

BASE_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


@dataclass
class Servers:
    """Started redis-server processes (stopped together) and their ports."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll until `predicate()` is true (errors count as not yet), or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        time.sleep(0.1)


def start_server(servers: Servers, directory: Path, *args: str, port: int | None = None,
                 ping: Callable[[int], bool] | None = None, sentinel: bool = False) -> int:
    """Start one redis-server (or sentinel) in `directory`; returns its port once it answers."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    command = [_redis_server_binary()]
    if sentinel:
        conf = directory / "sentinel.conf"
        conf.write_text("".join(f"{line}\n" for line in args))
        command += [str(conf), "--sentinel", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    else:
        command += ["--port", str(port), *BASE_ARGS, "--dir", str(directory), *args]
    log = open(directory / "server.log", "w")
    servers.procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    servers.ports.append(port)
    check = ping or (lambda p: redis.Redis(host="127.0.0.1", port=p, socket_timeout=2).ping())
    wait_for(lambda: check(port), f"redis-server on port {port}")
    return port


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is a valid, free port too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and _is_free(port + 10000):
            return port
    raise AssertionError("no free port pair for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_cluster(directory: Path, masters: int = 3, *, first_port: int | None = None) -> Servers:
    """A real Redis Cluster of `masters` masters and no replicas, in state ok on every node."""
    servers = Servers()
    try:
        for index in range(masters):
            node_dir = directory / f"node{index}"
            start_server(servers, node_dir, "--cluster-enabled", "yes", "--cluster-config-file",
                         str(node_dir / "nodes.conf"), "--cluster-node-timeout", "5000",
                         port=first_port if index == 0 and first_port else cluster_port())
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{port}" for port in servers.ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, timeout=60, stdout=subprocess.DEVNULL)
        for port in servers.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
            wait_for(lambda: client.execute_command("CLUSTER INFO").get("cluster_state") == "ok"
                     and len(client.execute_command("CLUSTER SLOTS")) == masters, f"cluster ok on {port}")
    except BaseException:
        servers.stop()
        raise
    return servers


def start_sentinel(directory: Path, master: str = "mymaster") -> tuple[Servers, int, int, int]:
    """A real master, its replica and one sentinel watching them: (servers, master, replica, sentinel port)."""
    servers = Servers()
    try:
        master_port = start_server(servers, directory / "master")
        replica_port = start_server(servers, directory / "replica", "--replicaof", "127.0.0.1", str(master_port))
        replica = redis.Redis(host="127.0.0.1", port=replica_port)
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up", "replica in sync")
        sentinel_port = start_server(
            servers, directory / "sentinel", f"sentinel monitor {master} 127.0.0.1 {master_port} 1",
            f"sentinel down-after-milliseconds {master} 2000", f"sentinel failover-timeout {master} 10000",
            sentinel=True)
        sentinel = redis.Redis(host="127.0.0.1", port=sentinel_port)
        wait_for(lambda: len(sentinel.sentinel_slaves(master)) == 1, "sentinel sees the replica")
    except BaseException:
        servers.stop()
        raise
    return servers, master_port, replica_port, sentinel_port


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and another CA."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=queuewatch test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", *(["-extfile", "server.ext"] if name == "server" else []))
    return {name: directory / name for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key",
                                                 "client.crt", "client.key")}


def start_tls_server(directory: Path, certs: dict[str, Path]) -> tuple[Servers, int]:
    """A redis-server that listens with TLS only and requires client certificates of the CA."""
    servers = Servers()
    port = free_port()

    def ping(p: int) -> bool:
        return redis.Redis(host="127.0.0.1", port=p, ssl=True, ssl_ca_certs=str(certs["ca.crt"]),
                           ssl_certfile=str(certs["client.crt"]), ssl_keyfile=str(certs["client.key"]),
                           socket_timeout=2).ping()
    try:
        start_server(servers, directory, "--port", "0", "--tls-port", str(port), "--tls-cert-file",
                     str(certs["server.crt"]), "--tls-key-file", str(certs["server.key"]), "--tls-ca-cert-file",
                     str(certs["ca.crt"]), "--tls-auth-clients", "yes", port=port, ping=ping)
    except BaseException:
        servers.stop()
        raise
    return servers, port

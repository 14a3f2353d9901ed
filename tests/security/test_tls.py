"""TLS and mutual TLS: `dealerpulse certs`, the collector, the agent and the CLI client."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from agent.settings import TlsFiles
from collector.alerting.client import AlertsCallError, connect
from collector.server import CollectorError, CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from dealerpulse import cli
from dealerpulse.certs import CertFiles
from dealerpulse.clock import FakeClock
from dealerpulse.tls import ClientTls, TlsError, channel_credentials

from .conftest import client_files
from .kit import add_admin, add_dealer, run, running_collector


def _tls_settings(certs: CertFiles, mutual: bool = False) -> CollectorSettings:
    return CollectorSettings(
        listen="127.0.0.1:0",
        run_jobs=False,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        tls_client_ca=certs.ca_cert if mutual else None,
    )


def test_certs_command_makes_a_ca_a_server_and_client_certificates_keys_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pki"
    argv = ["certs", "--out", str(out), "--hosts", "127.0.0.1,collector.internal"]
    assert cli.main([*argv, "--client", "sunrise-agent"]) == 0
    assert "--tls-client-ca" in capsys.readouterr().out
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    client = x509.load_pem_x509_certificate((out / "client-sunrise-agent.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["collector.internal"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for key in ("ca.key", "server.key", "client-sunrise-agent.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600, key

    # Again with another client: the CA is kept, so the collector trusts both clients.
    ca_before = (out / "ca.pem").read_bytes()
    assert cli.main(["certs", "--out", str(out), "--client", "second"]) == 0
    assert (out / "ca.pem").read_bytes() == ca_before
    second = x509.load_pem_x509_certificate((out / "client-second.pem").read_bytes())
    second.verify_directly_issued_by(ca)


def test_certs_command_names_a_bad_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["certs", "--out", str(tmp_path), "--hosts", "not a host!"]) == 1
    assert "'not a host!'" in capsys.readouterr().err


def test_ingest_over_tls_stores_what_the_agent_sends(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, certs: CertFiles
) -> None:
    acme = add_dealer(sqlite_store, clock, "acme-motors")

    async def scenario() -> None:
        async with running_collector(sqlite_store, _tls_settings(certs), clock) as collector:
            tls = TlsFiles(ca=certs.ca_cert)
            async with collector.agent(acme.dealer, acme.dealer_id, tls) as agent:
                reply = await agent.hello()
                assert reply.dealer_id == "acme-motors"
                ack = await agent.stream().roundtrip(agent.batch(1))
                assert ack.status.name == "STORED" and ack.samples_stored == 3
                assert sqlite_store.count_samples(agent.agent_id) == 3

    run(scenario())


def test_a_plaintext_client_cannot_talk_to_a_tls_collector(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, certs: CertFiles
) -> None:
    acme = add_dealer(sqlite_store, clock, "acme-motors")

    async def scenario() -> None:
        async with running_collector(sqlite_store, _tls_settings(certs), clock) as collector:
            async with collector.agent(acme.dealer, acme.dealer_id, tls=None) as agent:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await agent.hello()
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert sqlite_store.list_agents() == []

    run(scenario())


def test_mutual_tls_admits_only_clients_with_a_certificate_of_the_configured_ca(
    sqlite_store: SQLAlchemyMetricStore,
    clock: FakeClock,
    certs: CertFiles,
    foreign_certs: CertFiles,
) -> None:
    acme = add_dealer(sqlite_store, clock, "acme-motors")
    cert, key = client_files(certs)
    foreign_cert, foreign_key = client_files(foreign_certs)
    refused_tls = {
        "no client certificate": TlsFiles(ca=certs.ca_cert),
        "a certificate of another CA": TlsFiles(certs.ca_cert, foreign_cert, foreign_key),
    }

    async def scenario() -> None:
        settings = _tls_settings(certs, mutual=True)
        async with running_collector(sqlite_store, settings, clock) as collector:
            for why, tls in refused_tls.items():
                async with collector.agent(acme.dealer, acme.dealer_id, tls) as agent:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await agent.hello()
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, why
            assert sqlite_store.list_agents() == []
            tls = TlsFiles(certs.ca_cert, cert, key)
            async with collector.agent(acme.dealer, acme.dealer_id, tls) as agent:
                await agent.hello()
                ack = await agent.stream().roundtrip(agent.batch(1))
                assert ack.status.name == "STORED"

    run(scenario())


def test_the_alerts_cli_client_speaks_mutual_tls(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, certs: CertFiles
) -> None:
    admin = add_admin(sqlite_store, clock)
    add_dealer(sqlite_store, clock, "acme-motors")
    cert, key = client_files(certs)
    collector_address = ""

    def list_rules(tls: ClientTls) -> list[dict[str, object]]:
        with connect(collector_address, admin, tls) as client:
            return client.list_rules()

    def create_rule(tls: ClientTls) -> None:
        spec = {
            "name": "cpu hot",
            "metric": "cpu.percent",
            "aggregation": "avg",
            "window_s": 60,
            "comparator": ">",
            "thresholds": {"warning": 80},
            "dealer_id": "acme-motors",
        }
        with connect(collector_address, admin, tls) as client:
            client.create_rule(spec)

    async def scenario() -> None:
        nonlocal collector_address
        settings = _tls_settings(certs, mutual=True)
        async with running_collector(sqlite_store, settings, clock) as collector:
            collector_address = collector.address
            mutual = ClientTls(certs.ca_cert, cert, key)
            await asyncio.to_thread(create_rule, mutual)
            rules = await asyncio.to_thread(list_rules, mutual)
            assert [rule["name"] for rule in rules] == ["cpu hot"]
            with pytest.raises(AlertsCallError) as refused:
                await asyncio.to_thread(list_rules, ClientTls(certs.ca_cert))
            assert refused.value.status == "UNAVAILABLE"

    run(scenario())


def test_unreadable_or_wrong_tls_files_are_named(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, certs: CertFiles, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsError, match=f"tls_ca: cannot read {missing}"):
        channel_credentials(ClientTls(ca=missing))
    with pytest.raises(TlsError, match=f"tls_key: {certs.server_cert} holds no PEM private key"):
        channel_credentials(ClientTls(certs.ca_cert, certs.server_cert, certs.server_cert))

    async def start(settings: CollectorSettings) -> None:
        server = CollectorServer(sqlite_store, "127.0.0.1:0", settings, clock)
        try:
            await server.start()
        finally:
            await server.stop(1.0)

    swapped = CollectorSettings(
        listen="127.0.0.1:0", run_jobs=False, tls_cert=certs.server_key, tls_key=certs.server_key
    )
    with pytest.raises(CollectorError, match=f"tls_cert: {certs.server_key} holds no PEM cert"):
        run(start(swapped))


def test_the_alerts_cli_names_a_missing_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.pem"
    argv = ["alerts", "rules", "--token", "x", "--tls-ca", str(missing)]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert f"tls_ca: cannot read {missing}" in capsys.readouterr().err
